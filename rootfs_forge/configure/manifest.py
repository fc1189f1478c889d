"""``/var/lib/forge/manifest.json``: what forge knows about an image that dpkg does not (why-graph, filter
savings, local files, the effects and the verdict on every maintainer script)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from rootfs_forge.configure.effects.tree import RootDir
from rootfs_forge.recipe import Recipe
from rootfs_forge.util.canonical import canonical_json

if TYPE_CHECKING:
    from rootfs_forge.build import Tree

FORGE_MANIFEST = "/var/lib/forge/manifest.json"


def manifest_doc(tree: Tree, recipe: Recipe) -> dict[str, object]:
    res = tree.resolution
    # packages of the resolution that kept no file: not installed in the dpkg database (unless the recipe says
    # sliced_packages = "installed"), so that scanners do not report code that is not in the image. The key is
    # only written when there are some, so that the images of other recipes keep their digests.
    sliced = [
        {"name": p.name, "version": p.version, "architecture": p.architecture, "sha256": p.sha256,
         "why": tree.sliced_away[p.name], "in_dpkg_database": recipe.sliced_packages == "installed"}
        for p in res.packages if p.name in tree.sliced_away
    ]
    return ({"sliced_away": sliced} if sliced else {}) | {
        "schema": 1,
        "image": {"name": recipe.name, "tag": recipe.tag, "architecture": tree.arch},
        "requested": list(res.requested),
        "packages": {
            p.name: {
                "version": p.version, "architecture": p.architecture, "sha256": p.sha256,
                "dropped_files": tree.files[p.name].files_dropped, "dropped_bytes": tree.files[p.name].bytes_dropped,
                "kept_bytes": tree.files[p.name].bytes_kept,
            }
            for p in res.packages
        },
        "why": {k: [{"parent": r.parent, "relation": r.relation} for r in v] for k, v in sorted(res.why.items())},
        "files": sorted(tree.local_files, key=lambda d: str(d["path"])),
        "slim": {"removed_files": tree.slimmed[0], "removed_bytes": tree.slimmed[1]} if recipe.slim else None,
        "scripts": tree.effects.report(),
        "effects": [*tree.effects.effects_report(), _layout_effect(tree)],
    }


def _layout_effect(tree: Tree) -> dict[str, object]:
    """The merged-/usr links forge lays out itself (no package ships /lib32 or /libx32, for instance)."""
    entries = tree.writer.entries()
    links = [p for p in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
             if entries.get(p) is not None and entries[p].kind == "symlink"]
    return {"effect": "merged-usr", "status": "applied" if links else "not-applicable", "skipped": "",
            "messages": [], "changed": links}


def write_manifest(tree: Tree, recipe: Recipe) -> None:
    """``/var/lib/forge/manifest.json``: what forge knows that dpkg does not (why-graph, filters, local files).

    Written after the effects, through the same in-root writer they and the dpkg database use.
    """
    doc = manifest_doc(tree, recipe)
    rd = RootDir(tree.writer)
    rd.mkdir(os.path.dirname(FORGE_MANIFEST), 0o755)
    rd.write_file(FORGE_MANIFEST, canonical_json(doc) + b"\n")
    tree.changed_paths.add(FORGE_MANIFEST)


