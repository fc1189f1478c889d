"""System users and groups that packages create in their scripts: ``adduser --system``, ``addgroup --system``,
``useradd -r``, ``groupadd -r`` and ``adduser USER GROUP``, read from the script text and applied to passwd
and group rows. Pure: no I/O.

Only literal calls are emulated; a call with a shell variable, an unknown option or a non-system account is
reported and left out. Ids come from the system range 100-999, lowest free first, in package-name order (so a
build is reproducible, though ids may differ from a dpkg-built system's); a user made with its own group takes
an id free both as uid and gid, like ``adduser --system --group``. An account that already exists is left
alone, as the scripts' ``getent`` guards would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rootfs_forge.configure.effects.base import PackageInfo
from rootfs_forge.configure.effects.scripts import simple_commands

FIRST_SYSTEM_ID, LAST_SYSTEM_ID = 100, 999
COMMANDS = ("adduser", "addgroup", "useradd", "groupadd")
_ADDUSER_FLAGS = {
    "--system",
    "--group",
    "--no-create-home",
    "--quiet",
    "-q",
    "--disabled-password",
    "--disabled-login",
    "--force-badname",
    "--allow-bad-names",
    "--allow-badname",
    "--debug",
    "--verbose",
    "--add-extra-groups",
    "--add_extra_groups",
}
_ADDUSER_VALUES = {"--home", "--shell", "--ingroup", "--gid", "--uid", "--gecos", "--comment"}
_USERADD_FLAGS = {
    "-r": "--system",
    "-M": "--no-create-home",
    "-m": "--create-home",
    "-U": "--user-group",
    "-N": "--no-user-group",
    "-l": "--no-log-init",
    "-f": "--force",
}
_USERADD_VALUES = {
    "-d": "--home-dir",
    "-s": "--shell",
    "-g": "--gid",
    "-u": "--uid",
    "-c": "--comment",
    "-G": "--groups",
    "-K": "--key",
}


@dataclass(frozen=True, slots=True)
class AccountCall:
    """One account-making call. ``kind``: user (and maybe its group) | group | member (add user to groups)."""

    source: str  # pkg/script
    text: str
    kind: str
    user: str | None = None
    group: str | None = None  # a group to create (same name as the user for --group / useradd's user group)
    primary: str | None = None  # an existing group (name or number) for the user's primary group
    uid: int | None = None
    gid: int | None = None
    home: str = "/nonexistent"
    create_home: bool = False
    shell: str = "/usr/sbin/nologin"
    gecos: str = ""
    member: tuple[str, ...] = ()


def _options(
    words: list[str], flags: set[str], values: set[str], aliases: Mapping[str, str] | None = None
) -> tuple[set[str], dict[str, str], list[str]]:
    seen: set[str] = set()
    opts: dict[str, str] = {}
    args: list[str] = []
    it = iter(words)
    for w in it:
        name, eq, val = w.partition("=")
        name = (aliases or {}).get(name, name)
        if name in flags:
            seen.add(name)
        elif name in values:
            opts[name] = val if eq else next(it, "")
            if not opts[name]:
                raise ValueError(f"{name} needs a value")
        elif w.startswith("-"):
            raise ValueError(f"unknown option {w}")
        else:
            args.append(w)
    return seen, opts, args


def _int(value: str | None, what: str) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise ValueError(f"{what} {value!r} is not a number")
    return int(value)


def parse_call(source: str, words: list[str]) -> AccountCall:
    """An :class:`AccountCall` from a command's words; ``ValueError`` says why it cannot be emulated."""
    text = " ".join(words)
    if any("$" in w or "`" in w for w in words):
        raise ValueError("unexpanded shell variables")
    cmd, rest = words[0], words[1:]
    if cmd in ("adduser", "addgroup"):
        values = _ADDUSER_VALUES | {"--firstuid", "--lastuid", "--firstgid", "--lastgid"}
        seen, opts, args = _options(rest, _ADDUSER_FLAGS, values)
        if len(args) == 2 and "--system" not in seen:
            return AccountCall(source, text, "member", user=args[0], member=(args[1],))
        if len(args) != 1:
            raise ValueError("expected one name")
        if "--system" not in seen:
            raise ValueError("not a system account")
        gid = _int(opts.get("--gid"), "gid")
        if cmd == "addgroup":
            return AccountCall(source, text, "group", group=args[0], gid=gid)
        home = opts.get("--home", "/nonexistent")
        return AccountCall(
            source,
            text,
            "user",
            user=args[0],
            group=args[0] if "--group" in seen else None,
            primary=opts.get("--ingroup") or (str(gid) if gid is not None else None),
            uid=_int(opts.get("--uid"), "uid"),
            gid=gid if "--group" in seen else None,
            home=home,
            create_home="--no-create-home" not in seen and home != "/nonexistent",
            shell=opts.get("--shell", "/usr/sbin/nologin"),
            gecos=opts.get("--gecos", opts.get("--comment", "")),
        )
    if cmd == "groupadd":
        seen, opts, args = _options(
            rest,
            {"--system", "--force"},
            {"--gid", "--key"},
            {"-r": "--system", "-f": "--force", "-g": "--gid", "-K": "--key"},
        )
        if "--system" not in seen:
            raise ValueError("not a system group")
        if len(args) != 1:
            raise ValueError("expected one name")
        return AccountCall(source, text, "group", group=args[0], gid=_int(opts.get("--gid"), "gid"))
    if cmd == "useradd":
        flags = set(_USERADD_FLAGS.values())
        seen, opts, args = _options(
            rest, flags, set(_USERADD_VALUES.values()), {**_USERADD_FLAGS, **_USERADD_VALUES}
        )
        if "--system" not in seen:
            raise ValueError("not a system account")
        if len(args) != 1:
            raise ValueError("expected one name")
        primary = opts.get("--gid")
        own_group = primary is None and "--no-user-group" not in seen
        return AccountCall(
            source,
            text,
            "user",
            user=args[0],
            group=args[0] if own_group else None,
            primary=primary if primary is not None else (None if own_group else "100"),
            uid=_int(opts.get("--uid"), "uid"),
            home=opts.get("--home-dir", f"/home/{args[0]}"),
            create_home="--create-home" in seen,
            shell=opts.get("--shell", "/bin/sh"),
            gecos=opts.get("--comment", ""),
            member=tuple(g for g in opts.get("--groups", "").split(",") if g),
        )
    raise ValueError(f"{cmd} is not an account command")


