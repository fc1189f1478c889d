"""Busybox applet links, when the recipe asks (``busybox_links = true``, or a recipe named ``debug``).

Debian's busybox ships no applet list and its postinst makes no links; the list comes from the binary itself
(``busybox --list-full``). It is asked only when the image architecture is the host's, and only inside a
bubblewrap sandbox whose root is the image (read-only, fresh namespaces, no network, empty environment): the
image's binary never runs against the host's files. Without bwrap, or for a foreign architecture, the effect
is skipped and says so. A link is only made where the image has nothing: packaged files always win.
"""

from __future__ import annotations

import re
import subprocess

from rootfs_forge.configure.effects.base import EffectContext, EffectResult, effect
from rootfs_forge.configure.effects.tree import Change

_APPLET = re.compile(r"^(?:(?:usr/)?s?bin/)[A-Za-z0-9_.\[\]+-]+$")


def parse_list(text: str) -> list[str]:
    """Applet paths from ``busybox --list-full`` output, absolute, sorted; odd lines are dropped (pure)."""
    return sorted({"/" + line.strip() for line in text.splitlines() if _APPLET.match(line.strip())})


def sandboxed(bwrap: str, root: str, argv: list[str]) -> list[str]:
    """``argv`` run by bubblewrap with ``root`` as a read-only ``/`` and every namespace unshared."""
    return [
        bwrap,
        "--ro-bind",
        root,
        "/",
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--chdir",
        "/",
        *argv,
    ]


@effect("busybox", "applet links for busybox when the recipe asks", packages=("busybox", "busybox-static"))
def apply(ctx: EffectContext) -> EffectResult:
    if not (ctx.options.busybox_links or ctx.options.recipe_name == "debug"):
        return EffectResult(skipped="the recipe did not ask for applet links (busybox_links = true)")
    tree = ctx.tree()
    binary = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if tree.is_file(p)), None)
    if binary is None:
        return EffectResult(skipped="no busybox binary in the image")
    if ctx.host.architecture != ctx.architecture:
        return EffectResult(
            skipped=f"image architecture {ctx.architecture} is not the host's: "
            "cannot ask busybox for its applets"
        )
    if not ctx.host.bwrap:
        return EffectResult(skipped="no bwrap on the host to run busybox sandboxed: applet links skipped")
    argv = sandboxed(ctx.host.bwrap, str(ctx.root), [binary, "--list-full"])
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0:
        return EffectResult(skipped=f"{binary} --list-full failed: {done.stderr.strip()[:200]}")
    changed: list[Change] = []
    kept = 0
    for applet in parse_list(done.stdout):
        if applet.rsplit("/", 1)[-1] == "busybox" or tree.lexists(applet):
            kept += 1
            continue
        changed.append(tree.symlink(applet, binary))
    return EffectResult(
        tuple(changed), (f"{len(changed)} applet links to {binary}, {kept} paths already taken",)
    )
