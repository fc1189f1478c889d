"""OCI image config, manifest and index; the OCI image layout, oci-archive and docker-archive; reading images
back.

Pure builders (``config_document``, ``manifest_document``, ``index_document``, ``platform_for``) return plain
dicts; ``canonical`` turns them into the exact bytes that are hashed, so equal inputs give equal digests. The
writers put every blob under ``blobs/sha256/<hex>`` through a temp name, fsync and rename; whole outputs go to
a temp name next to their destination (layouts: ``compose.staged_output``; archives: ``image/archives.py``)
and are renamed only when complete.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rootfs_forge.errors import ImageError
from rootfs_forge.image import DEFAULT_ENV
from rootfs_forge.image.layer import LayerBlob
from rootfs_forge.util.arch import oci_platform
from rootfs_forge.util.canonical import canonical_json
from rootfs_forge.util.files import write_atomic

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
REF_NAME = "org.opencontainers.image.ref.name"
CREATED = "org.opencontainers.image.created"
LAYOUT_FILE = b'{"imageLayoutVersion":"1.0.0"}'



def canonical(obj: Any) -> bytes:
    """The bytes that are hashed: sorted keys, compact separators, UTF-8."""
    return canonical_json(obj)


def rfc3339(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def platform_for(arch: str, os_name: str = "linux") -> dict[str, str]:
    """An OCI platform object for a Debian (or OCI) architecture name: ``arm64`` → arm64/v8."""
    oci_arch, variant = oci_platform(arch)
    out = {"architecture": oci_arch, "os": os_name}
    if variant:
        out["variant"] = variant
    return out


# ---------------------------------------------------------------------------------------------------------
# pure documents
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageConfig:
    """What runs and how: the parts of the OCI image config a recipe controls."""

    architecture: str = "amd64"  # Debian name; mapped to the OCI name and variant
    os: str = "linux"
    variant: str = ""  # empty: derived from the architecture
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = DEFAULT_ENV
    working_dir: str = ""
    user: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    exposed_ports: tuple[str, ...] = ()  # "80/tcp", "53/udp"
    stop_signal: str = ""
    created: int = 0  # seconds since the epoch (SOURCE_DATE_EPOCH)
    history: tuple[str, ...] = ()  # created_by text per layer; missing ones read "forge compose"
    author: str = ""

    def platform(self) -> dict[str, str]:
        plat = platform_for(self.architecture, self.os)
        if self.variant:
            plat["variant"] = self.variant
        return plat


def config_document(config: ImageConfig, diff_ids: Sequence[str]) -> dict[str, Any]:
    run: dict[str, Any] = {}
    if config.entrypoint:
        run["Entrypoint"] = list(config.entrypoint)
    if config.cmd:
        run["Cmd"] = list(config.cmd)
    if config.env:
        run["Env"] = list(config.env)
    if config.working_dir:
        run["WorkingDir"] = config.working_dir
    if config.user:
        run["User"] = config.user
    if config.labels:
        run["Labels"] = dict(sorted(config.labels.items()))
    if config.exposed_ports:
        run["ExposedPorts"] = {port: {} for port in sorted(config.exposed_ports)}
    if config.stop_signal:
        run["StopSignal"] = config.stop_signal
    created = rfc3339(config.created)
    doc: dict[str, Any] = {
        **config.platform(),
        "created": created,
        "config": run,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [
            {
                "created": created,
                "created_by": config.history[i] if i < len(config.history) else "forge compose",
            }
            for i in range(len(diff_ids))
        ],
    }
    if config.author:
        doc["author"] = config.author
    return doc


def descriptor(media_type: str, digest: str, size: int, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size, **{k: v for k, v in extra.items() if v}}


def manifest_document(
    config_desc: dict[str, Any], layers: Sequence[LayerBlob], annotations: Mapping[str, str]
) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": config_desc,
        "layers": [descriptor(lb.media_type, lb.digest, lb.size) for lb in layers],
        **({"annotations": dict(sorted(annotations.items()))} if annotations else {}),
    }


def index_document(manifests: Sequence[dict[str, Any]], annotations: Mapping[str, str] | None = None) -> dict:
    return {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": list(manifests),
        **({"annotations": dict(sorted(annotations.items()))} if annotations else {}),
    }


# ---------------------------------------------------------------------------------------------------------
# the layout on disk
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A manifest (or image index) written into a layout."""

    manifest_digest: str
    manifest_size: int
    media_type: str  # MANIFEST_TYPE or INDEX_TYPE
    config_digest: str  # empty for an image index
    layout: Path
    ref_name: str | None = None

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return descriptor(self.media_type, self.manifest_digest, self.manifest_size, **extra)


def blob_path(layout: Path, digest: str) -> Path:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise ImageError("read blob", digest, "not a sha256 digest")
    return layout / "blobs" / "sha256" / hexpart


