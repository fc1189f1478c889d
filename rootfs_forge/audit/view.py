"""A read-only view of a root filesystem, and symlink resolution that never leaves it.

Everything in ``rootfs_forge.audit`` reads a tree through :class:`FsView`, so the same logic runs over an
unpacked directory, a tarball held in memory, a stack of OCI layers or a test's dictionary. Paths are absolute
inside the root (``/usr/bin/ls``); a symlink is followed only by :func:`resolve`, which clamps ``..`` and absolute
targets to the root, the way the kernel does under ``chroot``.
"""

from __future__ import annotations

import io
import os
import posixpath
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from rootfs_forge.util.inroot import SymlinkLoop, resolve_in_root


@dataclass(frozen=True, slots=True)
class Node:
    """What ``lstat`` says about one path. ``kind`` is file, dir, symlink or other (devices, fifos, sockets)."""

    kind: str
    size: int = 0
    mode: int = 0o644
    mtime: int = 0
    target: str = ""  # symlink target, verbatim


class FsView(Protocol):
    """Read access to a tree. Implementations never follow symlinks themselves."""

    def lstat(self, path: str) -> Node | None:
        """The node at ``path`` (parents resolved inside the tree, the last component not followed), or None."""
        ...

    def listdir(self, path: str) -> list[str]:
        """Sorted child names of the directory ``path`` names (symlinks followed inside the tree)."""
        ...

    def open(self, path: str) -> BinaryIO:
        """A binary reader of the regular file at ``path`` (parents resolved inside the tree; not a symlink)."""
        ...

    def walk(self) -> Iterator[tuple[str, Node]]:
        """Every path below ``/`` with its node, each directory before its contents."""
        ...


def norm(path: str) -> str:
    """``path`` as an absolute, normalised in-root path; ``..`` cannot climb above ``/``."""
    parts: list[str] = []
    for part in path.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def resolve(view: FsView, path: str, *, follow_last: bool = True, chain: list[str] | None = None) -> str | None:
    """The symlink-free in-root path that ``path`` names, or None if it dangles, loops or crosses a non-directory.

    Absolute link targets restart at the root and ``..`` stops at the root, so no answer lies outside the
    tree (:mod:`rootfs_forge.util.inroot`, the one resolver). Each symlink passed on the way is appended to
    ``chain`` when given.
    """
    try:
        return resolve_in_root(view.lstat, path, follow_last=follow_last, strict=True, chain=chain)
    except SymlinkLoop:
        return None


def read_bytes(view: FsView, path: str, limit: int = -1) -> bytes:
    with view.open(path) as fh:
        return fh.read(limit)


class DirView:
    """An unpacked tree on disk. Symlinks are reported, never followed by the host.

    Every path is first re-rooted: its parent directories are resolved with :func:`resolve` inside the
    tree, so ``/var/lib/dpkg/status`` in a tree whose ``/var`` is a symlink to ``/`` reads the tree's own
    ``/lib/dpkg/status``, never the host's.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self._raw = _RawDirView(self.root)
        self._dirs: dict[str, str | None] = {"/": "/"}

    def _host(self, path: str) -> str | None:
        """The host path of in-tree ``path`` with its parents resolved inside the tree; None if they dangle."""
        path = norm(path)
        if path == "/":
            return self.root
        parent, base = posixpath.split(path)
        if parent not in self._dirs:
            self._dirs[parent] = resolve(self._raw, parent)
        real = self._dirs[parent]
        if real is None:
            return None
        return os.path.join(self.root, posixpath.join(real, base).lstrip("/"))

    def lstat(self, path: str) -> Node | None:
        host = self._host(path)
        return None if host is None else _lstat(host)

    def listdir(self, path: str) -> list[str]:
        real = resolve(self, path)
        return self._raw.listdir(real) if real is not None else []

    def open(self, path: str) -> BinaryIO:
        host = self._host(path)
        if host is None:
            raise FileNotFoundError(path)
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW)
        return os.fdopen(fd, "rb")

    def walk(self) -> Iterator[tuple[str, Node]]:
        yield from _subwalk(self._raw, "/")


class _RawDirView:
    """Host access for paths whose parents are already symlink-free (what :func:`resolve` and walks produce)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def _host(self, path: str) -> str:
        return os.path.join(self.root, norm(path).lstrip("/"))

    def lstat(self, path: str) -> Node | None:
        return _lstat(self._host(path))

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self._host(path)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def open(self, path: str) -> BinaryIO:
        return os.fdopen(os.open(self._host(path), os.O_RDONLY | os.O_NOFOLLOW), "rb")

    def walk(self) -> Iterator[tuple[str, Node]]:
        yield from _subwalk(self, "/")


