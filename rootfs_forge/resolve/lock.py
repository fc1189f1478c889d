"""Resolution ⇄ lock file (``RECIPE.lock``, TOML).

A lock names every package by suite and archive path, never by mirror host, so it can be committed and used
against any mirror of the same archive; the recipe's (or the host's) sources supply the host at compose time.
``recipe_digest`` covers what influences resolution; a lock whose digest differs from the recipe is stale.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from rootfs_forge.archive.sources import SourceEntry
from rootfs_forge.errors import RecipeError
from rootfs_forge.model import Package, Reason, Resolution
from rootfs_forge.recipe import Recipe

LOCK_VERSION = 1


def lock_path(recipe_path: Path) -> Path:
    return recipe_path.with_name(recipe_path.name + ".lock") if recipe_path.suffix != ".toml" else \
        recipe_path.with_suffix(".lock")


@dataclass(frozen=True)
class Lock:
    recipe_digest: str
    architectures: tuple[str, ...]
    resolutions: dict[str, Resolution]  # per architecture

    def is_current(self, recipe: Recipe) -> bool:
        return self.recipe_digest == recipe.resolution_digest() and self.architectures == recipe.architectures


def dump_lock(recipe: Recipe, resolutions: dict[str, Resolution]) -> bytes:
    doc: dict[str, object] = {
        "version": LOCK_VERSION,
        "recipe_digest": recipe.resolution_digest(),
        "architectures": list(recipe.architectures),
    }
    per_arch = []
    for arch in recipe.architectures:
        res = resolutions[arch]
        per_arch.append({
            "architecture": arch,
            "requested": list(res.requested),
            "order": list(res.order),
            "package": [
                {
                    "name": p.name, "version": p.version, "architecture": p.architecture, "suite": p.suite,
                    "filename": p.filename, "size": p.size, "sha256": p.sha256,
                    "installed_size": p.installed_size, "multi_arch": p.multi_arch, "essential": p.essential,
                    "priority": p.priority, "source": p.source, "section": p.section,
                    "why": [{"parent": r.parent or "", "relation": r.relation} for r in res.why.get(p.key, ())],
                }
                for p in res.packages
            ],
            "notes": list(res.notes),
        })
    doc["image"] = per_arch
    header = b"# Written by `forge lock`. Commit it; `forge compose --locked` refuses a stale or missing lock.\n"
    return header + tomli_w.dumps(doc).encode()


def load_lock(path: Path, entries: Sequence[SourceEntry]) -> Lock:
    """Read a lock and attach each package to the source that serves its suite."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(str(path), ["no such lock file (run forge lock)"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(str(path), [f"invalid lock: {exc}"]) from None
    if doc.get("version") != LOCK_VERSION:
        raise RecipeError(str(path), [f"version: unsupported lock version {doc.get('version')!r}"])
    base_by_suite: dict[str, str] = {}
    for e in entries:
        base_by_suite.setdefault(e.suite, e.url)
    resolutions: dict[str, Resolution] = {}
    problems: list[str] = []
    for i, img in enumerate(doc.get("image", [])):
        pkgs: list[Package] = []
        why: dict[str, tuple[Reason, ...]] = {}
        for j, d in enumerate(img.get("package", [])):
            try:
                suite = d["suite"]
                if suite not in base_by_suite:
                    problems.append(f"image[{i}].package[{j}]: suite {suite!r} of {d['name']} is served by no "
                                    "source of the recipe")
                    continue
                base = base_by_suite[suite]
                p = Package(
                    name=d["name"], version=d["version"], architecture=d["architecture"], filename=d["filename"],
                    size=int(d["size"]), sha256=d["sha256"], multi_arch=d.get("multi_arch", "no"),
                    essential=bool(d.get("essential", False)), priority=d.get("priority", "optional"),
                    installed_size=int(d.get("installed_size", 0)), source=d.get("source", ""),
                    section=d.get("section", ""), origin=f"{base} {suite}", base_url=base, suite=suite,
                )
            except (KeyError, TypeError, ValueError) as exc:
                problems.append(f"image[{i}].package[{j}]: bad entry ({exc})")
                continue
            if ".." in p.filename.split("/") or p.filename.startswith("/"):
                problems.append(f"image[{i}].package[{j}]: filename {p.filename!r} leaves the archive")
                continue
            pkgs.append(p)
            why[p.key] = tuple(Reason(r["parent"] or None, r["relation"]) for r in d.get("why", []))
        resolutions[img.get("architecture", "")] = Resolution(
            packages=tuple(sorted(pkgs, key=lambda p: (p.name, p.architecture))),
            order=tuple(img.get("order", [])), why=why, requested=tuple(img.get("requested", [])),
            notes=tuple(img.get("notes", [])),
        )
    if problems:
        raise RecipeError(str(path), problems)
    return Lock(doc.get("recipe_digest", ""), tuple(doc.get("architectures", [])), resolutions)
