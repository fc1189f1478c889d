"""Maintainer-script commands with literal arguments, applied in the root as a first ``postinst configure`` would.

Many postinsts only run ``mkdir -p``, ``ln -s[f]``, ``chmod``, ``chown``, ``touch``, ``cp``, ``install -d`` or
``rm -f`` on fixed paths (nginx-common links sites-enabled/default and makes /var/www/html). :func:`plan` reads a
script line by line without running anything: ``case "$1"`` takes the ``configure`` branch; an ``if`` whose
test is made only of ``[ -z "$2" ]`` (a first install), ``[ "$1" = configure ]`` and file tests on literal
paths (``-e -f -d -L -x``, checked against the tree as it is at that point) is decided; every other condition,
loop or function body leaves the commands in it "ignored" with the reason, as are commands with a variable
(``$DPKG_ROOT`` is empty in a normal install and is dropped), a glob, a pipe or ``&&``/``||``.

Commands are applied through the tree's writer (:class:`RootDir`): paths are resolved inside the root, a link
is never followed out of it, the host is never touched. Each one applied is listed in the effect's messages.
The recipe's ``literal_scripts = false`` turns this off.
"""

from __future__ import annotations

import functools
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass

from rootfs_forge.configure.effects.base import Effect, EffectContext, EffectResult
from rootfs_forge.configure.effects.scripts import _logical_lines, split_words
from rootfs_forge.configure.effects.tree import Change, RootDir
from rootfs_forge.errors import RootfsError
from rootfs_forge.util.passwd import ids

COMMANDS = ("mkdir", "ln", "chmod", "chown", "touch", "cp", "install", "rm")
_DPKG_ROOT = re.compile(r'"\$DPKG_ROOT"|"\$\{DPKG_ROOT\}"|\$\{DPKG_ROOT\}|\$DPKG_ROOT')
_UNSAFE = re.compile(r"[$`*?\[\]~{}]")
_CASE_ARG1 = re.compile(r'^case\s+"?\$(?:1|\{1\})"?\s+in\s*$')
_PATTERN = re.compile(r"^\(?\s*([^()]+?)\s*\)\s*(.*)$")
_OCTAL = re.compile(r"^[0-7]{3,4}$")
_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_MENTIONS = re.compile(r"(?<![\w.-])(?:mkdir|ln|chmod|chown|touch|cp|install|rm|umask)(?![\w.-])")


@dataclass(frozen=True, slots=True)
class Step:
    """One command of a script: ``words`` to apply, or ``reason`` why it stays ignored."""

    words: tuple[str, ...]
    reason: str = ""


class _Frame:
    __slots__ = ("decided", "kind", "reason", "taken")

    def __init__(self, kind: str, taken: bool | None, reason: str = "") -> None:
        self.kind = kind  # case1 | case | if | loop | func
        self.taken = taken  # True, False, or None (undecidable: ``reason``)
        self.reason = reason
        self.decided = bool(taken)  # an if/case branch already taken: later branches are not


