"""One blob of a registry repository, streamed into a sink: the OCI vendor stores of the chain of places.

URLs are ``oci+https://HOST[:PORT]/REPO@sha256:<hex>`` (``oci+http`` for plain HTTP); the registry client of
``forge push``/``forge pull`` does the authentication (credentials from ``FORGE_REGISTRY_USER`` /
``FORGE_REGISTRY_PASSWORD`` or the docker config). The caller (the cache's verifying writer) checks the bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from rootfs_forge.errors import FetchError, ImageError

_URL = re.compile(r"^oci\+(?P<scheme>https?)://(?P<host>[^/]+)/(?P<repo>[a-z0-9][a-z0-9._/-]*)@(?P<digest>sha256:[0-9a-f]{64})$")


def credentials(host: str) -> tuple[str, str] | None:
    from rootfs_forge.image.registry import host_credentials

    return host_credentials(host)


def download_blob(url: str, sink: Any, what: str, progress: Callable[[int], None] | None = None) -> int:
    """Stream the blob named by ``url`` into ``sink``; a missing blob raises NotFound."""
    import requests

    from rootfs_forge.archive.transport import NotFound
    from rootfs_forge.image.registry import PushStats, Reference, _Client

    m = _URL.match(url)
    if not m:
        raise FetchError("fetch", what, f"not an OCI blob URL: {url}")
    host, repo, digest = m.group("host"), m.group("repo"), m.group("digest")
    with requests.Session() as session:
        client = _Client(Reference(host, repo, "latest"), insecure=m.group("scheme") == "http",
                         credentials=credentials(host), session=session, stats=PushStats())
        client.verb, client.actions = "pull from", "pull"
        try:
            resp = client.request("GET", client.url(f"blobs/{digest}"), stream=True)
        except ImageError as exc:
            raise FetchError("fetch", what, f"{host}/{repo}: {exc.reason}") from None
        with resp:
            if resp.status_code in (404, 410):
                raise NotFound("fetch", what, f"HTTP {resp.status_code} from vendor store {host}/{repo}")
            if resp.status_code != 200:
                raise FetchError("fetch", what, f"HTTP {resp.status_code} from vendor store {host}/{repo}")
            written = 0
            try:
                for chunk in resp.iter_content(1 << 20):
                    sink.write(chunk)
                    written += len(chunk)
                    if progress:
                        progress(len(chunk))
            except requests.RequestException as exc:
                raise FetchError("fetch", what, f"vendor store {host}/{repo}: {type(exc).__name__}") from None
    return written
