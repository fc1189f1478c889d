"""Pull an image from a registry into an OCI layout, verifying every manifest and blob against its digest.

The client, authentication (Basic, Bearer token flow) and credentials (``FORGE_REGISTRY_USER`` /
``FORGE_REGISTRY_PASSWORD``, else ``auths`` in ``$DOCKER_CONFIG/config.json``) are those of ``forge push``
(:mod:`rootfs_forge.image.registry`). A reference is ``REGISTRY/REPO[:TAG|@DIGEST]``; a multi-platform index picks
the host's platform unless another is named (``linux/arm64``, ``arm64``, ``linux/arm/v7``).

Blobs (config and layers) are streamed into the download cache's ``blobs/sha256/`` through its verifying writer:
a blob whose bytes do not hash to its digest is refused and nothing of it stays. A blob the cache already holds is
not fetched again. Manifests are fetched every time (a tag moves) and checked against the digest asked for, the
digest the registry names, and the index entry that led to them.

Plain HTTP is used with ``insecure`` (``--insecure``), for loopback registries (``localhost``, ``127.0.0.0/8``,
``::1``; Docker treats them the same way) and for the hosts listed in ``$FORGE_INSECURE_REGISTRIES``.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from rootfs_forge.archive.cache import Cache, default_cache_dir
from rootfs_forge.errors import FetchError, ImageError
from rootfs_forge.image.registry import PushStats, Reference, _Client, _fail, host_credentials, parse_reference
from rootfs_forge.util.canonical import canonical_json
from rootfs_forge.util.files import write_atomic

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
REF_NAME = "org.opencontainers.image.ref.name"
MAX_MANIFEST = 4 << 20
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class PullRef:
    host: str
    repository: str
    tag: str  # "" when pulled by digest only
    digest: str  # "" when pulled by tag

    @property
    def text(self) -> str:
        return f"{self.host}/{self.repository}" + (f":{self.tag}" if self.tag else "") + \
            (f"@{self.digest}" if self.digest else "")

    @property
    def target(self) -> str:
        """What to ask the registry for: the digest when there is one, else the tag."""
        return self.digest or self.tag


def parse_pull_reference(text: str) -> PullRef:
    """``host[:port]/repo[:tag][@sha256:…]``; the tag defaults to ``latest`` unless a digest is given."""
    name, at, digest = text.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        raise ImageError("pull", repr(text), f"{digest!r} is not a sha256:<64 hex> digest")
    try:
        ref = parse_reference(name)
    except ImageError as exc:
        raise ImageError("pull", repr(text), str(exc).rsplit(": ", 1)[-1]) from None
    explicit_tag = ":" in name.rsplit("/", 1)[-1]
    return PullRef(ref.host, ref.repository, ref.tag if explicit_tag or not at else "", digest if at else "")


def looks_like_reference(text: str) -> bool:
    """True for ``host/repo…`` whose first component names a registry (has a dot or a port, or is localhost).

    Callers try the local path first: an existing file or directory is never taken for a reference.
    """
    first, sep, rest = text.partition("/")
    if not sep or not rest or first in (".", "..") or text.startswith(("/", "./", "../", "~")):
        return False
    return "." in first or ":" in first or first == "localhost"


def is_insecure(host: str, explicit: bool = False, environ: Mapping[str, str] | None = None) -> bool:
    if explicit:
        return True
    env = os.environ if environ is None else environ
    listed = {h.strip() for h in env.get("FORGE_INSECURE_REGISTRIES", "").split(",") if h.strip()}
    if host in listed:
        return True
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_platform(text: str) -> tuple[str, str, str]:
    """(os, architecture, variant) in OCI terms from ``linux/arm64``, ``arm64``, ``armhf`` or ``""`` (the host)."""
    from rootfs_forge.util.platform import PlatformError, host_platform
    from rootfs_forge.util.platform import parse_platform as parse

    if not text:
        return host_platform()
    try:
        return parse(text)
    except PlatformError as exc:
        raise ImageError("use", f"--platform {text}", str(exc)) from None


def pick_platform(manifests: list[dict[str, Any]], want: tuple[str, str, str], what: str) -> dict[str, Any]:
    from rootfs_forge.util.platform import choose

    hit, said = choose(manifests, want)
    if hit is None:
        raise ImageError("pull", what, said)
    return hit


@dataclass
class PullResult:
    ref: PullRef
    digest: str  # of the image manifest written into the layout
    index_digest: str  # of the multi-platform index it was picked from, or ""
    layout: Path
    tag: str  # the ref name in the layout's index.json
    fetched: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Puller:
    def __init__(self, ref: PullRef, client: _Client, cache: Cache) -> None:
        self.ref = ref
        self.client = client
        self.cache = cache

    def manifest(self, target: str, expect: str = "") -> tuple[bytes, str, str]:
        """(body, media type, digest) of ``manifests/<target>``, verified against what is expected of it."""
        if target.startswith("sha256:") and not _DIGEST.fullmatch(target):
            raise ImageError("pull", self.ref.text, f"unsupported manifest digest {target!r}")
        resp = self.client.request("GET", self.client.url(f"manifests/{target}"), headers={"Accept": ACCEPT},
                                   stream=True)
        try:
            if resp.status_code != 200:
                raise _fail(self.client, f"GET manifest {target}", resp)
            body = b""
            for chunk in resp.iter_content(1 << 16):  # never more than MAX_MANIFEST in memory
                body += chunk
                if len(body) > MAX_MANIFEST:
                    raise ImageError("pull", self.ref.text, f"manifest {target} is larger than {MAX_MANIFEST} bytes")
        except requests.RequestException as exc:
            raise ImageError("pull", self.ref.text, f"GET manifest {target}: {exc}") from None
        finally:
            resp.close()
        digest = _sha256(body)
        if expect and digest != expect:
            raise ImageError("pull", self.ref.text, f"manifest {expect} does not match its digest (got {digest})")
        named = resp.headers.get("Docker-Content-Digest", "")
        if named.startswith("sha256:") and named != digest:
            raise ImageError("pull", self.ref.text, f"the registry names manifest {named} but sent {digest}")
        try:
            doc = json.loads(body)
        except ValueError:
            raise ImageError("pull", self.ref.text, f"manifest {target} is not JSON") from None
        media = str(doc.get("mediaType") or resp.headers.get("Content-Type", "").split(";")[0].strip())
        return body, media, digest

    def blob(self, desc: Mapping[str, Any], result: PullResult) -> None:
        digest = str(desc.get("digest", ""))
        if not _DIGEST.fullmatch(digest):
            raise ImageError("pull", self.ref.text, f"unsupported blob digest {digest!r}")
        hexd = digest[7:]
        if self.cache.has(hexd):
            result.cached.append(digest)
            return
        resp = self.client.request("GET", self.client.url(f"blobs/{digest}"), stream=True)
        if resp.status_code != 200:
            raise _fail(self.client, f"GET blob {digest}", resp)
        size = desc.get("size")
        limit = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
        try:
            with self.cache.writer(hexd, limit, f"blob {digest}") as out:
                written = 0
                for chunk in resp.iter_content(1 << 20):
                    written += len(chunk)
                    if limit is not None and written > limit:  # stop a blob that runs past its size at once
                        raise FetchError("verify", f"blob {digest}", f"more than the {limit} bytes the manifest says")
                    out.write(chunk)
        except FetchError as exc:
            reason = str(exc).rsplit(": ", 1)[-1].replace(" the index ", " the manifest ")
            raise ImageError("pull", self.ref.text, f"blob {digest} refused: {reason}") from None
        except requests.RequestException as exc:
            raise ImageError("pull", self.ref.text, f"GET blob {digest}: {exc}") from None
        finally:
            resp.close()
        result.fetched.append(digest)


def _place(cache: Cache, layout: Path, digest: str) -> None:
    dest = layout / "blobs" / "sha256" / digest[7:]
    if dest.is_file():
        return
    src = cache.blob_path(digest[7:])
    tmp = dest.with_name(dest.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def _write_bytes(layout: Path, data: bytes) -> str:
    digest = _sha256(data)
    path = layout / "blobs" / "sha256" / digest[7:]
    if not path.is_file():
        write_atomic(path, data)
    return digest


def _write_index(layout: Path, desc: dict[str, Any]) -> None:
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    path = layout / "index.json"
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    if path.is_file():
        try:
            index = json.loads(path.read_text())
        except ValueError:
            raise ImageError("pull into", str(layout), "its index.json is not JSON") from None
    name = desc["annotations"][REF_NAME]
    index["manifests"] = [m for m in index.get("manifests") or []
                          if (m.get("annotations") or {}).get(REF_NAME) != name] + [desc]
    write_atomic(path, canonical_json(index, ensure_ascii=True))


def pull(reference: str, dest: Path, *, platform: str = "", insecure: bool = False,
         credentials: tuple[str, str] | None = None, cache_dir: str | os.PathLike[str] | None = None,
         session: requests.Session | None = None, environ: Mapping[str, str] | None = None) -> PullResult:
    """Pull ``reference`` into the OCI layout ``dest`` (created, or an existing layout gaining a tag)."""
    ref = parse_pull_reference(reference)
    env = os.environ if environ is None else environ
    if credentials is None:
        credentials = host_credentials(ref.host, env)
    if dest.exists() and not (dest.is_dir() and ((dest / "index.json").is_file() or not any(dest.iterdir()))):
        raise ImageError("pull into", str(dest), "exists and is not an empty directory or an OCI layout")
    cache = Cache(default_cache_dir(cache_dir))
    own = session is None
    sess = session or requests.Session()
    client = _Client(Reference(ref.host, ref.repository, ref.tag or "latest"),
                     insecure=is_insecure(ref.host, insecure, env), credentials=credentials, session=sess,
                     stats=PushStats())
    client.verb, client.actions = "pull from", "pull"
    tag = ref.tag or ref.digest.replace(":", "-")[:19]
    result = PullResult(ref, "", "", dest, tag)
    puller = _Puller(ref, client, cache)
    try:
        probe = client.request("GET", f"{client.base}/v2/")
        if probe.status_code != 200:
            raise _fail(client, "GET /v2/", probe)
        body, media, digest = puller.manifest(ref.target, ref.digest)
        platform_desc: dict[str, Any] | None = None
        if media in (OCI_INDEX, DOCKER_LIST):
            result.index_digest = digest
            child = pick_platform(list(json.loads(body).get("manifests") or []), parse_platform(platform),
                                  ref.text)
            platform_desc = child.get("platform")
            body, media, digest = puller.manifest(str(child.get("digest")), str(child.get("digest")))
        if media not in (OCI_MANIFEST, DOCKER_MANIFEST):
            raise ImageError("pull", ref.text, f"unsupported manifest type {media or 'none'}")
        manifest = json.loads(body)
        blobs = [manifest.get("config") or {}, *(manifest.get("layers") or [])]
        for desc in blobs:
            puller.blob(desc, result)
    finally:
        if own:
            sess.close()
    (dest / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    for desc in blobs:
        _place(cache, dest, str(desc["digest"]))
    _write_bytes(dest, body)
    top: dict[str, Any] = {"mediaType": media, "digest": digest, "size": len(body),
                           "annotations": {REF_NAME: tag}}
    if platform_desc:
        top["platform"] = platform_desc
    _write_index(dest, top)
    result.digest = digest
    return result


@contextlib.contextmanager
def pulled(reference: str, *, platform: str = "", insecure: bool = False,
           cache_dir: str | os.PathLike[str] | None = None) -> Any:
    """A temporary OCI layout holding ``reference`` (its blobs hard-linked from the cache), removed on exit."""
    root = default_cache_dir(cache_dir)
    Cache(root)
    scratch = Path(tempfile.mkdtemp(prefix="pulled-", dir=root / "tmp"))
    try:
        yield pull(reference, scratch, platform=platform, insecure=insecure, cache_dir=root)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def pull_for_run(reference: str, layout: str, cache_dir: str, platform: tuple[str, str, str] | None = None) -> str:
    """``forge run REF``: pull ``platform`` (the host's when None) into the (empty, temporary) ``layout``;
    return its tag."""
    from pathlib import Path as _Path

    if not looks_like_reference(reference):
        from rootfs_forge.errors import RunError

        raise RunError("run", reference, "no such directory, OCI layout, oci-archive or registry reference")
    from rootfs_forge.util.platform import label

    return pull(reference, _Path(layout), cache_dir=cache_dir, platform=label(platform) if platform else "").tag
