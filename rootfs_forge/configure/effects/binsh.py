"""/bin/sh: the link dash's postinst claims (through a diversion) or the recipe's ``sh = "bash"``.

With merged /usr, /bin is a link to usr/bin, so the link lands in /usr/bin/sh (resolved inside the root). The
diversion dash registers (/bin/sh → /bin/sh.distrib) is not recorded: nothing in an image reads it.
"""

from __future__ import annotations

import re

from rootfs_forge.configure.effects.base import EffectContext, EffectResult, effect
from rootfs_forge.errors import RootfsError

_SHELL = re.compile(r"^[a-z][a-z0-9.+-]*$")
MAN1 = "/usr/share/man/man1"


@effect("binsh", "/bin/sh -> dash (or the recipe's sh)",
        packages=("dash", "bash"), scripts=("dash/postinst", "dash/preinst", "bash/postinst", "bash/preinst"))
def apply(ctx: EffectContext) -> EffectResult:
    tree = ctx.tree()
    wanted = ctx.options.sh
    if wanted is not None:
        if not _SHELL.match(wanted):
            raise RootfsError("choose /bin/sh", repr(wanted), "not a shell name")
        if not tree.is_file(f"/bin/{wanted}"):
            raise RootfsError("choose /bin/sh", wanted, f"/bin/{wanted} is not in the image")
        shell = wanted
    else:
        shell = next((s for s in ("dash", "bash") if ctx.has(s) and tree.is_file(f"/bin/{s}")), "")
        if not shell:
            return EffectResult(skipped="neither dash nor bash is installed: /bin/sh left as shipped")
    changed = [tree.symlink("/bin/sh", shell)]
    if tree.is_file(f"{MAN1}/{shell}.1.gz"):
        changed.append(tree.symlink(f"{MAN1}/sh.1.gz", f"{shell}.1.gz"))
    return EffectResult(tuple(changed), (f"/bin/sh -> {shell}",))
