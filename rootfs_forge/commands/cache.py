"""forge cache verify / prune / du."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rootfs_forge.archive.cache import Cache, default_cache_dir
from rootfs_forge.archive.cachemaint import prune, usage, verify
from rootfs_forge.commands.common import add_json_arg, human_size, print_json
from rootfs_forge.image.layercache import entries_size, prune_entries, verify_entries
from rootfs_forge.image.layershare import layers_size, prune_layers, verify_layers


def register(sub: Any) -> None:
    p = sub.add_parser("cache", help="inspect and maintain the download cache")
    csub = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    v = csub.add_parser("verify", help="re-hash every entry and drop those that do not match")
    v.set_defaults(func=cmd_verify)
    pr = csub.add_parser("prune", help="drop entries no lock or index references, or unused for N days")
    pr.add_argument("--lock", action="append", default=[], metavar="LOCK",
                    help="keep what this lock file needs (repeatable; default: recipes/*.lock)")
    pr.add_argument("--older-than", type=float, metavar="DAYS", help="also drop entries unused for DAYS days")
    pr.set_defaults(func=cmd_prune)
    du = csub.add_parser("du", help="how much the cache holds")
    du.set_defaults(func=cmd_du)
    for sp in (v, pr, du):
        sp.add_argument("--cache-dir", metavar="DIR")
        add_json_arg(sp)


def _cache(args: argparse.Namespace) -> Cache:
    return Cache(default_cache_dir(args.cache_dir))


def cmd_verify(args: argparse.Namespace) -> int:
    cache = _cache(args)
    checked, bad = verify(cache)
    layer_checked, layer_bad = verify_entries(cache.root)  # deflated layer chunks (image/layercache.py)
    blobs_checked, blobs_bad = verify_layers(cache.root)  # whole layer blobs (image/layershare.py)
    checked, bad = checked + layer_checked + blobs_checked, bad + layer_bad + blobs_bad
    if args.json:
        print_json({"checked": checked, "removed": bad})
    else:
        for b in bad:
            print(f"removed corrupt entry {b}" if "/" in b else f"removed corrupt entry sha256:{b}")
        print(f"verified {checked} entries, {len(bad)} removed")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    locks = [Path(p) for p in args.lock] or sorted(Path("recipes").glob("*.lock"))
    cache = _cache(args)
    removed, freed = prune(cache, locks, args.older_than)
    now = time.time()
    layer_removed, layer_freed = prune_entries(cache.root, args.older_than, now)
    blobs_removed, blobs_freed = prune_layers(cache.root, args.older_than, now)
    removed, freed = removed + layer_removed + blobs_removed, freed + layer_freed + blobs_freed
    if args.json:
        print_json({"removed": removed, "freed_bytes": freed})
    else:
        print(f"removed {removed} entries, freed {human_size(freed)}")
    return 0


def cmd_du(args: argparse.Namespace) -> int:
    cache = _cache(args)
    u = usage(cache)
    # both counted in other_bytes by usage(): shown on their own
    chunks, chunk_bytes = entries_size(cache.root)
    layers, layer_bytes = layers_size(cache.root)  # a blob linked from an output counts here in full
    if args.json:
        print_json({"blobs": u.blobs, "blob_bytes": u.blob_bytes, "index_bytes": u.index_bytes,
                    "layer_chunks": chunks, "layer_chunk_bytes": chunk_bytes,
                    "layers": layers, "layer_bytes": layer_bytes,
                    "other_bytes": max(0, u.other_bytes - chunk_bytes - layer_bytes), "total_bytes": u.total})
    else:
        print(f"{u.blobs} entries, {human_size(u.blob_bytes)} downloads, "
              f"{human_size(u.index_bytes)} indexes and unpacked data, "
              f"{human_size(chunk_bytes)} compressed layer chunks, {human_size(layer_bytes)} whole layers "
              f"({layers}), {human_size(u.total)} in all")
    return 0
