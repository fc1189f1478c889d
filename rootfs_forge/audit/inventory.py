"""Who owns what in a tree: per-package bytes and file counts, and the files no package owns."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from rootfs_forge.audit.forgemeta import ForgeManifest
from rootfs_forge.audit.view import FsView, Node, norm, resolve
from rootfs_forge.model import InstalledPackage

# the package manager's own records are not "unowned content"
IGNORED_PREFIXES = ("/var/lib/dpkg/", "/var/lib/forge/")


@dataclass(frozen=True)
class PackageUsage:
    name: str
    version: str
    architecture: str
    source: str
    bytes: int  # bytes of the package's files that are in the tree
    files_kept: int  # non-directory paths of the package that exist in the tree
    files_shipped: int  # non-directory paths the package ships (kept + dropped by forge's filters)
    dropped_bytes: int | None  # known only from forge's manifest

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Inventory:
    packages: tuple[PackageUsage, ...]  # sorted by (name, architecture)
    kept_files: dict[str, tuple[str, ...]]  # package key -> canonical in-tree paths of its kept files, sorted
    unowned: tuple[str, ...]  # non-directory paths no package (and not forge) owns, sorted


def canonical(view: FsView, path: str, cache: dict[str, str | None] | None = None) -> str:
    """``path`` with its parent directories' symlinks resolved in the tree (``/bin/ls`` → ``/usr/bin/ls``)."""
    path = norm(path)
    if path == "/":
        return path
    parent, base = posixpath.split(path)
    if cache is not None and parent in cache:
        real = cache[parent]
    else:
        real = resolve(view, parent)
        if cache is not None:
            cache[parent] = real
    return posixpath.join(real if real is not None else parent, base)


def take_inventory(view: FsView, packages: Iterable[InstalledPackage],
                   manifest: ForgeManifest | None = None,
                   nodes: dict[str, Node] | None = None) -> Inventory:
    """Match the dpkg database against the tree. ``nodes`` is the tree's walk, when the caller has it."""
    tree = nodes if nodes is not None else dict(view.walk())
    owned: set[str] = set()
    usages = []
    kept_files: dict[str, tuple[str, ...]] = {}
    cache: dict[str, str | None] = {}
    for pkg in packages:
        kept: list[str] = []
        missing = 0
        size = 0
        for listed in pkg.files:
            path = canonical(view, listed, cache)
            if path == "/":
                continue
            node = tree.get(path)
            if node is None:
                missing += 1
                continue
            owned.add(path)
            if node.kind == "dir":
                continue
            kept.append(path)
            size += node.size
        dropped = manifest.dropped_for(pkg.name, pkg.architecture) if manifest else None
        shipped = len(kept) + (dropped.files if dropped is not None else missing)
        kept_files[pkg.key] = tuple(sorted(set(kept)))
        usages.append(PackageUsage(pkg.name, pkg.version, pkg.architecture, pkg.source, size, len(kept), shipped,
                                   dropped.bytes if dropped is not None else None))
    forge_files = set(manifest.files) if manifest else set()
    unowned = tuple(sorted(
        path for path, node in tree.items()
        if node.kind != "dir" and path not in owned and path not in forge_files
        and not path.startswith(IGNORED_PREFIXES)
    ))
    usages.sort(key=lambda u: (u.name, u.architecture))
    return Inventory(tuple(usages), kept_files, unowned)
