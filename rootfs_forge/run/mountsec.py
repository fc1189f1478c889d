"""Hardening of the container's mounts: masked and read-only kernel paths, and mount flags set on a whole tree.

Masking follows runc/crun (and so Docker's defaults): a masked file gets the host's /dev/null bound over it,
read-only; a masked directory an empty read-only tmpfs; paths this kernel does not have are skipped. Read-only
/proc paths are bound onto themselves and remounted read-only (nosuid, nodev, noexec kept).

Flags for a whole mount tree (a volume and every mount below it, or the host's /sys bound rootless) are set with
``mount_setattr(2)`` and ``AT_RECURSIVE`` (Linux ≥ 5.12); on older kernels each mount found under the tree in
/proc/self/mountinfo is remounted in turn. Flags are only ever added, never cleared.
"""

from __future__ import annotations

import ctypes
import os
import stat

from rootfs_forge.errors import RunError
from rootfs_forge.run import syscalls as sc

# Docker's list; /proc/interrupts too (newer Docker masks it: per-CPU interrupt counts are a side channel)
MASKED_PROC = ("acpi", "asound", "interrupts", "kcore", "keys", "latency_stats", "timer_list", "timer_stats",
               "sched_debug", "scsi")
MASKED_SYS = ("firmware", "devices/virtual/powercap")
READ_ONLY_PROC = ("bus", "fs", "irq", "sys", "sysrq-trigger")

MOUNT_FLAGS = sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC  # == MOUNT_ATTR_* and ST_* for these four
_MOUNT_SETATTR_NR = 442  # the same on every architecture of the unified syscall table (not alpha)
_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_RECURSIVE = 0x8000
_ENOSYS = 38

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


def _mount_setattr(path: str, attr_set: int) -> int:
    """0 on success, else the errno."""
    attr = _MountAttr(attr_set, 0, 0, 0)
    rc = _libc.syscall(ctypes.c_long(_MOUNT_SETATTR_NR), ctypes.c_int(_AT_FDCWD), os.fsencode(path),
                       ctypes.c_uint(_AT_RECURSIVE | _AT_SYMLINK_NOFOLLOW), ctypes.byref(attr),
                       ctypes.c_size_t(ctypes.sizeof(attr)))
    return 0 if rc == 0 else ctypes.get_errno()


def current_flags(path: str) -> int:
    """The read-only/nosuid/nodev/noexec flags of the mount at ``path``: a remount must keep them."""
    try:
        return os.statvfs(path).f_flag & MOUNT_FLAGS
    except OSError:
        return 0


def add_flags_recursive(path: str, flags: int) -> None:
    """Add ``flags`` (MS_RDONLY/NOSUID/NODEV/NOEXEC) to the mount at ``path`` and to every mount below it."""
    if not flags:
        return
    err = _mount_setattr(path, flags)
    if err == _ENOSYS:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
        for mnt in tree_mounts(text, path):
            remount_adding(mnt, flags)
    elif err:
        raise RunError("set mount flags on", path, os.strerror(err))


def remount_adding(path: str, flags: int) -> None:
    """Add ``flags`` to the single (bind) mount at ``path``, keeping those it has."""
    sc.mount(None, path, None, sc.MS_REMOUNT | sc.MS_BIND | flags | current_flags(path))


def unescape(field: str) -> str:
    """A mountinfo path field: ``\\040`` style octal escapes (space, tab, newline, backslash) decoded."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def tree_mounts(mountinfo: str, top: str) -> list[str]:
    """Mount points at ``top`` or below it, in mount order (parents before their children)."""
    top = top.rstrip("/") or "/"
    prefix = top if top == "/" else top + "/"
    out = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        point = unescape(fields[4])
        if point == top or point.startswith(prefix):
            out.append(point)
    return out


def mask(root: str, names: tuple[str, ...]) -> None:
    """Hide ``root``/name for each name that exists: /dev/null over a file, an empty read-only tmpfs over a dir."""
    for name in names:
        where = os.path.join(root, name)
        try:
            st = os.lstat(where)
        except OSError:
            continue  # not on this kernel (or hidden already)
        if stat.S_ISDIR(st.st_mode):
            sc.mount("tmpfs", where, "tmpfs", MOUNT_FLAGS, "mode=0555,size=4k,nr_inodes=1")
        else:
            sc.mount("/dev/null", where, None, sc.MS_BIND)
            remount_adding(where, sc.MS_RDONLY)


def read_only(root: str, names: tuple[str, ...]) -> None:
    """Make ``root``/name read-only (bound onto itself, then remounted) for each name that exists."""
    for name in names:
        where = os.path.join(root, name)
        if not os.path.lexists(where):
            continue
        sc.mount(where, where, None, sc.MS_BIND | sc.MS_REC)
        add_flags_recursive(where, MOUNT_FLAGS)


def harden_proc(proc: str) -> None:
    mask(proc, MASKED_PROC)
    read_only(proc, READ_ONLY_PROC)


def harden_sys(sys_dir: str) -> None:
    mask(sys_dir, MASKED_SYS)


def tmpfs_options(size: int, used: int = 0, used_inodes: int = 0) -> str:
    """``size=`` and a matching inode limit (one per page: only empty files, dirs and links can run out of inodes
    first), on top of ``used`` bytes and ``used_inodes`` already there; empty when ``size`` is 0 (the kernel's
    defaults)."""
    if size <= 0:
        return ""
    return f"size={used + size},nr_inodes={used_inodes + max(size // 4096, 1024)}"
