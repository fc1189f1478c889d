"""/etc/shells and /var/lib/shells.state, as debianutils' update-shells writes them (add-shell's successor).

debianutils' postinst copies /usr/share/debianutils/shells to /etc/shells; update-shells then keeps the lines of
/etc/shells (a shell named twice only once) and appends every shell the template and
/usr/share/debianutils/shells.d/* register (file names in C order) that is not listed yet, each followed by its
real path when a directory of it is a link (``/bin/bash`` then ``/usr/bin/bash`` with merged /usr, which is in
place before any maintainer script runs: debootstrap and mmdebstrap's merged-/usr hook make the links first).
A later trigger run appends in the same order, so one pass gives the tree dpkg leaves. An /etc/shells already in
the tree is kept as the base. Rendering is pure (:func:`shells_file`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Sequence

from rootfs_forge.configure.effects.base import EffectContext, EffectResult, effect
from rootfs_forge.configure.effects.tree import Change

TEMPLATE = "/usr/share/debianutils/shells"
PKG_DIR = "/usr/share/debianutils/shells.d"
STATE = "/var/lib/shells.state"


def registered(sources: Sequence[str]) -> list[str]:
    """The shells the template and shells.d files name, in order, comments and blanks skipped (pure)."""
    out: list[str] = []
    for text in sources:
        for line in text.splitlines():
            shell = line.split("#", 1)[0]
            if shell:
                out.append(shell)
    return out


def shells_file(base: str, shells: Sequence[str], realpath: Callable[[str], str]) -> tuple[str, str]:
    """(/etc/shells, shells.state) from the current /etc/shells text and the registered shells, as one
    update-shells run without a state file writes them (pure)."""
    state: list[str] = []
    for shell in shells:
        state.append(shell)
        real = posixpath.join(realpath(posixpath.dirname(shell)), posixpath.basename(shell))
        if real != shell:
            state.append(real)
    out: list[str] = []
    present: set[str] = set()
    for line in base.splitlines():  # comments, packaged shells and local additions, each shell once
        shell = line.split("#", 1)[0]
        if not shell or shell not in present:
            out.append(line)
            present.add(shell)
    # checked against the kept lines only, as update-shells does: a shell registered twice (zsh lists /bin/zsh
    # and /usr/bin/zsh, whose real path repeats the second) is appended twice
    out += [shell for shell in state if shell not in present]
    return "".join(f"{line}\n" for line in out), "".join(f"{s}\n" for s in state)


@effect("shells", "/etc/shells from the shells the installed packages register (update-shells, add-shell)",
        packages=("debianutils",), commands=("add-shell", "remove-shell", "update-shells"))
def apply(ctx: EffectContext) -> EffectResult:
    tree = ctx.tree()
    if not tree.is_file(TEMPLATE):
        return EffectResult(skipped=f"no {TEMPLATE} in the image")
    sources = [tree.read_bytes(TEMPLATE).decode("utf-8", "surrogateescape")]
    if tree.is_dir(PKG_DIR):
        sources += [tree.read_bytes(f"{PKG_DIR}/{n}").decode("utf-8", "surrogateescape")
                    for n in sorted(tree.listdir(PKG_DIR), key=lambda s: s.encode())
                    if tree.is_file(f"{PKG_DIR}/{n}")]
    shipped = tree.is_file("/etc/shells")
    base = tree.read_bytes("/etc/shells" if shipped else TEMPLATE).decode("utf-8", "surrogateescape")
    shells = registered(sources)
    etc, state = shells_file(base, shells, lambda d: tree.resolve(d) if tree.lexists(d) else d)
    changed: list[Change] = [tree.write_file("/etc/shells", etc.encode("utf-8", "surrogateescape"), 0o644),
                             tree.write_file(STATE, state.encode("utf-8", "surrogateescape"), 0o644)]
    return EffectResult(tuple(changed), (f"/etc/shells lists {', '.join(state.split())}",))
