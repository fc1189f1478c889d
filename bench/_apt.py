"""apt as the reference resolver for ``bench/resolver_vs_apt.py``: a scratch apt reading exactly forge's sources.

``tests.support.aptsim.ScratchApt`` copies all of the host's sources; here the copied files are replaced by one
deb822 file written from forge's own ``SourceEntry`` list, so both sides read the same suites and components.
The package cache is kept on disk (some hosts disable ``pkgcache.bin`` in /etc/apt/apt.conf.d, which makes
every apt call rebuild it from the lists), and apt's ``Debug::pkgDepCache::AutoInstall`` trace is parsed to tell
which package made apt install which.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rootfs_forge.archive.sources import SourceEntry
from tests.support.aptsim import ScratchApt

_INST = re.compile(r"^Inst (\S+) \((\S+)", re.M)
_MARK = re.compile(r"^\s*Installing (\S+) as (\S+) of (\S+)", re.M)


def _bare(name: str) -> str:
    return name.split(":", 1)[0]


@dataclass(frozen=True)
class AptRun:
    """One ``apt-get install -s`` of a request: the chosen ``name -> version`` or apt's error text."""

    chosen: dict[str, str] | None
    error: str
    seconds: float


@dataclass(frozen=True)
class ReferenceApt(ScratchApt):
    """A ``ScratchApt`` whose sources are forge's entries and whose package cache persists between calls."""

    @classmethod
    def for_entries(cls, root: Path, arch: str, entries: Sequence[SourceEntry]) -> ReferenceApt:
        base = ScratchApt.create(root, arch)
        (root / "etc" / "sources.list").write_text("")
        for f in (root / "etc" / "sources.list.d").iterdir():
            f.unlink()
        stanzas = []
        for e in entries:
            lines = ["Types: deb", f"URIs: {e.url}", f"Suites: {e.suite}"]
            if e.components:
                lines.append(f"Components: {' '.join(e.components)}")
            if e.keyring and "BEGIN PGP" not in e.keyring:
                lines.append(f"Signed-By: {e.keyring}")
            stanzas.append("\n".join(lines) + "\n")
        (root / "etc" / "sources.list.d" / "forge.sources").write_text("\n".join(stanzas))
        return cls(base.root, base.arch)

    def options(self) -> list[str]:
        return [*super().options(), "-o", "Dir::Cache::pkgcache=pkgcache.bin",
                "-o", "Dir::Cache::srcpkgcache=srcpkgcache.bin"]

    def run(self, packages: Sequence[str]) -> AptRun:
        """Simulate installing ``packages`` on the empty status, without Recommends; timed."""
        cmd = ["apt-get", *self.options(), "install", "-s", "-qq", "--no-install-recommends", *packages]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t
        if proc.returncode != 0:
            return AptRun(None, (proc.stdout + proc.stderr).strip(), seconds)
        return AptRun({_bare(m.group(1)): m.group(2) for m in _INST.finditer(proc.stdout)}, "", seconds)

    def parents(self, packages: Sequence[str]) -> dict[str, tuple[str, str]]:
        """name -> (parent name, relation field) of apt's first ``Installing X as <field> of Y`` for it."""
        cmd = ["apt-get", *self.options(), "install", "-s", "-qq", "--no-install-recommends",
               "-o", "Debug::pkgDepCache::AutoInstall=1", *packages]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        out: dict[str, tuple[str, str]] = {}
        for m in _MARK.finditer(proc.stderr + proc.stdout):
            out.setdefault(_bare(m.group(1)), (_bare(m.group(3)), m.group(2)))
        return out


def chain(parents: dict[str, tuple[str, str]], name: str) -> list[str]:
    """``[requested, ..., name]`` following apt's first parents; stops at a cycle."""
    out = [name]
    while out[0] in parents and parents[out[0]][0] not in out:
        out.insert(0, parents[out[0]][0])
    return out