def find_calls(packages: Mapping[str, PackageInfo]) -> tuple[list[AccountCall], list[str], set[str]]:
    """Every account call in preinst/postinst scripts, in package-name order; notes and sources not read."""
    calls: list[AccountCall] = []
    notes: list[str] = []
    unhandled: set[str] = set()
    for name in sorted(packages):
        for script in ("preinst", "postinst"):
            text = packages[name].scripts.get(script, "")
            for words in simple_commands(text):
                if words[0] not in COMMANDS:
                    continue
                source = f"{name}/{script}"
                try:
                    calls.append(parse_call(source, words))
                except ValueError as e:
                    notes.append(f"not emulated: {source}: `{' '.join(words)}`: {e}")
                    unhandled.add(source)
    return calls, notes, unhandled


def _free(used: set[int], also: set[int] | None = None) -> int:
    for i in range(FIRST_SYSTEM_ID, LAST_SYSTEM_ID + 1):
        if i not in used and (also is None or i not in also):
            return i
    raise ValueError("no free id left in the system range 100-999")


def _add_member(groups: dict[str, list[str]], names: tuple[str, ...], user: str) -> None:
    missing = [g for g in names if g not in groups]
    if missing:
        raise ValueError(f"group {missing[0]} does not exist")
    for g in names:
        members = [m for m in groups[g][3].split(",") if m]
        if user not in members:
            groups[g][3] = ",".join([*members, user])


def apply_calls(
    passwd: list[list[str]], group: list[list[str]], calls: list[AccountCall]
) -> tuple[list[tuple[str, int, int]], list[str], set[str]]:
    """Apply calls to the rows in place; return homes to create (path, uid, gid), messages, failed sources."""
    homes: list[tuple[str, int, int]] = []
    messages: list[str] = []
    failed: set[str] = set()
    for call in calls:
        users = {r[0]: r for r in passwd}
        groups = {r[0]: r for r in group}
        uids = {int(r[2]) for r in passwd if r[2].isdigit()}
        gids = {int(r[2]) for r in group if r[2].isdigit()}
        try:
            if call.kind == "member":
                assert call.user is not None
                if call.user not in users:
                    raise ValueError(f"user {call.user} does not exist")
                _add_member(groups, call.member, call.user)
                messages.append(f"{call.source}: {call.user} added to {', '.join(call.member)}")
                continue
            if call.kind == "group":
                assert call.group is not None
                if call.group in groups:
                    continue
                gid = call.gid if call.gid is not None else _free(gids)
                if gid in gids:
                    raise ValueError(f"gid {gid} is taken")
                group.append([call.group, "x", str(gid), ""])
                messages.append(f"{call.source}: group {call.group} ({gid})")
                continue
            if call.user in users:
                continue
            if call.group is not None and call.group not in groups:
                if call.uid is None and call.gid is None:
                    uid = gid = _free(uids, gids)
                else:
                    uid = call.uid if call.uid is not None else _free(uids)
                    gid = call.gid if call.gid is not None else _free(gids)
                if gid in gids:
                    raise ValueError(f"gid {gid} is taken")
                group.append([call.group, "x", str(gid), ""])
                groups[call.group] = group[-1]
            else:
                uid = call.uid if call.uid is not None else _free(uids)
                primary = call.group or call.primary or "nogroup"
                if primary.isdigit():
                    gid = int(primary)
                elif primary in groups:
                    gid = int(groups[primary][2])
                else:
                    raise ValueError(f"group {primary} does not exist")
            if uid in uids:
                raise ValueError(f"uid {uid} is taken")
            assert call.user is not None
            _add_member(groups, call.member, call.user)
            passwd.append([call.user, "x", str(uid), str(gid), call.gecos, call.home, call.shell])
            if call.create_home:
                homes.append((call.home, uid, gid))
            messages.append(f"{call.source}: user {call.user} ({uid}:{gid}, home {call.home})")
        except ValueError as e:
            messages.append(f"not emulated: {call.source}: `{call.text}`: {e}")
            failed.add(call.source)
    return homes, messages, failed
