"""apt itself in a scratch directory, as the reference peer: same sources as the host, empty dpkg status.

Used by tests and benchmarks to compare forge's index and resolver with apt's own choices.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ScratchApt:
    root: Path
    arch: str = "amd64"

    @classmethod
    def create(cls, root: Path, arch: str = "amd64", etc_apt: Path = Path("/etc/apt")) -> ScratchApt:
        for d in ("lists/partial", "cache/archives/partial", "etc/sources.list.d", "etc/preferences.d",
                  "etc/apt.conf.d", "log"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "status").write_text("")
        if (etc_apt / "sources.list").is_file():
            shutil.copy(etc_apt / "sources.list", root / "etc" / "sources.list")
        else:
            (root / "etc" / "sources.list").write_text("")
        for f in sorted((etc_apt / "sources.list.d").glob("*")):
            if f.suffix in (".list", ".sources"):
                shutil.copy(f, root / "etc" / "sources.list.d" / f.name)
        return cls(root, arch)

    def options(self) -> list[str]:
        r = self.root
        return [
            "-o", f"Dir::State::Lists={r}/lists", "-o", f"Dir::State::Status={r}/status",
            "-o", f"Dir::Cache={r}/cache", "-o", f"Dir::Etc::SourceList={r}/etc/sources.list",
            "-o", f"Dir::Etc::SourceParts={r}/etc/sources.list.d", "-o", f"Dir::Etc::Preferences={r}/etc/pref",
            "-o", f"Dir::Etc::PreferencesParts={r}/etc/preferences.d", "-o", f"Dir::Etc::Parts={r}/etc/apt.conf.d",
            "-o", f"Dir::Log={r}/log", "-o", f"APT::Architecture={self.arch}",
            "-o", f"APT::Architectures={self.arch}", "-o", "Debug::NoLocking=1",
            "-o", "Acquire::Languages=none", "-o", "APT::Get::List-Cleanup=0",
        ]

    def update(self) -> None:
        subprocess.run(["apt-get", *self.options(), "update", "-qq"], check=True, capture_output=True)

    def candidate(self, package: str) -> str:
        out = subprocess.run(["apt-cache", *self.options(), "policy", package], check=True, capture_output=True,
                             text=True).stdout
        m = re.search(r"Candidate: (\S+)", out)
        return m.group(1) if m else "(none)"

    def simulate(self, packages: list[str], recommends: bool = False) -> dict[str, str] | str:
        """name -> version apt would install, or apt's error text."""
        cmd = ["apt-get", *self.options(), "install", "-s", "-qq"]
        if not recommends:
            cmd.append("--no-install-recommends")
        proc = subprocess.run([*cmd, *packages], capture_output=True, text=True)
        if proc.returncode != 0:
            return (proc.stdout + proc.stderr).strip()
        chosen = {}
        for m in re.finditer(r"^Inst (\S+) \((\S+)", proc.stdout, re.M):
            chosen[m.group(1).split(":")[0]] = m.group(2)
        return chosen
