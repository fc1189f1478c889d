"""Attach an artifact (the SBOM) to a pushed image as an OCI referrer, with the tag-schema fallback.

The artifact is an image manifest whose ``subject`` is the image manifest it describes (OCI distribution spec
1.1). A registry with the referrers API answers the manifest PUT with an ``OCI-Subject`` header and indexes it
itself; one without it (Debian's docker-registry, distribution 2.x) gets the fallback the spec defines: an image
index tagged ``sha256-<hex of the subject>`` listing the referrers, read, extended and written back.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import requests

from rootfs_forge.errors import ImageError
from rootfs_forge.image.registry import PushStats, _Client, _fail, _push_blob, parse_reference
from rootfs_forge.util.canonical import canonical_json

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"
SPDX = "application/spdx+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical(doc: Any) -> bytes:
    return canonical_json(doc, ensure_ascii=True)


def referrer_manifest(subject: dict[str, Any], artifact_type: str, blob: dict[str, Any],
                      annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The artifact manifest (pure): empty config, one layer, ``subject`` the described manifest."""
    doc: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": EMPTY, "digest": _digest(b"{}"), "size": 2},
        "layers": [blob], "subject": {k: subject[k] for k in ("mediaType", "digest", "size")},
    }
    if annotations:
        doc["annotations"] = dict(sorted(annotations.items()))
    return doc


def fallback_tag(subject_digest: str) -> str:
    """The referrers tag schema: ``sha256-<hex>``."""
    algo, _, hexpart = subject_digest.partition(":")
    return f"{algo}-{hexpart}"


def attach(reference: str, subject: dict[str, Any], data: bytes, *, artifact_type: str = SPDX,
           insecure: bool = False, credentials: tuple[str, str] | None = None,
           annotations: dict[str, str] | None = None) -> dict[str, str]:
    """Push ``data`` as a referrer of ``subject`` (a descriptor of a manifest in the repository of
    ``reference``). Returns {"digest", "via": "referrers-api" | "tag-schema"}."""
    ref = parse_reference(reference)
    stats = PushStats()
    with requests.Session() as session, tempfile.TemporaryDirectory(prefix="forge-referrer-") as tmp:
        client = _Client(ref, insecure=insecure, credentials=credentials, session=session, stats=stats)
        layout = Path(tmp)
        (layout / "blobs" / "sha256").mkdir(parents=True)
        blob: dict[str, Any] = {"mediaType": artifact_type, "digest": _digest(data), "size": len(data)}
        empty: dict[str, Any] = {"digest": _digest(b"{}"), "size": 2}
        for content, desc in ((data, blob), (b"{}", empty)):
            (layout / "blobs" / "sha256" / desc["digest"][7:]).write_bytes(content)
            _push_blob(client, layout, desc, chunk_size=32 << 20, known={}, report=lambda _e, _d: None)
        manifest = _canonical(referrer_manifest(subject, artifact_type, blob, annotations))
        digest = _digest(manifest)
        resp = client.request("PUT", client.url(f"manifests/{digest}"), data=manifest,
                              headers={"Content-Type": MANIFEST})
        if resp.status_code not in (200, 201):
            raise _fail(client, f"PUT referrer {digest}", resp)
        if resp.headers.get("OCI-Subject"):
            return {"digest": digest, "via": "referrers-api"}
        _add_to_fallback_index(client, subject["digest"], {
            "mediaType": MANIFEST, "digest": digest, "size": len(manifest), "artifactType": artifact_type,
            **({"annotations": dict(sorted(annotations.items()))} if annotations else {})})
    return {"digest": digest, "via": "tag-schema"}


def _add_to_fallback_index(client: _Client, subject_digest: str, desc: dict[str, Any]) -> None:
    tag = fallback_tag(subject_digest)
    got = client.request("GET", client.url(f"manifests/{tag}"), headers={"Accept": INDEX})
    if got.status_code == 200:
        try:
            index = json.loads(got.content)
        except ValueError:
            raise ImageError("push to", client.ref.text, f"the referrers index {tag} is not JSON") from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise ImageError("push to", client.ref.text, f"the referrers index {tag} has no manifests list")
    elif got.status_code == 404:
        index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": []}
    else:
        raise _fail(client, f"GET referrers index {tag}", got)
    index["manifests"] = [m for m in index["manifests"] if m.get("digest") != desc["digest"]] + [desc]
    resp = client.request("PUT", client.url(f"manifests/{tag}"), data=_canonical(index),
                          headers={"Content-Type": INDEX})
    if resp.status_code not in (200, 201):
        raise _fail(client, f"PUT referrers index {tag}", resp)


def referrers(reference: str, subject_digest: str, *, insecure: bool = False,
              credentials: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """The referrers of ``subject_digest``: through the referrers API, else the fallback tag."""
    ref = parse_reference(reference)
    with requests.Session() as session:
        client = _Client(ref, insecure=insecure, credentials=credentials, session=session, stats=PushStats())
        client.verb, client.actions = "read referrers from", "pull"
        resp = client.request("GET", client.url(f"referrers/{subject_digest}"), headers={"Accept": INDEX})
        if resp.status_code != 200 or "json" not in resp.headers.get("Content-Type", ""):
            resp = client.request("GET", client.url(f"manifests/{fallback_tag(subject_digest)}"),
                                  headers={"Accept": INDEX})
            if resp.status_code == 404:
                return []
            if resp.status_code != 200:
                raise _fail(client, "GET referrers", resp)
        try:
            return list(json.loads(resp.content).get("manifests") or [])
        except (ValueError, AttributeError):
            raise ImageError("read referrers from", ref.text, "the referrers index is not JSON") from None
