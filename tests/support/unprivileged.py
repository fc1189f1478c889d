"""Run forge as an unprivileged user (uid/gid 65534) with the interpreter that runs the tests.

The test interpreter may live where that user cannot reach it (pyenv under ``/root``, mode 0700). Rather than
change the host, :func:`run_unprivileged` starts the command in a private mount namespace (``unshare -m``, as
root) in which every such ancestor directory of the interpreter's prefix is covered by a 0755 tmpfs with only
the path to the prefix bound back in, then drops to 65534 with ``setpriv``. The interpreter, its shared library
(RUNPATH) and its site-packages keep their real paths, so nothing else needs to be installed. With an
interpreter others can already execute (a system Python with the dependencies), no mount is made at all.

The caller gives the user a directory of its own (:func:`private_dir`): a copy of the package under test, the
recipe and its inputs, the cache and the output all live there.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

UID = GID = 65534
REPO = Path(__file__).resolve().parents[2]


def blocked_ancestors(path: Path) -> list[Path]:
    """The ancestors of ``path`` (outermost first) that others cannot search (no o+x)."""
    out = []
    for parent in reversed(Path(os.path.realpath(path)).parents):
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            out.append(parent)
    return out


def private_dir() -> Path:
    """A fresh directory under the system temp dir (pytest's own tree is 0700 root: 65534 cannot enter it),
    holding a copy of the package under test; hand it over with :func:`hand_over`, remove it with
    :func:`remove`."""
    base = Path(tempfile.mkdtemp(prefix="forge-unpriv-"))
    shutil.copytree(REPO / "rootfs_forge", base / "pkg" / "rootfs_forge",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return base


def hand_over(base: Path) -> None:
    """Make everything under ``base`` the unprivileged user's."""
    for p in [base, *base.rglob("*")]:
        os.lchown(p, UID, GID)


def remove(base: Path) -> None:
    shutil.rmtree(base, ignore_errors=True)


def _shadow_script(prefix: Path, scratch: Path) -> str:
    """Shell commands that make ``prefix`` reachable for others inside the current mount namespace."""
    lines = []
    real = Path(os.path.realpath(prefix))
    for i, blocked in enumerate(blocked_ancestors(real)):
        child = real.relative_to(blocked).parts[0]
        orig = scratch / f"orig{i}"
        lines += [
            f"mkdir -p {shlex.quote(str(orig))}",
            f"mount --bind {shlex.quote(str(blocked))} {shlex.quote(str(orig))}",
            f"mount -t tmpfs -o mode=0755,size=1m forge-shadow {shlex.quote(str(blocked))}",
            f"mkdir -p {shlex.quote(str(blocked / child))}",
            f"mount --bind {shlex.quote(str(orig / child))} {shlex.quote(str(blocked / child))}",
        ]
    return "\n".join(lines)


def run_unprivileged(argv: Sequence[str], *, base: Path, env: Mapping[str, str] | None = None,
                     timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m rootfs_forge ARGV`` as 65534 with the package copy in ``base/pkg`` on its path."""
    full_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(base), "PYTHONPATH": str(base / "pkg"),
                "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8", **(env or {})}
    command = ["setpriv", "--reuid", str(UID), "--regid", str(GID), "--clear-groups",
               sys.executable, "-m", "rootfs_forge", *argv]
    scratch = Path(tempfile.mkdtemp(prefix="forge-shadow-"))  # root's: the original /root stays out of reach
    try:
        script = _shadow_script(Path(sys.prefix), scratch)
        if not script:
            return subprocess.run(command, capture_output=True, text=True, env=full_env, cwd=base, timeout=timeout)
        script += "\nexec " + " ".join(shlex.quote(a) for a in command)
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-ec", script],
                              capture_output=True, text=True, env=full_env, cwd=base, timeout=timeout)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
