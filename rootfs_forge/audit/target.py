"""Open what ``forge audit`` is pointed at as a :class:`~rootfs_forge.audit.view.FsView`.

A TARGET is a rootfs directory, a rootfs tarball (``.tar``, ``.tar.gz``, ``.tar.xz``, ``.tar.zst`` …), an OCI
image layout directory or an oci-archive (either with an optional ``:tag``), or a ``docker save`` archive.
Tarballs and image layers are read with libarchive into an in-memory tree, so nothing from them is ever
written to the host: devices stay inert nodes, ``..`` members are skipped and links are only ever resolved
inside the tree. OCI layers are applied in order with their whiteouts (``.wh.NAME``, ``.wh..wh..opq``).

Which manifest of a layout is read is decided by ``image/select.py``, as for every other reader; this module
only supplies the bytes (from a directory, or from an archive held in memory, never extracted to disk).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import libarchive

from rootfs_forge.audit.view import DirView, FsView, MemoryView, Node, norm, read_bytes, resolve
from rootfs_forge.errors import AuditError

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


@dataclass(frozen=True)
class Target:
    """An opened TARGET: its tree, what kind of thing it was and, for images, its layer digests in order."""

    spec: str
    kind: str  # directory | tar | oci-layout | oci-archive | docker-archive
    view: FsView
    layers: tuple[str, ...] = ()
    ref: str = ""
    note: str = ""  # one line: which of several platforms was read, when nobody chose


def split_spec(spec: str) -> tuple[str, str]:
    """``path[:tag]`` → (path, tag). A path that exists as given wins over a ``:tag`` reading."""
    if os.path.exists(spec) or ":" not in spec:
        return spec, ""
    path, _, tag = spec.rpartition(":")
    if path and os.path.exists(path) and "/" not in tag:
        return path, tag
    return spec, ""


def open_target(spec: str, *, arch: str = "", insecure: bool = False) -> Target:
    """Open ``spec``; ``arch`` (``--platform``: ``linux/arm64/v8``, ``arm64`` ...) picks one image of a
    multi-platform one; without it the host's is read and ``Target.note`` says so.

    A spec that is no local path but a registry reference (``REGISTRY/REPO[:TAG|@DIGEST]``) is pulled through
    :mod:`rootfs_forge.image.pull` (verified, blobs cached) and read like an OCI layout.
    """
    path, tag = split_spec(spec)
    if not os.path.exists(path) and not os.path.exists(spec):
        from rootfs_forge.image.pull import looks_like_reference

        if looks_like_reference(spec):
            return _open_reference(spec, arch, insecure)
    if not os.path.exists(path):
        raise AuditError("open", spec, "no such file or directory")
    if os.path.isdir(path):
        view: FsView = DirView(path)
        if _is_oci_layout(view):
            return _open_oci(spec, "oci-layout", view, tag, arch)
        if tag:
            raise AuditError("open", spec, "a :tag only applies to an OCI image")
        return Target(spec, "directory", view)
    mem = load_tar(path)
    if _is_oci_layout(mem):
        return _open_oci(spec, "oci-archive", mem, tag, arch)
    if mem.lstat("/manifest.json") is not None and mem.lstat("/etc") is None:
        return _open_docker(spec, mem, tag)
    if tag:
        raise AuditError("open", spec, "a :tag only applies to an OCI image")
    return Target(spec, "tar", mem)


def _open_reference(spec: str, arch: str, insecure: bool) -> Target:
    from rootfs_forge.image.pull import pulled

    with pulled(spec, platform=arch, insecure=insecure) as got:
        opened = _open_oci(spec, "registry", DirView(str(got.layout)), got.tag, arch)
    return Target(spec, "registry", opened.view, opened.layers, f"{got.tag}@{got.digest}")


def load_tar(path: str) -> MemoryView:
    """A tarball (any compression libarchive knows) as an in-memory tree."""
    return _load(libarchive.file_reader(path), path, MemoryView(), whiteouts=False)


def load_tar_bytes(data: bytes, *, name: str, view: MemoryView | None = None, whiteouts: bool = False) -> MemoryView:
    """Apply the tar in ``data`` onto ``view`` (a new tree when None); OCI whiteouts when ``whiteouts``."""
    return _load(libarchive.memory_reader(data), name, view if view is not None else MemoryView(),
                 whiteouts=whiteouts)


def _load(reader: AbstractContextManager[Any], name: str, view: MemoryView, *, whiteouts: bool) -> MemoryView:
    try:
        with reader as archive:
            apply_entries(view, archive, whiteouts=whiteouts)
    except libarchive.ArchiveError as exc:
        raise AuditError("read", name, f"not a readable tar archive ({_first_line(exc)})") from None
    return view


def apply_entries(view: MemoryView, entries: Iterable[Any], *, whiteouts: bool) -> None:
    """Apply archive entries to ``view``. With ``whiteouts``, the layer's whiteouts remove lower paths first."""
    from rootfs_forge.audit.xattrs import entry_capability

    pending: list[tuple[str, Node, bytes, str]] = []
    capabilities: dict[str, bytes] = {}
    for entry in entries:
        raw = entry.pathname or ""
        if ".." in raw.replace("\\", "/").split("/"):
            continue  # a member that climbs out of the root is hostile; it never lands anywhere
        path = norm(raw)
        if path == "/":
            continue
        base = posixpath.basename(path)
        if whiteouts and base.startswith(WHITEOUT):
            parent = posixpath.dirname(path)
            if base == OPAQUE:
                for name in view.listdir(parent):
                    view.remove(posixpath.join(parent, name))
            else:
                view.remove(posixpath.join(parent, base[len(WHITEOUT):]))
            continue
        mtime = int(entry.mtime or 0)
        mode = int(entry.perm or 0) & 0o7777
        if entry.isdir:
            pending.append((path, Node("dir", 0, mode or 0o755, mtime), b"", ""))
        elif entry.issym:
            pending.append((path, Node("symlink", 0, 0o777, mtime, entry.linkpath or ""), b"", ""))
        elif entry.islnk:
            pending.append((path, Node("file", 0, mode, mtime), b"", norm(entry.linkpath or "")))
        elif entry.isreg:
            data = b"".join(entry.get_blocks())
            pending.append((path, Node("file", len(data), mode, mtime), data, ""))
            if (cap := entry_capability(entry)) is not None:
                capabilities[path] = cap
        else:
            pending.append((path, Node("other", 0, mode, mtime), b"", ""))  # devices and fifos stay inert
    for path, node, data, hardlink in pending:
        _place(view, path, node, data, hardlink)
    held: dict[str, bytes] | None = view.__dict__.get("xattr_capabilities")
    if held:  # a later layer's copy of a file carries its own attributes, or none
        for path, *_ in pending:
            held.pop(path, None)
    if capabilities:  # read by audit.privileges
        view.__dict__.setdefault("xattr_capabilities", {}).update(capabilities)


