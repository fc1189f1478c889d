"""The pure half of the literal-scripts effect: which commands a first ``postinst configure`` would run.

:func:`plan` reads a script line by line without running anything: ``case "$1"`` takes the ``configure``
branch; an ``if`` whose test is made only of ``[ -z "$2" ]`` (a first install), ``[ "$1" = configure ]`` and
file tests on literal paths (``-e -f -d -L -x``, checked against the tree as it is at that point) is decided;
every other condition, loop or function body leaves the commands in it "ignored" with the reason, as are
commands with a variable (``$DPKG_ROOT`` is empty in a normal install and is dropped), a glob, a pipe or
``&&``/``||``. :mod:`~rootfs_forge.configure.effects.literal` applies the result.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from rootfs_forge.configure.effects.scripts import (
    ASSIGNMENT,
    FUNCTION_HEADER,
    HEREDOC_BODY,
    _logical_lines,
    split_words,
)

COMMANDS = ("mkdir", "ln", "chmod", "chown", "chgrp", "touch", "cp", "install", "rm")
_DPKG_ROOT = re.compile(r'"\$DPKG_ROOT"|"\$\{DPKG_ROOT\}"|\$\{DPKG_ROOT\}|\$DPKG_ROOT')
UNSAFE = re.compile(r"[$`*?\[\]~{}]")
_CASE_ARG1 = re.compile(r'^case\s+"?\$(?:1|\{1\})"?\s+in\s*$')
_PATTERN = re.compile(r"^\(?\s*([^()]+?)\s*\)\s*(.*)$")
OCTAL = re.compile(r"^[0-7]{3,4}$")
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
MENTIONS = re.compile(r"(?<![\w.-])(?:mkdir|ln|chmod|chown|chgrp|touch|cp|install|rm|umask)(?![\w.-])")


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


def _test(words: list[str], exists: Callable[[str, str], bool], action: str = "configure") -> bool | None:
    """``[ ... ]`` / ``test ...`` on a first install (``$1`` is ``action``), or None when it cannot be decided."""
    neg = False
    words = _strip_tolerated(words) if words else words
    while words and words[0] == "!":
        neg, words = not neg, words[1:]
    if words[:2] == ["dpkg-statoverride", "--list"] and len(words) == 3:
        return neg  # a composed image has no overrides (no statoverride file): never listed
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
        left, right = _test(["[", *words[:i], "]"], exists, action), _test(["[", *words[i + 1:], "]"], exists, action)
        both = False if False in (left, right) else (None if None in (left, right) else True)
        return None if both is None else both != neg
    value: bool | None = None
    if len(words) == 3 and words[0] in ("$2", "${2}") and words[1] in ("=", "!=") and words[2] == "":
        value = words[1] == "="
    elif len(words) == 2 and words[1] in ("$2", "${2}"):
        value = {"-z": True, "-n": False}.get(words[0])
    elif len(words) == 3 and words[0] in ("$1", "${1}") and words[1] in ("=", "==", "!=") \
            and not UNSAFE.search(words[2]):
        value = (words[2] == action) == (words[1] != "!=")
    elif len(words) == 3 and words[1] in ("=", "==", "!=") and not any(UNSAFE.search(w) for w in words[::2]):
        value = (words[0] == words[2]) == (words[1] != "!=")  # two literals (a variable holding $1, replaced)
    elif len(words) == 2 and words[0] in ("-e", "-f", "-d", "-L", "-h", "-x") and literal_path(words[1]):
        value = exists(words[0], words[1])
    if value is None:
        return None
    return value != neg


def _condition(text: str, exists: Callable[[str, str], bool], action: str = "configure") -> bool | None:
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
        value = _test(atom, exists, action)
        atom = []
        if op == "":
            result = value
        elif op == "&&":
            result = False if result is False or value is False else (None if None in (result, value) else True)
        else:
            result = True if result is True or value is True else (None if None in (result, value) else False)
        op = w
    return result


def literal_path(word: str) -> bool:
    return word.startswith("/") and not UNSAFE.search(word) and "\x00" not in word


@functools.lru_cache(maxsize=256)
def _joined_lines(text: str) -> tuple[str, ...]:
    """The script's logical lines; a list ending in && or || goes on over the next line."""
    lines: list[str] = []
    for raw in _logical_lines(text, keep_functions=True, keep_heredocs=True)[0]:
        if lines and HEREDOC_BODY not in lines[-1] and lines[-1].rstrip().endswith(("&&", "||", "|")):
            lines[-1] = lines[-1].rstrip() + " " + raw.strip()
        else:
            lines.append(raw)
    return tuple(lines)


