"""update-alternatives: the ``--install`` calls of postinst scripts, applied as dpkg's tool applies them.

Parsing (:func:`parse_installs`) is pure: literal arguments only; a call with an unexpanded ``$variable`` or a
command substitution is skipped and reported. Applying writes ``/etc/alternatives/NAME``, the master and slave
links and ``/var/lib/dpkg/alternatives/NAME`` in update-alternatives' own format (slaves sorted by name,
choices sorted by path). In auto mode the highest priority wins and ties go to the path that sorts first, as
update-alternatives' ``--auto`` does; a recipe choice puts the group in manual mode like ``--set``.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from rootfs_forge.configure.effects.base import EffectContext, EffectResult, effect
from rootfs_forge.configure.effects.tree import Change, RootDir
from rootfs_forge.errors import RootfsError

ALTDIR = "/etc/alternatives"
ADMINDIR = "/var/lib/dpkg/alternatives"
_OPERATORS = {";", ";;", "&", "&&", "|", "||", "(", ")", "<", ">", ">>", "<<", ">&", "<&", "2>", "&>"}
_FLAGS = {"--quiet", "--verbose", "--force", "--debug"}


@dataclass(frozen=True, slots=True)
class Install:
    """One ``update-alternatives --install`` call."""

    package: str
    link: str
    name: str
    path: str
    priority: int
    slaves: tuple[tuple[str, str, str], ...] = ()  # (link, name, path)


def _words(text: str) -> list[list[str]]:
    """Shell words of each logical line (continuations joined, comments dropped, operators kept)."""
    lines: list[list[str]] = []
    for line in text.replace("\\\n", " ").splitlines():
        if "update-alternatives" not in line:
            continue
        lex = shlex.shlex(line, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        try:
            lines.append(list(lex))
        except ValueError:
            lines.append(line.split())
    return lines


def parse_installs(package: str, text: str) -> tuple[list[Install], list[str]]:
    """Every ``--install`` call in a script, and a note for each call that cannot be read literally."""
    found: list[Install] = []
    notes: list[str] = []
    for words in _words(text):
        for i, w in enumerate(words):
            if w != "update-alternatives" and not w.endswith("/update-alternatives"):
                continue
            args = []
            for a in words[i + 1 :]:
                if a in _OPERATORS:
                    break
                args.append(a)
            args = [a for a in args if a not in _FLAGS]
            if "--install" not in args:
                continue
            shown = " ".join(["update-alternatives", *args])
            if any("$" in a or "`" in a for a in args):
                notes.append(f"{package}: skipped `{shown}`: unexpanded shell variables")
                continue
            try:
                found.append(_install(package, args[args.index("--install") + 1 :]))
            except ValueError as e:
                notes.append(f"{package}: skipped `{shown}`: {e}")
    return found, notes


def _install(package: str, args: list[str]) -> Install:
    if len(args) < 4:
        raise ValueError("--install needs LINK NAME PATH PRIORITY")
    link, name, path, prio = args[:4]
    try:
        priority = int(prio)
    except ValueError:
        raise ValueError(f"priority {prio!r} is not a number") from None
    slaves = []
    rest = args[4:]
    while rest:
        if rest[0] != "--slave" or len(rest) < 4:
            raise ValueError(f"unexpected argument {rest[0]!r}")
        slaves.append((rest[1], rest[2], rest[3]))
        rest = rest[4:]
    for p in (link, path, *[s[0] for s in slaves], *[s[2] for s in slaves]):
        if not p.startswith("/"):
            raise ValueError(f"{p!r} is not an absolute path")
    for n in (name, *[s[1] for s in slaves]):
        if "/" in n or n in ("", ".", ".."):
            raise ValueError(f"{n!r} is not a valid alternative name")
    return Install(package, link, name, path, priority, tuple(slaves))


def choose(name: str, installs: list[Install], present: set[str], wanted: str | None) -> Install:
    """The winning choice among installed paths (pure)."""
    candidates = sorted((i for i in installs if i.path in present), key=lambda i: i.path)
    if wanted is not None:
        for i in candidates:
            if i.path == wanted:
                return i
        have = ", ".join(i.path for i in candidates) or "none"
        raise RootfsError(
            "choose alternative", name, f"{wanted} is not an installed choice (choices: {have})"
        )
    return max(candidates, key=lambda i: i.priority)  # max keeps the first of equals: sorted by path


def state_file(mode: str, installs: list[Install]) -> str:
    """``/var/lib/dpkg/alternatives/NAME`` for a group, in update-alternatives' format."""
    slaves: dict[str, str] = {}
    for inst in installs:
        for link, sname, _ in inst.slaves:
            slaves.setdefault(sname, link)
    out = [mode, installs[0].link]
    for sname in sorted(slaves):
        out += [sname, slaves[sname]]
    out.append("")
    for inst in sorted(installs, key=lambda i: i.path):
        out += [inst.path, str(inst.priority)]
        by_name = {s[1]: s[2] for s in inst.slaves}
        out += [by_name.get(sname, "") for sname in sorted(slaves)]
    out.append("")
    return "\n".join(out) + "\n"


def _point(
    tree: RootDir, link: str, name: str, target: str, changed: list[Change], messages: list[str]
) -> None:
    changed.append(tree.symlink(f"{ALTDIR}/{name}", target))
    if tree.lexists(link) and not tree.is_symlink(link):
        messages.append(f"{name}: kept the file shipped at {link} instead of linking it")
        return
    changed.append(tree.symlink(link, f"{ALTDIR}/{name}"))


@effect("alternatives", "update-alternatives --install calls: /etc/alternatives links and their state files",
        commands=("update-alternatives",))
def apply(ctx: EffectContext) -> EffectResult:
    tree = ctx.tree()
    groups: dict[str, list[Install]] = {}
    messages: list[str] = []
    for pkg in sorted(ctx.packages):
        text = ctx.packages[pkg].scripts.get("postinst", "")
        installs, notes = parse_installs(pkg, text)
        messages += notes
        for inst in installs:
            group = groups.setdefault(inst.name, [])
            if group and group[0].link != inst.link:
                messages.append(
                    f"{inst.name}: {pkg} uses link {inst.link}, the group has {group[0].link}: skipped"
                )
                continue
            group[:] = [g for g in group if g.path != inst.path] + [inst]
    wanted: Mapping[str, str] = ctx.options.alternatives
    for name in sorted(set(wanted) - set(groups)):
        raise RootfsError("choose alternative", name, "no installed package registers it")
    changed: list[Change] = []
    for name in sorted(groups):
        installs = groups[name]
        present = {i.path for i in installs if tree.host(i.path).exists()}
        if not present:
            messages.append(f"{name}: none of its choices is in the image: no link made")
            continue
        best = choose(name, installs, present, wanted.get(name))
        _point(tree, best.link, name, best.path, changed, messages)
        for link, sname, spath in best.slaves:
            if tree.host(spath).exists():
                _point(tree, link, sname, spath, changed, messages)
        mode = "manual" if name in wanted else "auto"
        data = state_file(mode, [i for i in installs if i.path in present]).encode()
        changed.append(tree.write_file(f"{ADMINDIR}/{name}", data, 0o644))
        messages.append(f"{best.link} -> {best.path} ({mode}, priority {best.priority})")
    return EffectResult(tuple(changed), tuple(messages))
