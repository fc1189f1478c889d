"""/etc/localtime and /etc/timezone, as tzdata's postinst sets them (UTC unless the recipe says otherwise)."""

from __future__ import annotations

import re

from rootfs_forge.configure.effects.base import EffectContext, EffectResult, effect
from rootfs_forge.errors import RootfsError

ZONEINFO = "/usr/share/zoneinfo"
_ZONE = re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")


@effect("timezone", "/etc/localtime -> /usr/share/zoneinfo/<tz> and /etc/timezone",
        packages=("tzdata",), scripts=("tzdata/postinst", "tzdata/config"))
def apply(ctx: EffectContext) -> EffectResult:
    tree = ctx.tree()
    tz = ctx.options.timezone
    if not _ZONE.match(tz):
        raise RootfsError("set timezone", repr(tz), "not a zone name like Europe/Paris")
    if not tree.is_file(f"{ZONEINFO}/{tz}"):
        raise RootfsError("set timezone", tz, f"{ZONEINFO}/{tz} is not in the image")
    changed = (
        tree.symlink("/etc/localtime", f"{ZONEINFO}/{tz}"),
        tree.write_file("/etc/timezone", f"{tz}\n".encode()),
    )
    return EffectResult(changed, (f"/etc/localtime -> {ZONEINFO}/{tz}",))
