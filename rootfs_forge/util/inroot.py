"""The one in-root path resolver: symlinks followed inside a root, never out of it.

Absolute link targets restart at the root and ``..`` at the root stays there (``openat2(RESOLVE_IN_ROOT)``
semantics, the way the kernel resolves paths under ``chroot``), at most :data:`MAX_SYMLINKS` links. The tree is
read through ``lookup``: any function from an in-root key (``/usr/bin``) to something with ``kind`` and
``target`` (or None when nothing is there) — the compose writer's record, an audit view's ``lstat``, a test's
dictionary, the launcher's ``lstat``/``readlink`` of the image on disk — so the same rules hold for every tree
forge writes, reads or runs.

Imports nothing at run time: the launcher's start path may not load ``typing``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol
else:
    Protocol = object  # a protocol for the type checker; at run time nothing checks it


class NodeLike(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def target(self) -> str: ...


MAX_SYMLINKS = 40  # the kernel's limit (MAXSYMLINKS): more links on one resolution is a loop (ELOOP)


class SymlinkLoop(ValueError):
    """More than :data:`MAX_SYMLINKS` symlinks on one resolution."""


def resolve_in_root(lookup: Callable[[str], NodeLike | None], path: str, *, follow_last: bool = True,
                    strict: bool = False, chain: list[str] | None = None) -> str | None:
    """The symlink-free in-root key that ``path`` names.

    Not ``strict``: a missing component (and anything below it) is kept as a plain name, so a writer learns
    where a new path goes. ``strict``: None when the path dangles or crosses a non-directory, as a reader
    wants. Each symlink passed is appended to ``chain`` when given. Raises :class:`SymlinkLoop`.
    """
    todo = [p for p in reversed(path.split("/")) if p and p != "."]
    done: list[str] = []
    hops = 0
    while todo:
        part = todo.pop()
        if part == "..":
            if done:
                done.pop()
            continue
        here = "/" + "/".join((*done, part))
        node = lookup(here)
        if node is None:
            if strict:
                return None
            done.append(part)
            continue
        if node.kind == "symlink" and (todo or follow_last):
            hops += 1
            if hops > MAX_SYMLINKS:
                raise SymlinkLoop(path)
            if chain is not None:
                chain.append(here)
            target = node.target
            if target.startswith("/"):
                done = []
            todo.extend(p for p in reversed(target.split("/")) if p and p != ".")
            continue
        if strict and todo and node.kind != "dir":
            return None
        done.append(part)
    return "/" + "/".join(done)
