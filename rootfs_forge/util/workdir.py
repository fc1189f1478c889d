"""Where a compose builds its trees before they become the output.

A ``rootfs`` output is the tree itself, so it is built next to its destination and renamed into place. For
the other formats (OCI layout or archive, tarball) the tree is scratch: it is read once to write the layers
and then deleted. Such a tree is built in memory (``/dev/shm``, a tmpfs) when it fits with a wide margin,
because on a journaling filesystem creating a few thousand small files costs more than everything else a
warm compose does; otherwise next to the destination, as before.

``FORGE_WORK_DIR`` names the directory to build in and overrides both. A build directory is named
``forge-work-<pid>-…``; one whose process is gone (killed) is removed by the next compose.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

SHM = Path("/dev/shm")
WORK_PREFIX = "forge-work-"
MARGIN = 2  # the tmpfs must have this many times the estimate free …
MEMORY_MARGIN = 4  # … and the machine this many times the estimate of available memory
_NAME = re.compile(rf"^{WORK_PREFIX}(\d+)-")


def choose(estimate: int, dest_parent: Path, *, scratch: bool, env: str | None = None,
           shm_free: Callable[[], int | None] | None = None,
           mem_available: Callable[[], int | None] | None = None) -> Path:
    """The directory to build in for a tree of about ``estimate`` bytes (pure given its two probes).

    A tree that becomes the output (``scratch`` false) is always built next to it: it is renamed into place.
    """
    if not scratch:
        return dest_parent
    if env:
        return Path(env)
    free = (shm_free or _shm_free)()
    mem = (mem_available or _mem_available)()
    if free is not None and mem is not None and free >= MARGIN * estimate and mem >= MEMORY_MARGIN * estimate:
        return SHM
    return dest_parent


def _shm_free() -> int | None:
    try:
        if not SHM.is_dir() or not os.access(SHM, os.W_OK):
            return None
        st = os.statvfs(SHM)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def stale(directory: Path, alive: Callable[[int], bool]) -> list[Path]:
    """Build directories in ``directory`` whose forge process is gone (killed), this user's only."""
    found: list[Path] = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return found
    for name in names:
        m = _NAME.match(name)
        path = directory / name
        if m and not alive(int(m.group(1))) and path.is_dir() and not path.is_symlink() \
                and path.stat().st_uid == os.geteuid():
            found.append(path)
    return found
