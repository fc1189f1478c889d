"""The registry as a shared build cache: ``forge compose RECIPE --registry-cache REGISTRY/REPO``.

The key is the SHA-256 of (the resolved lock for the recipe's platforms, the recipe's text and the contents of
its ``[[file]]`` sources, the image epoch, forge's output-format version): everything an image's bytes depend
on. The image is stored in REGISTRY/REPO under the tag ``cache-<key>``. On a hit, the image is pulled into the
output layout (every manifest and blob checked against its digest, blobs through the verifying cache writer)
instead of composed; on a miss, the composed image is pushed under that tag, with its SBOM attached as a
referrer (rootfs_forge.image.referrer). Workers that share nothing but the registry thus compose each image
once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rootfs_forge.archive.cache import Cache
from rootfs_forge.model import Resolution
from rootfs_forge.recipe import Recipe
from rootfs_forge.util.canonical import canonical_json

# forge's output-format version: bump it with any change that moves image digests for the same inputs (the
# golden digest test in tests/test_image_compose.py pins them), so that no worker takes an old image for new
OUTPUT_FORMAT_VERSION = 1
TAG_PREFIX = "cache-"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                p = Path(root) / name
                h.update(str(p.relative_to(path)).encode() + b"\0")
                h.update(p.read_bytes())
        return "dir:" + h.hexdigest()
    h.update(path.read_bytes())
    return h.hexdigest()


def cache_key(recipe: Recipe, resolutions: Mapping[str, Resolution], epoch: int | None) -> str:
    """The key of the image ``recipe`` composes from ``resolutions`` (hex SHA-256)."""
    from rootfs_forge.resolve.lock import dump_lock

    doc = {
        "forge_output_format": OUTPUT_FORMAT_VERSION,
        "lock": dump_lock(recipe, dict(resolutions)).decode(),
        "recipe": recipe.path.read_text(encoding="utf-8") if recipe.path.is_file() else repr(recipe),
        "files": {f.dest: _file_digest(Path(f.src)) for f in recipe.files},
        "epoch": epoch,
    }
    return hashlib.sha256(canonical_json(doc, ensure_ascii=True)).hexdigest()


def cache_reference(registry_repo: str, key: str) -> str:
    return f"{registry_repo.rstrip('/')}:{TAG_PREFIX}{key}"


def fetch_cached(reference: str, dest: Path, tag: str, cache: Cache, *, insecure: bool) -> str | None:
    """Pull the image at ``reference`` (an index and all its platforms, or one manifest) into the new OCI layout
    ``dest`` tagged ``tag``; return its digest, or None when the registry has no such tag (a miss)."""
    import requests

    from rootfs_forge.image.blobfetch import credentials
    from rootfs_forge.image.oci import INDEX_TYPE, MANIFEST_TYPE, _tag, write_blob
    from rootfs_forge.image.pull import (
        DOCKER_LIST,
        DOCKER_MANIFEST,
        OCI_INDEX,
        PullResult,
        _place,
        _Puller,
        parse_pull_reference,
    )
    from rootfs_forge.image.registry import PushStats, Reference, _Client, _fail
    from rootfs_forge.util.outputs import staged_output

    ref = parse_pull_reference(reference)
    with requests.Session() as session:
        client = _Client(Reference(ref.host, ref.repository, ref.tag), insecure=insecure,
                         credentials=credentials(ref.host),
                         session=session, stats=PushStats())
        client.verb, client.actions = "pull from", "pull"
        head = client.request("HEAD", client.url(f"manifests/{ref.tag}"), headers={"Accept": ",".join(
            (OCI_INDEX, MANIFEST_TYPE, DOCKER_LIST, DOCKER_MANIFEST))})
        if head.status_code == 404:
            return None
        if head.status_code != 200:
            raise _fail(client, f"HEAD manifest {ref.tag}", head)
        puller = _Puller(ref, client, cache)
        result = PullResult(ref, "", "", dest, tag)
        body, media, digest = puller.manifest(ref.tag)
        documents: list[bytes] = [body]
        blobs: list[str] = []
        children: list[tuple[bytes, str]] = []
        if media in (OCI_INDEX, DOCKER_LIST):
            for child in json.loads(body).get("manifests") or []:
                cbody, _, cdigest = puller.manifest(str(child["digest"]), str(child["digest"]))
                children.append((cbody, cdigest))
        else:
            children.append((body, digest))
        config: dict[str, Any] = {}
        for cbody, _ in children:
            manifest = json.loads(cbody)
            for desc in [manifest.get("config") or {}, *(manifest.get("layers") or [])]:
                puller.blob(desc, result)
                blobs.append(str(desc["digest"]))
            documents.append(cbody)
            if len(children) == 1:
                config = json.loads(cache.blob_path(str(manifest["config"]["digest"])[7:]).read_bytes())
    with staged_output(dest, directory=True) as layout:
        (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        for b in blobs:
            _place(cache, layout, b)
        for doc in documents:
            write_blob(layout, doc)
        top: dict[str, Any] = {"mediaType": INDEX_TYPE if media in (OCI_INDEX, DOCKER_LIST) else MANIFEST_TYPE,
                               "digest": digest, "size": len(body)}
        if config:
            top["platform"] = {"architecture": config.get("architecture", ""), "os": config.get("os", ""),
                               **({"variant": config["variant"]} if config.get("variant") else {})}
        _tag(layout, top, tag)
    return digest


def push_cached(layout: Path, tag: str, reference: str, *, insecure: bool, epoch: int | None) -> dict[str, Any]:
    """Push the composed image under the cache tag and attach an SPDX SBOM to each of its image manifests."""
    from rootfs_forge.image.blobfetch import credentials
    from rootfs_forge.image.registry import parse_reference, push

    result = push(layout, tag, reference, insecure=insecure, credentials=credentials(parse_reference(reference).host))
    return {"digest": result.digest, "sbom": attach_sboms(layout, tag, reference, insecure=insecure,
                                                          epoch=epoch)}


def attach_sboms(layout: Path, tag: str | None, reference: str, *, insecure: bool,
                 epoch: int | None) -> list[dict[str, str]]:
    """An SPDX SBOM per image manifest of ``layout:tag``, pushed as a referrer (subject = that manifest)."""
    from rootfs_forge.audit.report import sbom_input
    from rootfs_forge.audit.sbom import spdx_document
    from rootfs_forge.audit.target import open_target
    from rootfs_forge.image.blobfetch import credentials
    from rootfs_forge.image.oci import INDEX_TYPE, find_ref, load_blob_json
    from rootfs_forge.image.referrer import attach
    from rootfs_forge.image.registry import parse_reference

    top = find_ref(layout, tag)
    if top.get("mediaType") == INDEX_TYPE:
        images = [(m, str((m.get("platform") or {}).get("architecture", "")))
                  for m in load_blob_json(layout, top).get("manifests") or []]
    else:
        images = [(top, "")]
    out = []
    for desc, arch in images:
        target = open_target(f"{layout}:{tag}" if tag else str(layout), arch=arch)
        doc = spdx_document(sbom_input(target, name=f"{reference}{'/' + arch if arch else ''}",
                                       source_date_epoch=epoch))
        got = attach(reference, desc, canonical_json(doc, ensure_ascii=True), insecure=insecure,
                     credentials=credentials(parse_reference(reference).host))
        out.append({"subject": str(desc["digest"]), **got})
    return out
