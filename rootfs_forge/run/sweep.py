"""What killed ``forge run`` processes left behind, removed by the next ``forge run`` (whatever its options),
``forge ps`` or ``forge rm``: a SIGKILLed launcher runs no ``finally``.

Everything a run creates outside its own namespaces carries its owner tag (OWNER: ``PID-START-PIDNS``, see ``pids``):
cgroup dirs ``forge-OWNER-ID`` in every hierarchy, unpacked oci-archives ``archive-OWNER-ID`` in the runtime
dir, partial layer unpacks ``<diff_id>.tmp-OWNER-ID`` in the layer cache, and in the state dir the
``--rm`` markers and trash of ``state``. A leftover is removed only when its owner is gone; removal never
follows symlinks (``rmtree``). When nothing is stale, a sweep costs a directory listing per place.

Each part is best effort: a leftover that cannot be removed now (a cgroup still holding processes) stays for
the next sweep, and never fails the command that happened to find it.
"""

from __future__ import annotations

import os

from rootfs_forge.run import cgroups
from rootfs_forge.run.runtime import ARCHIVE_PREFIX
from rootfs_forge.util.pids import owner_alive, parse_owner

LAYER_DIRS = ("layers", "layers-userns")
TMP_MARK = ".tmp-"


def _remove(dir_fd: int, name: str) -> None:
    from rootfs_forge.run.rmtree import remove_at

    try:  # noqa: SIM105 (contextlib, and collections with it, stay off forge run's start)
        remove_at(dir_fd, name)
    except OSError:
        pass


def runtime_dir(fd: int) -> None:
    """Unpacked oci-archives of dead runs in the runtime dir open as ``fd``."""
    with os.scandir(fd) as entries:
        names = [e.name for e in entries if e.name.startswith(ARCHIVE_PREFIX)]
    for name in names:
        parsed = parse_owner(name[len(ARCHIVE_PREFIX):])
        if parsed is not None and not owner_alive(parsed[0]):
            _remove(fd, name)


def layer_temps(cache_dir: str) -> None:
    """Partial layer unpacks (``<cache>/layers*/sha256/*.tmp-PID-*``) of dead processes."""
    for kind in LAYER_DIRS:
        try:
            fd = os.open(os.path.join(cache_dir, kind, "sha256"), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            with os.scandir(fd) as entries:
                names = [e.name for e in entries if TMP_MARK in e.name]
            for name in names:
                parsed = parse_owner(name.rpartition(TMP_MARK)[2])
                if parsed is not None and not owner_alive(parsed[0]):
                    _remove(fd, name)
        finally:
            os.close(fd)


def on_run(runtime_fd: int, state_dir: str) -> None:
    """The sweep at the start of every ``forge run`` (the layer cache is swept where images are read)."""
    try:  # noqa: SIM105 (contextlib, and collections with it, stay off forge run's start)
        runtime_dir(runtime_fd)
    except OSError:
        pass
    cgroups.sweep_all(owner_alive)
    state_dir_sweep(state_dir)


def state_dir_sweep(state_dir: str) -> None:
    """``state.sweep``, imported only when the state dir holds entries of forge's own (names with a dot)."""
    try:
        with os.scandir(state_dir) as entries:
            if not any(e.name.startswith(".") for e in entries):
                return
    except OSError:
        return
    from rootfs_forge.run import state

    state.sweep(state_dir, owner_alive)


def everything(state_dir: str, runtime_path: str, cache_dir: str) -> str | None:
    """The sweep of ``forge ps`` and ``forge rm``. The runtime dir is not created, and is left alone if it fails
    the checks of ``runtime.open_dir``: that problem is returned (for a warning) instead of raised."""
    from rootfs_forge.errors import RunError
    from rootfs_forge.run import runtime

    problem = None
    if os.path.lexists(runtime_path):
        try:
            fd = runtime.open_dir(runtime_path, create=False)
        except RunError as exc:
            problem = str(exc)
        else:
            try:
                runtime_dir(fd)
            finally:
                os.close(fd)
    cgroups.sweep_all(owner_alive)
    state_dir_sweep(state_dir)
    layer_temps(cache_dir)
    return problem
