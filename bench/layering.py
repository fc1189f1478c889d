#!/usr/bin/env python3
"""What apko-style origin layering saves across the gallery: bytes a registry stores and a node pulls.

Composes every recipe in recipes/ (from its lock, one architecture) to a rootfs, reads the bytes each package
kept from forge's manifest, and plans each image's layers three ways: one layer, and origin layering with a
budget of 4 and 8. Package layers are byte-identical across images when the package version and epoch are the
same (tests/test_image_compose.py checks this), so a layer shared by several images is stored once. Prints the
total of all images, the unique bytes to store, and the saving per strategy.

    python3 bench/layering.py [--arch amd64] [--budgets 4 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rootfs_forge.image.layering import group_layers  # noqa: E402


def kept_bytes(recipe: Path, arch: str, work: Path, cache: str | None) -> tuple[dict[str, int], int]:
    """package -> kept bytes, and the bytes nothing packaged (effects, dpkg database, manifest)."""
    out = work / recipe.stem
    cmd = [sys.executable, "-m", "rootfs_forge", "compose", str(recipe), "--locked", "--format", "rootfs", "-o",
           str(out), "-q"]
    if cache:
        cmd += ["--cache-dir", cache]
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT,
                   env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"})
    root = out / arch if (out / arch).is_dir() else out
    manifest = json.loads((root / "var/lib/forge/manifest.json").read_text())
    sizes = {f"{name}={p['version']}": int(p["kept_bytes"]) for name, p in manifest["packages"].items()}
    total = int(subprocess.run(["du", "-sb", "--apparent-size", str(root)], capture_output=True, text=True,
                               check=True).stdout.split()[0])
    shutil.rmtree(out)
    return sizes, max(total - sum(sizes.values()), 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="amd64")
    ap.add_argument("--budgets", type=int, nargs="*", default=[4, 8])
    ap.add_argument("--cache-dir")
    args = ap.parse_args()
    recipes = sorted((ROOT / "recipes").glob("*.toml"))
    images: dict[str, tuple[dict[str, int], int]] = {}
    with tempfile.TemporaryDirectory(prefix="forge-bench-layering-") as tmp:
        for r in recipes:
            images[r.stem] = kept_bytes(r, args.arch, Path(tmp), args.cache_dir)
    total = sum(sum(s.values()) + rest for s, rest in images.values())
    print(f"origin layering across {len(images)} gallery images ({args.arch}); sizes are uncompressed bytes")
    print(f"{'strategy':24} {'all images':>12} {'unique stored':>14} {'saved':>8}")
    print(f"{'single layer':24} {total / 1e6:10.1f} MB {total / 1e6:12.1f} MB {0:7.0%}")
    for budget in args.budgets:
        unique: dict[tuple[str, ...], int] = {}
        specific = 0
        for sizes, rest in images.values():
            plans = group_layers([], sizes, "origin", budget)
            for plan in plans:
                size = sum(sizes[p] for p in plan.packages)
                if plan.name == "rest":
                    specific += size + rest  # the rest layer also carries what forge generated
                else:
                    unique[plan.packages] = size
            if plans[-1].name != "rest":
                specific += rest
        stored = sum(unique.values()) + specific
        print(f"{'origin, budget ' + str(budget):24} {total / 1e6:10.1f} MB {stored / 1e6:12.1f} MB "
              f"{1 - stored / total:7.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
