"""The chain of places a locked ``.deb`` is found in, by its SHA-256 (pure: URLs only, no I/O).

In order: the cache (checked by the fetcher before any of these), the package's source, that source's
``mirrors``, the source's snapshot (``snapshot = …``), then the vendor stores (``vendor = [...]`` or
``--vendor``): an OCI registry repository (``oci://HOST[:PORT]/REPO``, where a ``.deb`` is the blob named by its
digest) or a directory that is a file:// apt repository (``file:///DIR``, the archive's pool layout).

Nothing about trust changes: whichever place answers, the bytes are checked against the lock's SHA-256 and size
before they enter the cache.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rootfs_forge.archive.sources import SourceEntry
from rootfs_forge.errors import SourceError
from rootfs_forge.model import Package

_OCI = re.compile(r"^oci://(?P<host>[^/\s]+)/(?P<repo>[a-z0-9][a-z0-9._/-]*)$")


@dataclass(frozen=True, slots=True)
class VendorStore:
    """A vendor store: ``kind`` "oci" (``host``, ``repository``) or "file" (``path``)."""

    url: str
    kind: str
    host: str = ""
    repository: str = ""
    path: str = ""

    def deb_url(self, pkg: Package, insecure: bool) -> str:
        if self.kind == "file":
            return f"file://{self.path.rstrip('/')}/{pkg.filename}"
        scheme = "oci+http" if insecure else "oci+https"  # fetched with the registry client (authentication)
        return f"{scheme}://{self.host}/{self.repository}@sha256:{pkg.sha256}"


def parse_store(url: str) -> VendorStore:
    """``oci://HOST[:PORT]/REPO`` or ``file:///DIR`` (an absolute directory)."""
    m = _OCI.match(url)
    if m:
        return VendorStore(url, "oci", host=m.group("host"), repository=m.group("repo"))
    if url.startswith("file:///"):
        return VendorStore(url, "file", path=url[len("file://"):].rstrip("/") or "/")
    raise SourceError("use", f"vendor store {url!r}", "expected oci://HOST[:PORT]/REPO or file:///DIR")


def store_insecure(store: VendorStore, explicit: bool = False) -> bool:
    """Plain HTTP for an OCI store: ``--insecure``, a loopback host, or ``$FORGE_INSECURE_REGISTRIES``."""
    if store.kind != "oci":
        return False
    from rootfs_forge.image.pull import is_insecure

    return is_insecure(store.host, explicit)


@dataclass(frozen=True)
class Chain:
    """Per source (by archive root): its mirrors and snapshot; then the vendor stores for every package."""

    alternatives: Mapping[str, Sequence[str]]  # base_url -> mirrors, then the snapshot root
    vendors: tuple[tuple[VendorStore, bool], ...] = ()  # (store, plain HTTP)

    def urls(self, pkg: Package) -> list[str]:
        bases = [pkg.base_url, *self.alternatives.get(pkg.base_url, ())]
        out = [base.rstrip("/") + "/" + pkg.filename for base in bases]
        out += [store.deb_url(pkg, insecure) for store, insecure in self.vendors]
        return list(dict.fromkeys(out))


def make_chain(entries: Sequence[SourceEntry], vendor_urls: Sequence[str] = (), *,
               insecure: bool = False) -> Chain:
    alternatives: dict[str, list[str]] = {}
    for e in entries:
        alt = alternatives.setdefault(e.url, [])
        alt += [m for m in e.mirrors if m not in alt]
        if e.snapshot_base and e.snapshot_base not in alt:
            alt.append(e.snapshot_base)
    stores = [parse_store(u) for u in dict.fromkeys(vendor_urls)]
    return Chain({k: tuple(v) for k, v in alternatives.items() if v},
                 tuple((s, store_insecure(s, insecure)) for s in stores))
