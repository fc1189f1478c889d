"""/etc/shells and /var/lib/shells.state, as debianutils' update-shells writes them (add-shell's successor).

debianutils' postinst copies /usr/share/debianutils/shells to /etc/shells; update-shells then adds every shell
the template and /usr/share/debianutils/shells.d/* register (file names in C order), each also under its
real path when a directory of it is a link (``/bin/bash`` → ``/usr/bin/bash`` with merged /usr). During a
bootstrap the first run happens before /bin is a link and a trigger run adds the real paths afterwards: the
lines come in that order (the order mmdebstrap's and debootstrap's trees have). An /etc/shells already in
the tree is kept; shells named on its lines are not added twice. Rendering is pure (:func:`shells_file`).
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
    """(/etc/shells, shells.state) from the current /etc/shells text and the registered shells (pure)."""
    lines = base.splitlines()
    present = {line.split("#", 1)[0] for line in lines}
    out = list(lines)
    # the first run: before /bin became a link, every shell under the name it is registered with
    for shell in shells:
        if shell not in present:
            out.append(shell)
            present.add(shell)
    state: list[str] = []
    for shell in shells:
        real = posixpath.join(realpath(posixpath.dirname(shell)), posixpath.basename(shell))
        state.append(shell)
        if real != shell:
            state.append(real)
    for shell in state:  # the trigger run: the real paths
        if shell not in present:
            out.append(shell)
            present.add(shell)
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
