"""The one reader of an OCI image layout directory: index.json -> (tag, platform) -> manifest -> config.

Used by the launcher (``run/image.py``: layers unpacked from what this returns) and by ``image/oci.read_image``
(push, docker-archive). Which manifest is read is decided by ``image/select.py``; every JSON document is checked
against its digest before it is parsed. The audit reads archives in memory, never extracted to the host, so it
supplies its own bytes (``audit/target.py``) to the same choice.

Lean on purpose: ``json``, ``hashlib`` and ``os`` only, imported when an image is read (never on the
``forge run ROOTFS`` path).
"""

from __future__ import annotations

import hashlib
import json
import os

from rootfs_forge.errors import ImageError
from rootfs_forge.image.select import platform_label, select_manifest

_HEX = frozenset("0123456789abcdef")
MAX_DOCUMENT = 16 << 20  # index, manifest and config are small; a larger "document" is not read into memory


class Opened:
    """One platform's image of a layout: the index entry chosen, its manifest and config documents."""

    __slots__ = ("config", "desc", "layout", "manifest", "manifest_digest", "note", "platform", "tag")

    def __init__(self, layout: str, tag: str | None, desc: dict, manifest: dict, config: dict, note: str) -> None:
        self.layout = layout
        self.tag = tag
        self.desc = desc
        self.manifest_digest = str(desc.get("digest"))
        self.manifest = manifest
        self.config = config
        self.note = note  # one line for the user: which of several platforms was read (nobody chose)
        self.platform = platform_label(desc, config)  # linux/amd64 ..., "" when nothing says


def check_digest(digest: object, where: str) -> str:
    if not isinstance(digest, str) or not digest.startswith("sha256:") or len(digest) != 71 \
            or not _HEX.issuperset(digest[7:]):
        raise ImageError("read image", where, f"bad digest {digest!r}")
    return digest


def blob_path(layout: str, digest: str) -> str:
    return os.path.join(layout, "blobs", "sha256", check_digest(digest, layout)[7:])


def _read(path: str, what: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read(MAX_DOCUMENT + 1)
    if len(data) > MAX_DOCUMENT:
        raise ImageError("read image", what, f"larger than {MAX_DOCUMENT >> 20} MiB: not an image document")
    return data


def _parse(data: bytes, what: str) -> dict:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ImageError("read image", what, f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ImageError("read image", what, "not a JSON object")
    return doc


def load_json(path: str, what: str) -> dict:
    """A JSON object from a file of the layout (index.json)."""
    try:
        data = _read(path, what)
    except FileNotFoundError:
        raise ImageError("read image", what, "missing") from None
    except OSError as exc:
        raise ImageError("read image", what, exc.strerror or str(exc)) from None
    return _parse(data, what)


def load_blob(layout: str, desc: dict) -> dict:
    """The JSON document ``desc`` names, checked against its digest."""
    digest = check_digest(desc.get("digest"), layout)
    try:
        data = _read(blob_path(layout, digest), f"{layout} blob {digest}")
    except FileNotFoundError:
        raise ImageError("read image", layout, f"blob {digest} is missing") from None
    except OSError as exc:
        raise ImageError("read image", layout, f"blob {digest}: {exc.strerror or exc}") from None
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise ImageError("read image", layout, f"blob {digest} does not match its digest")
    return _parse(data, f"{layout} blob {digest}")


def read_layout(layout: str, tag: str | None, platform: tuple[str, str, str] | None = None) -> Opened:
    """The image ``tag`` of the layout directory ``layout`` for ``platform`` (the host's when None)."""
    index = load_json(os.path.join(layout, "index.json"), f"{layout}/index.json")
    desc, manifest, note = select_manifest(index, tag, platform, lambda d: load_blob(layout, d), layout)
    check_digest(desc.get("digest"), layout)
    config = load_blob(layout, manifest.get("config") or {})
    return Opened(layout, tag, desc, manifest, config, note)
