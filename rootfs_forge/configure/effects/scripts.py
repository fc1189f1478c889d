"""What became of each maintainer script: emulated by an effect, not needed in an image, or ignored (and why).

:func:`commands` reads the simple commands of a shell script without running it (line continuations,
here-docs, case patterns, function definitions and command substitutions are understood well enough to find
command names); :func:`classify_script` matches them against a table of known commands. Pure: no I/O.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from rootfs_forge.configure.effects.base import Effect


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Commands whose work a minimal image does not need, with the reason shown to the user.
NOT_NEEDED: dict[str, str] = {
    "deb-systemd-helper": "no init system runs in the image",
    "deb-systemd-invoke": "no init system runs in the image",
    "systemctl": "no init system runs in the image",
    "invoke-rc.d": "no init system runs in the image",
    "update-rc.d": "no init system runs in the image",
    "start-stop-daemon": "no init system runs in the image",
    "install-info": "info documentation index",
    "update-menus": "desktop menus",
    "update-mime": "desktop MIME handlers",
    "update-desktop-database": "desktop entries",
    "gtk-update-icon-cache": "desktop icons",
    "update-icon-caches": "desktop icons",
    "update-initramfs": "no kernel or initramfs in the image",
    "mandb": "manual page index",
    "db_version": "debconf: the questions' defaults apply",
    "db_capb": "debconf: the questions' defaults apply",
    "db_get": "debconf: the questions' defaults apply",
    "db_set": "debconf: the questions' defaults apply",
    "db_fset": "debconf: the questions' defaults apply",
    "db_fget": "debconf: the questions' defaults apply",
    "db_metaget": "debconf: the questions' defaults apply",
    "db_input": "debconf: the questions' defaults apply",
    "db_go": "debconf: the questions' defaults apply",
    "db_stop": "debconf: the questions' defaults apply",
    "db_purge": "debconf: the questions' defaults apply",
    "db_reset": "debconf: the questions' defaults apply",
    "db_register": "debconf: the questions' defaults apply",
    "db_unregister": "debconf: the questions' defaults apply",
    "db_subst": "debconf: the questions' defaults apply",
    "db_title": "debconf: the questions' defaults apply",
    "dpkg-maintscript-helper": "migrates conffiles and links of older versions, none on a first install",
    "dpkg-trigger": "triggers are emulated by the effects of the packages that own them",
    "py3compile": "Python byte-code is an optional cache",
    "py3clean": "Python byte-code is an optional cache",
    "pycompile": "Python byte-code is an optional cache",
    "pyclean": "Python byte-code is an optional cache",
    "fc-cache": "font cache",
    "update-fonts-dir": "X font indexes",
    "update-fonts-alias": "X font indexes",
    "update-fonts-scale": "X font indexes",
    "update-catalog": "SGML catalogs",
    "update-xmlcatalog": "XML catalogs",
    "dpkg-statoverride": "the layer records owners and modes itself",
    "pypy3compile": "Python byte-code is an optional cache",
    "pypy3clean": "Python byte-code is an optional cache",
    "sysctl": "kernel settings belong to the host",
    "update-binfmts": "binfmt_misc belongs to the host kernel",
    "telinit": "no init system runs in the image",
    "dbus-send": "no system bus runs while the image is built",
    "notify-reboot-required": "nothing to reboot",
}
# Commands that only read, test or print: they change nothing on their own.
HARMLESS = _names("""
    : . [ [[ ]] true false test echo printf set exit return local export unset shift read cd trap wait break
    continue type command hash getopts source umask eval exec which grep egrep fgrep cut tr sort uniq head
    tail
    basename dirname readlink realpath stat cmp diff find id getent uname dpkg dpkg-query dpkg-realpath
    dpkg-architecture wc awk sed expr seq sleep ls env md5sum sha256sum date printenv whoami logger ischroot
    pidof runlevel mountpoint who getcap apt-config mktemp
""")
# Commands that change the system and that no effect stands in for (unless a whole script is).
CHANGES = _names("""
    cp mv rm ln mkdir rmdir chmod chown chgrp touch install tee cat dd tar patch mknod setcap
    adduser addgroup useradd groupadd usermod groupmod deluser delgroup userdel groupdel chpasswd
    locale-gen update-locale update-passwd ucf ucfr dpkg-divert add-shell remove-shell update-shells
""") | {"sed -i"}
KEYWORDS = _names("if then else elif fi do done while until for in case esac ! { } function time select")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
# A shell function's header: ``name()``, ``function name()`` or ``function name``, then an optional ``{``; the
# name is group 1 or 2. (The literal-script planner takes a line that holds no more than this for a header.)
FUNCTION_HEADER = re.compile(
    r"^\s*(?:function\s+([A-Za-z_][A-Za-z0-9_-]*)(?:\s*\(\))?|([A-Za-z_][A-Za-z0-9_-]*)\s*\(\))\s*\{?"
)
_CASE_PATTERN = re.compile(r"^\s*\(?[^()=;\s][^()=;]*\)(?!\))")
_COMMENT = re.compile(r"(?:^|(?<=[\s;&|]))#.*$")
_COMMAND_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+:@-]*$|^\[\[?$|^[.:]$")
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)  # a word that sets a variable: name, value
_SPLIT = frozenset({";", ";;", "&", "&&", "|", "||", "(", ")", "{", "}"})
_REDIRECT = frozenset({"<", ">", ">>", "<<", ">&", "<&", "&>", ">|", "<>"})


@dataclass(frozen=True, slots=True)
class ScriptVerdict:
    """The fate of one maintainer script. ``status``: emulated | not-needed | ignored."""

    package: str
    script: str
    status: str
    reason: str
    effects: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "package": self.package,
            "script": self.script,
            "status": self.status,
            "reason": self.reason,
            "effects": list(self.effects),
            "commands": list(self.commands),
        }


HEREDOC_BODY = "\x00"  # with keep_heredocs: separates a here-document's line from its body


def _logical_lines(text: str, keep_functions: bool = False,
                   keep_heredocs: bool = False) -> tuple[list[str], set[str]]:
    """Lines with continuations joined and here-doc bodies removed; and the names of functions defined. A
    function's header (``name() {``) is cut off its line, unless ``keep_functions``: a reader that must know
    where a function body starts (the literal-script planner, whose bodies run only where called) keeps it.
    ``keep_heredocs`` keeps a here-document's redirection on its line, followed by ``HEREDOC_BODY`` and the
    body's raw lines (each ending in a newline)."""
    lines: list[str] = []
    functions: set[str] = set()
    pending = ""
    terminator: str | None = None
    for raw in text.split("\n"):
        if terminator is not None:
            if raw.strip() == terminator:
                terminator = None
            elif keep_heredocs:
                lines[-1] += raw + "\n"
            continue
        line = pending + _COMMENT.sub("", raw)
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        m = _HEREDOC.search(line)
        if m:
            terminator = m.group(2)
            line = line + HEREDOC_BODY if keep_heredocs else line[: m.start()]
        f = FUNCTION_HEADER.match(line)
        if f:
            functions.add(f.group(1) or f.group(2))
            if not keep_functions:
                line = line[f.end() :]
        lines.append(line)
    return lines, functions


def _tokens(line: str) -> list[str]:
    line = line.replace("$(", " ( ").replace("`", " ` ")
    words = split_words(line)
    if words is None:
        words = _shlex_words(line)
    return ["(" if t == "`" else t for t in words] if words is not None else line.split()


def _shlex_words(line: str) -> list[str] | None:
    """The reference tokeniser: POSIX shlex, splitting on whitespace and runs of ``;&|()<>``."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
    lex.whitespace_split = True
    lex.commenters = ""
    try:
        return list(lex)
    except ValueError:
        return None


# The same split as _shlex_words, by regular expressions: shlex reads one character at a time in Python and cost
# most of the effects' time (85 scripts in the essential set). Anything these patterns do not cover (an open
# quote, a trailing backslash) gives None and goes to shlex; tests check both agree wherever this answers.
_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[;&|()<>]+")
_WORD = re.compile(r"""(?:[^\s;&|()<>'"\\]+|'[^']*'|"(?:[^"\\]|\\.)*"|\\.)+""", re.S)
_SEGMENT = re.compile(r"""[^'"\\]+|'([^']*)'|"((?:[^"\\]|\\.)*)"|\\(.)""", re.S)
_DQUOTE_ESCAPE = re.compile(r'\\([\\"])')
_BALANCED = re.compile(r"""(?:[^'"\\]|\\.|'[^']*'|"(?:[^"\\]|\\.)*")*""", re.S)


def split_words(line: str) -> list[str] | None:
    """``line`` split like POSIX shlex with punctuation ``;&|()<>`` (quotes removed), or None (pure)."""
    out: list[str] = []
    pos, end = 0, len(line)
    while pos < end:
        m = _SPACE.match(line, pos)
        if m is None:
            m = _PUNCT.match(line, pos)
            if m is None:
                m = _WORD.match(line, pos)
                if m is None:
                    return None
                out.append(_unquote(m.group(0)))
            else:
                out.append(m.group(0))
        pos = m.end()
    return out


def _unquote(word: str) -> str:
    if "'" not in word and '"' not in word and "\\" not in word:
        return word
    parts = []
    for m in _SEGMENT.finditer(word):
        single, double, escaped = m.groups()
        if single is not None:
            parts.append(single)
        elif double is not None:
            parts.append(_DQUOTE_ESCAPE.sub(r"\1", double))
        elif escaped is not None:
            parts.append(escaped)
        else:
            parts.append(m.group(0))
    return "".join(parts)


def commands(text: str) -> list[str]:
    """Command names (basenames) a shell script runs, in order of appearance, without repeats (pure).

    ``sed -i`` is named as such: unlike ``sed`` it changes files.
    """
    seen: dict[str, None] = {}
    for words in simple_commands(text):
        name = words[0]
        if name == "sed" and any(w.startswith(("-i", "--in-place")) for w in words[1:]):
            name = "sed -i"
        seen.setdefault(name, None)
    return list(seen)


def simple_commands(text: str) -> list[list[str]]:
    """The simple commands of a shell script: the command's basename, then its words (pure).

    Several effects and the classifier read the same scripts; the tokenising (shlex) is done once per text.
    """
    return [list(words) for words in _simple_commands(text)]


@functools.lru_cache(maxsize=1024)
def _simple_commands(text: str) -> tuple[tuple[str, ...], ...]:
    lines, functions = _logical_lines(text)
    found: list[list[str]] = []
    buffer = ""
    for line in lines:
        buffer += line
        if not _BALANCED.fullmatch(buffer):  # an open quote: the string goes on over the next line
            buffer += "\n"
            continue
        text_line, buffer = buffer, ""
        for piece in text_line.split("\n"):
            piece = _CASE_PATTERN.sub(" ", piece, count=1)
            current: list[str] | None = None
            outer: list[list[str] | None] = []  # commands waiting for a $( … ) to close
            skip_next = False
            for tok in _tokens(piece):
                if skip_next:
                    skip_next = False
                    continue
                if tok == "(":
                    outer.append(current)
                    current = None
                    continue
                if tok == ")":
                    current = outer.pop() if outer else None
                    continue
                if tok in _SPLIT:
                    current = None
                    continue
                if tok in _REDIRECT or (tok[:-1].isdigit() and tok[-1:] in "<>"):
                    skip_next = True
                    continue
                if current is not None:
                    current.append(tok)
                    continue
                if tok in ("for", "select", "case"):
                    current = []  # the loop variable, the words and the subject are not commands
                    continue
                if tok in KEYWORDS or ASSIGNMENT.match(tok) or tok.startswith("-"):
                    continue
                name = tok.rsplit("/", 1)[-1]
                current = [name]
                if _COMMAND_NAME.match(name) and name not in functions:
                    found.append(current)
    return tuple(tuple(words) for words in found)


def classify_script(
    package: str,
    script: str,
    text: str,
    effects_applied: Iterable[Effect],
    known: Iterable[Effect] = (),
    unhandled: Collection[str] = (),
) -> ScriptVerdict:
    """Say what became of ``package``'s ``script`` given the effects that ran (pure).

    ``known`` lists every effect, so that a command an effect would cover, had it run, is named as such.
    ``unhandled`` holds ``pkg/script`` keys where an applied effect met a call of its commands it could not
    emulate: there, those commands count as ignored.
    """
    applied = list(effects_applied)
    key = f"{package}/{script}"
    whole = sorted(e.name for e in applied if key in e.scripts)
    if whole:
        return ScriptVerdict(package, script, "emulated", f"stood in for by {', '.join(whole)}", tuple(whole))
    if script in ("prerm", "postrm"):
        return ScriptVerdict(package, script, "not-needed", "runs only on upgrade or removal")
    if script == "config":
        return ScriptVerdict(package, script, "not-needed", "debconf questions: their defaults apply")
    if script == "triggers":  # not a script: the trigger interests and activations dpkg reads
        if any(e.name == "triggers" for e in applied):
            return ScriptVerdict(package, script, "emulated", "interests recorded by triggers", ("triggers",))
        return ScriptVerdict(package, script, "not-needed", "trigger interests: only dpkg reads them")
    by_command = {c: e.name for e in applied for c in e.commands}
    would = {c: e.name for e in known for c in e.commands if c not in by_command}
    names = commands(text)
    emulated: dict[str, None] = {}
    reasons: dict[str, None] = {}
    ignored: list[str] = []
    for name in names:
        if name in by_command and key in unhandled:
            ignored.append(f"{name} (effect {by_command[name]} could not emulate a call)")
        elif name in by_command:
            emulated.setdefault(by_command[name], None)
        elif name in would:
            ignored.append(f"{name} (effect {would[name]} did not run)")
        elif name in NOT_NEEDED:
            reasons.setdefault(f"{name}: {NOT_NEEDED[name]}", None)
        elif name in HARMLESS:
            continue
        elif name in CHANGES:
            ignored.append(name)
        else:
            ignored.append(f"{name} (unknown)")
    effects = tuple(emulated)
    cmds = tuple(names)
    if ignored:
        reason = "not emulated: " + ", ".join(ignored)
        if effects:
            reason += f"; the rest by {', '.join(effects)}"
        return ScriptVerdict(package, script, "ignored", reason, effects, cmds)
    if effects:
        return ScriptVerdict(package, script, "emulated", f"by {', '.join(effects)}", effects, cmds)
    if reasons:
        return ScriptVerdict(package, script, "not-needed", "; ".join(reasons), (), cmds)
    return ScriptVerdict(package, script, "not-needed", "changes nothing on a first install", (), cmds)
