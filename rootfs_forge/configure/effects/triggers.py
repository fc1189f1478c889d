"""dpkg's trigger interests: /var/lib/dpkg/triggers/File, one file per explicit trigger, Unincorp and Lock.

Every package's ``triggers`` control file declares what it is interested in: a path (a file trigger, listed in
``File`` as ``PATH PACKAGE[/noawait]``) or a name (an explicit trigger, ``triggers/NAME`` listing
``PACKAGE[/noawait]``). libc-bin's ``interest-await ldconfig`` is what makes dpkg run ldconfig when a library
is installed on top of the image (the library's ``activate-noawait ldconfig`` triggers libc-bin's postinst, so
libc-bin's kept postinst is needed too: the dpkg-info effect). Written only when dpkg is in the image or the
recipe keeps control files. Rendering is pure (:func:`interests`, :func:`render`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from rootfs_forge.configure.effects.base import EffectContext, EffectResult, effect
from rootfs_forge.configure.effects.dpkginfo import db_name, keeps
from rootfs_forge.configure.effects.tree import Change

TRIGGERS = "/var/lib/dpkg/triggers"
_INTEREST = {"interest": "", "interest-await": "", "interest-noawait": "/noawait"}


def interests(packages: Iterable[tuple[str, str]]) -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
    """(file interests as (path, PACKAGE[/noawait]), explicit trigger name → packages) from (db name, triggers
    control file text) pairs, in the order given (pure)."""
    files: list[tuple[str, str]] = []
    explicit: dict[str, list[str]] = {}
    for name, text in packages:
        for line in text.splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) != 2 or words[0] not in _INTEREST:
                continue
            who = name + _INTEREST[words[0]]
            if words[1].startswith("/"):
                files.append((words[1], who))
            else:
                explicit.setdefault(words[1], []).append(who)
    return files, explicit


def render(files: list[tuple[str, str]]) -> str:
    """triggers/File (pure)."""
    return "".join(f"{path} {who}\n" for path, who in files)


def _triggers_text(control_files: Mapping[str, bytes]) -> str:
    data = control_files.get("triggers")
    return data.decode("utf-8", "surrogateescape") if data is not None else ""


@effect("triggers", "dpkg's trigger interests (triggers/File, ldconfig and other explicit triggers)")
def apply(ctx: EffectContext) -> EffectResult:
    keep, why = keeps(ctx)
    if not keep:
        return EffectResult(skipped=why)
    tree = ctx.tree()
    pairs = [(db_name(ctx.packages[n].control) or n, _triggers_text(ctx.packages[n].control_files)
              or ctx.packages[n].scripts.get("triggers", "")) for n in sorted(ctx.packages)]
    files, explicit = interests(pairs)
    changed: list[Change] = [tree.mkdir(TRIGGERS, 0o755)]
    changed.append(tree.write_file(f"{TRIGGERS}/File", render(files).encode("utf-8", "surrogateescape")))
    changed.append(tree.write_file(f"{TRIGGERS}/Unincorp", b""))
    changed.append(tree.write_file(f"{TRIGGERS}/Lock", b"", 0o600))
    for name in sorted(explicit):
        if "/" in name or name in ("File", "Unincorp", "Lock") or name.startswith("."):
            continue
        changed.append(tree.write_file(f"{TRIGGERS}/{name}", "".join(f"{w}\n" for w in explicit[name]).encode()))
    messages = [f"{len(files)} file trigger interests, explicit: {', '.join(sorted(explicit)) or 'none'}"]
    return EffectResult(tuple(changed), tuple(messages))
