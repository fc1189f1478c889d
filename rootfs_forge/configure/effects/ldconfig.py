"""/etc/ld.so.cache, as libc-bin's ldconfig trigger makes it.

Runs the host's ``ldconfig -X -r ROOT`` (``-X``: no soname links, which packages already ship) only when the
image architecture is the host's; otherwise it is skipped: the dynamic loader still finds libraries in its
default paths, it only loses the cache of extra ``ld.so.conf.d`` directories. ``ldconfig -r`` chroots, so it
needs root.

ldconfig also writes ``/var/cache/ldconfig/aux-cache``, its record of the inode numbers, sizes and ctimes of the
libraries it read: different on every build, so it is removed (as Debian's official images do); ldconfig
rebuilds it the next time it runs in the image.
"""

from __future__ import annotations

import subprocess

from rootfs_forge.configure.effects.base import EffectContext, EffectResult, effect
from rootfs_forge.errors import RootfsError

CACHE = "/etc/ld.so.cache"
AUX_CACHE = "/var/cache/ldconfig/aux-cache"


@effect("ldconfig", "/etc/ld.so.cache from the host's ldconfig when the architectures match",
        packages=("libc-bin",), scripts=("libc-bin/postinst",), commands=("ldconfig",))
def apply(ctx: EffectContext) -> EffectResult:
    host = ctx.host
    if host.architecture != ctx.architecture:
        return EffectResult(
            skipped=f"image architecture {ctx.architecture} is not the host's "
            f"({host.architecture or 'unknown'}): the loader's default paths still work"
        )
    if not host.ldconfig:
        return EffectResult(skipped="no ldconfig on the host: the loader's default paths still work")
    if not host.privileged:
        return EffectResult(
            skipped="ldconfig -r needs root (it chroots): the loader's default paths still work"
        )
    tree = ctx.tree()
    if not tree.lexists("/etc/ld.so.conf"):
        return EffectResult(skipped="no /etc/ld.so.conf in the image (libc-bin absent)")
    done = subprocess.run(
        [host.ldconfig, "-X", "-r", str(ctx.root)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise RootfsError("build", CACHE, f"ldconfig: {last}")
    real = tree.resolve(CACHE)
    changed = (tree.chmod(real, 0o644),)
    messages = [f"{real} written by {host.ldconfig}"]
    if tree.remove(AUX_CACHE):
        messages.append(f"{AUX_CACHE} removed: it records this build's inode numbers and times")
    return EffectResult(changed, tuple(messages))
