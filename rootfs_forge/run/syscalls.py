"""The few Linux calls Python 3.11's ``os`` lacks, through ctypes. Every failure raises ``RunError``.

Kept deliberately small and import-light (ctypes only): it runs on the ``forge run`` start path.
"""

from __future__ import annotations

import ctypes
import os
import sys

from rootfs_forge.errors import RunError

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_STRICTATIME = 1 << 24

MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# Docker's default capability set (numbers from linux/capability.h)
CAP_NUMBERS = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6, "SETUID": 7,
    "SETPCAP": 8, "NET_BIND_SERVICE": 10, "NET_RAW": 13, "SYS_CHROOT": 18, "MKNOD": 27, "AUDIT_WRITE": 29,
    "SETFCAP": 31,
}
# forge's default: Docker's without MKNOD (no device cgroup here limits which nodes a container could make)
DEFAULT_CAPS = frozenset(CAP_NUMBERS.values()) - {CAP_NUMBERS["MKNOD"]}

_PIVOT_ROOT_NR = {
    "x86_64": 155, "i386": 217, "i686": 217, "aarch64": 41, "riscv64": 41, "armv7l": 218, "armv6l": 218,
    "ppc64le": 203, "ppc64": 203, "s390x": 217, "loongarch64": 41,
}

_CLOSE_RANGE_NR = 436  # the same on every architecture (added after the syscall tables were unified)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long


def _fail(verb: str, obj: str) -> RunError:
    return RunError(verb, obj, os.strerror(ctypes.get_errno()))


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        raise _fail("unshare", f"namespaces 0x{flags:x}")


def setns(fd: int, nstype: int) -> None:
    if _libc.setns(fd, nstype) != 0:
        raise _fail("enter", f"namespace 0x{nstype:x}")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        raise _fail("mount", target)


def umount2(target: str, flags: int = 0) -> None:
    if _libc.umount2(_b(target), flags) != 0:
        raise _fail("unmount", target)


def pivot_root(new_root: str, put_old: str) -> None:
    nr = _PIVOT_ROOT_NR.get(os.uname().machine)
    if nr is None:
        raise RunError("pivot_root", new_root, f"unknown syscall number on {os.uname().machine}")
    if _libc.syscall(ctypes.c_long(nr), _b(new_root), _b(put_old)) != 0:
        raise _fail("pivot_root", new_root)


def sethostname(name: str) -> None:
    raw = name.encode()
    if _libc.sethostname(raw, len(raw)) != 0:
        raise _fail("set hostname", name)


def prctl(option: int, arg2: int = 0, arg3: int = 0, what: str = "prctl") -> None:
    if _libc.prctl(option, arg2, arg3, 0, 0) != 0:
        raise _fail("prctl", what)


def set_pdeathsig(sig: int) -> None:
    prctl(PR_SET_PDEATHSIG, sig, what="PR_SET_PDEATHSIG")


def set_dumpable(on: bool) -> None:
    prctl(PR_SET_DUMPABLE, 1 if on else 0, what="PR_SET_DUMPABLE")


def close_range(first: int, last: int) -> None:
    """close_range(2) (Linux 5.9): every descriptor in [first, last], however high; a loop on older kernels."""
    if _libc.syscall(ctypes.c_long(_CLOSE_RANGE_NR), ctypes.c_uint(first), ctypes.c_uint(last), 0) != 0:
        os.closerange(first, min(last, 1 << 20) + 1)


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1, what="PR_SET_NO_NEW_PRIVS")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32),
    ]


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


def limit_capabilities(keep: frozenset[int] = DEFAULT_CAPS) -> None:
    """Drop every capability outside ``keep`` from the bounding set, then from the effective, permitted and
    inheritable sets (capset v3), and clear the ambient set. After exec the process holds at most ``keep``."""
    drop_bounding(keep)
    limit_sets(keep)


def drop_bounding(keep: frozenset[int]) -> None:
    """Drop every capability outside ``keep`` from the bounding set (needs CAP_SETPCAP; the effective set is
    left alone, so e.g. setuid still works afterwards)."""
    for cap in range(last_cap() + 1):
        if cap not in keep and _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            if err != 22:  # EINVAL: capability unknown to this kernel
                raise RunError("drop capability", str(cap), os.strerror(err))