def _test(words: list[str], exists: Callable[[str, str], bool]) -> bool | None:
    """``[ ... ]`` / ``test ...`` on a first install, or None when it cannot be decided."""
    neg = False
    words = _strip_tolerated(words) if words else words
    while words and words[0] == "!":
        neg, words = not neg, words[1:]
    if words[:2] == ["dpkg-statoverride", "--list"] and len(words) == 3:
        return neg  # a composed image has no overrides (its statoverride file is empty): never listed
    if words[:2] == ["dpkg", "--compare-versions"] and len(words) == 5 and words[2] in ("$2", "${2}", ""):
        # a first install compares the empty version: earlier than any (lt, le, ne, <<), except for the -nl forms
        first = {"lt": True, "le": True, "ne": True, "<<": True, "<=": True, "gt": False, "ge": False,
                 "eq": False, ">>": False, ">=": False, "lt-nl": False, "le-nl": False, "gt-nl": True,
                 "ge-nl": True}.get(words[3])
        return None if first is None else first != neg
    if words[:1] in (["["], ["[["]):
        words = words[1:-1] if words[-1:] in (["]"], ["]]"]) else []
    elif words[:1] == ["test"]:
        words = words[1:]
    else:
        return None
    while words and words[0] == "!":
        neg, words = not neg, words[1:]
    if "-a" in words:  # [ A -a B ]
        i = words.index("-a")
        left, right = _test(["[", *words[:i], "]"], exists), _test(["[", *words[i + 1:], "]"], exists)
        both = False if False in (left, right) else (None if None in (left, right) else True)
        return None if both is None else both != neg
    value: bool | None = None
    if len(words) == 3 and words[0] in ("$2", "${2}") and words[1] in ("=", "!=") and words[2] == "":
        value = words[1] == "="
    elif len(words) == 2 and words[1] in ("$2", "${2}"):
        value = {"-z": True, "-n": False}.get(words[0])
    elif len(words) == 3 and words[0] in ("$1", "${1}") and words[1] in ("=", "==", "!=") \
            and not _UNSAFE.search(words[2]):
        value = (words[2] == "configure") == (words[1] != "!=")
    elif len(words) == 2 and words[0] in ("-e", "-f", "-d", "-L", "-h", "-x") and _literal_path(words[1]):
        value = exists(words[0], words[1])
    if value is None:
        return None
    return value != neg


def _condition(text: str, exists: Callable[[str, str], bool]) -> bool | None:
    words = split_words(_DPKG_ROOT.sub("", text))
    if words is None:
        return None
    result: bool | None = None
    op = ""
    atom: list[str] = []
    for w in [*words, "&&"]:
        if w not in ("&&", "||", ";"):
            atom.append(w)
            continue
        if w == ";" and not atom:
            continue
        value = _test(atom, exists)
        atom = []
        if op == "":
            result = value
        elif op == "&&":
            result = False if result is False or value is False else (None if None in (result, value) else True)
        else:
            result = True if result is True or value is True else (None if None in (result, value) else False)
        op = w
    return result


def _literal_path(word: str) -> bool:
    return word.startswith("/") and not _UNSAFE.search(word) and "\x00" not in word


@functools.lru_cache(maxsize=256)
def _joined_lines(text: str) -> tuple[str, ...]:
    """The script's logical lines; a list ending in && or || goes on over the next line."""
    lines: list[str] = []
    for raw in _logical_lines(text)[0]:
        if lines and lines[-1].rstrip().endswith(("&&", "||", "|")):
            lines[-1] = lines[-1].rstrip() + " " + raw.strip()
        else:
            lines.append(raw)
    return tuple(lines)