_CASE = re.compile(r"^case\b.*\bin\s*$")
_ONE_LINE_IF = re.compile(r"^if\s+(.*?);\s*then\s+(.*?);?\s*fi\s*;?$")
_ONE_LINE_COMPOUND = re.compile(r"^(if|elif|while|until|for)\b.*;\s*(then|do)\s+\S")
_COMPOUND_WORD = re.compile(r"^\s*(?:do|then|else)\s+")
_COMPOUND_PART = re.compile(r"^\s*(if|elif|while|until|for|done|fi)\b")
_IF = re.compile(r"^(if|elif)\s+(.*?)\s*(?:;\s*then)?\s*$")
_LOOP = re.compile(r"^(while|until|for|select)\b")
_EXIT = re.compile(r"^exit\b")


def plan(text: str, exists: Callable[[str, str], bool], action: str = "configure") -> list[Step]:
    """The commands of ``COMMANDS`` a first ``configure`` run of the script ``text`` would run (a preinst's
    first run: ``action="install"``), in order, each with the words to apply or the reason it is ignored.
    ``exists(test, path)`` answers file tests against the tree at the time (pure given ``exists``)."""
    planner = _Planner(exists, action)
    for raw in _joined_lines(text):
        if not planner.line(raw):
            break
    dropped = {id(step) for name in planner.called for step in planner.func_steps.get(name, [])}
    return [step for step in planner.steps if id(step) not in dropped]


# a function that reads its own arguments cannot be replayed as the script's top level
_ARGS = re.compile(r"\$(?:[1-9@*#]|\{[1-9@*#])")
_CAT_HEREDOC = re.compile(r"""^cat\s*>\s*(\S+)\s*<<(-?)\s*(['"]?)([A-Za-z_][A-Za-z0-9_]*)\3\s*$""")
MAX_CALL_DEPTH = 4


