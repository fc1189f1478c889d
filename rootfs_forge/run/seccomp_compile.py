"""Compile resolved seccomp rules to classic BPF with libseccomp (``libseccomp.so.2``, Debian's libseccomp2,
the library runc and crun use), through ctypes. Only imported when no cached program fits.

Why libseccomp and not a BPF generator of our own: it knows every architecture's syscall table and its
quirks (the x32 bit on x86_64, multiplexed syscalls, 64-bit argument comparisons split into two 32-bit
words), and it is already on every Debian system. A program is compiled once per profile, capability set,
architecture, kernel and library (see ``seccomp.py``), so its cost (~10 ms) is paid on a cache miss only.
"""

from __future__ import annotations

import ctypes
import os

from rootfs_forge.errors import RunError
from rootfs_forge.run.seccomp_profile import ACT_ALLOW, ACT_ERRNO, EPERM, Rule

_ATTR_ACT_BADARCH = 2
_ATTR_CTL_OPTIMIZE = 8  # 2: a binary tree over syscall numbers (libseccomp >= 2.5)
ERROR_CODE = 125


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def _fail(what: str, reason: str) -> RunError:
    err = RunError("compile seccomp filter", what, reason)
    err.exit_code = ERROR_CODE
    return err


def _library() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        raise _fail("libseccomp.so.2", "not found (install libseccomp2, or run with --security-opt "
                                       "seccomp=unconfined)") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def _program(lib: ctypes.CDLL, default: int, bad_arch: int, rules: list[Rule]) -> bytes:
    """One filter for the native architecture only; other ABIs (i386 and x32 on x86_64, arm32 on arm64) meet
    ``bad_arch``."""
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise _fail("filter", f"seccomp_init refused default action 0x{default:x}")
    try:
        if lib.seccomp_attr_set(ctx, _ATTR_ACT_BADARCH, bad_arch) != 0:
            raise _fail("filter", "cannot set the action for foreign architectures")
        lib.seccomp_attr_set(ctx, _ATTR_CTL_OPTIMIZE, 2)  # older libseccomp: linear order, still correct
        for rule in rules:
            nr = lib.seccomp_syscall_resolve_name(rule.name.encode())
            if nr < 0:  # unknown to libseccomp, or not a syscall of this architecture: nothing to filter
                continue
            conds = (_ArgCmp * max(len(rule.args), 1))(*(_ArgCmp(i, op, a, b) for i, op, a, b in rule.args))
            rc = lib.seccomp_rule_add_array(ctx, rule.action, nr, len(rule.args), conds)
            if rc < 0:
                raise _fail(f"rule for {rule.name}", os.strerror(-rc))
        fd = os.memfd_create("forge-seccomp", os.MFD_CLOEXEC)
        try:
            rc = lib.seccomp_export_bpf(ctx, fd)
            if rc < 0:
                raise _fail("filter", os.strerror(-rc))
            size = os.lseek(fd, 0, os.SEEK_CUR)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)


def compile_filters(default: int, rules: list[Rule], ioctl_deny: tuple[int, ...] = ()) -> tuple[bytes, ...]:
    """The BPF programs to install, in order: the profile's filter, and, with ``ioctl_deny``, a second one
    refusing those ioctl requests with EPERM (compared as 32 bits, as the kernel reads them: a request with
    junk in the upper half must not slip through)."""
    lib = _library()
    eperm = ACT_ERRNO | EPERM
    programs = [_program(lib, default, eperm, rules)]
    if ioctl_deny:
        deny = [Rule(eperm, "ioctl", ((1, 7, 0xFFFFFFFF, req),)) for req in ioctl_deny]  # 7: SCMP_CMP_MASKED_EQ
        programs.append(_program(lib, ACT_ALLOW, ACT_ALLOW, deny))  # foreign ABIs: the first filter decides
    return tuple(programs)