def plan(text: str, exists: Callable[[str, str], bool]) -> list[Step]:
    """The commands of ``COMMANDS`` a first ``configure`` run of the script ``text`` would run, in order, each
    with the words to apply or the reason it is ignored. ``exists(test, path)`` answers file tests against the
    tree at the time (pure given ``exists``)."""
    lines = _joined_lines(text)
    stack: list[_Frame] = []
    steps: list[Step] = []
    env: dict[str, str | None] = {}  # variables assigned a literal value (None: assigned, value unknown)

    def subst(line: str) -> str:
        """``line`` with the script's literal variables replaced by their values (others left as they are)."""
        def one(m: re.Match[str]) -> str:
            value = env.get(m.group(1) or m.group(2))
            return value if value is not None else m.group(0)
        return _REFERENCE.sub(one, line)

    def assign(line: str) -> bool:
        """Record ``NAME=value[; NAME=value]`` lines; True when ``line`` was only assignments."""
        words = split_words(line)
        if not words or not all(w == ";" or _ASSIGNMENT.match(w) for w in words) or line.lstrip().startswith(";"):
            return False
        active, reason = state()
        if not active:
            return True
        for w in words:
            m = _ASSIGNMENT.match(w)
            if m is not None:
                value = subst(m.group(2))
                env[m.group(1)] = None if reason or _UNSAFE.search(value) or "\\" in value else value
        return True

    def state() -> tuple[bool, str]:
        reason = ""
        for f in stack:
            if f.taken is False:
                return False, ""
            if f.taken is None and not reason:
                reason = f.reason
        return True, reason

    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if re.match(r"^[A-Za-z_][A-Za-z0-9_-]*\s*\(\)\s*\{?\s*$", raw.strip()) or (
                stack and stack[-1].kind == "funcopen"):
            if stack and stack[-1].kind == "funcopen" and line.startswith("{"):
                stack[-1].kind = "func"
                continue
            stack.append(_Frame("func" if line.endswith("{") else "funcopen", False))
            continue
        if stack and stack[-1].kind == "func":
            if line == "}":
                stack.pop()
            else:  # the body runs only where the function is called: its commands stay ignored
                words = split_words(line) or []
                if words and words[0].rsplit("/", 1)[-1] in COMMANDS:
                    steps.append(Step(tuple(words), "in a shell function"))
            continue
        if _CASE_ARG1.match(line):
            stack.append(_Frame("case1", False))
            continue
        if re.match(r"^case\b.*\bin\s*$", line):
            stack.append(_Frame("case", None, "under a case on a value only known when the script runs"))
            continue
        if line == "esac" or line.startswith("esac"):
            if stack and stack[-1].kind in ("case1", "case"):
                stack.pop()
            continue
        if stack and stack[-1].kind in ("case1", "case"):
            frame = stack[-1]
            body = line
            if line == ";;":
                frame.taken = False if frame.kind == "case1" else frame.taken
                continue
            m = _PATTERN.match(line)
            if m and (frame.taken is False or frame.kind == "case") and not line.startswith(("if ", "[")):
                pats = [p.strip().strip("'\"") for p in m.group(1).split("|")]
                if frame.kind == "case1":
                    frame.taken = (not frame.decided) and ("configure" in pats or "*" in pats)
                    frame.decided = frame.decided or bool(frame.taken)
                body = m.group(2).strip()
                if not body:
                    continue
            line = body
            if line.endswith(";;"):
                line = line[:-2].strip()
                if not assign(line):
                    steps += _simple(subst(line), state(), exists)
                if frame.kind == "case1":
                    frame.taken = False
                continue
        one = re.match(r"^if\s+(.*?);\s*then\s+(.*?);?\s*fi\s*;?$", line)
        if one:  # if COND; then CMD; CMD; fi on one line
            value = _condition(subst(one.group(1)), exists)
            if value is not False:
                stack.append(_Frame("if", value, f"under the condition `{one.group(1)}`"))
                for part in one.group(2).split(";"):
                    if part.strip() and not assign(part):
                        steps += _simple(subst(part), state(), exists)
                stack.pop()
            continue
        if re.match(r"^(if|elif|while|until|for)\b.*;\s*(then|do)\s+\S", line):
            stack.append(_Frame("loop", None, "in a loop or condition on one line"))
            for part in line.split(";"):
                part = re.sub(r"^\s*(?:do|then|else)\s+", "", part)
                if part.strip() and not re.match(r"^\s*(if|elif|while|until|for|done|fi)\b", part):
                    steps += _simple(subst(part), state(), exists)
            stack.pop()
            continue
        m = re.match(r"^(if|elif)\s+(.*?)\s*(?:;\s*then)?\s*$", line)
        if m:
            cond_text = m.group(2)
            if m.group(1) == "if":
                value = _condition(subst(cond_text), exists)
                stack.append(_Frame("if", value, f"under the condition `{cond_text}`"))
            elif stack and stack[-1].kind == "if":
                f = stack[-1]
                if f.decided:
                    f.taken = False
                else:
                    value = _condition(subst(cond_text), exists)
                    f.taken, f.reason = value, f"under the condition `{cond_text}`"
                    f.decided = f.decided or bool(value)
            continue
        if line in ("then", "do"):
            continue
        if line == "else" and stack and stack[-1].kind == "if":
            f = stack[-1]
            f.taken = None if f.taken is None and not f.decided else not f.decided
            f.reason = f.reason or "under an else branch"
            continue
        if line.startswith("fi") and stack and stack[-1].kind == "if":
            stack.pop()
            continue
        if re.match(r"^(while|until|for|select)\b", line):
            stack.append(_Frame("loop", None, "in a loop"))
            continue
        if line.startswith("done") and stack and stack[-1].kind == "loop":
            stack.pop()
            continue
        active, _ = state()
        if active and not stack and re.match(r"^exit\b", line):
            break
        if not assign(line):
            steps += _simple(subst(line), state(), exists)
    return steps


