"""Where compose builds its trees: in memory when a scratch tree fits, next to the output otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rootfs_forge.util import workdir as workdir

MB = 1 << 20


@pytest.mark.parametrize(("scratch", "env", "free", "mem", "expected"), [
    (False, None, 10_000 * MB, 10_000 * MB, "dest"),  # a rootfs output is renamed into place: same filesystem
    (False, "/elsewhere", 10_000 * MB, 10_000 * MB, "dest"),
    (True, None, 10_000 * MB, 10_000 * MB, "shm"),
    (True, None, 150 * MB, 10_000 * MB, "dest"),  # a small /dev/shm (containers give 64 MB)
    (True, None, 10_000 * MB, 300 * MB, "dest"),  # little memory left
    (True, None, None, 10_000 * MB, "dest"),  # no usable /dev/shm
    (True, "/elsewhere", 10_000 * MB, 10_000 * MB, "/elsewhere"),
])
def test_work_dir_choice(scratch: bool, env: str | None, free: int | None, mem: int | None, expected: str) -> None:
    dest = Path("/out")
    got = workdir.choose(100 * MB, dest, scratch=scratch, env=env, shm_free=lambda: free, mem_available=lambda: mem)
    assert got == {"dest": dest, "shm": workdir.SHM}.get(expected, Path(expected))


def test_build_dirs_of_killed_composes_are_found_and_live_ones_kept(tmp_path: Path) -> None:
    dead, live = 4_000_001, os.getpid()
    for name in (f"forge-work-{dead}-abc", f"forge-work-{live}-def", "forge-work-x-1", "other-dir"):
        (tmp_path / name).mkdir()
    (tmp_path / f"forge-work-{dead}-file").write_text("not a directory")
    found = workdir.stale(tmp_path, lambda pid: pid == live)
    assert found == [tmp_path / f"forge-work-{dead}-abc"]
