"""Directories and files base-files' postinst makes on a first install, and the modes an image needs.

/tmp and /var/tmp 1777, /root 0700, /run (without base-files, which ships it); the postinst's
``install_from_default`` copies (/root/.profile, /root/.bashrc, /etc/profile, /etc/motd), its directories
(/mnt, /srv, /opt, /media, /var/mail 2775 root:mail, /run/lock 1777, /usr/local/*), its links (/var/run ->
/run, /var/lock -> /run/lock, /var/spool/mail, /usr/local/man; an empty /var/run or /var/lock directory is
replaced, as its migrate_directory does) and the login records (/var/log/wtmp, btmp, lastlog owned by group
utmp). Nothing that already exists is replaced, except that the modes of /tmp, /var/tmp and /root are enforced.
"""

from __future__ import annotations

from rootfs_forge.configure.effects.base import EffectContext, EffectResult, effect
from rootfs_forge.configure.effects.tree import Change, RootDir
from rootfs_forge.util.passwd import ids

ALWAYS = (("/tmp", 0o1777), ("/var/tmp", 0o1777), ("/root", 0o700))
DEFAULTS = (
    ("dot.profile", "/root/.profile"),
    ("dot.bashrc", "/root/.bashrc"),
    ("profile", "/etc/profile"),
    ("motd", "/etc/motd"),
)
DIRECTORIES = (
    ("/mnt", 0o755, "root"),
    ("/srv", 0o755, "root"),
    ("/opt", 0o755, "root"),
    ("/etc/opt", 0o755, "root"),
    ("/var/opt", 0o755, "root"),
    ("/media", 0o755, "root"),
    ("/var/mail", 0o2775, "mail"),
    ("/run/lock", 0o1777, "root"),
)
LOCAL_DIRS = (
    "/usr/local",
    "/usr/local/share",
    "/usr/local/share/man",
    "/usr/local/bin",
    "/usr/local/games",
    "/usr/local/lib",
    "/usr/local/include",
    "/usr/local/sbin",
    "/usr/local/src",
    "/usr/local/etc",
)
LINKS = (
    ("/var/spool/mail", "../mail"),
    ("/var/run", "/run"),
    ("/var/lock", "/run/lock"),
    ("/usr/local/man", "share/man"),
)
MIGRATED = frozenset({"/var/run", "/var/lock"})  # base-files' migrate_directory
LOGS = (("/var/log/wtmp", 0o664), ("/var/log/btmp", 0o660), ("/var/log/lastlog", 0o664))


def group_ids(tree: RootDir) -> dict[str, int]:
    """Group name → gid from the tree's /etc/group (empty when absent)."""
    if not tree.is_file("/etc/group"):
        return {}
    return ids(tree.read_bytes("/etc/group").decode(), 4)


@effect("base-files", "/tmp, /var/tmp, /root modes and what base-files' postinst makes on a first install",
        scripts=("base-files/postinst",))
def apply(ctx: EffectContext) -> EffectResult:
    tree = ctx.tree()
    changed: list[Change] = [tree.mkdir(path, mode) for path, mode in ALWAYS]
    if not ctx.has("base-files"):
        if not tree.lexists("/run"):  # base-files ships it; daemons write their pid files there
            changed.append(tree.mkdir("/run", 0o755))
        return EffectResult(tuple(changed), ("base-files not installed: only /tmp, /var/tmp, /root and /run made",))
    gids = group_ids(tree)
    for src, dest in DEFAULTS:
        if tree.is_file(f"/usr/share/base-files/{src}") and not tree.lexists(dest):
            changed.append(tree.write_file(dest, tree.read_bytes(f"/usr/share/base-files/{src}"), 0o644))
    for path, mode, group in DIRECTORIES:
        if not tree.lexists(path):
            changed.append(tree.mkdir(path, mode, 0, gids.get(group, 0)))
    changed += [tree.mkdir(path, 0o755) for path in LOCAL_DIRS if not tree.lexists(path)]
    messages: list[str] = []
    for path, target in LINKS:
        if tree.is_symlink(path):
            continue
        if path in MIGRATED and tree.is_dir(path):  # migrate_directory: rmdir, then the link
            if tree.listdir(path):
                messages.append(f"{path} is a directory with contents: not replaced by a link to {target}")
                continue
            tree.remove(path)
        if not tree.is_dir(path):
            changed.append(tree.symlink(path, target))
    for path, mode in LOGS:
        if not tree.lexists(path):
            changed.append(tree.write_file(path, b"", mode, 0, gids.get("utmp", 0)))
    return EffectResult(tuple(changed), (f"{len(changed)} paths made or fixed", *messages))
