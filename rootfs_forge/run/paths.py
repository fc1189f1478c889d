"""Default locations used by ``forge run``: layer cache, named-container state, per-run runtime dirs."""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False  # typing stays off the start path; mypy reads this as typing.TYPE_CHECKING
if TYPE_CHECKING:
    from collections.abc import Mapping


def project_root() -> str:
    """The directory holding the ``rootfs_forge`` package (the checkout root)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def default_cache_dir(environ: Mapping[str, str] | None = None) -> str:
    """``$FORGE_CACHE`` or ``<project root>/cache``."""
    env = os.environ if environ is None else environ
    return env.get("FORGE_CACHE") or os.path.join(project_root(), "cache")


def default_state_dir(environ: Mapping[str, str] | None = None, euid: int | None = None) -> str:
    """Where named containers live: /var/lib/forge/containers for root, else $XDG_STATE_HOME/forge."""
    env = os.environ if environ is None else environ
    if (os.geteuid() if euid is None else euid) == 0:
        return "/var/lib/forge/containers"
    base = env.get("XDG_STATE_HOME") or os.path.join(env.get("HOME", "/tmp"), ".local", "state")
    return os.path.join(base, "forge")


def default_runtime_dir(environ: Mapping[str, str] | None = None, euid: int | None = None) -> str:
    """Base of the per-run temp dirs: /run/forge for root, else $XDG_RUNTIME_DIR/forge when that is a real
    directory of the caller that nobody else can write to, else /tmp/forge-UID. (Whichever it is, ``runtime``
    checks it again before use: /tmp/forge-UID is predictable and may have been planted.)"""
    env = os.environ if environ is None else environ
    uid = os.geteuid() if euid is None else euid
    if uid == 0:
        return "/run/forge"
    xdg = env.get("XDG_RUNTIME_DIR") or ""
    if os.path.isabs(xdg) and _private_dir_of(xdg, uid):
        return os.path.join(xdg, "forge")
    return f"/tmp/forge-{uid}"


def _private_dir_of(path: str, uid: int) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o022
