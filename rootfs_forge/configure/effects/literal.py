"""Maintainer-script commands with literal arguments, applied in the root as a first ``postinst configure`` would.

Many postinsts only run ``mkdir -p``, ``ln -s[f]``, ``chmod``, ``chown``, ``touch``, ``cp``, ``install -d`` or
``rm -f`` on fixed paths (nginx-common links sites-enabled/default and makes /var/www/html).
:func:`~rootfs_forge.configure.effects.literal_plan.plan` decides, without running anything, which of them a
first install runs and which stay ignored (and why).

A first install's preinst (``case "$1"`` takes ``install``) is read the same way, but only its ``mkdir`` and
``touch`` are applied (python3.X-minimal's ``touch /var/lib/python/python3.X_installed``): it runs before its
package is unpacked, so a removal or a link there could undo what the package ships.

Commands are applied through the tree's writer (:class:`RootDir`): paths are resolved inside the root, a link
is never followed out of it, the host is never touched. Each one applied is listed in the effect's messages.
The recipe's ``literal_scripts = false`` turns this off.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

from rootfs_forge.configure.effects.base import EffectContext, EffectResult, effect
from rootfs_forge.configure.effects.literal_plan import (
    COMMANDS,
    MENTIONS,
    OCTAL,
    UNSAFE,
    literal_path,
    plan,
)
from rootfs_forge.configure.effects.tree import Change, RootDir
from rootfs_forge.errors import RootfsError
from rootfs_forge.util.passwd import ids

PREINST_COMMANDS = ("mkdir", "touch")  # what a first install's preinst may add without undoing the unpack


class _NotEmulated(Exception):
    """A command :class:`_Apply` does not emulate; the message says why (the step stays ignored)."""


def _options(args: list[str], valued: dict[str, str], ignored: tuple[str, ...],
             *, joined_mode: bool) -> tuple[dict[str, str], list[str]]:
    """The options of ``mkdir``/``install``: ``valued`` maps an option taking a value to its key (a mode must be
    octal; ``-m0755`` too when ``joined_mode``), ``ignored`` ones are dropped; (values, operands). Raises
    :class:`_NotEmulated` with the reason an option is not."""
    values: dict[str, str] = {}
    rest: list[str] = []
    it = iter(args)
    for a in it:
        if a in valued:
            values[valued[a]] = value = next(it, "")
            if valued[a] == "mode" and not OCTAL.match(value):
                raise _NotEmulated(f"mode {value!r} is not octal")
        elif joined_mode and a.startswith("-m") and OCTAL.match(a[2:]):
            values["mode"] = a[2:]
        elif a in ignored:
            continue
        elif a.startswith("-"):
            raise _NotEmulated(f"option {a} is not emulated")
        else:
            rest.append(a)
    return values, rest


class _Apply:
    def __init__(self, tree: RootDir) -> None:
        self.tree = tree
        self.changed: list[Change] = []
        self.umask = 0o022  # each script starts with dpkg's

    def _umask(self, flags: list[str], args: list[str]) -> str:
        self.umask = int(args[0], 8)
        return ""

    def _ids(self, owner: str) -> tuple[int, int] | None:
        user, _, group = owner.replace(".", ":", 1).partition(":") if ":" not in owner else owner.partition(":")
        users = ids(self.tree.read_bytes("/etc/passwd").decode(), 7) if self.tree.is_file("/etc/passwd") else {}
        groups = ids(self.tree.read_bytes("/etc/group").decode(), 4) if self.tree.is_file("/etc/group") else {}
        uid = int(user) if user.isdigit() else users.get(user) if user else None
        if user and uid is None:
            return None
        gid = int(group) if group.isdigit() else groups.get(group) if group else None
        if group and gid is None:
            return None
        return (uid if uid is not None else -1, gid if gid is not None else -1)

    def _meta(self, path: str) -> tuple[int, int, int]:
        entry = self.tree.fs.lookup(path, follow=True)
        if entry is None:
            raise RootfsError("change", path, "no such file or directory")
        return entry.mode, entry.uid, entry.gid

    def _existing(self, paths: list[str]) -> Iterator[tuple[str, int, int, int]]:
        """Each of ``paths`` with its mode, uid and gid, as long as it is absolute and exists (else
        :class:`_NotEmulated`: the paths before it are already done, as the command would have)."""
        for path in paths:
            if not literal_path(path):
                raise _NotEmulated("a path is not absolute")
            if not self.tree.lexists(path):
                raise _NotEmulated(f"{path} does not exist")
            yield (path, *self._meta(path))

    def run(self, words: tuple[str, ...]) -> str:
        """Apply one command; '' when done, else why it was not."""
        name, args = words[0], list(words[1:])
        flags = [a for a in args if a.startswith("-") and a != "-"]
        handler = getattr(self, f"_{name}")
        try:
            result: str = handler(flags, args)
        except _NotEmulated as exc:
            return str(exc)
        return result

    def _cat(self, flags: list[str], args: list[str]) -> str:
        """``cat > FILE <<EOF``: ``args`` is ``[">", FILE, BODY]``. Not through a link (it could lead out of
        the root); an existing file keeps its mode, a new one gets 0666 less the umask."""
        if len(args) != 3 or args[0] != ">" or not literal_path(args[1]):
            return "not a here-document into a literal path"
        path, body = args[1], args[2].encode()
        if self.tree.is_symlink(path):
            return f"{path} is a symbolic link"
        if self.tree.lexists(path) and not self.tree.is_file(path):
            return f"{path} is not a regular file"
        if not self.tree.is_dir(posixpath.dirname(path)):
            return f"the parent of {path} does not exist"
        entry = self.tree.fs.lookup(path, follow=False)
        mode = entry.mode if entry is not None else 0o666 & ~self.umask
        self.changed.append(self.tree.write_file(path, body, mode,
                                                 entry.uid if entry is not None else 0,
                                                 entry.gid if entry is not None else 0))
        return ""

    def _mkdir(self, flags: list[str], args: list[str]) -> str:
        values, rest = _options(args, {"-m": "mode", "--mode": "mode"}, ("-p", "--parents", "-v"), joined_mode=True)
        mode = int(values["mode"], 8) if "mode" in values else 0o777 & ~self.umask
        parents = "-p" in flags or "--parents" in flags
        if not all(literal_path(p) for p in rest):
            return "a path is not absolute"
        for path in rest:
            if self.tree.is_dir(path):
                if not parents:
                    return f"{path} exists"
                continue
            if not parents and not self.tree.is_dir(posixpath.dirname(path)):
                return f"the parent of {path} does not exist"
            if self.tree.lexists(path):
                return f"{path} exists and is not a directory"
            self.changed.append(self.tree.mkdir(path, mode))
        return ""

    def _install(self, flags: list[str], args: list[str]) -> str:
        if "-d" not in flags and "--directory" not in flags:
            return "only install -d is emulated"
        values, rest = _options(args, {"-m": "mode", "--mode": "mode", "-o": "owner", "--owner": "owner",
                                       "-g": "group", "--group": "group"}, ("-d", "--directory", "-v"),
                                joined_mode=False)
        mode, owner, group = int(values.get("mode", "755"), 8), values.get("owner", ""), values.get("group", "")
        who = self._ids(f"{owner}:{group}") if owner or group else (0, 0)
        if who is None:
            return f"unknown owner {owner}:{group}"
        if not all(literal_path(p) for p in rest):
            return "a path is not absolute"
        for path in rest:
            if self.tree.lexists(path) and not self.tree.is_dir(path):
                return f"{path} exists and is not a directory"
            self.changed.append(self.tree.mkdir(path, mode, max(who[0], 0), max(who[1], 0)))
        return ""

    def _ln(self, flags: list[str], args: list[str]) -> str:
        opts = "".join(f[1:] for f in flags if not f.startswith("--"))
        if "s" not in opts or set(opts) - set("sfnTv"):
            return "only symbolic links (ln -s[f]) are emulated"
        rest = [a for a in args if not a.startswith("-")]
        if len(rest) != 2 or UNSAFE.search(rest[0]) or not literal_path(rest[1]):
            return "needs a literal target and an absolute link path"
        target, link = rest
        if self.tree.is_dir(link) and "T" not in opts and "n" not in opts:
            link = posixpath.join(self.tree.resolve(link), posixpath.basename(target))
        elif self.tree.is_dir(link) and self.tree.is_symlink(link) is False:
            return f"{link} is a directory"
        if self.tree.lexists(link):
            if "f" not in opts:
                return f"{link} exists (ln without -f fails)"
            if self.tree.is_dir(link) and not self.tree.is_symlink(link):
                return f"{link} is a directory"
        if not self.tree.is_dir(posixpath.dirname(link)):
            return f"the directory of {link} does not exist"
        self.changed.append(self.tree.symlink(link, target))
        return ""

    def _chmod(self, flags: list[str], args: list[str]) -> str:
        if flags:
            return f"option {flags[0]} is not emulated"
        if len(args) < 2 or not OCTAL.match(args[0]):
            return "only an octal mode is emulated"
        for path, _, uid, gid in self._existing(args[1:]):
            self.changed.append(self.tree.chmod(path, int(args[0], 8), uid, gid))
        return ""

    def _chown(self, flags: list[str], args: list[str]) -> str:
        if flags:
            return f"option {flags[0]} is not emulated"
        if len(args) < 2:
            return "needs an owner and a path"
        who = self._ids(args[0])
        if who is None:
            return f"unknown owner {args[0]}"
        for path, mode, uid, gid in self._existing(args[1:]):
            self.changed.append(self.tree.chmod(path, mode, who[0] if who[0] >= 0 else uid,
                                                who[1] if who[1] >= 0 else gid))
        return ""

    def _chgrp(self, flags: list[str], args: list[str]) -> str:
        """``chgrp GROUP PATH…`` is ``chown :GROUP PATH…``."""
        if len(args) >= 2 and not flags and ":" not in args[0]:
            return self._chown(flags, [f":{args[0]}", *args[1:]])
        return self._chown(flags, args) if flags else "needs a group and a path"

    def _touch(self, flags: list[str], args: list[str]) -> str:
        if flags:
            return f"option {flags[0]} is not emulated"
        if not all(literal_path(p) for p in args):
            return "a path is not absolute"
        for path in args:
            if not self.tree.lexists(path):
                if not self.tree.is_dir(posixpath.dirname(path)):
                    return f"the directory of {path} does not exist"
                self.changed.append(self.tree.write_file(path, b"", 0o666 & ~self.umask))
        return ""

    def _cp(self, flags: list[str], args: list[str]) -> str:
        opts = "".join(f[1:] for f in flags if not f.startswith("--"))
        if set(opts) - set("pfv") or any(f.startswith("--") for f in flags):
            return "only cp [-p] [-f] of a file is emulated"
        rest = [a for a in args if not a.startswith("-")]
        if len(rest) != 2:
            return "only cp of one file is emulated"
        src, dest = rest
        if not literal_path(src) or not literal_path(dest):
            return "a path is not absolute"
        if not self.tree.is_file(src):
            return f"{src} is not a regular file"
        if self.tree.is_dir(dest):
            dest = posixpath.join(self.tree.resolve(dest), posixpath.basename(src))
        elif not self.tree.is_dir(posixpath.dirname(dest)):
            return f"the directory of {dest} does not exist"
        mode, uid, gid = self._meta(src)
        if "p" not in opts:
            uid = gid = 0
            mode &= ~self.umask if not self.tree.lexists(dest) else 0o7777
        self.changed.append(self.tree.write_file(dest, self.tree.read_bytes(src), mode, uid, gid))
        return ""

    def _rm(self, flags: list[str], args: list[str]) -> str:
        opts = "".join(f[1:] for f in flags if not f.startswith("--"))
        if set(opts) - set("fv") or any(f.startswith("--") for f in flags):
            return "only rm [-f] of files is emulated"
        for path in args:
            if path.startswith("-"):
                continue
            if not literal_path(path):
                return "a path is not absolute"
            if self.tree.is_dir(path) and not self.tree.is_symlink(path):
                return f"{path} is a directory"
            if not self.tree.lexists(path) and "f" not in opts:
                return f"{path} does not exist"
            self.tree.remove(path)
        return ""


# The static accounts of base-passwd (Essential: yes, so packages name them without depending on it).
STATIC_ACCOUNTS = frozenset({
    "root", "daemon", "bin", "sys", "adm", "tty", "disk", "lp", "mail", "news", "uucp", "man", "proxy", "kmem",
    "dialout", "fax", "voice", "cdrom", "floppy", "tape", "sudo", "audio", "dip", "www-data", "backup", "operator",
    "list", "irc", "src", "shadow", "utmp", "video", "sasl", "plugdev", "staff", "games", "users", "nogroup",
    "sync", "_apt", "nobody",
})


def _missing_static_account(tree: RootDir, words: tuple[str, ...], has_base_passwd: bool) -> str:
    """The base-passwd account a ``chown`` names that the tree lacks ('' if none or base-passwd is there)."""
    if has_base_passwd or len(words) < 2 or words[0] != "chown":
        return ""
    user, _, group = next((w for w in words[1:] if not w.startswith("-")), "").partition(":")
    users = ids(tree.read_bytes("/etc/passwd").decode(), 7) if tree.is_file("/etc/passwd") else {}
    groups = ids(tree.read_bytes("/etc/group").decode(), 4) if tree.is_file("/etc/group") else {}
    if user in STATIC_ACCOUNTS and user not in users:
        return user
    if group in STATIC_ACCOUNTS and group not in groups:
        return group
    return ""


def _apply_step(runner: _Apply, key: str, shown: str, words: tuple[str, ...], reason: str, unhandled: list[str],
                messages: list[str]) -> None:
    """Apply one planned step unless ``reason`` says why not; report it either way."""
    if not reason:
        try:
            reason = runner.run(words)
        except RootfsError as exc:
            reason = str(exc)
    if reason:
        unhandled.append(key)
        messages.append(f"{key}: ignored `{shown}`: {reason}")
    else:
        messages.append(f"{key}: {shown}")


def _shown(words: tuple[str, ...]) -> str:
    """A step as the report lists it (a here-document by its size, not its text)."""
    if words[:2] == ("cat", ">") and len(words) == 4:
        return f"cat > {words[2]} <<EOF ({len(words[3].encode())} bytes)"
    return " ".join(words)


@effect("literal-scripts",
        "postinst commands with literal arguments (mkdir, ln -s, chmod, chown, touch, cp, install -d, rm -f)",
        commands=COMMANDS)
def apply(ctx: EffectContext) -> EffectResult:
    if not ctx.options.literal_scripts:
        return EffectResult(skipped="literal_scripts = false")
    from rootfs_forge.configure.effects import EFFECTS  # the registry imports this module

    covered = {key for e in EFFECTS for key in e.scripts}
    tree = ctx.tree()
    runner = _Apply(tree)

    def exists(test: str, path: str) -> bool:
        if test in ("-L", "-h"):
            return tree.is_symlink(path)
        if test == "-d":
            return tree.is_dir(path)
        if test in ("-f", "-x"):
            return tree.is_file(path)
        return tree.lexists(path) and (tree.is_file(path) or tree.is_dir(path) or not tree.is_symlink(path))

    messages: list[str] = []
    unhandled: list[str] = []
    noted: set[str] = set()
    for name in sorted(ctx.packages):  # a first install's preinst: only what it adds (it runs before unpacking)
        text = ctx.packages[name].scripts.get("preinst")
        key = f"{name}/preinst"
        if not text or key in covered or not MENTIONS.search(text):
            continue
        runner.umask = 0o022
        for step in plan(text, exists, action="install"):
            reason = step.reason or ("" if step.words[0] in PREINST_COMMANDS else
                                     f"a preinst runs before its package is unpacked: only "
                                     f"{' and '.join(PREINST_COMMANDS)} are applied")
            _apply_step(runner, key, " ".join(step.words), step.words, reason, unhandled, messages)
    for name in sorted(ctx.packages):
        text = ctx.packages[name].scripts.get("postinst")
        key = f"{name}/postinst"
        if not text or key in covered or not (MENTIONS.search(text) or "<<" in text):
            continue
        runner.umask = 0o022
        for step in plan(text, exists):
            missing = _missing_static_account(tree, step.words, ctx.has("base-passwd"))
            if missing and f"{key}:{missing}" not in noted:
                noted.add(f"{key}:{missing}")
                messages.append(f"{key}: needs the account {missing}, which base-passwd makes: add base-passwd "
                                "to the packages")
            _apply_step(runner, key, _shown(step.words), step.words, step.reason, unhandled, messages)
    return EffectResult(tuple(runner.changed), tuple(messages), unhandled=tuple(dict.fromkeys(unhandled)))
