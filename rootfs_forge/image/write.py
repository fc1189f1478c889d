"""Composed trees → OCI image layout, oci-archive or docker-archive (one image per architecture).

Layers follow the recipe: one layer (default), one per ``[[layer]]`` group, or apko-style ``origin`` layering
with a budget. A group layer holds exactly the files its packages shipped, so two images that share a group
share that layer byte for byte; everything forge generated (effects, dpkg database, manifest, local files)
goes into the last layer, which is the image-specific one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rootfs_forge.build import Tree, check_user, layer_record
from rootfs_forge.image import DEFAULT_ENV
from rootfs_forge.image.archives import write_docker_archive
from rootfs_forge.image.archives import write_oci_archive as _write_oci_archive
from rootfs_forge.image.layer import LayerBlob, write_layer
from rootfs_forge.image.layercache import ChunkCache
from rootfs_forge.image.layering import LayerGroup, group_layers
from rootfs_forge.image.layershare import LayerShare
from rootfs_forge.image.oci import (
    ImageConfig,
    platform_for,
    write_image,
    write_index,
)
from rootfs_forge.recipe import Recipe
from rootfs_forge.util.outputs import staged_output
from rootfs_forge.util.platform import debian_label


def _all_paths(root: Path) -> set[str]:
    out: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        prefix = "" if rel == "." else rel + "/"
        for name in dirnames + filenames:
            out.add(prefix + name)
    return out


def layer_paths(tree: Tree, plans: Sequence[LayerGroup]) -> list[set[str]]:
    """The tree paths (relative, no leading slash) of each planned layer; the last takes everything left."""
    changed = {p.lstrip("/") for p in tree.changed_paths}
    remaining = _all_paths(tree.root)
    out: list[set[str]] = []
    for plan in plans[:-1]:
        mine: set[str] = set()
        for name in plan.packages:
            mine |= {p.lstrip("/") for p in tree.package_paths(name)}
        mine = (mine & remaining) - changed
        # a directory stays in the later layers too (as a parent); files and links move here for good
        remaining -= {p for p in mine if not (tree.root / p).is_dir() or (tree.root / p).is_symlink()}
        out.append(mine)
    out.append(remaining)
    return out


def image_config(tree: Tree, recipe: Recipe, history: Sequence[str]) -> ImageConfig:
    spec = recipe.config
    env = dict(e.split("=", 1) for e in DEFAULT_ENV)
    env.update(dict(spec.env))
    check_user(tree, spec.user)
    return ImageConfig(
        architecture=tree.arch,
        entrypoint=tuple(spec.entrypoint),
        cmd=tuple(spec.cmd),
        env=tuple(f"{k}={v}" for k, v in env.items()),
        working_dir=spec.working_dir,
        user=spec.user,
        labels=dict(spec.labels),
        exposed_ports=tuple(spec.exposed_ports),
        stop_signal=spec.stop_signal,
        created=tree.epoch,
        history=tuple(history),
    )


def write_tree_layers(tree: Tree, recipe: Recipe, layout: Path,
                      chunks: ChunkCache | None = None,
                      share: LayerShare | None = None) -> tuple[list[LayerBlob], list[str]]:
    """The layers of ``tree`` in ``layout`` and their history lines; gzip layers deflate through ``chunks``;
    ``share``: a gallery's layers, one written by an earlier image of the call is copied from there."""
    sizes = {p.name: tree.files[p.name].bytes_kept for p in tree.resolution.packages}
    groups = [(g.name, list(g.packages)) for g in recipe.layers]
    budget = max(recipe.layer_budget, len(groups) + 1) if recipe.layering == "groups" else recipe.layer_budget
    plans = group_layers(groups, sizes, recipe.layering, budget)  # type: ignore[arg-type]
    if len(plans) > 1 and plans[-1].name != "rest":
        # generated files (effects, dpkg database) always go on top, in a layer of their own
        plans.append(LayerGroup("rest", ()))
    owners, xattrs = layer_record(tree)
    blobs: list[LayerBlob] = []
    history: list[str] = []
    # one layer: the whole tree, walked by the layer writer (no path list to build)
    per_layer = layer_paths(tree, plans) if len(plans) > 1 else [None]
    write = share.write_layer if share is not None else write_layer
    for plan, paths in zip(plans, per_layer, strict=True):
        blobs.append(write(tree.root, layout, paths=sorted(paths) if paths is not None else None,
                           epoch=tree.epoch, compression=recipe.compression,  # type: ignore[arg-type]
                           owners=owners, xattrs=xattrs, deflate=chunks))
        listed = ", ".join(plan.packages[:8]) + (" …" if len(plan.packages) > 8 else "")
        history.append(f"forge compose {recipe.name}: layer {plan.name} ({listed})")
    return blobs, history


