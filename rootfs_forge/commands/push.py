"""``forge push IMAGE_DIR[:TAG] REGISTRY/REPO:TAG``: upload an OCI layout (or oci-archive) to a registry."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "push",
        help="push an image to a registry",
        description="Push an image (OCI layout DIR[:TAG] or oci-archive FILE[:TAG]) to REGISTRY/REPO[:TAG]. "
        "Credentials: FORGE_REGISTRY_USER / FORGE_REGISTRY_PASSWORD, else auths.<registry>.auth in "
        "$DOCKER_CONFIG/config.json or ~/.docker/config.json. Prints the pushed manifest digest.",
    )
    p.add_argument("image", metavar="IMAGE_DIR[:TAG]")
    p.add_argument("reference", metavar="REGISTRY/REPO[:TAG]")
    p.add_argument("--insecure", action="store_true",
                   help="talk plain HTTP (implied for loopback registries and $FORGE_INSECURE_REGISTRIES)")
    p.add_argument(
        "--chunk-size",
        type=int,
        default=32,
        metavar="MIB",
        help="upload blobs larger than this in chunks of this size (default 32)",
    )
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where to remember which blobs the registry holds, for cross-repository mounts "
        "(default: $FORGE_CACHE, else cache/ at the project root)",
    )
    p.add_argument("--sbom", action="store_true",
                   help="attach an SPDX SBOM to each pushed image manifest as an OCI referrer (the sha256-<digest> "
                        "tag schema on registries without the referrers API)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the digest")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rootfs_forge.archive.cache import default_cache_dir
    from rootfs_forge.errors import ImageError
    from rootfs_forge.image.oci import split_image_ref
    from rootfs_forge.image.pull import is_insecure
    from rootfs_forge.image.registry import host_credentials, parse_reference, push

    ref = parse_reference(args.reference)
    path_text, tag = split_image_ref(args.image)
    credentials = host_credentials(ref.host)
    insecure = is_insecure(ref.host, args.insecure)  # the rule of pull, the registry cache and vendor stores
    state = default_cache_dir(args.cache_dir) / "registry" / (ref.host.replace(":", "_") + ".json")
    known = _load_known(state)

    def report(event: str, digest: str) -> None:
        if not args.quiet:
            print(f"{event:8} {digest}", file=sys.stderr)

    if args.chunk_size < 1:
        raise ImageError("push", args.image, "--chunk-size must be at least 1 MiB")
    with tempfile.TemporaryDirectory(prefix="forge-push-") as scratch:
        layout = Path(path_text)
        if layout.is_file():  # an oci-archive: unpack it first
            from rootfs_forge.image.oci import read_image

            layout = read_image(layout, tag, extract_to=Path(scratch)).layout
        try:
            result = push(
                layout,
                tag,
                args.reference,
                insecure=insecure,
                credentials=credentials,
                chunk_size=args.chunk_size << 20,
                known_blobs=known,
                report=report,
            )
        finally:
            _save_known(state, known)
        if args.sbom:
            from rootfs_forge.image.regcache import attach_sboms
            from rootfs_forge.util.env import source_date_epoch

            for got in attach_sboms(layout, tag, args.reference, insecure=insecure,
                                    epoch=source_date_epoch()):
                if not args.quiet:
                    print(f"sbom     {got['digest']} -> {got['subject']} ({got['via']})", file=sys.stderr)
    if not args.quiet:
        s = result.stats
        print(
            f"pushed {ref.text}: {len(s.uploaded)} uploaded, {len(s.mounted)} mounted, "
            f"{len(s.skipped)} already there",
            file=sys.stderr,
        )
    print(result.digest)
    return 0


def _load_known(path: Path) -> dict[str, str]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # a missing or broken record only costs a cross-repository mount
    return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}


def _save_known(path: Path, known: dict[str, str]) -> None:
    from rootfs_forge.util.canonical import canonical_json
    from rootfs_forge.util.files import write_atomic

    with contextlib.suppress(OSError):  # best effort, like the mounts it serves
        write_atomic(path, canonical_json(known, ensure_ascii=True), mode=None)
