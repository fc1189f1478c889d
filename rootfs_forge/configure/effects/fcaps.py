"""File capabilities that postinsts give with ``setcap`` (iputils-ping: ``setcap cap_net_raw+ep /bin/ping``).

The scripts call setcap only when it is installed (``command -v setcap``), so the effect runs when libcap2-bin
is. Each ``setcap CAPS FILE`` whose FILE is a literal path, or a variable the script assigns once a literal or
``$(dpkg-divert --truename PATH)``, becomes the ``security.capability`` attribute of FILE in the tree's record
(encoded by :mod:`rootfs_forge.util.fcaps`), on disk when composing as root, and in the layers as a PAX
``SCHILY.xattr.security.capability`` record. A ``chmod u-s`` of the same file in the script (the setuid
fallback dropped once setcap succeeded) is applied too. Any other call is reported as not emulated.

A script that asks debconf first (``db_get Q`` then ``if test "$RET" = "true"`` around the setcap, as
iproute2's gives /bin/ip cap_sys_admin only when ``iproute2/setcaps`` is true) is decided by Q's template
default, the noninteractive frontend's answer: a default other than ``true`` gives no capability.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from rootfs_forge.configure.effects.base import EffectContext, EffectResult, effect
from rootfs_forge.configure.effects.scripts import simple_commands
from rootfs_forge.configure.effects.tree import Change
from rootfs_forge.errors import RootfsError
from rootfs_forge.util.fcaps import XATTR, CapabilityTextError, encode

_ASSIGNMENT = re.compile(r"^[ \t]*(?:local[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*?)[ \t]*;?[ \t]*$", re.M)
_TRUENAME = re.compile(r"^\$\(\s*dpkg-divert\s+--truename\s+(/[^\s$`;|&()]+)\s*\)$")
_VARIABLE = re.compile(r"^\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))$")
_LOOKUPS = frozenset({"command", "which", "type", "hash", "echo", "printf"})
_LITERAL = re.compile(r"^/[A-Za-z0-9_./+@:-]+$")


def assignments(text: str) -> dict[str, str | None]:
    """Variables a script assigns: name → the path it holds, or None when not one literal path (pure)."""
    out: dict[str, str | None] = {}
    for name, raw in _ASSIGNMENT.findall(text):
        value = raw.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        m = _TRUENAME.match(value)
        path = m.group(1) if m else value if _LITERAL.match(value) else None
        out[name] = path if name not in out or out[name] == path else None
    return out


def word_path(word: str, variables: Mapping[str, str | None]) -> str | None:
    """The literal path a word of a command stands for, or None (pure)."""
    if _LITERAL.match(word):
        return word
    m = _VARIABLE.match(word)
    return variables.get(m.group(1) or m.group(2)) if m else None


def setcap_calls(text: str) -> tuple[list[tuple[str, str]], list[str], int]:
    """(capability text, path) of every setcap call of a script that can be emulated; the paths ``chmod u-s``
    names; how many calls cannot be emulated (pure)."""
    variables = assignments(text)
    calls: list[tuple[str, str]] = []
    drop_setuid: list[str] = []
    failed = 0
    for words in simple_commands(text):
        if words[0] == "chmod" and len(words) == 3 and words[1] == "u-s":
            path = word_path(words[2], variables)
            if path is not None:
                drop_setuid.append(path)
        if words[0] != "setcap":
            if words[0] not in _LOOKUPS and "setcap" in words[1:]:
                failed += 1  # a call the command reader did not split off (after a ``$(…);``): not emulated
            continue
        args = [w for w in words[1:] if w != "-q"]
        if not args or len(args) % 2 or any(a.startswith("-") for a in args[::2]):
            failed += 1  # -r, -v, -n ROOTID, text on stdin: not emulated
            continue
        for caps, word in zip(args[::2], args[1::2], strict=True):
            path = word_path(word, variables)
            if path is None or "$" in caps:
                failed += 1
            else:
                calls.append((caps, path))
    return calls, drop_setuid, failed


_DB_GET = re.compile(r"\bdb_get\s+([A-Za-z0-9_./+-]+)")
_SETCAP_CALL = re.compile(r"(?m)^[ \t]*(?:(?:if|then|else|&&|\|\|)[ \t]+)?(?:![ \t]+)?setcap[ \t]+[^-]")
_RET_TRUE = re.compile(r"""\b(?:test|\[)\s+["']?\$(?:RET|\{RET\})["']?\s*==?\s*["']?true["']?""")


def debconf_gate(text: str) -> str | None:
    """The debconf question whose answer decides the script's setcap calls (``db_get Q``, then a test of
    ``$RET`` against ``true`` before the first setcap), or None (pure)."""
    first = _SETCAP_CALL.search(text)
    head = text[:first.start()] if first else text
    asked = _DB_GET.findall(head)
    return asked[-1] if asked and _RET_TRUE.search(head[head.rfind("db_get"):]) else None


def template_default(templates: bytes | None, question: str) -> str:
    """The Default of ``question`` in a package's templates control file ('' when absent) (pure)."""
    from rootfs_forge.configure.effects.debconf import parse_templates

    for t in parse_templates((templates or b"").decode("utf-8", "replace")):
        if t.get("template") == question:
            return t.get("default", "")
    return ""


@effect("file-capabilities", "security.capability attributes postinsts give with setcap (ping: cap_net_raw)",
        packages=("libcap2-bin",), scripts=("iputils-ping/postinst",), commands=("setcap",))
def apply(ctx: EffectContext) -> EffectResult:
    tree = ctx.tree()
    changed: list[Change] = []
    messages: list[str] = []
    unhandled: list[str] = []
    for name in sorted(ctx.packages):
        text = ctx.packages[name].scripts.get("postinst", "")
        if "setcap" not in text:
            continue
        question = debconf_gate(text)
        if question is not None:
            answer = template_default(ctx.packages[name].control_files.get("templates"), question)
            if answer != "true":
                messages.append(f"{name}: no setcap: debconf {question} is {answer or 'unset'} "
                                "(the noninteractive answer)")
                continue
        calls, drop_setuid, failed = setcap_calls(text)
        for caps, path in calls:
            try:
                value = encode(caps)
            except CapabilityTextError as exc:
                raise RootfsError("apply", f"setcap {caps} {path} of {name}", str(exc)) from None
            if not tree.is_file(path):
                failed += 1
                messages.append(f"{name}: setcap {caps} {path}: no such file in the image")
                continue
            changed.append(tree.set_xattr(path, XATTR, value))
            messages.append(f"{caps} on {tree.resolve(path)} ({name})")
            if path in drop_setuid:
                entry = tree.fs.lookup(path)
                if entry is not None and entry.mode & 0o4000:
                    changed.append(tree.chmod(path, entry.mode & ~0o4000, entry.uid, entry.gid))
        if failed:
            unhandled.append(f"{name}/postinst")
    if not changed and not unhandled and not messages:
        return EffectResult(skipped="no postinst gives file capabilities")
    return EffectResult(tuple(changed), tuple(messages), unhandled=tuple(unhandled))
