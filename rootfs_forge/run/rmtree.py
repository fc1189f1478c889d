"""Tree removal that never follows a symlink: every directory is opened relative to its parent's descriptor
with ``O_NOFOLLOW``, and whatever is not a directory (a symlink included) is unlinked, never entered. A
directory swapped for a symlink between listing and descending is therefore unlinked too, not followed.

It never crosses into a mount point below the top (``rm --one-file-system``): that is an error.

An explicit stack (one descriptor per level) instead of recursion: a container can leave a tree deeper than
Python's recursion limit. ``shutil`` is not imported (``forge run`` stays lean).
"""

from __future__ import annotations

import contextlib
import errno
import os

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NOT_A_DIR = (errno.ENOTDIR, errno.ELOOP)


def _unlink(dir_fd: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


def _mount_id(fd: int) -> int | None:
    """The id of the mount ``fd`` is on (``mnt_id`` in /proc/self/fdinfo; a bind mount of the same filesystem
    has the same ``st_dev`` but its own mount id); None if /proc cannot tell."""
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
            info = f.read()
    except OSError:
        return None
    at = info.find(b"mnt_id:")
    value = info[at + 7:].split(None, 1)[0] if at >= 0 else b""
    return int(value) if value.isdigit() else None


def _open_dir(dir_fd: int, name: str, mount: int | None = None) -> int | None:
    """``name`` in ``dir_fd`` opened as a directory; None when it is gone or is not a directory (then it has
    been unlinked). A directory its owner made unreadable (mode 000, rootless) is given ``u+rwx`` first. One on
    another mount than ``mount`` (a mount point) is an error: removal never crosses into a mount."""
    for attempt in (0, 1):
        try:
            fd = os.open(name, _DIR, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except PermissionError:
            if attempt or os.geteuid() == 0:
                raise
            _chmod_owner_rwx(dir_fd, name)
            continue
        except OSError as exc:
            if exc.errno not in _NOT_A_DIR:
                raise
            _unlink(dir_fd, name)
            return None
        if mount is not None and _mount_id(fd) != mount:
            os.close(fd)
            raise OSError(errno.EXDEV, "a mount point: not removing what is mounted there", name)
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and st.st_mode & 0o700 != 0o700:
            os.fchmod(fd, (st.st_mode & 0o7777) | 0o700)  # so that its entries can be removed
        return fd
    return None  # pragma: no cover - the loop returns or raises


def _chmod_owner_rwx(dir_fd: int, name: str) -> None:
    """chmod u+rwx on the directory ``name`` itself (an O_PATH descriptor: never a symlink's target)."""
    pfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        st = os.fstat(pfd)
        os.chmod(f"/proc/self/fd/{pfd}", (st.st_mode & 0o7777) | 0o700)
    finally:
        os.close(pfd)


def _clear(fd: int) -> list[str]:
    """Unlink every non-directory in ``fd``; returns the names of its subdirectories."""
    subdirs: list[str] = []
    with os.scandir(fd) as entries:
        listed = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
    for name, is_dir in listed:
        if is_dir:
            subdirs.append(name)
            continue
        try:
            _unlink(fd, name)
        except IsADirectoryError:  # replaced by a directory since the listing
            subdirs.append(name)
    return subdirs


def remove_at(dir_fd: int, name: str) -> None:
    """Remove ``name`` (in the directory open as ``dir_fd``) and everything below it; a missing name is fine."""
    top = _open_dir(dir_fd, name)
    if top is None:
        return
    mount = _mount_id(top)
    stack: list[tuple[int, str, list[str]]] = [(top, name, [])]  # (fd, name in its parent, subdirs left)
    try:
        stack[-1][2].extend(_clear(top))
        while stack:
            fd, own, subdirs = stack[-1]
            if subdirs:
                child = subdirs.pop()
                sub = _open_dir(fd, child, mount)
                if sub is not None:
                    stack.append((sub, child, []))
                    stack[-1][2].extend(_clear(sub))
                continue
            stack.pop()
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(own, dir_fd=stack[-1][0] if stack else dir_fd)
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def remove_tree(path: str) -> None:
    """Remove ``path`` and everything below it without following a symlink at ``path`` or anywhere below."""
    path = os.path.abspath(path)
    parent = os.open(os.path.dirname(path) or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        remove_at(parent, os.path.basename(path))
    finally:
        os.close(parent)