def limit_sets(keep: frozenset[int]) -> None:
    """Reduce the effective, permitted and inheritable sets to ``keep`` and clear the ambient set."""
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)  # EINVAL on old kernels: nothing to clear
    hdr = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    if _libc.capget(ctypes.byref(hdr), data) != 0:
        raise _fail("read capabilities", "self")
    for i in range(2):
        mask = sum(1 << (c - 32 * i) for c in keep if 32 * i <= c < 32 * (i + 1))
        data[i].effective &= mask
        data[i].permitted &= mask
        data[i].inheritable &= mask
    if _libc.capset(ctypes.byref(hdr), data) != 0:
        raise _fail("set capabilities", "self")


def interface_up(name: str) -> None:
    """Set IFF_UP|IFF_RUNNING on interface ``name`` (ioctl on an AF_INET datagram socket, via libc so the
    ``socket`` module need not be imported)."""
    ifreq = ctypes.create_string_buffer(40)  # struct ifreq: 16-byte name + union (flags: short)
    ifreq.value = name.encode()[:15]
    fd = _libc.socket(2, 2 | 0o2000000, 0)  # AF_INET, SOCK_DGRAM|SOCK_CLOEXEC
    if fd < 0:
        raise _fail("bring up", name)
    try:
        if _libc.ioctl(fd, ctypes.c_ulong(0x8913), ifreq) != 0:  # SIOCGIFFLAGS
            raise _fail("bring up", name)
        flags = int.from_bytes(ifreq.raw[16:18], sys.byteorder) | 0x1 | 0x40
        ctypes.memmove(ctypes.addressof(ifreq) + 16, flags.to_bytes(2, sys.byteorder), 2)
        if _libc.ioctl(fd, ctypes.c_ulong(0x8914), ifreq) != 0:  # SIOCSIFFLAGS
            raise _fail("bring up", name)
    finally:
        os.close(fd)


def set_process_title(title: str) -> bool:
    """Make /proc/self/cmdline and comm read ``title``, so PID 1 does not show the host's Python path and
    command line inside the container: the original argument area (arg_start..arg_end in /proc/self/stat) is
    overwritten in place, as setproctitle does (Python keeps its own copy of argv), and comm is set with
    PR_SET_NAME. Returns False if the area could not be found."""
    raw = title.encode()
    comm = ctypes.create_string_buffer(raw[:15])
    _libc.prctl(15, ctypes.c_ulong(ctypes.addressof(comm)), 0, 0, 0)  # PR_SET_NAME
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (fields 48 and 49)
    except (OSError, IndexError, ValueError):
        return False
    if end <= start:
        return False
    size = end - start
    ctypes.memmove(start, raw[: size - 1].ljust(size, b"\0"), size)
    return True


_KEYCTL_NR = {
    "x86_64": 250, "i386": 288, "i686": 288, "aarch64": 219, "riscv64": 219, "loongarch64": 219, "armv7l": 311,
    "armv6l": 311, "ppc64le": 280, "ppc64": 280, "s390x": 280,
}
KEYCTL_JOIN_SESSION_KEYRING = 1


def join_session_keyring() -> None:
    """Replace the session keyring inherited from the caller with a new, empty, anonymous one (keyctl
    KEYCTL_JOIN_SESSION_KEYRING with no name), so nothing in the container can find or read the caller's keys.
    A kernel without keys (ENOSYS) or a keyctl refused by a seccomp filter forge itself runs under (EPERM: the
    container inherits that filter) leaves nothing to protect."""
    nr = _KEYCTL_NR.get(os.uname().machine)
    if nr is None:
        raise RunError("join", "a new session keyring", f"unknown syscall number on {os.uname().machine}")
    if _libc.syscall(ctypes.c_long(nr), ctypes.c_long(KEYCTL_JOIN_SESSION_KEYRING), None) < 0:
        err = ctypes.get_errno()
        if err not in (38, 1):  # ENOSYS, EPERM
            raise RunError("join", "a new session keyring", os.strerror(err))