def _place(view: MemoryView, path: str, node: Node, data: bytes, hardlink: str) -> None:
    parent = resolve(view, posixpath.dirname(path))
    if parent is not None and (view.lstat(parent) or Node("missing")).kind == "dir":
        path = posixpath.join(parent, posixpath.basename(path))
    if hardlink:
        source = resolve(view, hardlink, follow_last=False)
        if source is None or (view.lstat(source) or Node("missing")).kind != "file":
            return  # a hard link to nothing in the tree
        data = view.data[source]
        node = Node("file", len(data), node.mode, node.mtime)
    view.add(path, node, data)


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _is_oci_layout(view: FsView) -> bool:
    return view.lstat("/oci-layout") is not None and view.lstat("/index.json") is not None


def _json(view: FsView, path: str, what: str) -> Any:
    try:
        return json.loads(read_bytes(view, path))
    except (OSError, ValueError) as exc:
        raise AuditError("read", what, f"invalid JSON ({_first_line(exc)})") from None


def _blob(view: FsView, digest: str, spec: str) -> bytes:
    algo, _, hexd = digest.partition(":")
    if algo not in ("sha256", "sha512") or not hexd.isalnum():
        raise AuditError("read", spec, f"bad blob digest {digest!r}")
    path = f"/blobs/{algo}/{hexd}"
    if view.lstat(path) is None:
        raise AuditError("read", spec, f"blob {digest} is missing")
    data = read_bytes(view, path)
    if hashlib.new(algo, data).hexdigest() != hexd:
        raise AuditError("read", spec, f"blob {digest} does not match its digest")
    return data




def _open_oci(spec: str, kind: str, layout: FsView, tag: str, arch: str) -> Target:
    from rootfs_forge.errors import ImageError
    from rootfs_forge.image.select import ref_name, select_manifest
    from rootfs_forge.util.platform import PlatformError, parse_platform

    try:
        want = parse_platform(arch) if arch else None
    except PlatformError as exc:
        raise AuditError("open", spec, str(exc)) from None
    index = _json(layout, "/index.json", f"{spec} index.json")
    if not isinstance(index, dict):
        raise AuditError("open", spec, "index.json is not a JSON object")

    def load(desc: dict) -> dict:
        doc = json.loads(_blob(layout, str(desc.get("digest")), spec))
        if not isinstance(doc, dict):
            raise AuditError("open", spec, f"{desc.get('digest')} is not a JSON object")
        return doc

    try:
        desc, manifest, note = select_manifest(index, tag or None, want, load, spec)
    except ImageError as exc:
        raise AuditError(exc.verb, exc.obj, exc.reason) from None
    if not isinstance(manifest.get("layers"), list):
        raise AuditError("open", spec, "the image manifest has no layers")
    view = MemoryView()
    digests = []
    for layer in manifest["layers"]:
        digest = str(layer.get("digest"))
        load_tar_bytes(_blob(layout, digest, spec), name=f"{spec} layer {digest}", view=view, whiteouts=True)
        digests.append(digest)
    ref = ref_name(desc) or tag
    if not ref:  # a nested index: the tag is on its entry in index.json
        names = {ref_name(m) for m in index.get("manifests") or [] if isinstance(m, dict)} - {None}
        ref = str(next(iter(names))) if len(names) == 1 else ""
    return Target(spec, kind, view, tuple(digests), ref, note)


def _open_docker(spec: str, archive: MemoryView, tag: str) -> Target:
    images = _json(archive, "/manifest.json", f"{spec} manifest.json")
    if not isinstance(images, list) or not images:
        raise AuditError("open", spec, "neither a rootfs nor an image archive")
    if tag:
        images = [i for i in images if any(t.endswith(":" + tag) or t == tag for t in i.get("RepoTags") or [])]
    if len(images) != 1:
        raise AuditError("open", spec, f"{len(images)} images in the archive; name one with :TAG")
    view = MemoryView()
    digests = []
    for layer_path in images[0].get("Layers") or []:
        data = read_bytes(archive, norm(layer_path))
        load_tar_bytes(data, name=f"{spec} {layer_path}", view=view, whiteouts=True)
        digests.append("sha256:" + hashlib.sha256(data).hexdigest())
    return Target(spec, "docker-archive", view, tuple(digests), tag)