def _lstat(host: str) -> Node | None:
    try:
        st = os.lstat(host)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return _node(st, host)


def _subwalk(view: FsView, top: str) -> Iterator[tuple[str, Node]]:
    for name in view.listdir(top):
        path = posixpath.join(top, name)
        node = view.lstat(path)
        if node is None:
            continue
        yield path, node
        if node.kind == "dir":
            yield from _subwalk(view, path)


def _node(st: os.stat_result, host_path: str) -> Node:
    mode = stat.S_IMODE(st.st_mode)
    mtime = int(st.st_mtime)
    if stat.S_ISREG(st.st_mode):
        return Node("file", st.st_size, mode, mtime)
    if stat.S_ISDIR(st.st_mode):
        return Node("dir", 0, mode, mtime)
    if stat.S_ISLNK(st.st_mode):
        return Node("symlink", 0, 0o777, mtime, os.readlink(host_path))
    return Node("other", 0, mode, mtime)


class MemoryView:
    """A tree held in memory: ``{path: (Node, data)}``. Used for tarballs, OCI layers and tests."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {"/": Node("dir", mode=0o755)}
        self.data: dict[str, bytes] = {}
        self.children: dict[str, set[str]] = {"/": set()}

    def add(self, path: str, node: Node, data: bytes = b"") -> None:
        """Put ``node`` at ``path``, creating missing parent directories and replacing what was there."""
        path = norm(path)
        if path == "/":
            if node.kind == "dir":
                self.nodes["/"] = node
            return
        parent = posixpath.dirname(path)
        if self.nodes.get(parent, Node("missing")).kind != "dir":
            if parent in self.nodes:
                self.remove(parent)
            self.add(parent, Node("dir", mode=0o755))
        old = self.nodes.get(path)
        if old is not None and not (old.kind == "dir" and node.kind == "dir"):
            self.remove(path)
        self.nodes[path] = node
        self.children[parent].add(posixpath.basename(path))
        if node.kind == "dir":
            self.children.setdefault(path, set())
        elif node.kind == "file":
            self.data[path] = data

    def remove(self, path: str) -> None:
        """Delete ``path`` and, for a directory, everything below it."""
        path = norm(path)
        if path not in self.nodes or path == "/":
            return
        for name in list(self.children.get(path, ())):
            self.remove(posixpath.join(path, name))
        self.children.pop(path, None)
        del self.nodes[path]
        self.data.pop(path, None)
        self.children[posixpath.dirname(path)].discard(posixpath.basename(path))

    def _real(self, path: str) -> str | None:
        """``path`` with its parents resolved inside the tree (as :class:`DirView` does)."""
        path = norm(path)
        if path in self.nodes:
            return path
        parent, base = posixpath.split(path)
        real = resolve(self, parent)
        return None if real is None else posixpath.join(real, base)

    def lstat(self, path: str) -> Node | None:
        real = self._real(path)
        return None if real is None else self.nodes.get(real)

    def listdir(self, path: str) -> list[str]:
        real = resolve(self, path)
        return sorted(self.children.get(real, ())) if real is not None else []

    def open(self, path: str) -> BinaryIO:
        real = self._real(path)
        if real is None or real not in self.data:
            raise FileNotFoundError(path)
        return io.BytesIO(self.data[real])

    def walk(self) -> Iterator[tuple[str, Node]]:
        for path in sorted(self.nodes):
            if path != "/":
                yield path, self.nodes[path]