def write_images(trees: Sequence[Tree], recipe: Recipe, dest: Path, fmt: str,
                 cache_root: Path | None = None, share: LayerShare | None = None) -> dict[str, Any]:
    """Write the image(s) of ``trees`` to ``dest`` in ``fmt``; return digests for the report. ``cache_root``:
    the download cache, whose ``composed-layers`` keep deflated gzip chunks for the next compose. ``share``:
    the layers of a gallery compose (``image/layershare.py``); without one, the cache's (its ``layer-blobs``:
    a layer an earlier compose wrote is copied, not compressed again)."""
    chunks = ChunkCache(cache_root) if cache_root is not None and recipe.compression == "gzip" else None
    if share is None and cache_root is not None:
        share = LayerShare.in_cache(cache_root)  # the layers earlier composes left: copied, not compressed again
    annotations = {"org.opencontainers.image.title": recipe.name, "org.opencontainers.image.version": recipe.tag}
    epoch = max(t.epoch for t in trees)
    shared_before = (share.reused, share.written) if share is not None else (0, 0)

    def build(layout: Path) -> tuple[str, dict[str, str]]:
        # several platforms: one tagged image index in index.json over the platform manifests, the shape
        # `skopeo copy --all` writes and the only one skopeo picks a platform from (given several entries of
        # one tag it takes the first); umoci and syft read single-platform layouts only (compose --platform)
        refs = []
        per_arch: dict[str, str] = {}
        for tree in trees:
            blobs, history = write_tree_layers(tree, recipe, layout, chunks, share)
            config = image_config(tree, recipe, history)
            ref = write_image(layout, blobs, config, ref_name=None if len(trees) > 1 else recipe.tag,
                              annotations=annotations)
            refs.append((ref, platform_for(tree.arch)))
            per_arch[tree.arch] = ref.manifest_digest
        if len(trees) > 1:
            top = write_index(layout, refs, recipe.tag, annotations)
            return top.manifest_digest, per_arch
        return refs[0][0].manifest_digest, per_arch

    if fmt == "oci":
        with staged_output(dest, directory=True) as layout:
            digest, per_arch = build(layout)
    else:
        with tempfile.TemporaryDirectory(prefix=f".{dest.name}.forge-{os.getpid()}-layout-",
                                         dir=dest.absolute().parent) as scratch:
            layout = Path(scratch) / "layout"
            layout.mkdir()
            digest, per_arch = build(layout)
            with staged_output(dest, directory=False) as out:
                if fmt == "oci-archive":
                    _write_oci_archive(layout, out, epoch=epoch)
                else:
                    if len(trees) > 1:
                        from rootfs_forge.errors import ForgeError

                        raise ForgeError("compose", f"{recipe.path.name} as a docker-archive",
                                         "a docker-archive holds one platform; choose one with --platform "
                                         f"(e.g. --platform {debian_label(trees[0].arch)}) or use --format oci")
                    write_docker_archive(layout, out, tag=recipe.tag,
                                         repo_tags=[f"{recipe.name}:{recipe.tag}"], epoch=epoch)
    report: dict[str, Any] = {"manifest_digest": digest, "manifests": per_arch}
    if chunks is not None:
        report["layer_cache"] = chunks.outcomes()
    if share is not None:
        report["layer_share"] = {"reused": share.reused - shared_before[0],
                                 "written": share.written - shared_before[1]}
    return report