def _write_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, data, fsync=True)


def write_blob(layout: Path, data: bytes) -> tuple[str, int]:
    """Store ``data`` as a blob; returns (digest, size)."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    target = blob_path(layout, digest)
    if not target.exists():
        _write_atomic(target, data)
    return digest, len(data)


def _init_layout(layout: Path) -> None:
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    if not (layout / "oci-layout").exists():
        _write_atomic(layout / "oci-layout", LAYOUT_FILE)


def read_index(layout: Path) -> dict[str, Any]:
    path = layout / "index.json"
    if not path.exists():
        return index_document([])
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ImageError("read image layout", str(layout), f"index.json: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
        raise ImageError("read image layout", str(layout), "index.json has no manifests list")
    return doc


def _platform_key(m: Mapping[str, Any]) -> tuple[str, str, str]:
    plat = m.get("platform") or {}
    return (str(plat.get("os", "")), str(plat.get("architecture", "")), str(plat.get("variant", "")))


def _tag(layout: Path, desc: dict[str, Any], ref_name: str) -> None:
    """Point ``ref_name`` in index.json at ``desc`` for its platform: the entry of that tag and platform (and
    an entry of that tag without a platform, such as a nested index) is replaced; other platforms stay, so a
    multi-platform image is one tag over several manifests, as skopeo and buildx write it."""
    index = read_index(layout)
    mine = _platform_key(desc)

    def replaced(m: Mapping[str, Any]) -> bool:
        if (m.get("annotations") or {}).get(REF_NAME) != ref_name:
            return False
        return not mine[1] or not _platform_key(m)[1] or _platform_key(m) == mine

    kept = [m for m in index["manifests"] if not replaced(m)]
    entry = dict(desc)
    entry["annotations"] = {**(desc.get("annotations") or {}), REF_NAME: ref_name}
    kept.append(entry)
    kept.sort(key=lambda m: ((m.get("annotations") or {}).get(REF_NAME, ""), _platform_key(m), m["digest"]))
    index["manifests"] = kept
    _write_atomic(layout / "index.json", canonical(index))


def write_image(
    layout_dir: Path,
    layers: Sequence[LayerBlob],
    config: ImageConfig,
    *,
    ref_name: str | None,
    annotations: Mapping[str, str] | None = None,
) -> ImageRef:
    """Write config and manifest for ``layers`` (already in ``layout_dir``) and tag it ``ref_name``.

    ``ref_name=None`` writes an untagged manifest, for images that ``write_index`` gathers into a multi-arch
    index. Standard annotations (``org.opencontainers.image.created``; ``ref.name`` when tagged) are added.
    """
    _init_layout(layout_dir)
    for lb in layers:
        if not blob_path(layout_dir, lb.digest).exists():
            raise ImageError("write image", str(layout_dir), f"layer {lb.digest} is not in the layout")
    cfg_digest, cfg_size = write_blob(
        layout_dir, canonical(config_document(config, [lb.diff_id for lb in layers]))
    )
    notes = {CREATED: rfc3339(config.created), **(annotations or {})}
    if ref_name:
        notes[REF_NAME] = ref_name
    manifest = manifest_document(descriptor(CONFIG_TYPE, cfg_digest, cfg_size), layers, notes)
    digest, size = write_blob(layout_dir, canonical(manifest))
    ref = ImageRef(digest, size, MANIFEST_TYPE, cfg_digest, layout_dir, ref_name)
    if ref_name:
        _tag(layout_dir, ref.descriptor(platform=config.platform()), ref_name)
    return ref


def write_index(
    layout_dir: Path,
    manifests: Sequence[tuple[ImageRef, Mapping[str, str]]],
    ref_name: str,
    annotations: Mapping[str, str] | None = None,
) -> ImageRef:
    """A multi-arch image index over already written manifests, tagged ``ref_name``."""
    entries = [ref.descriptor(platform=dict(plat)) for ref, plat in manifests]
    entries.sort(key=lambda d: (d["platform"].get("architecture", ""), d["platform"].get("variant", "")))
    doc = index_document(entries, annotations)
    digest, size = write_blob(layout_dir, canonical(doc))
    ref = ImageRef(digest, size, INDEX_TYPE, "", layout_dir, ref_name)
    _tag(layout_dir, ref.descriptor(), ref_name)
    return ref


def platform_index(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The image index over one tag's platform manifests (their index.json entries), as a registry holds a
    multi-platform image: the descriptors without the layout's tag annotation, sorted by platform. ``forge
    push`` sends exactly this, so compose reports its digest."""
    children = []
    for m in entries:
        child = {k: v for k, v in m.items() if k != "annotations"}
        notes = {k: v for k, v in (m.get("annotations") or {}).items() if k != REF_NAME}
        if notes:
            child["annotations"] = notes
        children.append(child)
    children.sort(key=lambda d: (_platform_key(d)[1], _platform_key(d)[2], d["digest"]))
    return index_document(children)


