"""The one choice of an image in an OCI layout: index.json -> (tag, platform) -> manifest.

Every reader (the launcher's ``run/image.py``, the audit's ``audit/target.py``, ``image/oci.read_image`` for push
and docker-archive) walks index.json with :func:`select_manifest`; each keeps only its own way of getting bytes
(files of a layout on disk, an in-memory tree of an archive), passed in as ``load``.

Both shapes are read: the one forge, skopeo and buildx write (index.json lists each platform's manifest,
tagged with ``org.opencontainers.image.ref.name`` and carrying its ``platform``) and the older nested one
(index.json names an image index, which lists the platforms). Entries sharing one tag are one image;
among its platforms the one asked for is taken, else the host's, and the caller is told in one line.

Import-light (no json: the caller parses), so that ``forge run IMAGE`` pays nothing for it.
"""

from __future__ import annotations

from rootfs_forge.errors import ImageError
from rootfs_forge.util.platform import choose, label, of_descriptor

TYPE_CHECKING = False  # typing stays off the launcher's path; mypy reads this as typing.TYPE_CHECKING
if TYPE_CHECKING:
    from collections.abc import Callable

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
REF_NAME = "org.opencontainers.image.ref.name"


def ref_name(desc: dict) -> str | None:
    notes = desc.get("annotations")
    name = notes.get(REF_NAME) if isinstance(notes, dict) else None
    return str(name) if name is not None else None


def tagged(entries: list, tag: str | None, where: str) -> list[dict]:
    """The entries of index.json that make up the image named ``tag`` (all of them when they share one name
    or there is no name at all); an unknown tag or several names without a tag is an error."""
    entries = [e for e in entries if isinstance(e, dict)]
    names = sorted({n for n in (ref_name(e) for e in entries) if n is not None})
    if tag is not None:
        hits = [e for e in entries if ref_name(e) == tag]
        if not hits:
            raise ImageError("find tag", f"{where}:{tag}", f"the layout has {', '.join(names) or 'no tags'}")
        return hits
    several = len(entries) > 1 and (any(ref_name(e) is None for e in entries)
                                    and (names or not all(of_descriptor(e)[1] for e in entries)))
    if len(names) > 1 or several:
        raise ImageError("choose image", where, f"the layout holds {len(entries)} manifests; name one with :TAG "
                                               f"(tags: {', '.join(names) or 'none'})")
    if not entries:
        raise ImageError("choose image", where, "the layout holds no image")
    return entries


def is_index(desc: dict, doc: dict | None = None) -> bool:
    if desc.get("mediaType") in INDEX_TYPES:
        return True
    return doc is not None and "manifests" in doc and "layers" not in doc


def select_manifest(index: dict, tag: str | None, platform: tuple[str, str, str] | None,
                    load: Callable[[dict], dict], where: str) -> tuple[dict, dict, str]:
    """(descriptor, manifest document, note) of the image ``tag`` for ``platform`` (the host's when None).

    ``load(descriptor)`` returns the JSON document a descriptor names (verified by the caller). ``note`` is a
    one-line remark for the user when a platform was chosen for them among several, else empty.
    """
    manifests = index.get("manifests")
    entries = tagged(manifests if isinstance(manifests, list) else [], tag, where)
    note = ""
    for _depth in range(4):
        if len(entries) == 1 and (platform is None or not of_descriptor(entries[0])[1]):
            desc = entries[0]
        else:
            hit, said = choose(entries, platform)
            if hit is None:
                raise ImageError("choose platform of", where, said)
            desc, note = hit, note or said
        doc = load(desc)
        if not is_index(desc, doc):
            return desc, doc, note
        nested = doc.get("manifests")
        entries = [e for e in nested if isinstance(e, dict)] if isinstance(nested, list) else []
        if not entries:
            raise ImageError("choose image", where, f"the image index {desc.get('digest')} is empty")
    raise ImageError("choose image", where, "image indexes nested too deep")


def platform_label(desc: dict, config: dict | None = None) -> str:
    """``linux/arm64/v8`` for a chosen manifest: from its index entry, else from its config."""
    plat = of_descriptor(desc)
    if not plat[1] and config:
        plat = (str(config.get("os") or "linux"), str(config.get("architecture") or ""),
                str(config.get("variant") or ""))
    return label(plat) if plat[1] else ""
