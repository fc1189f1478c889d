"""Users and groups: base-passwd's master files (or a root-only set), ``nobody``, and the recipe's accounts.

Stands in for base-passwd's postinst (copy ``passwd.master``/``group.master`` when /etc/passwd is absent) and,
when the ``passwd`` package is installed, for its postinst's ``shadowconfig on`` (split password fields into
/etc/shadow and /etc/gshadow). Without it there is no shadow file, as in a tree dpkg installs (the essential
set has no ``passwd``), and every password field is ``*`` (locked), as in base-passwd's. Literal system-account
calls in other packages' scripts (``adduser --system`` …) are emulated by :mod:`.sysaccounts`; any other
account call is reported as not emulated, so the recipe can add an ``[[account]]``.
"""

from __future__ import annotations

import re

from rootfs_forge.configure.effects import sysaccounts
from rootfs_forge.configure.effects.base import Account, EffectContext, EffectResult, effect
from rootfs_forge.configure.effects.tree import Change, RootDir
from rootfs_forge.errors import RootfsError
from rootfs_forge.util.passwd import table

PASSWD_MASTER = "/usr/share/base-passwd/passwd.master"
GROUP_MASTER = "/usr/share/base-passwd/group.master"
NOBODY = ["nobody", "x", "65534", "65534", "nobody", "/nonexistent", "/usr/sbin/nologin"]
NOGROUP = ["nogroup", "x", "65534", ""]
_NAME = re.compile(r"^[a-z_][a-z0-9_.-]*\$?$")


def parse_table(text: str, width: int, what: str) -> list[list[str]]:
    """``name:x:…`` lines of a passwd-style file; blank lines and ``#`` comments are dropped."""
    rows = []
    for n, fields in table(text):
        if len(fields) != width:
            raise RootfsError("read", what, f"line {n} has {len(fields)} fields, expected {width}")
        rows.append(fields)
    return rows


def _render(rows: list[list[str]]) -> bytes:
    return "".join(":".join(r) + "\n" for r in rows).encode()


def merge_accounts(
    passwd: list[list[str]], group: list[list[str]], accounts: tuple[Account, ...]
) -> tuple[list[list[str]], list[list[str]]]:
    """Add ``nobody``/``nogroup`` and the recipe's accounts to passwd and group rows (pure)."""
    passwd = [list(r) for r in passwd]
    group = [list(r) for r in group]
    if not any(r[0] == "nogroup" or r[2] == "65534" for r in group):
        group.append(list(NOGROUP))
    if not any(r[0] == "nobody" or r[2] == "65534" for r in passwd):
        passwd.append(list(NOBODY))
    for acc in accounts:
        if not _NAME.match(acc.name):
            raise RootfsError("add account", acc.name, "not a valid user name")
        home = acc.home_dir
        if not home.startswith("/") or ".." in home.split("/"):
            raise RootfsError("add account", acc.name, f"home {home!r} is not an absolute path")
        row = [acc.name, "x", str(acc.uid), str(acc.group_id), acc.name, home, acc.shell]
        same_name = next((r for r in passwd if r[0] == acc.name), None)
        if same_name is not None:
            if same_name[2] != str(acc.uid):
                raise RootfsError("add account", acc.name, f"the name is taken by uid {same_name[2]}")
            same_name[:] = row
            continue
        same_uid = next((r for r in passwd if r[2] == str(acc.uid)), None)
        if same_uid is not None:
            raise RootfsError("add account", acc.name, f"uid {acc.uid} is taken by {same_uid[0]}")
        passwd.append(row)
        if not any(r[2] == str(acc.group_id) for r in group):
            if any(r[0] == acc.name for r in group):
                raise RootfsError("add account", acc.name, f"group {acc.name} exists with another gid")
            group.append([acc.name, "x", str(acc.group_id), ""])
    return passwd, group


