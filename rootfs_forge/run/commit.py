"""``forge commit``: a named container's overlay upper dir -> one new OCI layer on top of its image.

The pure part (``layer_entries``) turns the upper dir into the entries of an OCI layer: an overlay whiteout
(character device 0:0) becomes ``.wh.<name>``, an opaque directory (xattr ``trusted.overlay.opaque=y``) gets a
``.wh..wh..opq`` entry, and the mount points the launcher itself created (empty /proc, /dev, /sys, /tmp dirs,
the empty /etc/hostname, /etc/hosts, /etc/resolv.conf files, volume targets) are left out. The entries are
staged as a small tree (hard links into the upper dir, so nothing is copied) and written by
``rootfs_forge.image.layer.write_layer`` (deterministic tar, clamped mtimes, numeric owners); config, manifest and
the tag in index.json by ``rootfs_forge.image.oci.write_image``. The base image's config is carried over (run
defaults, labels, history) with one history entry added.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rootfs_forge.errors import ImageError, RunError
from rootfs_forge.image.layer import LayerBlob, write_layer
from rootfs_forge.run import image as img
from rootfs_forge.run import state
from rootfs_forge.util.files import atomic_file

if TYPE_CHECKING:
    from rootfs_forge.image import oci

OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
RUNTIME_DIRS = ("proc", "dev", "sys", "tmp")
RUNTIME_FILES = ("etc/hostname", "etc/hosts", "etc/resolv.conf")


@dataclass(frozen=True)
class Entry:
    """One entry of the new layer. ``kind``: ``copy`` (take ``path`` from the upper dir as it is),
    ``whiteout`` (``path`` is a ``.wh.<name>`` marker) or ``opaque`` (``path`` is a ``.wh..wh..opq`` marker)."""

    path: str
    kind: str


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def _runtime_artifact(rel: str, full: str, st: os.stat_result, mountpoints: Iterable[str]) -> bool:
    """A mount point ``forge run`` made in the upper dir (empty, so nothing of the user's is lost)."""
    if stat.S_ISDIR(st.st_mode) and rel in (*RUNTIME_DIRS, *mountpoints):
        return not os.listdir(full)
    if stat.S_ISREG(st.st_mode) and rel in (*RUNTIME_FILES, *mountpoints):
        return st.st_size == 0
    return False


def layer_entries(upper: str, mountpoints: Iterable[str] = ()) -> list[Entry]:
    """The layer entries for ``upper``, sorted by path; see the module docstring."""
    mps = tuple(m.strip("/") for m in mountpoints)
    out: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(upper):
        rel_dir = os.path.relpath(dirpath, upper)
        rel_dir = "" if rel_dir == "." else rel_dir
        keep_dirs = []
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = f"{rel_dir}/{name}" if rel_dir else name
            st = os.lstat(full)
            if _runtime_artifact(rel, full, st, mps):
                continue
            if _is_whiteout(st):
                out.append(Entry(f"{rel_dir}/.wh.{name}" if rel_dir else f".wh.{name}", "whiteout"))
                continue
            out.append(Entry(rel, "copy"))
            if stat.S_ISDIR(st.st_mode):
                keep_dirs.append(name)
                if _is_opaque(full):
                    out.append(Entry(f"{rel}/{img.OPAQUE}", "opaque"))
        dirnames[:] = [d for d in dirnames if d in keep_dirs]
    return sorted(out, key=lambda e: e.path.split("/"))


def stage(upper: str, entries: list[Entry], dest: str) -> None:
    """Build the layer's tree in ``dest``: dirs recreated with their metadata, files hard-linked from the
    upper dir (or copied across file systems), whiteout markers as empty mode-0 files."""
    for e in entries:
        target = os.path.join(dest, e.path)
        if e.kind in ("whiteout", "opaque"):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fd = os.open(target, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0)
            os.close(fd)
            os.chmod(target, 0)
            continue
        src = os.path.join(upper, e.path)
        st = os.lstat(src)
        if stat.S_ISDIR(st.st_mode):
            os.makedirs(target, exist_ok=True)
            os.chown(target, st.st_uid, st.st_gid)
            os.chmod(target, stat.S_IMODE(st.st_mode))
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
            continue
        try:
            os.link(src, target, follow_symlinks=False)
        except OSError:
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), target)
            elif stat.S_ISREG(st.st_mode):
                shutil.copy2(src, target)
            else:
                os.mknod(target, st.st_mode, st.st_rdev)
            os.lchown(target, st.st_uid, st.st_gid)
    # directories last touched by the loop above: restore their mtimes bottom-up
    for e in reversed(entries):
        if e.kind == "copy":
            src, target = os.path.join(upper, e.path), os.path.join(dest, e.path)
            st = os.lstat(src)
            if stat.S_ISDIR(st.st_mode):
                os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_blob(src_layout: str, dst_layout: str, digest: str) -> None:
    src, dst = img.blob_path(src_layout, digest), img.blob_path(dst_layout, digest)
    if os.path.exists(dst):
        return
    try:
        os.link(src, dst)
    except OSError:  # another filesystem: a copy, complete or absent
        with open(src, "rb") as fin, atomic_file(Path(dst)) as fout:
            shutil.copyfileobj(fin, fout)


