"""Outputs that appear complete or not at all: a directory or file is built under a temporary name next to its
destination and renamed at the end, so a failure — or a kill — never leaves a half-written result where the
user asked for one; the temporary siblings of killed runs are removed by the next one."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rootfs_forge.errors import ForgeError
from rootfs_forge.util.pids import process_alive


@contextlib.contextmanager
def staged_output(dest: Path, *, directory: bool) -> Iterator[Path]:
    """Yield a temp path next to ``dest``; on success rename it to ``dest``, on failure remove it.

    An existing ``dest`` is replaced only after the new one is complete.
    """
    dest = dest.absolute()
    check_destination(dest, directory=directory)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_temps(dest)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.forge-{os.getpid()}-"))
    tmp.chmod(0o755)
    target = tmp if directory else tmp / dest.name
    try:
        yield target
        if dest.is_dir() and not dest.is_symlink():
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.forge-{os.getpid()}-old-"))
            os.rename(dest, old / "x")
            os.rename(target, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(target, dest)
    except BaseException:
        remove_tree(tmp)
        raise
    if not directory:
        remove_tree(tmp)


def check_destination(dest: Path, *, directory: bool) -> None:
    """Refuse to replace a file with a directory output or the other way round (and never write through a link)."""
    if dest.is_symlink():
        raise ForgeError("write", str(dest), "it is a symbolic link; name the real path")
    if directory and dest.exists() and not dest.is_dir():
        raise ForgeError("write", str(dest), "a file is in the way of this directory output; remove it or choose "
                                            "another --output")
    if not directory and dest.is_dir():
        raise ForgeError("write", str(dest), "a directory is in the way of this file output; remove it or choose "
                                            "another --output")
    if dest.parent.exists() and not dest.parent.is_dir():
        raise ForgeError("write", str(dest), f"{dest.parent} is not a directory")


def remove_tree(path: Path) -> None:
    if path.exists():
        # a rootfs contains read-only directories (e.g. /proc 0555); make them writable before removal
        for dirpath, dirnames, _ in os.walk(path):
            for d in dirnames:
                with contextlib.suppress(OSError):
                    p = os.path.join(dirpath, d)
                    if not os.path.islink(p):
                        os.chmod(p, 0o755)
        shutil.rmtree(path, ignore_errors=True)


def _clean_stale_temps(dest: Path) -> None:
    """Remove temp siblings left by forge processes that were killed."""
    for p in dest.parent.glob(f".{dest.name}.forge-*"):
        pid = p.name.rsplit(".forge-", 1)[-1].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            remove_tree(p)


