"""``forge pull REGISTRY/REPO[:TAG|@DIGEST] [-o DIR] [--platform P]``: a registry image into an OCI layout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rootfs_forge.commands.platform_arg import add_platform_arg


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "pull",
        help="pull an image from a registry into an OCI layout",
        description="Pull REGISTRY/REPO[:TAG|@DIGEST] into an OCI image layout, verifying every manifest and "
        "blob against its digest. Layers already in the cache are not fetched again. Credentials as for "
        "forge push (FORGE_REGISTRY_USER / FORGE_REGISTRY_PASSWORD, else $DOCKER_CONFIG/config.json). "
        "Prints the manifest digest.",
    )
    p.add_argument("reference", metavar="REGISTRY/REPO[:TAG|@DIGEST]")
    p.add_argument("-o", "--output", metavar="DIR", help="the layout to write (default: out/<repo>-<tag>)")
    add_platform_arg(p, "the image to pick from a multi-platform index (linux/arm64, linux/arm/v7 ...; default: "
                        "the host's)")
    p.add_argument("--insecure", action="store_true",
                   help="talk plain HTTP (implied for loopback registries and $FORGE_INSECURE_REGISTRIES)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="download cache (default: $FORGE_CACHE, else cache/ at the project root)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the digest")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rootfs_forge.image.pull import parse_pull_reference, pull

    ref = parse_pull_reference(args.reference)
    dest = Path(args.output) if args.output else \
        Path("out") / f"{ref.repository.rsplit('/', 1)[-1]}-{ref.tag or ref.digest[7:19]}"
    result = pull(args.reference, dest, platform=args.platform, insecure=args.insecure, cache_dir=args.cache_dir)
    if not args.quiet:
        print(f"pulled {ref.text} into {dest}:{result.tag}: {len(result.fetched)} blobs fetched, "
              f"{len(result.cached)} from the cache", file=sys.stderr)
    print(result.digest)
    return 0
