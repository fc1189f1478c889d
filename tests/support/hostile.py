"""A hostile image for launcher tests: probes written in Python run *inside* a ``forge run`` container.

The image is a rootfs directory whose ``/usr`` (and the test interpreter's own prefix, when it lives elsewhere,
e.g. under /root with pyenv) are the host's, bound read-only with ``-v``. That gives a container with a full
Python in which an attack is a few lines of ordinary code (``ctypes`` for raw syscalls and ioctls), while every
mount, namespace, capability and filter forge applies is the real one. Probes print one result per line; tests
assert on what they print, and on what they did or did not change on the host.

Use::

    img = HostileImage.build(tmp_path)
    proc = img.run(["--memory", "64m"], "import os; print(os.getuid())")
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"

# Helpers every probe may use (prepended to the probe's code).
PRELUDE = r'''
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def err(call):
    """Run a libc call returning -1 on failure; return 'ok' or the errno name."""
    r = call()
    return "ok" if r != -1 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
def attempt(fn, *a, **kw):
    """Run a Python call; return 'ok' or the errno name of its OSError."""
    try:
        fn(*a, **kw)
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
'''


def interpreter() -> str:
    """The test interpreter's real path (inside the container it is found at the same path)."""
    return os.path.realpath(sys.executable)


@dataclass(frozen=True)
class HostileImage:
    root: Path
    volumes: tuple[str, ...]
    python: str

    @classmethod
    def build(cls, where: Path, python: str | None = None) -> HostileImage:
        """``python``: the interpreter the probes run with inside (default: the test's own; rootless tests pass
        /usr/bin/python3, since an unprivileged user cannot read an interpreter under /root)."""
        root = where / "hostile-root"
        root.mkdir(parents=True)
        for name in ("bin", "lib", "lib64", "sbin"):
            if os.path.islink(f"/{name}"):
                os.symlink(os.readlink(f"/{name}"), root / name)
        for d in ("usr", "etc", "proc", "dev", "sys", "tmp", "root", "run", "var/tmp"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "tmp").chmod(0o1777)
        (root / "etc" / "passwd").write_text(PASSWD)
        (root / "etc" / "group").write_text(GROUP)
        vols = ["/usr:/usr:ro"]
        python = python or interpreter()
        prefix = os.path.realpath(sys.base_prefix)
        if python == interpreter() and not prefix.startswith("/usr/"):
            vols.append(f"{prefix}:{prefix}:ro")
        return cls(root=root, volumes=tuple(vols), python=python)

    def argv(self, options: Sequence[str], code: str, *, forge_args: Sequence[str] = ()) -> list[str]:
        """The ``forge run`` command line that runs ``code`` (with PRELUDE) in this image."""
        args: list[str] = [sys.executable, "-m", "rootfs_forge", "run", *forge_args]
        for vol in self.volumes:
            args += ["-v", vol]
        return [*args, *options, str(self.root), self.python, "-I", "-S", "-c", PRELUDE + code]

    def run(self, options: Sequence[str], code: str, *, env: Mapping[str, str] | None = None,
            timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        return subprocess.run(self.argv(options, code), capture_output=True, text=True, timeout=timeout,
                              env=full_env, **kw)  # type: ignore[call-overload]


def results(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """A probe's ``name=value`` lines as a dict (other lines are ignored)."""
    out = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


# Attacks on the host, each harmless even when it works (it writes back what is there, opens without writing,
# removes what it made). A probe prints ``name=open`` when the attack got through, ``name=blocked`` otherwise.
PROBES: dict[str, str] = {
    # attack 1: machine-wide sysctls (kernel.core_pattern → host root via a crashing process)
    "core_pattern": r'''
cur = open("/proc/sys/kernel/core_pattern").read()
def w():
    with open("/proc/sys/kernel/core_pattern", "w") as f:
        f.write(cur)
print("core_pattern=" + ("open" if attempt(w) == "ok" else "blocked"))
''',
    "sysrq_trigger": r'''
print("sysrq_trigger=" + ("open" if attempt(lambda: open("/proc/sysrq-trigger", "w").detach()) == "ok"
                          else "blocked"))
''',
    "kcore": r'''
def r():
    with open("/proc/kcore", "rb") as f:
        if not f.read(16):
            raise OSError(errno.ENODATA, "empty")
print("kcore=" + ("open" if attempt(r) == "ok" else "blocked"))
''',
    # attack 3: host devices through a node the container makes
    "mknod_host_device": r'''
import stat
def m():
    os.mknod("/tmp/forge-probe-null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    fd = os.open("/tmp/forge-probe-null", os.O_RDWR)
    os.close(fd)
print("mknod_host_device=" + ("open" if attempt(m) == "ok" else "blocked"))
''',
    "mount_tmpfs": r'''
os.makedirs("/tmp/forge-probe-mnt", exist_ok=True)
r = err(lambda: libc.mount(b"none", b"/tmp/forge-probe-mnt", b"tmpfs", 0, None))
if r == "ok":
    libc.umount2(b"/tmp/forge-probe-mnt", 2)
print("mount_tmpfs=" + ("open" if r == "ok" else "blocked"))
''',
    # attack 4: a nested user namespace (then cgroup v1 mounts to lift limits)
    "unshare_userns": r'''
pid = os.fork()
if pid == 0:
    os._exit(0 if libc.unshare(0x10000000) == 0 else 1)
print("unshare_userns=" + ("open" if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0 else "blocked"))
''',
    # attack 5: the caller's keyring
    "keyctl": r'''
print("keyctl=" + ("open" if libc.syscall({keyctl}, 0, -3, 0) > 0 else "blocked"))
'''.replace("{keyctl}", "250" if os.uname().machine == "x86_64" else "219"),
    "host_cgroup_mkdir": r'''
import glob
made = "blocked"
for base in sorted(glob.glob("/sys/fs/cgroup/*/")) + ["/sys/fs/cgroup/"]:
    path = base + "forge-probe-%d" % os.getpid()
    if attempt(os.mkdir, path) == "ok":
        os.rmdir(path)
        made = "open"
print("host_cgroup_mkdir=" + made)
''',
    "sys_write": r'''
print("sys_write=" + ("open" if attempt(lambda: open("/sys/kernel/uevent_helper", "w").detach()) == "ok"
                      else "blocked"))
''',
}
