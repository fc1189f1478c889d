"""Configuration files postinsts copy from a shipped default on a first install, and /etc/subuid, /etc/subgid.

libc-bin: /usr/share/libc-bin/nsswitch.conf → /etc/nsswitch.conf; readline-common: /usr/share/readline/inputrc
→ /etc/inputrc; base-files: /etc/dpkg/origins/default → debian, /usr/share/base-files/info.dir →
/usr/share/info/dir (when /usr/share/info is kept). passwd (shadow): /etc/subuid and /etc/subgid, with a
subordinate range for each recipe account in the regular user range, as ``useradd`` allocates it
(SUB_UID_MIN 100000, SUB_UID_COUNT 65536). Nothing already in the tree is replaced.
"""

from __future__ import annotations

from collections.abc import Sequence

from rootfs_forge.configure.effects.base import Account, EffectContext, EffectResult, effect
from rootfs_forge.configure.effects.tree import Change

COPIES = (
    ("libc-bin", "/usr/share/libc-bin/nsswitch.conf", "/etc/nsswitch.conf"),
    ("readline-common", "/usr/share/readline/inputrc", "/etc/inputrc"),
)
SUB_MIN, SUB_COUNT = 100000, 65536
USER_MIN, USER_MAX = 1000, 60000


def subordinate(accounts: Sequence[Account]) -> str:
    """/etc/subuid (and subgid) lines for the regular users among ``accounts`` (pure)."""
    users = [a for a in accounts if USER_MIN <= a.uid <= USER_MAX]
    return "".join(f"{a.name}:{SUB_MIN + i * SUB_COUNT}:{SUB_COUNT}\n" for i, a in enumerate(users))


@effect("defaults", "nsswitch.conf, inputrc, dpkg origins, info dir, subuid/subgid: first-install copies of defaults",
        packages=("libc-bin", "readline-common", "base-files", "passwd"), scripts=("readline-common/postinst",))
def apply(ctx: EffectContext) -> EffectResult:
    tree = ctx.tree()
    changed: list[Change] = []
    for pkg, src, dest in COPIES:
        if ctx.has(pkg) and tree.is_file(src) and not tree.lexists(dest):
            changed.append(tree.write_file(dest, tree.read_bytes(src), 0o644))
    if ctx.has("base-files"):
        if tree.lexists("/etc/dpkg/origins/debian") and not tree.lexists("/etc/dpkg/origins/default"):
            changed.append(tree.symlink("/etc/dpkg/origins/default", "debian"))
        if (tree.is_dir("/usr/share/info") and tree.is_file("/usr/share/base-files/info.dir")
                and not tree.is_file("/usr/share/info/dir") and not tree.is_file("/usr/info/dir")):
            changed.append(tree.write_file("/usr/share/info/dir", tree.read_bytes("/usr/share/base-files/info.dir"),
                                           0o644))
    if ctx.has("passwd"):
        lines = subordinate(ctx.options.accounts).encode()
        for path in ("/etc/subuid", "/etc/subgid"):
            if not tree.lexists(path):
                changed.append(tree.write_file(path, lines, 0o644))
    if not changed:
        return EffectResult(messages=("nothing to copy",))
    return EffectResult(tuple(changed), (f"{', '.join(c.path for c in changed)} made",))
