"""forge pull, and registry references wherever an image is accepted (audit, sbom, why, diff, run).

Against Debian's docker-registry on loopback (the fixture of tests/test_registry.py): push, then read back by
tag and by digest; a proxy that corrupts blobs proves a wrong digest is refused with one line, nothing cached.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import requests

from rootfs_forge.errors import ImageError
from rootfs_forge.image.oci import write_index
from rootfs_forge.image.pull import (
    is_insecure,
    looks_like_reference,
    parse_platform,
    parse_pull_reference,
    pick_platform,
    pull,
)
from rootfs_forge.image.registry import push
from tests.conftest import source_block
from tests.support.forge import forge as run_forge
from tests.support.registry import serving, two_arch_layout
from tests.support.repo import RepoServer, Signer
from tests.test_registry import EPOCH, image, registry, token_proxy  # noqa: F401 - fixtures

needs_registry = pytest.mark.skipif(not shutil.which("docker-registry") or not shutil.which("skopeo"),
                                    reason="needs docker-registry and skopeo")


def forge(*args: str, cache: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """forge with ``$FORGE_CACHE`` (the default cache) at ``cache`` and ``env`` set: in this process, but
    ``forge run`` as a real one (it forks into namespaces)."""
    return run_forge(*args, env={"FORGE_CACHE": str(cache), **env}, cli=args[0] == "run", timeout=300)


# ---------------------------------------------------------------- pure parts

@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:5000/app", ("127.0.0.1:5000", "app", "latest", "")),
    ("localhost/team/app:1.0", ("localhost", "team/app", "1.0", "")),
    ("reg.example/app@sha256:" + "a" * 64, ("reg.example", "app", "", "sha256:" + "a" * 64)),
    ("reg.example/app:v1@sha256:" + "b" * 64, ("reg.example", "app", "v1", "sha256:" + "b" * 64)),
])
def test_parse_pull_reference(text: str, expected: tuple[str, str, str, str]) -> None:
    ref = parse_pull_reference(text)
    assert (ref.host, ref.repository, ref.tag, ref.digest) == expected


@pytest.mark.parametrize("text", ["reg.example/app@sha256:abc", "reg.example/App:1", "app:1"])
def test_bad_pull_reference_is_refused(text: str) -> None:
    with pytest.raises(ImageError):
        parse_pull_reference(text)


def test_what_counts_as_a_registry_reference() -> None:
    assert looks_like_reference("127.0.0.1:5000/app:1") and looks_like_reference("localhost/app")
    assert looks_like_reference("ghcr.io/org/app@sha256:" + "0" * 64)
    for local in ("out/app", "out/app:latest", "./x.y/app", "/abs/app", "app", "../a.b/c"):
        assert not looks_like_reference(local), local


def test_plain_http_only_for_loopback_listed_or_asked() -> None:
    assert is_insecure("127.0.0.1:5000", environ={}) and is_insecure("localhost:5000", environ={})
    assert is_insecure("[::1]:5000", environ={})
    assert not is_insecure("registry.example:5000", environ={})
    assert is_insecure("registry.example:5000", environ={"FORGE_INSECURE_REGISTRIES": "a, registry.example:5000"})
    assert is_insecure("registry.example", True, environ={})


def test_platform_names_and_choice() -> None:
    assert parse_platform("linux/arm64") == ("linux", "arm64", "")
    assert parse_platform("armhf") == ("linux", "arm", "v7")
    assert parse_platform("amd64") == ("linux", "amd64", "")
    entries = [{"digest": "a", "platform": {"os": "linux", "architecture": "amd64"}},
               {"digest": "b", "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
               {"digest": "c", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}}]
    assert pick_platform(entries, ("linux", "arm", "v7"), "x")["digest"] == "c"
    with pytest.raises(ImageError, match=r"no image for linux/s390x \(the index has: linux/amd64, linux/arm/v6"):
        pick_platform(entries, ("linux", "s390x", ""), "x")


# ---------------------------------------------------------------- against a registry

@pytest.fixture
def forge_image(tmp_path: Path, repo_server: RepoServer, signer: Signer, cache_dir: Path) -> Path:
    """A real forge image (dpkg database, why-graph) composed from the signed test repository."""
    r = tmp_path / "r.toml"
    r.write_text('packages = ["hello"]\n' + source_block(repo_server, signer))
    proc = forge("compose", str(r), "-o", str(tmp_path / "img"), "--cache-dir", str(cache_dir), cache=cache_dir)
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "img"


@needs_registry
def test_pull_writes_a_verified_layout_and_reuses_cached_layers(registry: str, tmp_path: Path) -> None:  # noqa: F811
    layout = image(tmp_path)
    pushed = push(layout, "latest", f"{registry}/app:1", insecure=True).digest
    cache = tmp_path / "cache"
    proc = forge("pull", f"{registry}/app:1", "-o", str(tmp_path / "got"), "--insecure", cache=cache)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == pushed
    assert "2 blobs fetched, 0 from the cache" in proc.stderr
    inspect = subprocess.run(["skopeo", "inspect", f"oci:{tmp_path / 'got'}:1"], capture_output=True, text=True,
                             check=True)
    assert json.loads(inspect.stdout)["Digest"] == pushed
    # again, by digest, into another layout: every blob comes from the cache
    again = pull(f"{registry}/app@{pushed}", tmp_path / "again", cache_dir=cache)
    assert again.digest == pushed and again.fetched == [] and len(again.cached) == 2
    index = json.loads((tmp_path / "again" / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [pushed]


@needs_registry
def test_pull_by_a_digest_the_registry_does_not_have_fails_in_one_line(registry: str,  # noqa: F811
                                                                       tmp_path: Path) -> None:
    push(image(tmp_path), "latest", f"{registry}/app:1", insecure=True)
    proc = forge("pull", f"{registry}/app@sha256:{'0' * 64}", "-o", str(tmp_path / "x"), cache=tmp_path / "c")
    assert proc.returncode == 7 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"forge: cannot pull from {registry}/app:latest: GET manifest sha256:")
    assert not (tmp_path / "x").exists()


@needs_registry
def test_multi_platform_reference_picks_the_host_or_the_named_platform(registry: str,  # noqa: F811
                                                                       tmp_path: Path) -> None:
    layout = tmp_path / "multi"
    write_index(layout, two_arch_layout(tmp_path, layout, EPOCH), "latest")
    push(layout, "latest", f"{registry}/multi:1", insecure=True)
    cache = tmp_path / "cache"
    arm = pull(f"{registry}/multi:1", tmp_path / "arm", platform="linux/arm64", cache_dir=cache)
    assert arm.index_digest and arm.digest != arm.index_digest
    host = pull(f"{registry}/multi:1", tmp_path / "host", cache_dir=cache)
    assert host.digest != arm.digest
    for arch in ("amd64", "arm64"):
        proc = forge("diff", f"{registry}/multi:1", str(tmp_path / arch), "--arch", arch, "--json", cache=cache)
        assert proc.returncode == 0, proc.stderr
        files = json.loads(proc.stdout)["files"]
        assert files["changed"] == [] and files["added"] == [], files  # the reference read as that platform


@needs_registry
def test_audit_sbom_why_diff_by_reference_and_by_digest(registry: str, tmp_path: Path,  # noqa: F811
                                                        forge_image: Path) -> None:
    pushed = push(forge_image, "latest", f"{registry}/forge/hello:1", insecure=True).digest
    cache = tmp_path / "pull-cache"
    local = json.loads(forge("audit", str(forge_image), "--json", cache=cache).stdout)
    for ref in (f"{registry}/forge/hello:1", f"{registry}/forge/hello@{pushed}"):
        got = forge("audit", ref, "--json", cache=cache)
        assert got.returncode == 0, got.stderr
        remote = json.loads(got.stdout)
        assert remote["target"]["kind"] == "registry" and remote["target"]["ref"].endswith("@" + pushed)
        assert remote["packages"] == local["packages"] and remote["elf"] == local["elf"]
        assert [p["name"] for p in remote["packages"]] == ["hello", "libc6", "mawk"]
        sbom = forge("sbom", ref, "--format", "cyclonedx", cache=cache)
        assert sbom.returncode == 0, sbom.stderr
        names = {c["name"] for c in json.loads(sbom.stdout)["components"]}
        assert {"hello", "libc6", "mawk"} <= names
        why = forge("why", "libc6", ref, cache=cache)
        assert why.returncode == 0, why.stderr
        assert why.stdout == forge("why", "libc6", f"{forge_image}:latest", cache=cache).stdout
        diff = forge("diff", str(forge_image), ref, "--json", cache=cache)
        assert diff.returncode == 0, diff.stderr
        d = json.loads(diff.stdout)
        assert d["packages"] == {"added": [], "removed": [], "changed": []}
        assert d["files"]["changed"] == [] and d["layers"]["shared"] == d["layers"]["a"]
    html = forge("audit", f"{registry}/forge/hello:1", "--html", str(tmp_path / "r.html"), cache=cache)
    assert html.returncode == 0, html.stderr
    assert "hello:" in (tmp_path / "r.html").read_text()


@needs_registry
def test_pull_through_bearer_token_flow(token_proxy: tuple[str, list[str]], tmp_path: Path) -> None:  # noqa: F811
    host, scopes = token_proxy
    layout = image(tmp_path)
    pushed = push(layout, "latest", f"{host}/app:1", insecure=True, credentials=("alice", "wonderland")).digest
    scopes.clear()
    got = pull(f"{host}/app:1", tmp_path / "got", credentials=("alice", "wonderland"), cache_dir=tmp_path / "c")
    assert got.digest == pushed
    assert "repository:app:pull" in scopes and not any("push" in s for s in scopes)
    cfg = tmp_path / "docker"
    cfg.mkdir()
    import base64

    (cfg / "config.json").write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(b"alice:wonderland")
                                                                  .decode()}}}))
    proc = forge("audit", f"{host}/app:1", "--json", cache=tmp_path / "c2", DOCKER_CONFIG=str(cfg))
    assert proc.returncode == 0, proc.stderr
    denied = forge("pull", f"{host}/app:1", "-o", str(tmp_path / "no"), cache=tmp_path / "c3",
                   DOCKER_CONFIG=str(tmp_path / "nowhere"))
    assert denied.returncode == 7 and denied.stderr.count("\n") == 1, denied.stderr


def _proxy(registry: str, corrupt: str) -> Iterator[str]:  # noqa: F811
    """Forwards to the registry, but changes every blob body (``corrupt="blobs"``) or manifest body it serves."""
    upstream = f"http://{registry}"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            resp = requests.get(upstream + self.path, headers={k: v for k, v in self.headers.items()
                                                               if k.lower() != "host"}, timeout=30)
            body = resp.content
            if corrupt == "blobs" and "/blobs/sha256:" in self.path and body:
                body = body[:-1] + bytes([body[-1] ^ 0xFF])
            if corrupt == "grow" and "/blobs/sha256:" in self.path and body:
                body = body + b"\0" * (3 << 20)
            if corrupt == "manifests" and "/manifests/" in self.path and body:
                body = body + b" "  # still the same JSON document, but not the bytes the digest names
            self.send_response(resp.status_code)
            for k, v in resp.headers.items():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(Handler) as address:
        yield address


@pytest.fixture
def corrupting_proxy(registry: str) -> Iterator[str]:  # noqa: F811
    yield from _proxy(registry, "blobs")


@pytest.fixture
def growing_proxy(registry: str) -> Iterator[str]:  # noqa: F811
    yield from _proxy(registry, "grow")


@pytest.fixture
def manifest_proxy(registry: str) -> Iterator[str]:  # noqa: F811
    yield from _proxy(registry, "manifests")


@needs_registry
def test_registry_serving_a_blob_with_the_wrong_digest_is_refused_nothing_cached(
        registry: str, corrupting_proxy: str, tmp_path: Path) -> None:  # noqa: F811
    layout = image(tmp_path)
    push(layout, "latest", f"{registry}/app:1", insecure=True)
    cache = tmp_path / "cache"
    for argv in (["pull", f"{corrupting_proxy}/app:1", "-o", str(tmp_path / "got")],
                 ["audit", f"{corrupting_proxy}/app:1"]):
        proc = forge(*argv, cache=cache)
        assert proc.returncode == 7, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith(f"forge: cannot pull {corrupting_proxy}/app:1: blob sha256:")
        assert "refused" in proc.stderr
    assert not (tmp_path / "got").exists()
    assert list((cache / "blobs" / "sha256").iterdir()) == []
    assert [p.name for p in (cache / "tmp").iterdir() if not p.name.endswith(".lock")] == []


@needs_registry
def test_forge_run_by_reference(registry: str, tmp_path: Path) -> None:  # noqa: F811
    from tests.support.images import BUSYBOX, tar_of_tree, write_layout
    from tests.test_run import ROOT, build_busybox_root

    if not (ROOT and os.path.exists(BUSYBOX)):
        pytest.skip("needs root and busybox-static")
    layout = tmp_path / "image"
    write_layout(layout, [tar_of_tree(build_busybox_root(tmp_path / "rootfs"))], "base",
                 config={"Cmd": ["/bin/sh", "-c", "echo default cmd"]})
    pushed = push(layout, "base", f"{registry}/busybox:1", insecure=True).digest
    cache = tmp_path / "cache"
    for ref in (f"{registry}/busybox:1", f"{registry}/busybox@{pushed}"):
        proc = forge("run", "--cache-dir", str(cache), "--state-dir", str(tmp_path / "state"), ref, "/bin/sh",
                     "-c", "echo hello from the registry", cache=cache)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "hello from the registry\n"
    assert len(list((cache / "layers" / "sha256").iterdir())) == 1  # unpacked once
    gone = forge("run", "--cache-dir", str(cache), "out/no-such-image", "/bin/true", cache=cache)
    assert gone.returncode != 0 and gone.stderr.count("\n") == 1


@needs_registry
def test_registry_serving_a_manifest_that_is_not_the_digest_is_refused(
        registry: str, manifest_proxy: str, tmp_path: Path) -> None:  # noqa: F811
    pushed = push(image(tmp_path), "latest", f"{registry}/app:1", insecure=True).digest
    cache = tmp_path / "cache"
    by_digest = forge("pull", f"{manifest_proxy}/app@{pushed}", "-o", str(tmp_path / "a"), cache=cache)
    assert by_digest.returncode == 7 and by_digest.stderr.count("\n") == 1
    assert f"manifest {pushed} does not match its digest" in by_digest.stderr
    by_tag = forge("audit", f"{manifest_proxy}/app:1", cache=cache)  # the registry's Docker-Content-Digest
    assert by_tag.returncode == 7 and by_tag.stderr.count("\n") == 1
    assert f"the registry names manifest {pushed} but sent sha256:" in by_tag.stderr
    assert not (tmp_path / "a").exists() and list((cache / "blobs" / "sha256").iterdir()) == []


@needs_registry
def test_registry_serving_a_blob_longer_than_its_size_is_cut_off(
        registry: str, growing_proxy: str, tmp_path: Path) -> None:  # noqa: F811
    push(image(tmp_path), "latest", f"{registry}/app:1", insecure=True)
    cache = tmp_path / "cache"
    proc = forge("pull", f"{growing_proxy}/app:1", "-o", str(tmp_path / "got"), cache=cache)
    assert proc.returncode == 7 and proc.stderr.count("\n") == 1, proc.stderr
    assert "refused: more than the" in proc.stderr and "bytes the manifest says" in proc.stderr
    assert list((cache / "blobs" / "sha256").iterdir()) == []
    assert [p.name for p in (cache / "tmp").iterdir() if not p.name.endswith(".lock")] == []
