"""The record of a composed tree: what every path should be (kind, owner, mode, mtime, xattrs), the per-package
lists dpkg's database needs, and the pure in-root resolver over the record.

:class:`Entry` is the public, frozen view of one path; :class:`Node` is the writer's mutable one. Layers,
reports and the manifest are derived from these (see :class:`rootfs_forge.unpack.writer.TreeWriter`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rootfs_forge.errors import RootfsError
from rootfs_forge.unpack.debfile import DataMember
from rootfs_forge.unpack.filters import PathFilter
from rootfs_forge.util.inroot import NodeLike, SymlinkLoop
from rootfs_forge.util.inroot import resolve_in_root as _resolve


@dataclass(frozen=True, slots=True)
class Entry:
    """The intended state of one path of the tree (what a layer tar should say about it)."""

    kind: str  # file | dir | symlink | char | block | fifo
    mode: int  # permission bits incl. setuid/setgid/sticky
    uid: int
    gid: int
    size: int = 0
    target: str = ""  # symlink target, verbatim
    mtime: int = 0
    hardlink: str = ""  # a file that is a hard link of this earlier tree path
    devmajor: int = 0
    devminor: int = 0
    md5: str = ""
    xattrs: tuple[tuple[str, bytes], ...] = ()  # extended attributes a layer should carry (sorted by name)


@dataclass(frozen=True, slots=True)
class PackageFiles:
    """What one package put into the tree, in the terms dpkg's database needs."""

    name: str
    paths: tuple[str, ...]  # PKG.list order: "/." then the kept members as the package names them
    md5sums: dict[str, str]  # kept regular file (member path) -> md5 hex
    bytes_kept: int
    files_dropped: int
    bytes_dropped: int
    skipped: tuple[tuple[str, str], ...] = ()  # (path, kind) of device nodes/FIFOs/sockets not created
    overridden: tuple[str, ...] = ()  # member paths not written because another package owns them and wins

    def list_text(self) -> str:
        return "".join(p + "\n" for p in self.paths)

    def md5sums_text(self) -> str:
        return "".join(f"{md5}  {path.lstrip('/')}\n" for path, md5 in sorted(self.md5sums.items()))


@dataclass(slots=True)
class Node:
    kind: str
    mode: int
    uid: int = 0
    gid: int = 0
    size: int = 0
    target: str = ""
    mtime: int = 0
    hardlink: str = ""
    devmajor: int = 0
    devminor: int = 0
    md5: str = ""
    xattrs: tuple[tuple[str, bytes], ...] = ()
    owner: str | None = None  # package (for a directory: the first to ship it); None: made by forge
    implicit: bool = False  # a directory made because a child needed it; adopts a package's metadata
    children: int = 0
    disk: tuple[int, int, int] = (-1, -1, -1)  # a directory's (mode, uid, gid) as last set on disk
    planned: PlannedWrite | None = None  # a regular file (or hard link) whose content is written in the write phase

    def entry(self) -> Entry:
        return Entry(self.kind, self.mode, self.uid, self.gid, self.size, self.target, self.mtime,
                     self.hardlink, self.devmajor, self.devminor, self.md5, self.xattrs)


@dataclass(slots=True, eq=False)
class PlannedWrite:
    """A regular member whose content is still to be written: to ``keys[0]``, hard-linked to the other keys.

    A later package that takes one of the keys removes it from ``keys``; with none left nothing is written.
    """

    index: int  # position of the member in its data.tar (a path may occur twice in one archive)
    path: str  # the member's path, checked against the archive when the content is read
    node: Node
    keys: list[str]


@dataclass(frozen=True, slots=True)
class PackageJob:
    """One package for :meth:`TreeWriter.add_packages`."""

    name: str
    deb: Path
    data_tar: Path | None = None  # its data.tar already decompressed (the cache keeps one per .deb)
    replaces: Sequence[str] = ()
    path_filter: PathFilter | None = None
    max_bytes: int | None = None
    multi_arch_same: bool = False
    rank: int | None = None
    md5sums: Mapping[str, str] | None = None  # member path -> md5 hex, from the package's own md5sums
    members: Sequence[DataMember] | None = None  # the data.tar's members as listed before (a cache); the
    # write phase checks each one it writes against the archive
    table: list[list[Any]] | None = None  # without ``members``: the scan appends the member table here (every
    # member in archive order, with the md5 of files ``md5sums`` does not list), for the cache


