"""nginx dynamic modules enabled on a first install, as the postinst snippet dh_nginx adds makes them.

Each ``libnginx-mod-*`` postinst carries debhelper's snippet ``for confpair in FROM:TO … ; do … ln -sf
/usr/share/nginx/modules-available/$from /etc/nginx/modules-enabled/$to``, run when ``$2`` is empty (a first
install): the module's ``load_module`` line is linked into /etc/nginx/modules-enabled, which nginx.conf
includes. Only that exact snippet is read (names of letters, digits, ``.``, ``_`` and ``-``); the links go
through the tree's writer; an existing entry is kept. Parsing is pure (:func:`module_pairs`).
"""

from __future__ import annotations

import re

from rootfs_forge.configure.effects.base import EffectContext, EffectResult, effect
from rootfs_forge.configure.effects.tree import Change

AVAILABLE = "/usr/share/nginx/modules-available"
ENABLED = "/etc/nginx/modules-enabled"
MARKER = "# Automatically added by dh_nginx"
_LOOP = re.compile(r"^\s*for confpair in ([^;\n]*);\s*do\s*$", re.M)
_LINK = re.compile(r"ln -sf /usr/share/nginx/modules-available/\$from\s*\\?\s*/etc/nginx/modules-enabled/\$to")
_FIRST = re.compile(r'if \[ -z "\$2" -o "\$removed_link" = "true" \]; then')
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def module_pairs(postinst: str) -> list[tuple[str, str]]:
    """(configuration in modules-available, link name in modules-enabled) of dh_nginx's snippet (pure)."""
    if MARKER not in postinst or not _LINK.search(postinst) or not _FIRST.search(postinst):
        return []
    out: list[tuple[str, str]] = []
    for loop in _LOOP.finditer(postinst):
        for pair in loop.group(1).split():
            src, sep, dest = pair.partition(":")
            if sep and _NAME.match(src) and _NAME.match(dest):
                out.append((src, dest))
    return out


@effect("nginx-modules", "nginx modules enabled on a first install (dh_nginx's links in /etc/nginx/modules-enabled)",
        packages=("nginx-common",))
def apply(ctx: EffectContext) -> EffectResult:
    tree = ctx.tree()
    changed: list[Change] = []
    messages: list[str] = []
    for name in sorted(ctx.packages):
        for src, dest in module_pairs(ctx.packages[name].scripts.get("postinst", "")):
            link = f"{ENABLED}/{dest}"
            if not tree.is_dir(ENABLED):
                messages.append(f"{name}: {ENABLED} is not in the image: {dest} not enabled")
            elif not tree.lexists(link):
                changed.append(tree.symlink(link, f"{AVAILABLE}/{src}"))
                messages.append(f"{link} -> {AVAILABLE}/{src} ({name})")
    if not changed and not messages:
        return EffectResult(skipped="no dh_nginx module snippet")
    return EffectResult(tuple(changed), tuple(messages))