class _Planner:
    """The state of :func:`plan` while it reads a script: one method per shell construct."""

    __slots__ = ("action", "called", "defining", "depth", "env", "exists", "func_steps", "functions", "stack",
                 "steps")

    def __init__(self, exists: Callable[[str, str], bool], action: str = "configure") -> None:
        self.exists = exists
        self.action = action
        self.stack: list[_Frame] = []
        self.steps: list[Step] = []
        self.env: dict[str, str | None] = {}  # variables assigned a literal value (None: assigned, value unknown)
        self.functions: dict[str, list[str]] = {}  # name -> the raw lines of its body
        self.func_steps: dict[str, list[Step]] = {}  # name -> its commands, ignored unless it is called
        self.called: set[str] = set()
        self.defining = ""
        self.depth = 0

    def line(self, raw: str) -> bool:
        """One logical line (a here-document's body after ``HEREDOC_BODY``); False at a top-level ``exit``."""
        head, sep, body = raw.partition(HEREDOC_BODY)
        line = head.strip()
        if not line or self.function(line, raw):
            return True
        rest = self.case(line)
        if rest is None or self.compound(rest):
            return True
        if not self.stack and _EXIT.match(rest):
            return False
        if sep:
            self.heredoc(rest, body)
        elif not self.call(rest):
            self.command(rest)
        return True

    def call(self, line: str) -> bool:
        """``name``, or ``[ test ] || name``, calling a function of the script without arguments: its body
        runs here (unless it reads arguments). True when ``line`` was such a call."""
        words = split_words(_DPKG_ROOT.sub("", self.subst(line)))
        if not words:
            return False
        words = _strip_tolerated(words)
        guard: list[str] = []
        op = ""
        if len(words) >= 3 and words[-2] in ("||", "&&") and words.count("||") + words.count("&&") == 1:
            guard, op, words = words[:-2], words[-2], words[-1:]
        if len(words) != 1 or words[0] not in self.functions or self.depth >= MAX_CALL_DEPTH:
            return False
        name = words[0]
        body = self.functions[name]
        if any(_ARGS.search(raw) for raw in body):
            return False
        active, reason = self.state()
        if not active:
            return True
        if guard:
            value = _test(guard, self.exists, self.action)
            if value is None:
                reason = reason or f"under the condition `{' '.join(guard)}`"
            elif value == (op == "||"):
                return True
        self.called.add(name)
        self.stack.append(_Frame("call", None if reason else True, reason))
        self.depth += 1
        try:
            for raw in body:
                if not self.line(raw):
                    break
        finally:
            self.depth -= 1
            self.stack.pop()
        return True

    def heredoc(self, line: str, body: str) -> None:
        """``cat > FILE <<EOF`` with a body that expands nothing: the file's contents; other here-documents are
        not commands this effect applies."""
        active, reason = self.state()
        m = _CAT_HEREDOC.match(_DPKG_ROOT.sub("", self.subst(line)).strip())
        if not active or m is None:
            return
        path, strip_tabs, quoted = m.group(1).strip("'\""), m.group(2) == "-", bool(m.group(3))
        text = "".join(part.lstrip("\t") + "\n" for part in body.split("\n")[:-1]) if strip_tabs else body
        if not reason and not literal_path(path):
            reason = "an argument is not literal (a variable or a glob)"
        if not reason and not quoted and any(c in text for c in "$`\\"):
            reason = "the here-document expands variables or commands"
        self.steps.append(Step(("cat", ">", path, text), reason))

    def _top(self) -> str:
        return self.stack[-1].kind if self.stack else ""

    def state(self) -> tuple[bool, str]:
        """Whether the commands at this point run, and the reason they may not when that is undecided."""
        reason = ""
        for f in self.stack:
            if f.taken is False:
                return False, ""
            if f.taken is None and not reason:
                reason = f.reason
        return True, reason

    def subst(self, line: str) -> str:
        """``line`` with the script's literal variables replaced by their values (others left as they are)."""
        def one(m: re.Match[str]) -> str:
            value = self.env.get(m.group(1) or m.group(2))
            return value if value is not None else m.group(0)
        return _REFERENCE.sub(one, line)

    def assign(self, line: str) -> bool:
        """Record ``NAME=value[; NAME=value]`` lines; True when ``line`` was only assignments."""
        words = split_words(line)
        if not words or not all(w == ";" or ASSIGNMENT.match(w) for w in words) or line.lstrip().startswith(";"):
            return False
        active, reason = self.state()
        if not active:
            return True
        for w in words:
            m = ASSIGNMENT.match(w)
            if m is not None and m.group(2) in ("$1", "${1}") and not self.stack:
                self.env[m.group(1)] = self.action  # action="$1" at the top of a script
            elif m is not None:
                value = self.subst(m.group(2))
                self.env[m.group(1)] = None if reason or UNSAFE.search(value) or "\\" in value else value
        return True

    def _simple(self, line: str) -> None:
        self.steps += _simple(self.subst(line), self.state(), self.exists, self.action)

    def command(self, line: str) -> None:
        """A simple line: assignments, or a command to apply or ignore."""
        if not self.assign(line):
            self._simple(line)

    def function(self, line: str, raw: str = "") -> bool:
        """A function's header, braces or body: the body is kept for :meth:`call`; its commands stay ignored
        unless the script calls the function."""
        top = self._top()
        inside = any(f.kind in ("func", "funcopen") for f in self.stack)
        header = FUNCTION_HEADER.match(line)
        if (header is not None and not line[header.end():].strip()) or top == "funcopen":
            if top == "funcopen" and line.startswith("{"):
                self.stack[-1].kind = "func"
            else:
                if inside:
                    self.functions[self.defining].append(raw or line)
                else:
                    self.defining = re.sub(r"^function\s+", "", line).split("(")[0].split()[0].rstrip("{")
                    self.functions[self.defining] = []
                    self.func_steps[self.defining] = []
                self.stack.append(_Frame("func" if line.endswith("{") else "funcopen", False))
            return True
        if top != "func":
            return False
        if line == "}":
            self.stack.pop()
            if any(f.kind in ("func", "funcopen") for f in self.stack):
                self.functions[self.defining].append(raw or line)
        else:
            self.functions[self.defining].append(raw or line)
            words = split_words(line.partition(HEREDOC_BODY)[0]) or []
            if words and words[0].rsplit("/", 1)[-1] in COMMANDS:
                step = Step(tuple(words), "in a shell function")
                self.steps.append(step)
                self.func_steps[self.defining].append(step)
        return True

    def case(self, line: str) -> str | None:
        """``case``/``esac`` and a case's patterns; None when ``line`` is done with, else what is left of it."""
        if _CASE_ARG1.match(line):
            self.stack.append(_Frame("case1", False))
            return None
        if _CASE.match(line):
            self.stack.append(_Frame("case", None, "under a case on a value only known when the script runs"))
            return None
        if line == "esac" or line.startswith("esac"):
            if self._top() in ("case1", "case"):
                self.stack.pop()
            return None
        if self._top() not in ("case1", "case"):
            return line
        frame = self.stack[-1]
        if line == ";;":
            frame.taken = False if frame.kind == "case1" else frame.taken
            return None
        m = _PATTERN.match(line)
        if m and (frame.taken is False or frame.kind == "case") and not line.startswith(("if ", "[")):
            pats = [p.strip().strip("'\"") for p in m.group(1).split("|")]
            if frame.kind == "case1":
                frame.taken = (not frame.decided) and (self.action in pats or "*" in pats)
                frame.decided = frame.decided or bool(frame.taken)
            line = m.group(2).strip()
            if not line:
                return None
        if not line.endswith(";;"):
            return line
        self.command(line[:-2].strip())
        if frame.kind == "case1":
            frame.taken = False
        return None

    def compound(self, line: str) -> bool:
        """``if``/``elif``/``else``/``fi`` and loops, on their own lines or on one; True when ``line`` was one."""
        return self._one_line_if(line) or self._one_line_compound(line) or self._if(line) or self._block(line)

    def _one_line_if(self, line: str) -> bool:
        one = _ONE_LINE_IF.match(line)
        if not one:
            return False
        value = _condition(self.subst(one.group(1)), self.exists, self.action)
        if value is not False:
            self.stack.append(_Frame("if", value, f"under the condition `{one.group(1)}`"))
            for part in one.group(2).split(";"):
                if part.strip():
                    self.command(part)
            self.stack.pop()
        return True

    def _one_line_compound(self, line: str) -> bool:
        if not _ONE_LINE_COMPOUND.match(line):
            return False
        self.stack.append(_Frame("loop", None, "in a loop or condition on one line"))
        for part in line.split(";"):
            part = _COMPOUND_WORD.sub("", part)
            if part.strip() and not _COMPOUND_PART.match(part):
                self._simple(part)
        self.stack.pop()
        return True

    def _if(self, line: str) -> bool:
        m = _IF.match(line)
        if not m:
            return False
        cond_text = m.group(2)
        if m.group(1) == "if":
            value = _condition(self.subst(cond_text), self.exists, self.action)
            self.stack.append(_Frame("if", value, f"under the condition `{cond_text}`"))
        elif self._top() == "if":
            f = self.stack[-1]
            if f.decided:
                f.taken = False
            else:
                value = _condition(self.subst(cond_text), self.exists, self.action)
                f.taken, f.reason = value, f"under the condition `{cond_text}`"
                f.decided = f.decided or bool(value)
        return True

    def _block(self, line: str) -> bool:
        top = self._top()
        if line in ("then", "do"):
            return True
        if line == "else" and top == "if":
            f = self.stack[-1]
            f.taken = None if f.taken is None and not f.decided else not f.decided
            f.reason = f.reason or "under an else branch"
            return True
        if (line.startswith("fi") and top == "if") or (line.startswith("done") and top == "loop"):
            self.stack.pop()
            return True
        if _LOOP.match(line):
            self.stack.append(_Frame("loop", None, "in a loop"))
            return True
        return False


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


def _simple(line: str, state: tuple[bool, str], exists: Callable[[str, str], bool],
            action: str = "configure") -> list[Step]:
    active, reason = state
    if not active or not MENTIONS.search(line):
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
                value = _test(test, exists, action)
                if value is None:
                    reason = reason or f"under the condition `{' '.join(test)}`"
                elif value == (op == "||"):
                    return []
                words = rest
    if words[0] == "umask" and len(words) == 2 and OCTAL.match(words[1].rjust(3, "0")):
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
    if any(UNSAFE.search(w) for w in words[1:]):
        return [Step((name, *words[1:]), "an argument is not literal (a variable or a glob)")]
    return [Step((name, *words[1:]))]
