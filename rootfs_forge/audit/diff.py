"""``forge diff A B``: what changed between two images, rootfs trees or lock files.

Each side is a TARGET (see :mod:`rootfs_forge.audit.target`) or a lock file: any TOML file with a
``package`` array of tables carrying ``name``, ``version`` and ``architecture`` (forge's ``recipe.lock`` is
one). Packages are compared by ``name:architecture``; files (for trees) by kind, size and SHA-256 (symlinks by
target); for two OCI images the layer digests they share are listed too.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass

from rootfs_forge.audit.dpkgreader import read_dpkg_db
from rootfs_forge.audit.target import open_target
from rootfs_forge.audit.view import FsView, Node
from rootfs_forge.errors import AuditError

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.zst", ".tar.bz2", ".oci", ".oci.tar")
_MAX_LOCK = 64 << 20


@dataclass(frozen=True)
class Side:
    spec: str
    kind: str  # lock | directory | tar | oci-layout | oci-archive | docker-archive
    packages: dict[str, str]  # name:arch -> version
    nodes: dict[str, Node] | None = None  # None for a lock file
    view: FsView | None = None
    layers: tuple[str, ...] = ()
    note: str = ""  # which of several platforms was read, when nobody chose


@dataclass(frozen=True)
class DiffReport:
    a: Side
    b: Side
    added: tuple[tuple[str, str], ...]  # (key, version)
    removed: tuple[tuple[str, str], ...]
    changed: tuple[tuple[str, str, str], ...]  # (key, old version, new version)
    files_added: tuple[tuple[str, int], ...] = ()  # (path, bytes)
    files_removed: tuple[tuple[str, int], ...] = ()
    files_changed: tuple[tuple[str, int, int], ...] = ()  # (path, old bytes, new bytes)
    shared_layers: tuple[str, ...] | None = None

    @property
    def compared_files(self) -> bool:
        return self.a.nodes is not None and self.b.nodes is not None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "a": {"spec": self.a.spec, "kind": self.a.kind},
            "b": {"spec": self.b.spec, "kind": self.b.kind},
            "packages": {
                "added": [{"package": k, "version": v} for k, v in self.added],
                "removed": [{"package": k, "version": v} for k, v in self.removed],
                "changed": [{"package": k, "from": a, "to": b} for k, a, b in self.changed],
            },
        }
        if self.compared_files:
            out["files"] = {
                "added": [{"path": p, "bytes": n} for p, n in self.files_added],
                "removed": [{"path": p, "bytes": n} for p, n in self.files_removed],
                "changed": [{"path": p, "from_bytes": a, "to_bytes": b} for p, a, b in self.files_changed],
                "bytes_added": sum(n for _, n in self.files_added),
                "bytes_removed": sum(n for _, n in self.files_removed),
                "bytes_delta": self.bytes_delta,
            }
        if self.shared_layers is not None:
            out["layers"] = {"shared": list(self.shared_layers), "a": list(self.a.layers), "b": list(self.b.layers)}
        return out

    @property
    def bytes_delta(self) -> int:
        return (sum(n for _, n in self.files_added) - sum(n for _, n in self.files_removed)
                + sum(b - a for _, a, b in self.files_changed))


def read_lock(path: str) -> dict[str, str] | None:
    """name:arch -> version from a TOML lock file (forge's ``[[image]]`` form, or any top-level ``[[package]]``
    array of tables with name/version/architecture); None when ``path`` is not one."""
    if path.endswith(_TAR_SUFFIXES) or not os.path.isfile(path) or os.path.getsize(path) > _MAX_LOCK:
        return None
    try:
        with open(path, "rb") as fh:
            data = tomllib.loads(fh.read().decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    entries = data.get("package")
    if entries is None and isinstance(data.get("image"), list):
        # forge's own lock: one [[image]] per architecture, each with its [[image.package]] tables
        entries = [p for img in data["image"] if isinstance(img, dict) for p in img.get("package", [])]
    if not isinstance(entries, list):
        return None
    out: dict[str, str] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) \
                or not isinstance(entry.get("version"), str):
            raise AuditError("read", path, f"package #{i + 1} has no name and version")
        out[f"{entry['name']}:{entry.get('architecture', '')}"] = entry["version"]
    return out


def open_side(spec: str, *, arch: str = "", insecure: bool = False) -> Side:
    lock = read_lock(spec)
    if lock is not None:
        return Side(spec, "lock", lock)
    target = open_target(spec, arch=arch, insecure=insecure)
    packages = {p.key: p.version for p in read_dpkg_db(target.view)}
    return Side(spec, target.kind, packages, dict(target.view.walk()), target.view, target.layers, target.note)


def _same_file(a: Side, b: Side, path: str, na: Node, nb: Node) -> bool:
    if na.kind != nb.kind:
        return False
    if na.kind == "symlink":
        return na.target == nb.target
    if na.kind != "file":
        return True
    if na.size != nb.size:
        return False
    assert a.view is not None and b.view is not None
    return _sha256(a.view, path) == _sha256(b.view, path)


def _sha256(view: FsView, path: str) -> str:
    h = hashlib.sha256()
    with view.open(path) as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def diff_sides(a: Side, b: Side) -> DiffReport:
    added = tuple(sorted((k, v) for k, v in b.packages.items() if k not in a.packages))
    removed = tuple(sorted((k, v) for k, v in a.packages.items() if k not in b.packages))
    changed = tuple(sorted((k, v, b.packages[k]) for k, v in a.packages.items()
                           if k in b.packages and b.packages[k] != v))
    fa: list[tuple[str, int]] = []
    fr: list[tuple[str, int]] = []
    fc: list[tuple[str, int, int]] = []
    if a.nodes is not None and b.nodes is not None:
        for path in sorted(set(a.nodes) | set(b.nodes)):
            na, nb = a.nodes.get(path), b.nodes.get(path)
            if na is not None and na.kind == "dir" and (nb is None or nb.kind == "dir"):
                continue
            if nb is not None and nb.kind == "dir" and na is None:
                continue
            if na is None:
                assert nb is not None
                fa.append((path, nb.size))
            elif nb is None or nb.kind == "dir":
                fr.append((path, na.size))
            elif not _same_file(a, b, path, na, nb):
                fc.append((path, na.size, nb.size))
    shared = None
    if a.layers and b.layers:
        shared = tuple(d for d in a.layers if d in set(b.layers))
    return DiffReport(a, b, added, removed, changed, tuple(fa), tuple(fr), tuple(fc), shared)
