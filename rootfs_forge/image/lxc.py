"""A composed tree -> an LXC image: ``DIR/rootfs.tar.xz`` and ``DIR/meta.tar.xz``, as LXC's ``local`` template
takes them (``lxc-create -n NAME -t local -- --metadata DIR/meta.tar.xz --fstree DIR/rootfs.tar.xz``).

The rootfs tarball is the tree's deterministic tar (the same bytes as ``--format tar``: sorted, numeric owners
from the tree's record, mtimes clamped to the epoch) compressed by xz with fixed settings (one thread, preset 6),
so equal trees give equal files. The metadata tarball holds what the template reads (see lxc-local):

- ``config``: appended to the container's config; LXC's common configuration and the architecture
  (``LXC_TEMPLATE_CONFIG`` is replaced by the template with LXC's configuration directory)
- ``config-user``: the same for unprivileged containers, with LXC's user-namespace configuration
- ``templates``: files of the rootfs in which the template replaces ``LXC_NAME`` (those the tree has)
- ``create-message``: printed by lxc-create
"""

from __future__ import annotations

import io
import lzma
import os
import tarfile
from pathlib import Path

from rootfs_forge.build import Tree, layer_record
from rootfs_forge.image.layer import write_layer
from rootfs_forge.recipe import Recipe
from rootfs_forge.util.arch import DEBIAN_TO_MACHINE, DEBIAN_TO_OCI

# Debian architecture -> what lxc.arch takes (the kernel's personality names)
XZ_PRESET = 6
NAME_TEMPLATES = ("/etc/hostname", "/etc/hosts")


def lxc_metadata(tree: Tree, recipe: Recipe) -> dict[str, bytes]:
    """The files of meta.tar.xz (pure: depends on the recipe and which template files the tree has)."""
    arch = DEBIAN_TO_MACHINE.get(tree.arch, tree.arch)
    common = f"lxc.include = LXC_TEMPLATE_CONFIG/common.conf\nlxc.arch = {arch}\n"
    user = f"lxc.include = LXC_TEMPLATE_CONFIG/common.conf\nlxc.include = LXC_TEMPLATE_CONFIG/userns.conf\n" \
           f"lxc.arch = {arch}\n"
    templates = "".join(f"{p}\n" for p in NAME_TEMPLATES if (tree.root / p.lstrip("/")).is_file()
                        and not (tree.root / p.lstrip("/")).is_symlink())
    message = (f"{recipe.name}:{recipe.tag} ({tree.arch}), composed by forge from Debian packages.\n"
               "It has no init system of its own: run a command with lxc-execute -n NAME -- CMD.\n")
    return {"config": common.encode(), "config-user": user.encode(), "templates": templates.encode(),
            "create-message": message.encode()}


def _xz(src: Path, dest: Path) -> None:
    with open(src, "rb") as fin, lzma.open(dest, "wb", format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64,
                                           preset=XZ_PRESET) as fout:
        while chunk := fin.read(1 << 20):
            fout.write(chunk)


def _meta_tar(files: dict[str, bytes], epoch: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.TarFile(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, epoch
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[name]))
    return lzma.compress(buf.getvalue(), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=XZ_PRESET)


def write_lxc(tree: Tree, recipe: Recipe, out: Path) -> dict[str, str]:
    """Write ``out/rootfs.tar.xz`` and ``out/meta.tar.xz`` (``out`` is an empty staged directory)."""
    blob = write_layer(tree.root, out / ".blob", epoch=tree.epoch, compression="none", owners=layer_record(tree)[0])
    try:
        _xz(Path(blob.path), out / "rootfs.tar.xz")
    finally:
        os.unlink(blob.path)
        for d in sorted((p for p in (out / ".blob").rglob("*") if p.is_dir()), reverse=True):
            d.rmdir()
        (out / ".blob").rmdir()
    (out / "meta.tar.xz").write_bytes(_meta_tar(lxc_metadata(tree, recipe), tree.epoch))
    for name in ("rootfs.tar.xz", "meta.tar.xz"):
        os.utime(out / name, (tree.epoch, tree.epoch))
    return {"diff_id": blob.diff_id, "architecture": DEBIAN_TO_OCI.get(tree.arch, (tree.arch, ""))[0]}