def _strip_tolerated(words: list[str]) -> list[str]:
    """``cmd 2>/dev/null || true`` is ``cmd``: drop redirections to /dev/null and a trailing ``|| true``."""
    if words[-2:] in (["||", "true"], ["||", ":"]):
        words = words[:-2]
    out: list[str] = []
    i = 0
    while i < len(words):
        if words[i] in (">", ">>") and i + 1 < len(words) and words[i + 1] == "/dev/null":
            if out and out[-1].isdigit() and len(out) > 1:
                out.pop()
            i += 2
            continue
        out.append(words[i])
        i += 1
    return out


def _simple(line: str, state: tuple[bool, str], exists: Callable[[str, str], bool]) -> list[Step]:
    active, reason = state
    if not active or not _MENTIONS.search(line):
        return []
    words = split_words(_DPKG_ROOT.sub("", line))
    if not words:
        return []
    words = _strip_tolerated(words)
    for op in ("||", "&&"):  # `[ -d X ] || mkdir X`: a decidable test guarding one command
        if words.count(op) == 1 and words.count("||" if op == "&&" else "&&") == 0 and "|" not in words:
            i = words.index(op)
            test, rest = words[:i], words[i + 1:]
            if rest and rest[0].rsplit("/", 1)[-1] in COMMANDS and test[:1] in (["["], ["test"], ["!"]):
                value = _test(test, exists)
                if value is None:
                    reason = reason or f"under the condition `{' '.join(test)}`"
                elif value == (op == "||"):
                    return []
                words = rest
    if words[0] == "umask" and len(words) == 2 and _OCTAL.match(words[1].rjust(3, "0")):
        return [] if reason else [Step(("umask", words[1].rjust(3, "0")))]
    if words[0].rsplit("/", 1)[-1] not in COMMANDS:
        if any(w.rsplit("/", 1)[-1] in COMMANDS for w in words[1:]) and \
                any(w in ("|", "&&", "||") for w in words):
            name = next(w for w in words[1:] if w.rsplit("/", 1)[-1] in COMMANDS)
            return [Step((name,), "in a pipe or a && / || list")]
        return []
    name = words[0].rsplit("/", 1)[-1]
    if any(w in ("|", "&&", "||", "&", "(", ")", ">", ">>", "<", "2>", ";") for w in words) or \
            any(re.match(r"^\d?[<>]", w) for w in words[1:]):
        return [Step((name, *words[1:]), "in a pipe, a list or with a redirection")]
    if reason:
        return [Step((name, *words[1:]), reason)]
    if any(_UNSAFE.search(w) for w in words[1:]):
        return [Step((name, *words[1:]), "an argument is not literal (a variable or a glob)")]
    return [Step((name, *words[1:]))]