# ---------------------------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------------------------


def open_layer(path: Path, media_type: str) -> IO[bytes]:
    """The uncompressed tar stream of a layer blob."""
    raw = open(path, "rb")  # noqa: SIM115 - returned to the caller
    if media_type.endswith(("+gzip", ".tar.gzip")):
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if media_type.endswith("+zstd"):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=True)
    return raw


# ---------------------------------------------------------------------------------------------------------
# reading images back (launcher, audit, push)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """One platform's image as read from a layout: its manifest, config and layer blob paths (in order)."""

    manifest: dict[str, Any]
    config: dict[str, Any]
    layer_paths: list[Path]
    layout: Path
    manifest_digest: str
    note: str = ""  # which of several platforms was read, when nobody chose

    def layers(self) -> list[tuple[Path, str]]:
        """(blob path, media type) per layer, bottom first; feed each to ``open_layer``."""
        return [(p, d["mediaType"]) for p, d in zip(self.layer_paths, self.manifest["layers"], strict=True)]


def split_image_ref(text: str) -> tuple[str, str | None]:
    """``DIR[:TAG]`` → (DIR, TAG). A path that exists as given wins over a ``:`` in its name."""
    if os.path.exists(text) or ":" not in text:
        return text, None
    path, _, tag = text.rpartition(":")
    if "/" in tag or not tag:
        return text, None
    return path, tag


def load_blob_json(layout: Path, desc: Mapping[str, Any]) -> dict[str, Any]:
    """A small JSON blob named by ``desc``, checked against its digest."""
    path = blob_path(layout, str(desc.get("digest", "")))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError("read image", str(layout), f"blob {desc.get('digest')} is missing") from exc
    if "sha256:" + hashlib.sha256(data).hexdigest() != desc["digest"]:
        raise ImageError("read image", str(layout), f"blob {desc['digest']} does not match its digest")
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ImageError("read image", str(layout), f"blob {desc['digest']} is not JSON") from exc
    if not isinstance(doc, dict):
        raise ImageError("read image", str(layout), f"blob {desc['digest']} is not a JSON object")
    return doc


def find_refs(layout: Path, tag: str | None) -> list[dict[str, Any]]:
    """The index.json descriptors of the image ``tag`` (one per platform; the only image when ``tag`` is None)."""
    from rootfs_forge.image.select import tagged

    return [dict(m) for m in tagged(read_index(layout)["manifests"], tag, str(layout))]


def find_ref(layout: Path, tag: str | None) -> dict[str, Any]:
    """The descriptor of the image ``tag``: its manifest, or for several platforms under one tag their
    :func:`platform_index` (key ``synthetic``: its bytes, which are no blob of the layout)."""
    refs = find_refs(layout, tag)
    if len(refs) == 1:
        return refs[0]
    data = canonical(platform_index(refs))
    return {"mediaType": INDEX_TYPE, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data),
            "synthetic": data}


def read_image(
    path: str | Path, tag: str | None = None, *, platform: str | None = None, extract_to: Path | None = None
) -> Image:
    """Read an image from a layout directory (``DIR`` or ``DIR:TAG``) or an oci-archive file.

    An archive is unpacked into ``extract_to`` (required for archives) first. For a multi-arch index,
    ``platform`` ("arm64" or "linux/arm64/v8") chooses the manifest.
    """
    text = str(path)
    if tag is None:
        text, tag = split_image_ref(text)
    where = Path(text)
    if where.is_file():
        if extract_to is None:
            raise ImageError("read image", text, "an archive needs a directory to unpack into")
        try:
            with tarfile.open(where) as tar:
                names = tar.getnames()
                if "manifest.json" in names and "index.json" not in names:
                    raise ImageError("read image", text, "a docker-archive; convert it with skopeo first")
                tar.extractall(extract_to, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise ImageError("read image", text, str(exc)) from exc
        where = extract_to
    if not (where / "index.json").is_file():
        raise ImageError("read image", text, "not an OCI image layout (no index.json)")
    from rootfs_forge.image.layout import read_layout
    from rootfs_forge.util.platform import PlatformError, parse_platform

    try:
        want = parse_platform(platform) if platform else None
    except PlatformError as exc:
        raise ImageError("read image", text, str(exc)) from None
    opened = read_layout(str(where), tag, want)
    manifest, config = opened.manifest, opened.config
    layer_paths = [blob_path(where, str(d.get("digest", ""))) for d in manifest.get("layers") or []]
    missing = [p.name for p in layer_paths if not p.is_file()]
    if missing:
        raise ImageError("read image", text, f"layer blob sha256:{missing[0]} is missing")
    return Image(manifest, config, layer_paths, where, opened.manifest_digest, opened.note)
