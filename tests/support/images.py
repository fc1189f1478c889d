"""Images for the launcher's tests, written by hand (the tests do not trust the code under test): a busybox
root filesystem, a tar of a tree, and an OCI layout of gzip layers."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

BUSYBOX = shutil.which("busybox") or "/bin/busybox"  # statically linked (busybox-static)
APPLETS = ("sh", "true", "sleep", "echo", "cat", "ls")
DIRS = ("etc", "proc", "dev", "sys", "tmp")
REF_NAME = "org.opencontainers.image.ref.name"


def busybox_root(root: Path, applets: Sequence[str] = APPLETS, dirs: Sequence[str] = DIRS,
                 files: Mapping[str, str] | None = None) -> Path:
    """``root`` with /bin/busybox, a link per applet, empty ``dirs`` and ``files`` (relative path → text)."""
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in applets:
        os.symlink("busybox", root / "bin" / applet)
    for d in dirs:
        (root / d).mkdir()
    for rel, text in (files or {}).items():
        (root / rel).write_text(text)
    return root


def tar_of_tree(root: Path) -> bytes:
    """An uncompressed PAX tar of everything below ``root``, in path order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(root)), recursive=False)
    return buf.getvalue()


def _blob(layout: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return "sha256:" + digest, len(data)


def write_layout(layout: Path, layers: list[bytes], tag: str, config: dict | None = None) -> str:
    """Add an amd64 image of gzip ``layers`` (uncompressed tars, bottom first) tagged ``tag`` to the OCI layout
    at ``layout`` (made when missing); returns the manifest digest."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    descs, diff_ids = [], []
    for tar in layers:
        digest, size = _blob(layout, gzip.compress(tar, mtime=0))
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size})
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
    cfg = {"architecture": "amd64", "os": "linux", "config": config or {},
           "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cdigest, csize = _blob(layout, json.dumps(cfg).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest,
                           "size": csize}, "layers": descs}
    mdigest, msize = _blob(layout, json.dumps(manifest).encode())
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
    index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest,
                               "size": msize, "annotations": {REF_NAME: tag}})
    index_path.write_text(json.dumps(index))
    return mdigest
