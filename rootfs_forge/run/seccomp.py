"""``forge run``'s seccomp filter: choose the profile, find or compile its BPF, install it in the container.

By default every container gets Docker's default profile (``seccomp_default``: an allow-list, EPERM for the
rest) plus a small filter refusing the TIOCSTI/TIOCLINUX ioctls. ``--security-opt seccomp=PROFILE.json``
replaces both with a profile in Docker's format; ``--security-opt seccomp=unconfined`` installs nothing.

Only the host's native ABI is allowed, whatever the profile says: a syscall made through another ABI
(i386 or x32 on x86_64, arm32 on arm64) fails with EPERM, like any syscall a profile does not allow. EPERM
rather than a kill because it is what every refused syscall gets, a program probing for an ABI can handle it,
and blocking is what matters; foreign ABIs are where deny-list profiles leak (their syscall numbers differ).

Where the work happens: the launcher (host side, before forking) calls ``programs()``. The compiled programs
are cached in ``<cache dir>/seccomp/`` under a name made of what they depend on: the profile (for the built-in
one, the size and mtime of its data module and of the compiler modules; for a file, the SHA-256 of its bytes),
the capability set (capability-conditioned rules), the architecture, the kernel release (``minKernel``) and
the libseccomp file. A warm start reads one small file, without loading libseccomp, json or hashlib; a miss
compiles with libseccomp (``seccomp_compile``) and writes the file atomically (temp name + rename). Errors are
one line, exit 125. The programs travel to PID 1 in the ContainerSetup, and ``install()`` loads them there as
the very last step before the command starts (after no_new_privs, capabilities and the user switch); every
process started afterwards inherits them.
"""

from __future__ import annotations

import ctypes
import os
import sys

from rootfs_forge.errors import RunError

DEFAULT = "default"
UNCONFINED = "unconfined"
ERROR_CODE = 125
_MAGIC = b"forge-seccomp-1\n"
_HERE = os.path.dirname(os.path.abspath(__file__))
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


def _error(verb: str, obj: str, reason: str) -> RunError:
    err = RunError(verb, obj, reason)
    err.exit_code = ERROR_CODE
    return err


def parse_security_opts(items: list[str]) -> str:
    """``--security-opt`` values -> DEFAULT, UNCONFINED or a profile path. ``no-new-privileges`` is accepted
    (forge always sets it); other options are refused."""
    profile = DEFAULT
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            key, sep, value = item.partition(":")  # Docker's old spelling, seccomp:unconfined
        if key == "seccomp" and value:
            profile = value
        elif key == "no-new-privileges" and value in ("", "true"):
            continue
        elif key == "no-new-privileges":
            raise _error("use", f"--security-opt {item}", "forge always sets no_new_privs")
        else:
            raise _error("use", f"--security-opt {item}",
                         "supported: seccomp=unconfined, seccomp=PROFILE.json, no-new-privileges")
    return profile


def _stamp(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "0"
    return f"{st.st_size:x}{st.st_mtime_ns:x}"


def _libseccomp_id() -> str:
    multiarch = getattr(sys.implementation, "_multiarch", "")
    for d in (f"/usr/lib/{multiarch}", f"/lib/{multiarch}", "/usr/lib64", "/usr/lib", "/lib64", "/lib"):
        path = os.path.join(d, "libseccomp.so.2")
        if os.path.exists(path):
            real = os.path.realpath(path)
            return f"{os.path.basename(real)}-{_stamp(real)}"
    return "nolib"


def cache_name(profile_id: str, caps_mask: int) -> str:
    """The cache file name for a profile identity and capability mask on this machine."""
    uname = os.uname()
    compiler = _stamp(os.path.join(_HERE, "seccomp_compile.py")) + _stamp(os.path.join(_HERE, "seccomp_profile.py"))
    name = f"{profile_id}.{caps_mask:x}.{uname.machine}.{uname.release}.{_libseccomp_id()}.{compiler}.bpf"
    return name.replace("/", "_")


def _read_profile(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise _error("read seccomp profile", path, exc.strerror or str(exc)) from None


def programs(profile: str, caps: frozenset[int], cache_dir: str) -> tuple[bytes, ...]:
    """The BPF programs for ``profile`` (DEFAULT, UNCONFINED or a path) and the container's capabilities:
    from the cache, or compiled and cached. Empty for UNCONFINED."""
    if profile == UNCONFINED:
        return ()
    from rootfs_forge.run.caps import mask

    content = b""
    profile_id: str
    if profile == DEFAULT:
        profile_id = "default-" + _stamp(os.path.join(_HERE, "seccomp_default.py"))
    else:
        import hashlib

        content = _read_profile(profile)
        profile_id = "sha256-" + hashlib.sha256(content).hexdigest()
    path = os.path.join(cache_dir, "seccomp", cache_name(profile_id, mask(caps)))
    cached = load_cached(path)
    if cached is not None:
        return cached
    progs = _compile(profile, content, caps)
    store(path, progs)
    return progs


def _compile(profile: str, content: bytes, caps: frozenset[int]) -> tuple[bytes, ...]:
    from rootfs_forge.run import seccomp_compile, seccomp_default, seccomp_profile
    from rootfs_forge.run.caps import names

    uname = os.uname()
    deny: tuple[int, ...]
    if profile == DEFAULT:
        data: object = seccomp_default.PROFILE
        deny = seccomp_default.IOCTL_DENY
    else:
        import json

        try:
            data = json.loads(content)
        except ValueError as exc:  # JSONDecodeError and bad UTF-8
            raise _error("use seccomp profile", profile, f"not valid JSON: {exc}") from None
        deny = ()
    resolved = seccomp_profile.resolve(data, profile, names(caps), uname.machine, uname.release)
    return seccomp_compile.compile_filters(resolved.default_action, resolved.rules, deny)


def encode(progs: tuple[bytes, ...]) -> bytes:
    return _MAGIC + b"".join(len(p).to_bytes(4, "little") + p for p in progs)


def decode(data: bytes) -> tuple[bytes, ...] | None:
    """The programs in a cache file, or None if it is not one (then it is compiled again)."""
    if not data.startswith(_MAGIC):
        return None
    progs = []
    pos = len(_MAGIC)
    while pos < len(data):
        size = int.from_bytes(data[pos:pos + 4], "little")
        prog = data[pos + 4:pos + 4 + size]
        if size == 0 or size % 8 or len(prog) != size:
            return None
        progs.append(prog)
        pos += 4 + size
    return tuple(progs) or None


def load_cached(path: str) -> tuple[bytes, ...] | None:
    """A cached file, if it is ours: owned by us and writable by nobody else (it decides what the container
    may do)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        return decode(os.read(fd, st.st_size + 1))
    finally:
        os.close(fd)


def store(path: str, progs: tuple[bytes, ...]) -> None:
    """Write the cache file atomically; a cache that cannot be written only costs a compile next time."""
    tmp = f"{path}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, encode(progs))
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError:
        if os.path.lexists(tmp):
            os.unlink(tmp)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def install(progs: tuple[bytes, ...]) -> None:
    """Load the programs into this process (no_new_privs must be set already). Children inherit them."""
    if not progs:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    for prog in progs:
        fprog = _SockFprog(len(prog) // 8, prog)
        if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
            raise RunError("install", "seccomp filter", os.strerror(ctypes.get_errno()))
