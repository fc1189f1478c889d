"""Compose acceptance from the real mirror the host's apt sources name (network; chroot needs root)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.forge import forge

pytestmark = [pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("real-cache")


def compose(tmp: Path, cache: Path, packages: list[str], *extra: str) -> tuple[Path, dict]:  # type: ignore[type-arg]
    recipe = tmp / "r.toml"
    recipe.write_text(f"packages = {json.dumps(packages)}\n[image]\narchitecture = \"amd64\"\n")
    out = tmp / "root"
    proc = forge("compose", str(recipe), "--format", "rootfs", "-o", str(out), "--json", "-q", *extra, cache=cache)
    assert proc.returncode == 0, proc.stderr
    resolved = forge("resolve", str(recipe), "--json", "--offline", cache=cache)
    assert resolved.returncode == 0, resolved.stderr
    return out, json.loads(resolved.stdout)["amd64"]


def installed(root: Path) -> list[str]:
    out = subprocess.run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f",
                          "${Package} ${Version}\n"], capture_output=True, text=True, check=True).stdout
    return sorted(out.splitlines())


def assert_db_matches(root: Path, resolution: dict) -> None:  # type: ignore[type-arg]
    assert installed(root) == sorted(f"{p['package']} {p['version']}" for p in resolution["packages"])
    verify = subprocess.run(["dpkg", f"--root={root}", "--verify"], capture_output=True, text=True)
    missing = [ln for ln in verify.stdout.splitlines() if "missing" in ln]
    assert missing == []


@pytest.mark.root
def test_bash_and_coreutils_run_in_chroot(tmp_path: Path, real_cache: Path) -> None:
    root, res = compose(tmp_path, real_cache, ["bash", "coreutils"])
    out = subprocess.run(["chroot", str(root), "/bin/bash", "-c", "ls / && echo ok"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "ok" and "usr" in out.stdout.split()
    assert_db_matches(root, res)


@pytest.mark.root
def test_python3_imports_ssl_json_sqlite3_in_chroot(tmp_path: Path, real_cache: Path) -> None:
    root, res = compose(tmp_path, real_cache, ["python3"])
    out = subprocess.run(["chroot", str(root), "python3", "-c", 'import ssl, json, sqlite3; print("ok")'],
                         capture_output=True, text=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ok\n"
    assert_db_matches(root, res)
    audit = ("audit", str(root), "--fail-on", "missing-libs")
    clean = forge(*audit)
    assert clean.returncode == 0, clean.stdout[-2000:] + clean.stderr
    (root / "usr/lib/x86_64-linux-gnu/libssl.so.3").unlink()
    broken = forge(*audit)
    assert broken.returncode != 0
    assert "libssl.so.3" in broken.stdout and "libssl.so.3" in broken.stderr


@pytest.mark.root
def test_ca_certificates_bundle_and_curl(tmp_path: Path, real_cache: Path) -> None:
    root, res = compose(tmp_path, real_cache, ["ca-certificates", "curl"])
    bundle = (root / "etc/ssl/certs/ca-certificates.crt").read_text()
    shipped = list((root / "usr/share/ca-certificates/mozilla").glob("*.crt"))
    assert len(shipped) > 100
    assert bundle.count("BEGIN CERTIFICATE") == len(shipped)
    out = subprocess.run(["chroot", str(root), "/usr/bin/curl", "--version"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("curl ")
    assert_db_matches(root, res)
