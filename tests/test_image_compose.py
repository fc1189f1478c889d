"""forge compose to OCI: reproducible digests, layer groups, multi-arch, archives, validated by skopeo/umoci."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import HOST_ARCH, base_specs, source_block
from tests.support.debs import DebSpec, Dir, Reg
from tests.support.forge import forge as run_forge
from tests.support.repo import RepoServer, Signer, build_repo, serve

# Pinned: the same recipe and test repository must always give these digests, on any machine of this kind and
# in any directory. A deliberate change to the image format (or to the test repository) moves them: update them
# in the same commit and say why.
GOLDEN_MANIFEST = "sha256:7009a4126edebeaaf1bd66a344811e95f56f520a5e0e687d8cb62ce93ee03c35"
GOLDEN_DIFF_ID = "sha256:4661f9f3e7e95c5842d6734bea21efb8b8cb8b6e0f06cf693de3efbf186325c6"


def forge(*args: str, cache: Path, epoch: str = "1700000000", cli: bool = False) -> subprocess.CompletedProcess[str]:
    return run_forge(*args, "-q", cache=cache, epoch=epoch, cli=cli)


def write(tmp: Path, server: RepoServer, signer: Signer, body: str, name: str = "img.toml") -> Path:
    path = tmp / name
    path.write_text(body + "\n" + source_block(server, signer))
    return path


def digest_of(layout: Path, tag: str = "latest") -> str:
    index = json.loads((layout / "index.json").read_text())
    (m,) = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag]
    return str(m["digest"])


def manifest(layout: Path, digest: str) -> dict:  # type: ignore[type-arg]
    return json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_text())


BODY = 'packages = ["hello"]\n[config]\ncmd = ["/usr/bin/hello"]\n'


def test_same_recipe_gives_same_digest_across_dirs_and_cold_warm_cache(tmp_path: Path, repo_server: RepoServer,
                                                                        signer: Signer) -> None:
    digests = []
    for i, cache in enumerate([tmp_path / "c1", tmp_path / "c1", tmp_path / "c2"]):
        d = tmp_path / f"dir{i}"
        d.mkdir()
        r = write(d, repo_server, signer, BODY)
        # the first as a real process (end to end), the others in this one: the same image either way
        proc = forge("compose", str(r), "-o", str(d / "img"), cache=cache, cli=i == 0)
        assert proc.returncode == 0, proc.stderr
        digests.append(digest_of(d / "img"))
    assert len(set(digests)) == 1


def test_golden_digest_for_the_test_repository(tmp_path: Path, repo_server: RepoServer, signer: Signer) -> None:
    r = write(tmp_path, repo_server, signer, BODY)
    assert forge("compose", str(r), "-o", str(tmp_path / "img"), cache=tmp_path / "c").returncode == 0
    layout = tmp_path / "img"
    m = manifest(layout, digest_of(layout))
    config = json.loads((layout / "blobs/sha256" / m["config"]["digest"].split(":")[1]).read_text())
    # what is pinned here is everything that makes the digest: config, diff_id and layer bytes
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert config["config"]["Cmd"] == ["/usr/bin/hello"]
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert m["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert config["rootfs"]["diff_ids"] == [GOLDEN_DIFF_ID]
    assert digest_of(layout) == GOLDEN_MANIFEST
    # the epoch changes the digest, and only through timestamps
    assert forge("compose", str(r), "-o", str(tmp_path / "img2"), cache=tmp_path / "c",
                 epoch="1700000001").returncode == 0
    assert digest_of(tmp_path / "img2") != digest_of(layout)


def test_skopeo_and_umoci_read_the_image(tmp_path: Path, repo_server: RepoServer, signer: Signer) -> None:
    r = write(tmp_path, repo_server, signer, BODY + '[image]\nname = "hello"\ntag = "v1"\n')
    assert forge("compose", str(r), "-o", str(tmp_path / "img"), cache=tmp_path / "c").returncode == 0
    out = subprocess.run(["skopeo", "inspect", f"oci:{tmp_path / 'img'}:v1"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Architecture"] == "amd64"
    bundle = tmp_path / "bundle"
    out = subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{tmp_path / 'img'}:v1", str(bundle)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (bundle / "rootfs/usr/bin/hello").read_text() == "#!/bin/sh\necho hello\n"
    assert json.loads((bundle / "config.json").read_text())["process"]["args"] == ["/usr/bin/hello"]


@pytest.mark.parametrize("fmt", ["oci-archive", "docker-archive"])
def test_archives_are_read_by_skopeo(tmp_path: Path, repo_server: RepoServer, signer: Signer, fmt: str) -> None:
    r = write(tmp_path, repo_server, signer, BODY)
    out = tmp_path / "img.tar"
    proc = forge("compose", str(r), "--format", fmt, "-o", str(out), cache=tmp_path / "c")
    assert proc.returncode == 0, proc.stderr
    insp = subprocess.run(["skopeo", "inspect", f"{fmt}:{out}"], capture_output=True, text=True)
    assert insp.returncode == 0, insp.stderr
    assert json.loads(insp.stdout)["Architecture"] == "amd64"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_layer_groups_are_shared_byte_for_byte(tmp_path: Path, repo_server: RepoServer, signer: Signer) -> None:
    group = '[[layer]]\nname = "base"\npackages = ["libc6", "base-files"]\n'
    a = write(tmp_path, repo_server, signer, 'packages = ["hello", "base-files"]\n' + group, "a.toml")
    b = write(tmp_path, repo_server, signer, 'packages = ["mawk", "base-files", "data-all"]\n' + group, "b.toml")
    for r in (a, b):
        proc = forge("compose", str(r), "-o", str(tmp_path / r.stem), cache=tmp_path / "c")
        assert proc.returncode == 0, proc.stderr
    la = manifest(tmp_path / "a", digest_of(tmp_path / "a"))["layers"]
    lb = manifest(tmp_path / "b", digest_of(tmp_path / "b"))["layers"]
    assert len(la) == len(lb) == 2
    assert la[0]["digest"] == lb[0]["digest"]
    assert la[1]["digest"] != lb[1]["digest"]


def test_unknown_config_user_is_refused(tmp_path: Path, repo_server: RepoServer, signer: Signer) -> None:
    r = write(tmp_path, repo_server, signer, 'packages = ["hello"]\n[config]\nuser = "nobody-here"\n')
    proc = forge("compose", str(r), "-o", str(tmp_path / "img"), cache=tmp_path / "c")
    assert proc.returncode != 0
    assert "user 'nobody-here'" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "img").exists()


def test_multi_arch_builds_an_index(tmp_path: Path, signer: Signer) -> None:
    specs = base_specs() + [DebSpec(s.name, s.version, "arm64", s.fields, s.members, s.scripts)
                            for s in base_specs() if s.architecture == HOST_ARCH]
    specs.append(DebSpec("armonly", "1", "arm64", members=[Dir("etc"), Reg("etc/arm", "arm\n")]))
    repo = build_repo(tmp_path / "repo", specs, signer=signer, architectures=("amd64", "arm64"))
    with serve(repo.root) as server:
        r = write(tmp_path, server, signer, 'packages = ["hello"]\n[image]\narchitectures = ["amd64", "arm64"]\n')
        proc = forge("compose", str(r), "-o", str(tmp_path / "img"), cache=tmp_path / "c")
    assert proc.returncode == 0, proc.stderr
    index = manifest(tmp_path / "img", digest_of(tmp_path / "img"))
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [(m["platform"]["architecture"], m["platform"].get("variant")) for m in index["manifests"]] == [
        ("amd64", None), ("arm64", "v8")]
    for arch in ("amd64", "arm64"):
        out = subprocess.run(["skopeo", "--override-arch", arch, "inspect", f"oci:{tmp_path / 'img'}:latest"],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["Architecture"] == arch


@pytest.mark.root
def test_crun_runs_the_composed_image(tmp_path: Path) -> None:
    if shutil.which("crun") is None:
        pytest.fail("crun is not installed (.ci/setup installs it)")
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.fail("busybox-static is not installed (.ci/setup installs it)")
    spec = DebSpec("bb", "1", HOST_ARCH, members=[Dir("usr"), Dir("usr/bin"),
                                                 Reg("usr/bin/busybox", busybox.read_bytes(), 0o755)])
    signer = Signer.create(tmp_path / "k")
    repo = build_repo(tmp_path / "repo", [spec], signer=signer)
    with serve(repo.root) as server:
        r = write(tmp_path, server, signer, 'packages = ["bb"]\n[config]\n'
                                            'entrypoint = ["/usr/bin/busybox", "echo", "hello from forge"]\n')
        assert forge("compose", str(r), "-o", str(tmp_path / "img"), cache=tmp_path / "c").returncode == 0
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{tmp_path / 'img'}:latest", str(bundle)], check=True,
                   capture_output=True)
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["process"]["terminal"] = False
    (bundle / "config.json").write_text(json.dumps(cfg))
    run = subprocess.run(["unshare", "-m", "sh", "-c", "umount /sys/fs/cgroup/unified 2>/dev/null; "
                          f"exec crun run --bundle {bundle} forge-test-{os.getpid()}"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "hello from forge"