# -- applying ------------------------------------------------------------------------------------------------

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

    def run(self, words: tuple[str, ...]) -> str:
        """Apply one command; '' when done, else why it was not."""
        name, args = words[0], list(words[1:])
        flags = [a for a in args if a.startswith("-") and a != "-"]
        handler = getattr(self, f"_{name}")
        result: str = handler(flags, args)
        return result

    def _mkdir(self, flags: list[str], args: list[str]) -> str:
        mode, rest = 0o777 & ~self.umask, []
        it = iter(args)
        for a in it:
            if a in ("-m", "--mode"):
                m = next(it, "")
                if not _OCTAL.match(m):
                    return f"mode {m!r} is not octal"
                mode = int(m, 8)
            elif a.startswith("-m") and _OCTAL.match(a[2:]):
                mode = int(a[2:], 8)
            elif a in ("-p", "--parents", "-v"):
                continue
            elif a.startswith("-"):
                return f"option {a} is not emulated"
            else:
                rest.append(a)
        parents = "-p" in flags or "--parents" in flags
        if not all(_literal_path(p) for p in rest):
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
        mode, owner, group, rest = 0o755, "", "", []
        it = iter(args)
        for a in it:
            if a in ("-m", "--mode"):
                m = next(it, "")
                if not _OCTAL.match(m):
                    return f"mode {m!r} is not octal"
                mode = int(m, 8)
            elif a in ("-o", "--owner"):
                owner = next(it, "")
            elif a in ("-g", "--group"):
                group = next(it, "")
            elif a in ("-d", "--directory", "-v"):
                continue
            elif a.startswith("-"):
                return f"option {a} is not emulated"
            else:
                rest.append(a)
        who = self._ids(f"{owner}:{group}") if owner or group else (0, 0)
        if who is None:
            return f"unknown owner {owner}:{group}"
        if not all(_literal_path(p) for p in rest):
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
        if len(rest) != 2 or _UNSAFE.search(rest[0]) or not _literal_path(rest[1]):
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
        if len(args) < 2 or not _OCTAL.match(args[0]):
            return "only an octal mode is emulated"
        for path in args[1:]:
            if not _literal_path(path):
                return "a path is not absolute"
            if not self.tree.lexists(path):
                return f"{path} does not exist"
            _, uid, gid = self._meta(path)
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
        for path in args[1:]:
            if not _literal_path(path):
                return "a path is not absolute"
            if not self.tree.lexists(path):
                return f"{path} does not exist"
            mode, uid, gid = self._meta(path)
            self.changed.append(self.tree.chmod(path, mode, who[0] if who[0] >= 0 else uid,
                                                who[1] if who[1] >= 0 else gid))
        return ""

    def _touch(self, flags: list[str], args: list[str]) -> str:
        if flags:
            return f"option {flags[0]} is not emulated"
        if not all(_literal_path(p) for p in args):
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
        if not _literal_path(src) or not _literal_path(dest):
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
            if not _literal_path(path):
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
    for name in sorted(ctx.packages):
        for script, body in ctx.packages[name].scripts.items():  # only first-install postinsts are read
            if script == "preinst" and _MENTIONS.search(body):
                unhandled.append(f"{name}/{script}")
        text = ctx.packages[name].scripts.get("postinst")
        key = f"{name}/postinst"
        if not text or key in covered or not _MENTIONS.search(text):
            continue
        runner.umask = 0o022
        for step in plan(text, exists):
            missing = _missing_static_account(tree, step.words, ctx.has("base-passwd"))
            if missing and f"{key}:{missing}" not in noted:
                noted.add(f"{key}:{missing}")
                messages.append(f"{key}: needs the account {missing}, which base-passwd makes: add base-passwd "
                                "to the packages")
            shown = " ".join(step.words)
            reason = step.reason
            if not reason:
                try:
                    reason = runner.run(step.words)
                except RootfsError as exc:
                    reason = str(exc)
            if reason:
                unhandled.append(key)
                messages.append(f"{key}: ignored `{shown}`: {reason}")
            else:
                messages.append(f"{key}: {shown}")
    return EffectResult(tuple(runner.changed), tuple(messages), unhandled=tuple(dict.fromkeys(unhandled)))


EFFECT = Effect(
    name="literal-scripts",
    summary="postinst commands with literal arguments (mkdir, ln -s, chmod, chown, touch, cp, install -d, rm -f)",
    apply=apply,
    commands=COMMANDS,
)
