"""``forge vendor``: copy exactly the locked ``.deb``s, with the signed InRelease and the Packages files they were
verified against, to a vendor store, so that a lock still composes when the archive has dropped them.

Two kinds of store (rootfs_forge.archive.chain):

- ``file:///DIR``: a valid file:// apt repository: ``dists/<suite>/InRelease`` (or ``Release`` and
  ``Release.gpg``) as the archive signed it, the Packages files at their Release paths and under ``by-hash``,
  the ``.deb``s at their pool paths. Several recipes may be vendored into one directory.
- ``oci://HOST[:PORT]/REPO``: one artifact per suite snapshot (artifact type :data:`ARTIFACT_TYPE`), tagged
  ``<suite>-<first 16 hex of the InRelease's SHA-256>``, whose blobs are the InRelease, the Packages files and
  the ``.deb``s, each named by its digest — so the chain fetches a ``.deb`` as the blob of its SHA-256.

A locked package the verified Packages no longer lists is refused: the signed index would not vouch for it (vendor
right after ``forge lock``, or lock against a snapshot).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import lzma
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rootfs_forge.archive.cache import Cache
from rootfs_forge.archive.chain import Chain, VendorStore, parse_store, store_insecure
from rootfs_forge.archive.fetch import fetch_debs
from rootfs_forge.archive.release import (
    SignedRelease,
    candidate_paths,
    dists_path,
    fetch_index,
    fetch_signed_release,
    index_architectures,
)
from rootfs_forge.archive.sources import SourceEntry
from rootfs_forge.errors import ArchiveError, ForgeError
from rootfs_forge.index.context import Context
from rootfs_forge.model import Package, Resolution
from rootfs_forge.util.files import atomic_file, write_atomic

ARTIFACT_TYPE = "application/vnd.rootfs-forge.debian-suite.v1"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
RELEASE_TYPE = "application/vnd.rootfs-forge.debian-release.v1"  # InRelease / Release / Release.gpg
PACKAGES_TYPE = "application/vnd.rootfs-forge.debian-packages.v1"
DEB_TYPE = "application/vnd.debian.binary-package"
TITLE = "org.opencontainers.image.title"
_SHA_LINE = re.compile(rb"^SHA256:\s*([0-9a-f]{64})\s*$", re.M)


@dataclass
class SuiteCopy:
    """What one suite contributes to a store: its signed Release, Packages files and locked .debs."""

    entry: SourceEntry
    release: SignedRelease
    packages_files: list[tuple[str, str, int]] = field(default_factory=list)  # (path under dists/<suite>, hex, size)
    debs: list[Package] = field(default_factory=list)

    @property
    def release_files(self) -> list[tuple[str, bytes]]:
        if self.release.detached is None:
            return [("InRelease", self.release.raw)]
        return [("Release", self.release.raw), ("Release.gpg", self.release.detached)]

    @property
    def tag(self) -> str:
        digest = hashlib.sha256(self.release.raw).hexdigest()[:16]
        return re.sub(r"[^A-Za-z0-9_.-]", "_", self.entry.suite.strip("/") or "flat")[:100] + "-" + digest


def _decompress(path: Path, name: str) -> bytes:
    data = path.read_bytes()
    if name.endswith(".gz"):
        return gzip.decompress(data)
    if name.endswith(".xz"):
        return lzma.decompress(data)
    return data


def gather(resolutions: Sequence[Resolution], entries: Sequence[SourceEntry], ctx: Context,
           chain: Chain) -> list[SuiteCopy]:
    """Verify each suite the locked packages come from, fetch its Packages files and the .debs into the cache,
    and check that the verified Packages list every locked .deb by its SHA-256."""
    by_suite: dict[str, SourceEntry] = {}
    for e in entries:
        by_suite.setdefault(e.suite, e)
    packages: dict[str, Package] = {}
    archs: set[str] = set()
    for res in resolutions:
        for p in res.packages:
            packages.setdefault(p.sha256, p)
            if p.architecture != "all":
                archs.add(p.architecture)
    copies: dict[str, SuiteCopy] = {}
    for p in packages.values():
        entry = by_suite.get(p.suite)
        if entry is None:
            raise ArchiveError("vendor", f"{p.name} {p.version}", f"no source serves suite {p.suite!r}")
        if entry.suite not in copies:
            copies[entry.suite] = SuiteCopy(entry, fetch_signed_release(entry, ctx.transport, ctx.now, ctx.warn))
        copies[entry.suite].debs.append(p)
    for copy in copies.values():
        listed: set[str] = set()
        info = copy.release.info
        for comp in copy.entry.components or ("",):
            for arch in index_architectures(copy.entry, info, sorted(archs)):
                cands = candidate_paths(info, comp, arch)
                f = fetch_index(copy.entry, info, comp, arch, ctx.cache, ctx.transport)
                if f is None:
                    continue
                path, hexdigest, size, _ = cands[0]
                copy.packages_files.append((path, hexdigest, size))
                listed.update(m.decode() for m in _SHA_LINE.findall(_decompress(ctx.cache.blob_path(hexdigest),
                                                                                 path)))
        missing = [p for p in copy.debs if p.sha256 not in listed]
        if missing:
            names = ", ".join(f"{p.name} {p.version}" for p in missing[:3])
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise ArchiveError("vendor", f"suite {copy.entry.suite}",
                               f"its signed Packages no longer list {names}{more}: the archive moved past the lock "
                               "(vendor right after forge lock, or lock against a snapshot)")
        copy.debs.sort(key=lambda p: p.filename)
    fetch_debs(list(packages.values()), ctx.cache, ctx.transport, urls=chain.urls)
    return [copies[s] for s in sorted(copies)]


# ----------------------------------------------------------------------------------------------- stores


def write_file_store(copies: Sequence[SuiteCopy], root: Path, cache: Cache) -> int:
    """Write (or add to) the file:// apt repository at ``root``; returns the number of files written."""
    written = 0

    def put(rel: str, data: bytes | None = None, blob: str = "") -> None:
        nonlocal written
        dest = root / rel
        if ".." in Path(rel).parts or rel.startswith("/"):
            raise ArchiveError("vendor", rel, "path leaves the store")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            write_atomic(dest, data, mode=0o644)
        else:
            if dest.is_file() and hashlib.sha256(dest.read_bytes()).hexdigest() == blob:
                return
            with atomic_file(dest, mode=0o644) as fh, open(cache.blob_path(blob), "rb") as src:
                shutil.copyfileobj(src, fh, 1 << 20)
        written += 1

    for copy in copies:
        dists = dists_path(copy.entry)
        for path, hexdigest, _ in copy.packages_files:
            put(f"{dists}/{path}", blob=hexdigest)
            directory = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
            put(f"{dists}/{directory}by-hash/SHA256/{hexdigest}", blob=hexdigest)
        for p in copy.debs:
            put(p.filename, blob=p.sha256)
        for name, data in copy.release_files:  # last: the store is consistent before the Release names it
            put(f"{dists}/{name}", data)
    return written


