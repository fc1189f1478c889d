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
