"""The tree's OS identification (``/etc/os-release``, falling back to ``/usr/lib/os-release``)."""

from __future__ import annotations

import shlex

from rootfs_forge.audit.view import FsView, Node, read_bytes, resolve


def parse_os_release(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            words = shlex.split(value)
        except ValueError:
            continue
        out[key.strip()] = words[0] if words else ""
    return out


def read_os_release(view: FsView) -> dict[str, str]:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        real = resolve(view, path)
        if real is not None and (view.lstat(real) or Node("missing")).kind == "file":
            return parse_os_release(read_bytes(view, real).decode("utf-8", "replace"))
    return {}


def purl_distro(os_release: dict[str, str]) -> tuple[str, str]:
    """(purl namespace, ``distro`` qualifier) for deb purls: ("debian", "debian-12") on Debian 12."""
    ident = os_release.get("ID", "") or "debian"
    like = os_release.get("ID_LIKE", "").split()
    namespace = ident if ident == "debian" or "debian" in like else "debian"
    version = os_release.get("VERSION_ID") or os_release.get("VERSION_CODENAME") or ""
    return namespace, f"{ident}-{version}" if version else ""