def commit_container(state_dir: str, name: str, dest: str, *, epoch: int) -> str:
    """Write the container's changes as a new image ``dest`` (``DIR:TAG``); returns the manifest digest."""
    meta = state.load(state_dir, name)
    layout_src, tag_src = meta.get("layout"), meta.get("tag")
    if not layout_src:
        raise RunError("commit", name, "the container was not started from an OCI layout (a rootfs dir or "
                                       "archive): nothing to put the layer on")
    out_dir, tag = img.split_ref(dest)
    if tag is None:
        raise RunError("commit", name, f"name the new image as DIR:TAG, not {dest!r}")
    base = img.open_layout(str(layout_src), tag_src if isinstance(tag_src, str) else None)
    if base.manifest_digest != meta.get("manifest"):
        raise RunError("commit", name, f"{layout_src} no longer holds the image it was started from")
    cdir = state.container_dir(state_dir, name)
    upper = os.path.join(cdir, "upper")
    mountpoints = [str(v) for v in meta.get("mountpoints") or []]
    entries = layer_entries(upper, mountpoints)
    staging = os.path.join(cdir, f".commit-{os.getpid()}")
    os.mkdir(staging, 0o755)
    try:
        stage(upper, entries, staging)
        os.makedirs(os.path.join(out_dir, "blobs", "sha256"), exist_ok=True)
        blob = write_layer(Path(staging), Path(out_dir), epoch=epoch, compression="gzip")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _write_image(base, out_dir, tag, blob, epoch)


def _write_image(base: img.Image, out_dir: str, tag: str, new_layer: LayerBlob, epoch: int) -> str:
    """Config + manifest for base layers + the new one, tagged ``tag`` in ``out_dir`` (through oci.py)."""
    from rootfs_forge.image import oci

    layout = Path(out_dir)
    layers = []
    for desc, diff_id in base.layers:
        digest = str(desc["digest"])
        if os.path.abspath(out_dir) != os.path.abspath(base.layout):
            _copy_blob(base.layout, out_dir, digest)
        if not desc.get("mediaType"):
            raise ImageError("read image", base.layout, f"layer {digest} has no mediaType")
        layers.append(LayerBlob(digest=digest, diff_id=diff_id, size=int(desc.get("size") or 0),
                                media_type=str(desc["mediaType"]), path=layout / "blobs" / "sha256" / digest[7:]))
    layers.append(new_layer)
    ref = oci.write_image(layout, layers, image_config(base.config_json, epoch), ref_name=tag)
    return ref.manifest_digest


def image_config(doc: dict, epoch: int) -> oci.ImageConfig:
    """The base image's config as ``oci.ImageConfig``, one history entry added for the committed layer."""
    from rootfs_forge.image import oci

    c = doc.get("config") or {}
    history = [str(h.get("created_by", "")) for h in doc.get("history") or []
               if isinstance(h, dict) and not h.get("empty_layer")]
    return oci.ImageConfig(
        architecture=str(doc.get("architecture") or "amd64"), os=str(doc.get("os") or "linux"),
        variant=str(doc.get("variant") or ""), entrypoint=tuple(c.get("Entrypoint") or ()),
        cmd=tuple(c.get("Cmd") or ()), env=tuple(c.get("Env") or ()), working_dir=str(c.get("WorkingDir") or ""),
        user=str(c.get("User") or ""), labels=dict(c.get("Labels") or {}),
        exposed_ports=tuple(sorted(c.get("ExposedPorts") or {})), stop_signal=str(c.get("StopSignal") or ""),
        created=epoch, history=(*history, "forge commit"), author=str(doc.get("author") or ""),
    )