@dataclass(slots=True)
class PackageRecord:
    name: str
    paths: list[str] = field(default_factory=lambda: ["/."])
    keys: dict[str, str] = field(default_factory=dict)  # member path -> tree key
    md5sums: dict[str, str] = field(default_factory=dict)
    bytes_kept: int = 0
    files_dropped: int = 0
    bytes_dropped: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    overridden: list[str] = field(default_factory=list)
    rank: int = 0  # position in the install order: shared directories keep the lowest rank's metadata
    pending: dict[str, tuple[str, Node]] = field(default_factory=dict)  # key -> (member path, node): PARENT
    # directories, made (and listed) only once something this package keeps lands below them
    lost: set[str] = field(default_factory=set)  # keys a later package took over
    writes: dict[int, PlannedWrite] = field(default_factory=dict)  # member index -> content still to write

    def snapshot(self) -> PackageFiles:
        paths = tuple(p for p in dict.fromkeys(self.paths) if self.keys.get(p) not in self.lost)
        md5 = {p: m for p, m in self.md5sums.items() if self.keys.get(p) not in self.lost}
        return PackageFiles(self.name, paths, md5, self.bytes_kept, self.files_dropped, self.bytes_dropped,
                            tuple(self.skipped), tuple(self.overridden))


def resolve_in_root(nodes: Mapping[str, NodeLike], path: str, *, follow_last: bool) -> str:
    """Resolve ``path`` (absolute, normalised) against the model ``nodes``; returns a tree key (``/a/b``).

    Pure: ``nodes`` maps tree keys to anything with ``kind`` and ``target`` (``Entry`` works too). Symlinks are
    followed inside the root (:mod:`rootfs_forge.util.inroot`, the one resolver); missing components are kept
    as plain names. Raises ``RootfsError`` after ``MAX_SYMLINKS`` links (a loop).
    """
    try:
        key = _resolve(nodes.get, path, follow_last=follow_last)
    except SymlinkLoop:
        raise RootfsError("resolve", path, "too many levels of symbolic links") from None
    assert key is not None  # not strict: never None
    return key


def parent_key(key: str) -> str:
    return key.rsplit("/", 1)[0] or "/"



def tree_dump(entries: Mapping[str, Entry], root: Path | None = None) -> dict[str, str]:
    """A sorted, human-readable dump of ``entries`` like chisel's test trees: ``"file 0755 0:0 <sha256[:8]>"``.

    With ``root``, file contents are hashed from disk (reading through the tree model's own paths).
    """
    out: dict[str, str] = {}
    for key in sorted(entries):
        e = entries[key]
        owner = f"{e.uid}:{e.gid}"
        if e.kind == "file":
            digest = ""
            if root is not None:
                fd = os.open(os.path.join(root, key.lstrip("/")) if key != "/" else root,
                             os.O_RDONLY | os.O_NOFOLLOW)
                with open(fd, "rb") as f:
                    digest = " " + hashlib.sha256(f.read()).hexdigest()[:8]
            out[key] = f"file {e.mode:04o} {owner}{digest}"
        elif e.kind == "symlink":
            out[key] = f"symlink {e.target}"
        elif e.kind in ("char", "block"):
            out[key] = f"{e.kind} {e.mode:04o} {owner} {e.devmajor}:{e.devminor}"
        else:
            out[key] = f"{e.kind} {e.mode:04o} {owner}"
    return out


__all__ = ["Entry", "Node", "NodeLike", "PackageFiles", "PackageJob", "PackageRecord", "PlannedWrite", "parent_key",
           "resolve_in_root", "tree_dump"]

