"""Push an image from an OCI layout to a registry over the OCI distribution API (requests).

For each blob: ``HEAD`` to skip what the repository has; a cross-repository mount (``POST ?mount=&from=``)
when the caller knows another repository of the registry holds it (best effort: a registry may answer 202 and
we upload); otherwise ``POST`` an upload session and ``PUT ?digest=`` the whole blob, or ``PATCH`` it in
chunks first when it is larger than ``chunk_size``. Then the manifests (children of an image index by digest,
the top one by tag). Authentication: HTTP Basic, or the Bearer token flow on a ``401`` whose
``WWW-Authenticate`` names a realm (the token request carries the Basic credentials when there are some).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import requests

from rootfs_forge.errors import ImageError
from rootfs_forge.image.oci import DOCKER_LIST_TYPE, INDEX_TYPE, blob_path, find_ref, load_blob_json

Reporter = Callable[[str, str], None]  # (event, digest): "skip" | "mount" | "upload", then "manifest"
DEFAULT_CHUNK = 32 << 20
_TIMEOUT = 60


@dataclass(frozen=True, slots=True)
class Reference:
    host: str  # host[:port]
    repository: str
    tag: str

    @property
    def text(self) -> str:
        return f"{self.host}/{self.repository}:{self.tag}"


def parse_reference(text: str) -> Reference:
    """``host[:port]/repo[/more]:tag`` (tag defaults to ``latest``)."""
    host, sep, rest = text.partition("/")
    if not sep or not rest or not ("." in host or ":" in host or host == "localhost"):
        raise ImageError(
            "push to", repr(text), "expected REGISTRY/REPOSITORY[:TAG], e.g. 127.0.0.1:5000/app:1"
        )
    repo, tag = rest, "latest"
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        repo, _, tag = rest.rpartition(":")
    if not re.fullmatch(
        r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*", repo
    ):
        raise ImageError("push to", repr(text), f"{repo!r} is not a valid repository name")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
        raise ImageError("push to", repr(text), f"{tag!r} is not a valid tag")
    return Reference(host, repo, tag)


def host_credentials(host: str, environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """The credentials for ``host`` that ``environ`` (default: this process's) gives, directly or through
    ``$DOCKER_CONFIG/config.json`` (else ``~/.docker/config.json``): see :func:`credentials_for`."""
    env = os.environ if environ is None else environ
    return credentials_for(host, env, docker_config(env))


def docker_config(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else Path.home() / ".docker"
    return base / "config.json"


def credentials_for(
    host: str, environ: Mapping[str, str], docker_config: Path | None
) -> tuple[str, str] | None:
    """FORGE_REGISTRY_USER/FORGE_REGISTRY_PASSWORD, else ``auths.<host>.auth`` in a docker config.json."""
    user, password = environ.get("FORGE_REGISTRY_USER"), environ.get("FORGE_REGISTRY_PASSWORD")
    if user and password is not None:
        return user, password
    if docker_config is None or not docker_config.is_file():
        return None
    try:
        auths = json.loads(docker_config.read_text()).get("auths") or {}
    except (OSError, ValueError) as exc:
        raise ImageError("read credentials from", str(docker_config), str(exc)) from exc
    for key in (host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"):
        auth = (auths.get(key) or {}).get("auth")
        if auth:
            try:
                user, _, password = base64.b64decode(auth).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as exc:
                raise ImageError("read credentials from", str(docker_config), f"auths.{key}.auth") from exc
            return user, password
    return None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="…",service="…",scope="…"`` → ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


@dataclass
class PushStats:
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    mounted: list[str] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)  # "POST" -> count


@dataclass(frozen=True, slots=True)
class PushResult:
    digest: str  # of the top manifest or index, as the registry named it
    reference: Reference
    stats: PushStats


class _Client:
    """One repository of one registry, with authentication and request counting.

    ``verb`` names the operation in errors and ``actions`` is the token scope asked for; ``forge pull``
    (rootfs_forge.image.pull) sets them to "pull from" and "pull".
    """

    verb = "push to"
    actions = "pull,push"

    def __init__(
        self,
        ref: Reference,
        *,
        insecure: bool,
        credentials: tuple[str, str] | None,
        session: requests.Session,
        stats: PushStats,
    ) -> None:
        self.ref = ref
        self.base = f"{'http' if insecure else 'https'}://{ref.host}"
        self.credentials = credentials
        self.session = session
        self.stats = stats
        self.auth_header: str | None = None
        self.mount_sources: set[str] = set()  # other repositories we may mount from: pull scope for them

    def url(self, path: str) -> str:
        return f"{self.base}/v2/{self.ref.repository}/{path}"

    def request(self, method: str, url: str, **kw: Any) -> requests.Response:
        for attempt in range(2):
            headers = dict(kw.pop("headers", None) or {})
            if self.auth_header:
                headers["Authorization"] = self.auth_header
            self.stats.requests[method] = self.stats.requests.get(method, 0) + 1
            try:
                resp = self.session.request(
                    method, url, headers=headers, timeout=_TIMEOUT, allow_redirects=True, **kw
                )
            except requests.RequestException as exc:
                raise ImageError(self.verb, self.ref.text, f"{method} {url}: {exc}") from exc
            if resp.status_code != 401 or attempt == 1:
                return resp
            kw["headers"] = headers
            self._authenticate(resp)  # then replay the request (bodies are bytes, so they can be resent)
        return resp

    def _authenticate(self, resp: requests.Response) -> None:
        scheme, params = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            if not self.credentials:
                raise ImageError(self.verb, self.ref.text, "the registry wants a user name and password")
            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            self.auth_header = f"Basic {token}"
            return
        if scheme != "bearer" or "realm" not in params:
            raise ImageError(
                self.verb, self.ref.text, f"HTTP 401 without a usable challenge ({scheme or 'none'})"
            )
        query: list[tuple[str, str]] = [("service", params["service"])] if params.get("service") else []
        query.append(("scope", f"repository:{self.ref.repository}:{self.actions}"))
        query += [("scope", f"repository:{repo}:pull") for repo in sorted(self.mount_sources)]
        url = params["realm"] + ("&" if "?" in params["realm"] else "?") + urlencode(query)
        self.stats.requests["GET"] = self.stats.requests.get("GET", 0) + 1
        try:
            got = self.session.get(url, auth=self.credentials, timeout=_TIMEOUT)
        except requests.RequestException as exc:
            raise ImageError(self.verb, self.ref.text, f"token request: {exc}") from exc
        if got.status_code != 200:
            raise ImageError(self.verb, self.ref.text, f"token request refused (HTTP {got.status_code})")
        try:
            body = got.json()
        except ValueError:
            body = {}
        bearer: object = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(bearer, str) or not bearer:
            raise ImageError(self.verb, self.ref.text, "the token service answered without a token")
        self.auth_header = f"Bearer {bearer}"


def _fail(client: _Client, what: str, resp: requests.Response) -> ImageError:
    detail = ""
    try:
        errors = resp.json().get("errors") or []
        if errors:
            detail = ": " + "; ".join(f"{e.get('code')} {e.get('message', '')}".strip() for e in errors)
    except ValueError:
        pass
    return ImageError(client.verb, client.ref.text, f"{what}: HTTP {resp.status_code}{detail}")


def _chunks(path: Path, size: int) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def _push_blob(
    client: _Client,
    layout: Path,
    desc: Mapping[str, Any],
    *,
    chunk_size: int,
    known: MutableMapping[str, str],
    report: Reporter,
) -> None:
    digest, size = str(desc["digest"]), int(desc["size"])
    path = blob_path(layout, digest)
    if not path.is_file():
        raise ImageError("push", str(layout), f"blob {digest} is missing from the layout")
    head = client.request("HEAD", client.url(f"blobs/{digest}"))
    if head.status_code == 200:
        client.stats.skipped.append(digest)
        report("skip", digest)
        known[digest] = client.ref.repository
        return
    if head.status_code not in (404,):
        raise _fail(client, f"HEAD {digest}", head)
    source = known.get(digest)
    if source and source != client.ref.repository:
        resp = client.request(
            "POST", client.url("blobs/uploads/") + "?" + urlencode({"mount": digest, "from": source})
        )
        if resp.status_code == 201:
            client.stats.mounted.append(digest)
            report("mount", digest)
            known[digest] = client.ref.repository
            return
    else:
        resp = client.request("POST", client.url("blobs/uploads/"))
    if resp.status_code != 202 or "Location" not in resp.headers:
        raise _fail(client, f"start upload of {digest}", resp)
    location = urljoin(client.url(""), resp.headers["Location"])
    if size > chunk_size:
        offset = 0
        for chunk in _chunks(path, chunk_size):
            resp = client.request(
                "PATCH",
                location,
                data=chunk,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                    "Content-Length": str(len(chunk)),
                },
            )
            if resp.status_code != 202 or "Location" not in resp.headers:
                raise _fail(client, f"upload chunk of {digest} at {offset}", resp)
            location = urljoin(client.url(""), resp.headers["Location"])
            offset += len(chunk)
        body: bytes = b""
    else:
        body = path.read_bytes()
    sep = "&" if "?" in location else "?"
    resp = client.request(
        "PUT",
        location + sep + urlencode({"digest": digest}),
        data=body,
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(body))},
    )
    if resp.status_code != 201:
        raise _fail(client, f"finish upload of {digest}", resp)
    client.stats.uploaded.append(digest)
    report("upload", digest)
    known[digest] = client.ref.repository


def _push_manifest(
    client: _Client, layout: Path, desc: Mapping[str, Any], target: str, report: Reporter
) -> str:
    synthetic = desc.get("synthetic")  # a multi-platform index over a layout's manifests (oci.find_ref)
    data = synthetic if isinstance(synthetic, bytes) else blob_path(layout, str(desc["digest"])).read_bytes()
    resp = client.request(
        "PUT", client.url(f"manifests/{target}"), data=data, headers={"Content-Type": str(desc["mediaType"])}
    )
    if resp.status_code not in (200, 201):
        raise _fail(client, f"PUT manifest {target}", resp)
    got = resp.headers.get("Docker-Content-Digest", desc["digest"])
    if got != desc["digest"]:
        raise ImageError("push to", client.ref.text, f"the registry stored {got}, expected {desc['digest']}")
    client.stats.manifests.append(str(desc["digest"]))
    report("manifest", str(desc["digest"]))
    return str(got)


def _push_image(
    client: _Client,
    layout: Path,
    desc: Mapping[str, Any],
    target: str,
    *,
    chunk_size: int,
    known: MutableMapping[str, str],
    report: Reporter,
) -> str:
    synthetic = desc.get("synthetic")
    doc = json.loads(synthetic) if isinstance(synthetic, bytes) else load_blob_json(layout, desc)
    if desc.get("mediaType") in (INDEX_TYPE, DOCKER_LIST_TYPE):
        for child in doc.get("manifests") or []:
            _push_image(
                client, layout, child, str(child["digest"]), chunk_size=chunk_size, known=known, report=report
            )
    else:
        for blob in [doc["config"], *(doc.get("layers") or [])]:
            _push_blob(client, layout, blob, chunk_size=chunk_size, known=known, report=report)
    return _push_manifest(client, layout, desc, target, report)


def push(
    layout_dir: Path,
    tag: str | None,
    reference: str,
    *,
    insecure: bool = False,
    credentials: tuple[str, str] | None = None,
    session: requests.Session | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    known_blobs: MutableMapping[str, str] | None = None,
    report: Reporter | None = None,
) -> PushResult:
    """Push the image tagged ``tag`` in ``layout_dir`` (a manifest or a multi-arch index) to ``reference``.

    ``insecure`` talks plain HTTP. ``known_blobs`` (digest → repository in this registry) enables
    cross-repository mounts and is updated with what the registry now holds.
    """
    ref = parse_reference(reference)
    if not (layout_dir / "index.json").is_file():
        raise ImageError("push", str(layout_dir), "not an OCI image layout (no index.json)")
    top = find_ref(layout_dir, tag)
    stats = PushStats()
    own_session = session is None
    sess = session or requests.Session()
    known = known_blobs if known_blobs is not None else {}
    client = _Client(ref, insecure=insecure, credentials=credentials, session=sess, stats=stats)
    client.mount_sources = {repo for repo in known.values() if repo != ref.repository}
    try:
        probe = client.request("GET", f"{client.base}/v2/")  # authenticate (and fail early) before any upload
        if probe.status_code != 200:
            raise _fail(client, "GET /v2/", probe)
        digest = _push_image(
            client, layout_dir, top, ref.tag, chunk_size=chunk_size, known=known, report=report or _quiet
        )
    finally:
        if own_session:
            sess.close()
    return PushResult(digest, ref, stats)


def _quiet(event: str, digest: str) -> None:
    return None
