"""Default locations used by ``forge run``: layer cache, named-container state, per-run runtime dirs."""

from __future__ import annotations

import os
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
    """Base of the per-run temp dirs: /run/forge for root, else $XDG_RUNTIME_DIR/forge (or /tmp/forge-UID)."""
    env = os.environ if environ is None else environ
    uid = os.geteuid() if euid is None else euid
    if uid == 0:
        return "/run/forge"
    xdg = env.get("XDG_RUNTIME_DIR")
    return os.path.join(xdg, "forge") if xdg else f"/tmp/forge-{uid}"