@contextlib.contextmanager
def _layout(parent: Path) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vendor-", dir=parent))
    try:
        (path / "blobs" / "sha256").mkdir(parents=True)
        (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _link_blob(layout: Path, cache: Cache, hexdigest: str) -> None:
    dest = layout / "blobs" / "sha256" / hexdigest
    if dest.exists():
        return
    try:
        os.link(cache.blob_path(hexdigest), dest)
    except OSError:
        shutil.copyfile(cache.blob_path(hexdigest), dest)


def _bytes_blob(layout: Path, data: bytes) -> dict[str, Any]:
    hexdigest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / hexdigest).write_bytes(data)
    return {"digest": f"sha256:{hexdigest}", "size": len(data)}


def artifact_manifest(copy: SuiteCopy, layout: Path, cache: Cache) -> dict[str, Any]:
    """The artifact of one suite snapshot; its blobs are placed in ``layout``."""
    layers: list[dict[str, Any]] = []
    for name, data in copy.release_files:
        layers.append({"mediaType": RELEASE_TYPE, **_bytes_blob(layout, data),
                       "annotations": {TITLE: f"{dists_path(copy.entry)}/{name}"}})
    for path, hexdigest, size in copy.packages_files:
        _link_blob(layout, cache, hexdigest)
        layers.append({"mediaType": PACKAGES_TYPE, "digest": f"sha256:{hexdigest}", "size": size,
                       "annotations": {TITLE: f"{dists_path(copy.entry)}/{path}"}})
    for p in copy.debs:
        _link_blob(layout, cache, p.sha256)
        layers.append({"mediaType": DEB_TYPE, "digest": f"sha256:{p.sha256}", "size": p.size,
                       "annotations": {TITLE: p.filename}})
    empty = _bytes_blob(layout, b"{}")
    return {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": ARTIFACT_TYPE, "config": {"mediaType": EMPTY_TYPE, **empty}, "layers": layers,
            "annotations": {"org.debian.suite": copy.entry.suite,
                            "org.debian.codename": copy.release.info.codename,
                            **({"org.debian.snapshot": copy.entry.snapshot} if copy.entry.snapshot else {})}}


