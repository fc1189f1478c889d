"""push, pull and the OCI vendor store reach a registry the one same way: its credentials, plain HTTP or not."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from rootfs_forge.cli import main as forge_main
from rootfs_forge.image import blobfetch
from rootfs_forge.image.registry import docker_config, host_credentials
from tests.test_registry import image, registry  # noqa: F401 - fixture


def _config(directory: Path, host: str, user_password: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(user_password).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))


def test_docker_config_is_docker_config_env_else_home(tmp_path: Path) -> None:
    assert docker_config({"DOCKER_CONFIG": str(tmp_path / "d")}) == tmp_path / "d" / "config.json"
    assert docker_config({}) == Path.home() / ".docker" / "config.json"


def test_host_credentials_env_first_then_docker_config(tmp_path: Path) -> None:
    _config(tmp_path / "d", "reg.test:5000", b"alice:s3:cret")
    env = {"DOCKER_CONFIG": str(tmp_path / "d")}
    assert host_credentials("reg.test:5000", env) == ("alice", "s3:cret")
    assert host_credentials("other.test", env) is None
    assert host_credentials("reg.test:5000", {**env, "FORGE_REGISTRY_USER": "bob", "FORGE_REGISTRY_PASSWORD": "pw"}) \
        == ("bob", "pw")


def test_vendor_store_reads_the_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _config(tmp_path / "d", "reg.test", b"carol:pw")
    monkeypatch.delenv("FORGE_REGISTRY_USER", raising=False)
    monkeypatch.delenv("FORGE_REGISTRY_PASSWORD", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "d"))
    assert blobfetch.credentials("reg.test") == ("carol", "pw")


def test_push_to_a_loopback_registry_talks_plain_http_as_pull_does(
    registry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.delenv("FORGE_INSECURE_REGISTRIES", raising=False)
    assert registry.startswith("127.0.0.1:")
    layout = image(tmp_path)
    code = forge_main(["push", f"{layout}:latest", f"{registry}/forge/app:1", "--cache-dir", str(tmp_path / "c")])
    assert code == 0, capsys.readouterr().err
    code = forge_main(["pull", f"{registry}/forge/app:1", "-o", str(tmp_path / "got"), "--cache-dir",
                       str(tmp_path / "c"), "-q"])
    assert code == 0, capsys.readouterr().err
