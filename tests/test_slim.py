"""[slim]: keep the ELF closure of the kept programs plus declared data, prune the rest, keep dpkg honest."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import HOST_ARCH, source_block
from tests.support.debs import DebSpec, Dir, Lnk, Reg
from tests.support.forge import forge
from tests.support.repo import Signer, build_repo, serve

pytestmark = pytest.mark.skipif(HOST_ARCH != "amd64", reason="uses the host's amd64 glibc as package content")

LIBDIR = "usr/lib/x86_64-linux-gnu"


def host_file(path: str) -> bytes:
    return Path(os.path.realpath(path)).read_bytes()


def specs() -> list[DebSpec]:
    libc = DebSpec("libc6", "2.36-9", "amd64", {"Multi-Arch": "same"}, members=[
        Dir("usr"), Dir("usr/lib"), Dir(LIBDIR),
        Reg(f"{LIBDIR}/libc.so.6", host_file("/lib/x86_64-linux-gnu/libc.so.6"), 0o755),
        Reg(f"{LIBDIR}/ld-linux-x86-64.so.2", host_file("/lib64/ld-linux-x86-64.so.2"), 0o755),
        # as bookworm's libc6: the loader's path is /lib64/... (the PT_INTERP of every amd64 program)
        Dir("lib64"), Lnk("lib64/ld-linux-x86-64.so.2", f"/{LIBDIR}/ld-linux-x86-64.so.2"),
        Reg(f"{LIBDIR}/libunused.so.1", b"\x7fELF not really"),
        Dir("usr/share"), Dir("usr/share/i18n"), Reg("usr/share/i18n/SUPPORTED", "big table\n" * 1000),
    ])
    tools = DebSpec("tools", "1.0", "amd64", {"Depends": "libc6"}, members=[
        Dir("usr"), Dir("usr/bin"), Reg("usr/bin/true", host_file("/usr/bin/true"), 0o755),
        Reg("usr/bin/false", host_file("/usr/bin/false"), 0o755),
        Dir("usr/share"), Dir("usr/share/tools"), Reg("usr/share/tools/data.txt", "data\n"),
        Reg("usr/share/tools/other.txt", "other\n"),
    ])
    return [libc, tools]


def test_slim_keeps_the_closure_and_prunes_the_rest(tmp_path: Path, signer: Signer) -> None:
    repo = build_repo(tmp_path / "repo", specs(), signer=signer)
    with serve(repo.root) as server:
        recipe = tmp_path / "r.toml"
        recipe.write_text('packages = ["tools"]\n[config]\nentrypoint = ["/usr/bin/true"]\n'
                          '[slim]\ndata = ["/usr/share/tools/data.txt"]\n' + source_block(server, signer))
        full = tmp_path / "r-full.toml"
        full.write_text('packages = ["tools"]\n' + source_block(server, signer))
        for r, out in ((recipe, "slim"), (full, "full")):
            proc = forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / out), "-q",
                         cache=tmp_path / "c")
            assert proc.returncode == 0, proc.stderr
    root = tmp_path / "slim"
    assert (root / "usr/bin/true").is_file()
    assert (root / LIBDIR / "libc.so.6").is_file() and (root / LIBDIR / "ld-linux-x86-64.so.2").is_file()
    assert (root / "usr/share/tools/data.txt").is_file()
    for gone in ("usr/bin/false", f"{LIBDIR}/libunused.so.1", "usr/share/i18n/SUPPORTED",
                 "usr/share/tools/other.txt"):
        assert not (root / gone).exists(), gone
        assert (tmp_path / "full" / gone).exists(), gone
    # the dpkg database describes exactly what remains
    listed = (root / "var/lib/dpkg/info/tools.list").read_text().splitlines()
    assert "/usr/bin/true" in listed and "/usr/bin/false" not in listed
    assert "usr/bin/false" not in (root / "var/lib/dpkg/info/tools.md5sums").read_text()
    verify = subprocess.run(["dpkg", f"--root={root}", "--verify"], capture_output=True, text=True)
    assert verify.returncode == 0 and verify.stdout == ""
    audit = forge("audit", str(root), "--fail-on", "missing-libs,unowned-files")
    assert audit.returncode == 0, audit.stdout + audit.stderr


@pytest.mark.root
def test_slimmed_program_still_runs(tmp_path: Path, signer: Signer) -> None:
    repo = build_repo(tmp_path / "repo", specs(), signer=signer)
    with serve(repo.root) as server:
        recipe = tmp_path / "r.toml"
        recipe.write_text('packages = ["tools"]\n[slim]\nkeep = ["/usr/bin/true"]\n' + source_block(server, signer))
        proc = forge("compose", str(recipe), "--format", "rootfs", "-o", str(tmp_path / "root"), "-q",
                     cache=tmp_path / "c")
        assert proc.returncode == 0, proc.stderr
    run = subprocess.run(["chroot", str(tmp_path / "root"), "/usr/bin/true"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_slim_of_a_missing_program_is_one_line(tmp_path: Path, signer: Signer) -> None:
    repo = build_repo(tmp_path / "repo", specs(), signer=signer)
    with serve(repo.root) as server:
        recipe = tmp_path / "r.toml"
        recipe.write_text('packages = ["tools"]\n[slim]\nkeep = ["/usr/bin/nope"]\n' + source_block(server, signer))
        proc = forge("compose", str(recipe), "--format", "rootfs", "-o", str(tmp_path / "root"), "-q",
                     cache=tmp_path / "c")
    assert proc.returncode != 0 and "/usr/bin/nope" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "root").exists()