def push_oci_store(copies: Sequence[SuiteCopy], store: VendorStore, cache: Cache, *, insecure: bool,
                   report: Callable[[str], None] | None = None) -> list[dict[str, str]]:
    """Push one artifact per suite to ``store``; returns [{"tag", "digest"}]."""
    from rootfs_forge.image.blobfetch import credentials
    from rootfs_forge.image.registry import push
    from rootfs_forge.util.canonical import canonical_json

    out = []
    for copy in copies:
        with _layout(cache.root / "tmp") as layout:
            manifest = canonical_json(artifact_manifest(copy, layout, cache))
            desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": ARTIFACT_TYPE,
                    **_bytes_blob(layout, manifest),
                    "annotations": {"org.opencontainers.image.ref.name": copy.tag}}
            (layout / "index.json").write_bytes(canonical_json(
                {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [desc]}))
            result = push(layout, copy.tag, f"{store.host}/{store.repository}:{copy.tag}", insecure=insecure,
                          credentials=credentials(store.host))
        out.append({"tag": copy.tag, "digest": result.digest})
        if report:
            report(f"{store.url}:{copy.tag} {result.digest} ({len(copy.debs)} .debs)")
    return out


def vendor(resolutions: Sequence[Resolution], entries: Sequence[SourceEntry], ctx: Context, chain: Chain,
           destinations: Sequence[str], *, insecure: bool = False,
           report: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Vendor the locked packages into every destination store; returns what ``--json`` prints."""
    stores = [parse_store(d) for d in destinations]
    if not stores:
        raise ForgeError("vendor", "lock", "name a destination with --to oci://HOST/REPO or file:///DIR")
    copies = gather(resolutions, entries, ctx, chain)
    out: dict[str, Any] = {"suites": [{"suite": c.entry.suite, "debs": len(c.debs),
                                       "packages_files": len(c.packages_files)} for c in copies], "stores": []}
    for store in stores:
        if store.kind == "file":
            n = write_file_store(copies, Path(store.path), ctx.cache)
            out["stores"].append({"store": store.url, "files_written": n})
            if report:
                report(f"{store.url}: {sum(len(c.debs) for c in copies)} .debs, {n} files written")
        else:
            pushed = push_oci_store(copies, store, ctx.cache, insecure=store_insecure(store, insecure),
                                    report=report)
            out["stores"].append({"store": store.url, "artifacts": pushed})
    return out
