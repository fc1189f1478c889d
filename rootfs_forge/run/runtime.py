"""The runtime directory of ``forge run`` (/run/forge as root; $XDG_RUNTIME_DIR/forge or /tmp/forge-UID
rootless): opened once per run after checking that it is what forge would have made itself, then used through
its descriptor.

A predictable path in a shared directory can be planted by another user (a symlink to the victim's files, a
directory the attacker owns or can write to), so it is accepted only if it is a real directory (opened with
``O_NOFOLLOW``), owned by the caller and writable by nobody else; anything else is a one-line error (exit 125)
and nothing is created inside. A directory of ours that others may only read (made by an older forge) is
tightened to 0700. Everything forge creates inside is made relative to the descriptor.
"""

from __future__ import annotations

import os
import stat

from rootfs_forge.errors import RunError
from rootfs_forge.util.pids import owner_tag

ANCHOR = "mnt"  # fixed and empty on the host; see mounts.setup_root
ARCHIVE_PREFIX = "archive-"  # an unpacked oci-archive: archive-OWNER-RANDOM (OWNER: pids.owner_tag)


def problem(st: os.stat_result, euid: int) -> str | None:
    """Why a directory with this ``lstat`` result cannot be the runtime dir of ``euid`` (None: it can)."""
    hint = "" if euid == 0 else "; set XDG_RUNTIME_DIR to a private directory of yours"
    if stat.S_ISLNK(st.st_mode):
        return f"it is a symlink, not a directory forge made{hint}"
    if not stat.S_ISDIR(st.st_mode):
        return f"not a directory{hint}"
    if st.st_uid != euid:
        return f"owned by uid {st.st_uid}, not {euid}{hint}"
    if st.st_mode & 0o022:
        return f"writable by group or others (mode {st.st_mode & 0o7777:04o}, forge needs 0700){hint}"
    return None


def refuse(path: str, reason: str) -> RunError:
    err = RunError("use", f"runtime dir {path}", reason)
    err.exit_code = 125
    return err


def open_dir(path: str, create: bool = True) -> int:
    """A descriptor of the runtime dir ``path`` (created 0700 when missing and ``create``), checked as above.
    Raises RunError naming the path and the problem."""
    euid = os.geteuid()
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise refuse(path, exc.strerror or str(exc)) from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        try:
            reason = problem(os.lstat(path), euid) or exc.strerror or str(exc)
        except OSError as exc2:
            reason = exc2.strerror or str(exc2)
        raise refuse(path, reason) from None
    try:
        st = os.fstat(fd)
        why = problem(st, euid)
        if why:
            raise refuse(path, why)
        if st.st_mode & 0o7777 != 0o700:
            os.fchmod(fd, 0o700)  # ours and not writable by others: only readable or searchable by them
    except BaseException:
        os.close(fd)
        raise
    return fd


def anchor(fd: int, path: str) -> str:
    """``<runtime dir>/mnt``: created if missing; must be a real directory (it is where the container's root
    is mounted in its own mount namespace)."""
    try:
        st = os.stat(ANCHOR, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        os.mkdir(ANCHOR, 0o700, dir_fd=fd)
        st = os.stat(ANCHOR, dir_fd=fd, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        raise refuse(path, f"{ANCHOR} in it is not a directory")
    return os.path.join(path, ANCHOR)


def private_dir(fd: int, prefix: str) -> str:
    """A new 0700 directory ``<prefix>OWNER-RANDOM`` in the runtime dir (its name tells a later run whether
    its owner is still alive); returns the name."""
    tag = owner_tag()
    for _ in range(100):
        name = f"{prefix}{tag}-{os.urandom(6).hex()}"
        try:
            os.mkdir(name, 0o700, dir_fd=fd)
            return name
        except FileExistsError:
            continue
    raise RunError("create a directory in", "the runtime dir", "no free name")