def shadow_rows(
    passwd: list[list[str]], group: list[list[str]], epoch: int | None,
    system_users: frozenset[str] = frozenset(), system_groups: frozenset[str] = frozenset(),
) -> tuple[list[list[str]], list[list[str]], list[list[str]], list[list[str]]]:
    """Move password fields into shadow/gshadow as ``shadowconfig on`` does; every account stays locked.
    Accounts a script's ``adduser --system``/``useradd -r`` made afterwards (``system_users``,
    ``system_groups``) get what useradd and groupadd write: ``!`` and no aging fields."""
    day = "" if epoch is None else str(epoch // 86400)
    shadow = [
        [r[0], "!", day, "", "", "", "", "", ""] if r[0] in system_users else
        [r[0], r[1] if r[1] not in ("x", "") else "*", day, "0", "99999", "7", "", "", ""] for r in passwd
    ]
    gshadow = [[r[0], "!" if r[0] in system_groups else r[1] if r[1] not in ("x", "") else "*", "", r[3]]
               for r in group]
    passwd = [[r[0], "x", *r[2:]] for r in passwd]
    group = [[r[0], "x", *r[2:]] for r in group]
    return passwd, group, shadow, gshadow


def locked_rows(rows: list[list[str]]) -> list[list[str]]:
    """Rows without a shadow file: a password field ``x`` or empty becomes ``*`` (locked), as base-passwd's
    master files have it (pure)."""
    return [[r[0], r[1] if r[1] not in ("x", "") else "*", *r[2:]] for r in rows]


def _root_shell(tree: RootDir) -> str:
    for shell in ("/bin/bash", "/bin/sh"):
        if tree.lexists(shell):
            return shell
    return "/usr/sbin/nologin"


@effect("accounts", "/etc/passwd, group, shadow, gshadow; nobody; recipe accounts and their homes",
        scripts=("base-passwd/postinst", "base-passwd/preinst", "passwd/postinst"),
        commands=("update-passwd", "shadowconfig", "pwconv", "grpconv", *sysaccounts.COMMANDS))
def apply(ctx: EffectContext) -> EffectResult:
    tree = ctx.tree()
    messages = []
    if tree.is_file("/etc/passwd") and tree.is_file("/etc/group"):
        source = "the existing /etc/passwd and /etc/group"
        passwd = parse_table(tree.read_bytes("/etc/passwd").decode(), 7, "/etc/passwd")
        group = parse_table(tree.read_bytes("/etc/group").decode(), 4, "/etc/group")
    elif ctx.has("base-passwd") and tree.is_file(PASSWD_MASTER) and tree.is_file(GROUP_MASTER):
        source = "base-passwd's master files"
        passwd = parse_table(tree.read_bytes(PASSWD_MASTER).decode(), 7, PASSWD_MASTER)
        group = parse_table(tree.read_bytes(GROUP_MASTER).decode(), 4, GROUP_MASTER)
    else:
        source = "a root-only set (base-passwd is not installed)"
        passwd = [["root", "x", "0", "0", "root", "/root", _root_shell(tree)]]
        group = [["root", "x", "0", ""]]
    passwd, group = merge_accounts(passwd, group, ctx.options.accounts)
    calls, notes, unhandled = sysaccounts.find_calls(ctx.packages)
    users_before, groups_before = {r[0] for r in passwd}, {r[0] for r in group}
    homes, emulated, failed = sysaccounts.apply_calls(passwd, group, calls)
    if ctx.has("passwd"):
        passwd, group, shadow, gshadow = shadow_rows(
            passwd, group, ctx.epoch, frozenset(r[0] for r in passwd if r[0] not in users_before),
            frozenset(r[0] for r in group if r[0] not in groups_before))
    else:
        passwd, group, shadow, gshadow = locked_rows(passwd), locked_rows(group), [], []
    shadow_gid = next((int(r[2]) for r in group if r[0] == "shadow"), 0)
    changed: list[Change] = [
        tree.write_file("/etc/passwd", _render(passwd), 0o644),
        tree.write_file("/etc/group", _render(group), 0o644),
    ]
    if ctx.has("passwd"):
        changed += [tree.write_file("/etc/shadow", _render(shadow), 0o640, 0, shadow_gid),
                    tree.write_file("/etc/gshadow", _render(gshadow), 0o640, 0, shadow_gid)]
    for acc in ctx.options.accounts:
        changed.append(tree.mkdir(acc.home_dir, 0o755, acc.uid, acc.group_id))
    for home, uid, gid in homes:
        if not tree.lexists(home):
            changed.append(tree.mkdir(home, 0o755, uid, gid))
    messages.append(
        f"{len(passwd)} users and {len(group)} groups from {source}"
        + (f" plus {len(ctx.options.accounts)} recipe accounts" if ctx.options.accounts else "")
    )
    messages += notes + emulated
    return EffectResult(tuple(changed), tuple(messages), unhandled=tuple(sorted(unhandled | failed)))
