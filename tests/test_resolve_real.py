"""Fidelity against apt itself: resolve real packages over the host's apt lists and compare with
``apt-get install -s`` run on an empty dpkg status (a fresh root), reading the very same lists.

Needs a Debian host on which ``apt-get update`` has run (the lists come from the mirror, hence ``network``).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from debian.deb822 import Packages

from rootfs_forge.model import MemoryIndex, Package, ResolveRequest
from rootfs_forge.resolve.search import resolve

pytestmark = [pytest.mark.network, pytest.mark.slow]

LISTS = Path("/var/lib/apt/lists")
APT_HELPER = Path("/usr/lib/apt/apt-helper")
PACKAGES = ["python3", "curl", "bash", "coreutils", "openssh-server", "git", "perl", "ca-certificates", "tzdata",
            "busybox", "apt", "gnupg", "nginx", "systemd", "build-essential"]


def _native_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


def _stanza(s: Packages) -> Package:
    g = s.get
    return Package(
        name=s["Package"], version=s["Version"], architecture=s["Architecture"], filename=g("Filename", ""),
        size=int(g("Size", "0")), sha256=g("SHA256", ""), multi_arch=g("Multi-Arch", "no"),
        essential=g("Essential", "no") == "yes", priority=g("Priority", "optional"), depends=g("Depends", ""),
        pre_depends=g("Pre-Depends", ""), recommends=g("Recommends", ""), conflicts=g("Conflicts", ""),
        breaks=g("Breaks", ""), provides=g("Provides", ""), replaces=g("Replaces", ""),
        installed_size=int(g("Installed-Size", "0")), source=g("Source", ""), section=g("Section", ""),
    )


@pytest.fixture(scope="module")
def host_index() -> MemoryIndex:
    if shutil.which("apt-get") is None or not APT_HELPER.exists():
        pytest.skip("needs apt-get and apt-helper (a Debian host)")
    arch = _native_arch()
    files = sorted(p for p in LISTS.glob(f"*_binary-{arch}_Packages*") if not p.name.endswith(".diff_Index"))
    if not files:
        pytest.skip("no apt lists on this host: run apt-get update")
    stanzas: list[Package] = []
    for path in files:
        text = subprocess.run([str(APT_HELPER), "cat-file", str(path)], capture_output=True, text=True,
                              check=True).stdout
        stanzas += [_stanza(s) for s in Packages.iter_paragraphs(text.splitlines(keepends=True),
                                                                 use_apt_pkg=False)]
    return MemoryIndex(stanzas)


def _apt_simulation(tmp_path: Path, names: list[str], recommends: bool) -> set[str]:
    status = tmp_path / "status"
    status.write_text("")
    out = subprocess.run(
        ["apt-get", "install", "-s", "-q", "-o", f"Dir::State::Status={status}", "-o", "Debug::NoLocking=1",
         "--install-recommends" if recommends else "--no-install-recommends", *names],
        capture_output=True, text=True, check=True,
    ).stdout
    return {f"{w[1]}={w[2].strip('(')}" for w in (line.split() for line in out.splitlines()) if w[0] == "Inst"}


@pytest.mark.parametrize("name", PACKAGES)
def test_resolution_matches_apt(host_index: MemoryIndex, tmp_path: Path, name: str) -> None:
    res = resolve(host_index, ResolveRequest(packages=(name,), architecture=_native_arch(), merged_usr=False))
    assert {f"{p.name}={p.version}" for p in res.packages} == _apt_simulation(tmp_path, [name], False)


@pytest.mark.parametrize("names", [["python3", "curl"], ["openssh-server", "git", "ca-certificates"]])
def test_resolution_with_recommends_matches_apt(host_index: MemoryIndex, tmp_path: Path, names: list[str]) -> None:
    res = resolve(host_index, ResolveRequest(packages=tuple(names), architecture=_native_arch(),
                                             merged_usr=False, recommends=True))
    assert {f"{p.name}={p.version}" for p in res.packages} == _apt_simulation(tmp_path, names, True)


def test_essential_set_matches_apt(host_index: MemoryIndex, tmp_path: Path) -> None:
    essential = sorted({p.name for p in host_index.essential()})
    res = resolve(host_index, ResolveRequest(packages=(), architecture=_native_arch(), essential=True,
                                             merged_usr=False))
    assert {f"{p.name}={p.version}" for p in res.packages} == _apt_simulation(tmp_path, essential, False)


def test_warm_resolve_of_python3_is_fast(host_index: MemoryIndex) -> None:
    req = ResolveRequest(packages=("python3",), architecture=_native_arch())
    resolve(host_index, req)
    start = time.perf_counter()
    resolve(host_index, req)
    assert time.perf_counter() - start <= 0.05
