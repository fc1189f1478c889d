"""Pushing to a real registry (Debian's docker-registry on 127.0.0.1) and reading back with skopeo."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import requests

from rootfs_forge.cli import main as forge_main
from rootfs_forge.errors import ImageError
from rootfs_forge.image.layer import write_layer
from rootfs_forge.image.oci import ImageConfig, write_image, write_index
from rootfs_forge.image.registry import credentials_for, parse_challenge, parse_reference, push
from tests.support.registry import docker_registry, free_port, serving, two_arch_layout

EPOCH = 1_700_000_000

pytestmark = pytest.mark.skipif(
    not shutil.which("docker-registry") or not shutil.which("skopeo"),
    reason="needs docker-registry and skopeo",
)


# ---- pure parts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000/app:1.0", ("127.0.0.1:5000", "app", "1.0")),
        ("localhost/team/app", ("localhost", "team/app", "latest")),
        ("registry.example:443/a/b/c:v_2", ("registry.example:443", "a/b/c", "v_2")),
    ],
)
def test_parse_reference(text: str, expected: tuple[str, str, str]) -> None:
    ref = parse_reference(text)
    assert (ref.host, ref.repository, ref.tag) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("app:1", "expected REGISTRY/REPOSITORY"),
        ("127.0.0.1:5000/App:1", "not a valid repository name"),
        ("127.0.0.1:5000/app:bad/tag", "not a valid repository name"),
        ("127.0.0.1:5000/app:-x", "not a valid tag"),
    ],
)
def test_parse_reference_refuses(text: str, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        parse_reference(text)


def test_parse_challenge() -> None:
    assert parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull"'
    ) == ("bearer", {"realm": "https://auth.example/token", "service": "reg", "scope": "repository:a:pull"})
    assert parse_challenge('Basic realm="basic-realm"') == ("basic", {"realm": "basic-realm"})


def test_credentials_env_then_docker_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(
        json.dumps(
            {
                "auths": {
                    "reg.example:5000": {"auth": base64.b64encode(b"alice:s3:cret").decode()},
                    "https://other.example": {"auth": base64.b64encode(b"bob:pw").decode()},
                }
            }
        )
    )
    env = {"FORGE_REGISTRY_USER": "ci", "FORGE_REGISTRY_PASSWORD": "token"}
    assert credentials_for("reg.example:5000", env, cfg) == ("ci", "token")
    assert credentials_for("reg.example:5000", {}, cfg) == ("alice", "s3:cret")
    assert credentials_for("other.example", {}, cfg) == ("bob", "pw")
    assert credentials_for("unknown.example", {}, cfg) is None
    assert credentials_for("reg.example:5000", {}, tmp_path / "absent.json") is None
    cfg.write_text("{not json")
    with pytest.raises(ImageError, match="cannot read credentials from"):
        credentials_for("reg.example:5000", {}, cfg)


# ---- a real registry ----------------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """docker-registry on 127.0.0.1:<free port>, storage in tmp; stopped (and waited for) at the end."""
    with docker_registry(tmp_path, delete=True) as address:
        yield address


def image(
    tmp_path: Path,
    name: str = "img",
    *,
    arch: str = "amd64",
    payload: bytes = b"hello",
    compression: str = "gzip",
) -> Path:
    tree = tmp_path / f"tree-{name}-{arch}"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "data").write_bytes(payload)
    layout = tmp_path / name
    blob = write_layer(tree, layout, epoch=EPOCH, compression=compression)  # type: ignore[arg-type]
    write_image(
        layout,
        [blob],
        ImageConfig(architecture=arch, cmd=("/bin/sh",), created=EPOCH),
        ref_name="latest",
        annotations={},
    )
    return layout


def skopeo_copy(src: str, dest: Path) -> dict[str, Any]:
    subprocess.run(
        ["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{src}", f"oci:{dest}:got"],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(["skopeo", "inspect", f"oci:{dest}:got"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_forge_push_then_skopeo_copy_back(
    registry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = image(tmp_path)
    code = forge_main(
        [
            "push",
            f"{layout}:latest",
            f"{registry}/forge/app:1.0",
            "--insecure",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    digest = out.out.strip()
    index = json.loads((layout / "index.json").read_text())
    assert digest == index["manifests"][0]["digest"]
    assert "upload" in out.err
    got = skopeo_copy(f"{registry}/forge/app:1.0", tmp_path / "copy")
    assert got["Digest"] == digest


def test_second_push_skips_every_blob(registry: str, tmp_path: Path) -> None:
    layout = image(tmp_path)
    events: list[tuple[str, str]] = []
    first = push(
        layout, "latest", f"{registry}/app:1", insecure=True, report=lambda e, d: events.append((e, d))
    )
    assert len(first.stats.uploaded) == 2 and first.stats.skipped == []  # config + one layer
    second = push(layout, "latest", f"{registry}/app:1", insecure=True)
    assert second.digest == first.digest
    assert second.stats.uploaded == [] and sorted(second.stats.skipped) == sorted(first.stats.uploaded)
    assert "PATCH" not in second.stats.requests and second.stats.requests.get("POST", 0) == 0
    assert [e for e, _ in events] == ["upload", "upload", "manifest"]


def test_large_blob_goes_up_in_chunks(registry: str, tmp_path: Path) -> None:
    import random

    layout = image(tmp_path, payload=random.Random(1).randbytes(300_000))  # incompressible: ~300 KB blob
    result = push(layout, "latest", f"{registry}/chunky:1", insecure=True, chunk_size=64 << 10)
    assert result.stats.requests["PATCH"] >= 4
    assert skopeo_copy(f"{registry}/chunky:1", tmp_path / "copy")["Digest"] == result.digest


def test_cross_repository_mount(registry: str, tmp_path: Path) -> None:
    layout = image(tmp_path)
    known: dict[str, str] = {}
    first = push(layout, "latest", f"{registry}/one:1", insecure=True, known_blobs=known)
    assert set(known) == set(first.stats.uploaded) and set(known.values()) == {"one"}
    second = push(layout, "latest", f"{registry}/two:1", insecure=True, known_blobs=known)
    assert sorted(second.stats.mounted) == sorted(first.stats.uploaded) and second.stats.uploaded == []
    assert set(known.values()) == {"two"}
    assert skopeo_copy(f"{registry}/two:1", tmp_path / "copy")["Digest"] == first.digest


def test_multi_arch_index_push(registry: str, tmp_path: Path) -> None:
    layout = tmp_path / "multi"
    top = write_index(layout, two_arch_layout(tmp_path, layout, EPOCH), "latest")
    result = push(layout, "latest", f"{registry}/multi:1", insecure=True)
    assert result.digest == top.manifest_digest and len(result.stats.manifests) == 3
    raw = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{registry}/multi:1"],
        check=True,
        capture_output=True,
    ).stdout
    assert raw == (layout / "blobs" / "sha256" / top.manifest_digest[7:]).read_bytes()


def test_push_of_unknown_tag_fails(registry: str, tmp_path: Path) -> None:
    layout = image(tmp_path)
    with pytest.raises(ImageError, match="the layout has latest"):
        push(layout, "nope", f"{registry}/app:1", insecure=True)


def test_push_to_nothing_listening_is_an_image_error(tmp_path: Path) -> None:
    layout = image(tmp_path)
    with pytest.raises(ImageError, match=r"cannot push to 127\.0\.0\.1:\d+/app:1: GET"):
        push(layout, "latest", f"127.0.0.1:{free_port()}/app:1", insecure=True)


# ---- bearer token flow in front of the real registry ---------------------------------------------------


@pytest.fixture
def token_proxy(registry: str) -> Iterator[tuple[str, list[str]]]:
    """A proxy that demands a Bearer token (issued for alice:wonderland) and forwards to the registry."""
    upstream = f"http://{registry}"
    token = "t0ken-for-alice"
    scopes: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _proxy(self) -> None:
            host = f"127.0.0.1:{self.server.server_address[1]}"  # type: ignore[index]
            if self.path.startswith("/token"):
                from urllib.parse import parse_qs, urlsplit

                want = "Basic " + base64.b64encode(b"alice:wonderland").decode()
                if self.headers.get("Authorization") != want:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                scopes.extend(parse_qs(urlsplit(self.path).query).get("scope", []))
                body = json.dumps({"token": token}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else None
            if self.headers.get("Authorization") != f"Bearer {token}":
                self.send_response(401)
                self.send_header(
                    "WWW-Authenticate", f'Bearer realm="http://{host}/token",service="test-registry"'
                )
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "host")}
            headers["Host"] = host
            resp = requests.request(
                self.command,
                upstream + self.path,
                data=data,
                headers=headers,
                allow_redirects=False,
                timeout=30,
            )
            self.send_response(resp.status_code)
            for k, v in resp.headers.items():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            body = resp.content if self.command != "HEAD" else b""
            self.send_header("Content-Length", resp.headers.get("Content-Length", str(len(body))))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _proxy

    with serving(Handler) as address:
        yield address, scopes


def test_bearer_token_flow(
    token_proxy: tuple[str, list[str]],
    registry: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    proxy, scopes = token_proxy
    layout = image(tmp_path)
    monkeypatch.setenv("FORGE_REGISTRY_USER", "alice")
    monkeypatch.setenv("FORGE_REGISTRY_PASSWORD", "wonderland")
    code = forge_main(
        [
            "push",
            "-q",
            str(layout),
            f"{proxy}/secure/app:2",
            "--insecure",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert scopes and scopes[0] == "repository:secure/app:pull,push"
    assert skopeo_copy(f"{registry}/secure/app:2", tmp_path / "copy")["Digest"] == out.out.strip()


def test_bearer_token_refused_for_wrong_password(token_proxy: tuple[str, list[str]], tmp_path: Path) -> None:
    proxy, _ = token_proxy
    with pytest.raises(ImageError, match=r"token request refused \(HTTP 401\)"):
        push(image(tmp_path), "latest", f"{proxy}/secure/app:2", insecure=True, credentials=("alice", "nope"))


def test_forge_push_from_an_oci_archive(
    registry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rootfs_forge.image.archives import write_oci_archive

    layout = image(tmp_path)
    write_oci_archive(layout, tmp_path / "img.tar")
    code = forge_main(
        [
            "push",
            "-q",
            f"{tmp_path / 'img.tar'}:latest",
            f"{registry}/arch:1",
            "--insecure",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out.strip() == json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    assert json.loads((tmp_path / "cache" / "registry" / f"{registry.replace(':', '_')}.json").read_text())


def test_forge_push_bad_reference_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = forge_main(["push", str(image(tmp_path)), "no-registry-here", "--insecure"])
    err = capsys.readouterr().err
    assert code == 7 and err.startswith("forge: cannot push to 'no-registry-here'") and err.count("\n") == 1
