"""OCI config, manifest and index; the layout and archives, read back by us and by skopeo, umoci, crun."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from rootfs_forge.errors import ImageError
from rootfs_forge.image.archives import write_docker_archive, write_oci_archive
from rootfs_forge.image.layer import write_layer
from rootfs_forge.image.oci import (
    CREATED,
    INDEX_TYPE,
    MANIFEST_TYPE,
    REF_NAME,
    ImageConfig,
    canonical,
    config_document,
    open_layer,
    platform_for,
    read_image,
    split_image_ref,
    write_image,
    write_index,
)

EPOCH = 1_700_000_000

needs_skopeo = pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo not installed")


def skopeo(*args: str) -> dict[str, Any]:
    out = subprocess.run(["skopeo", *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def tiny_tree(root: Path, text: str = "hello") -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "motd").write_text(text)
    return root


def build(
    layout: Path,
    tree: Path,
    *,
    compression: str = "gzip",
    tag: str | None = "latest",
    config: ImageConfig | None = None,
) -> Any:
    blob = write_layer(tree, layout, epoch=EPOCH, compression=compression)  # type: ignore[arg-type]
    cfg = config or ImageConfig(cmd=("/bin/sh",), created=EPOCH, history=("forge compose: base",))
    return write_image(layout, [blob], cfg, ref_name=tag, annotations={"org.opencontainers.image.title": "t"})


# ---- pure documents -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("amd64", {"architecture": "amd64", "os": "linux"}),
        ("arm64", {"architecture": "arm64", "os": "linux", "variant": "v8"}),
        ("armhf", {"architecture": "arm", "os": "linux", "variant": "v7"}),
        ("i386", {"architecture": "386", "os": "linux"}),
        ("ppc64el", {"architecture": "ppc64le", "os": "linux"}),
    ],
)
def test_platform_for_debian_architectures(arch: str, expected: dict[str, str]) -> None:
    assert platform_for(arch) == expected


def test_config_document_fields() -> None:
    cfg = ImageConfig(
        architecture="arm64",
        entrypoint=("/usr/bin/tini", "--"),
        cmd=("sh",),
        working_dir="/srv",
        user="1000:1000",
        labels={"b": "2", "a": "1"},
        exposed_ports=("8080/tcp", "53/udp"),
        stop_signal="SIGTERM",
        created=EPOCH,
        history=("layer one",),
    )
    doc = config_document(cfg, ["sha256:" + "a" * 64, "sha256:" + "b" * 64])
    assert doc["architecture"] == "arm64" and doc["variant"] == "v8" and doc["os"] == "linux"
    assert doc["created"] == "2023-11-14T22:13:20Z"
    run = doc["config"]
    assert run["Entrypoint"] == ["/usr/bin/tini", "--"] and run["Cmd"] == ["sh"]
    assert run["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert run["WorkingDir"] == "/srv" and run["User"] == "1000:1000" and run["StopSignal"] == "SIGTERM"
    assert list(run["Labels"]) == ["a", "b"]
    assert run["ExposedPorts"] == {"53/udp": {}, "8080/tcp": {}}
    assert doc["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + "a" * 64, "sha256:" + "b" * 64]}
    assert [h["created_by"] for h in doc["history"]] == ["layer one", "forge compose"]


def test_config_document_leaves_out_empty_fields() -> None:
    doc = config_document(ImageConfig(env=()), [])
    assert doc["config"] == {} and "variant" not in doc and doc["history"] == []


def test_canonical_json_is_sorted_and_compact() -> None:
    expected = '{"a":null,"b":[1,{"c":"é","d":1}]}'.encode()
    assert canonical({"b": [1, {"d": 1, "c": "é"}], "a": None}) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("img", ("img", None)),
        ("img:latest", ("img", "latest")),
        ("a/b:v1.2", ("a/b", "v1.2")),
        ("host:5000/x", ("host:5000/x", None)),
    ],
)
def test_split_image_ref(text: str, expected: tuple[str, str | None]) -> None:
    assert split_image_ref(text) == expected


# ---- layout -------------------------------------------------------------------------------------------


def test_layout_files_and_digests(tmp_path: Path) -> None:
    layout = tmp_path / "img"
    ref = build(layout, tiny_tree(tmp_path / "t"))
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["schemaVersion"] == 2 and len(index["manifests"]) == 1
    entry = index["manifests"][0]
    assert entry["annotations"][REF_NAME] == "latest" and entry["digest"] == ref.manifest_digest
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"}
    for blob in (layout / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    manifest = json.loads((layout / "blobs" / "sha256" / ref.manifest_digest[7:]).read_bytes())
    assert manifest["mediaType"] == MANIFEST_TYPE
    assert manifest["annotations"][CREATED] == "2023-11-14T22:13:20Z"
    assert manifest["annotations"]["org.opencontainers.image.title"] == "t"
    assert (layout / "blobs" / "sha256" / ref.manifest_digest[7:]).read_bytes() == canonical(manifest)


def test_same_input_same_manifest_digest(tmp_path: Path) -> None:
    one = build(tmp_path / "a", tiny_tree(tmp_path / "t1"))
    os.utime(tmp_path / "t1" / "etc" / "motd", (EPOCH + 50, EPOCH + 50))
    two = build(tmp_path / "b", tiny_tree(tmp_path / "t2"))
    assert (one.manifest_digest, one.config_digest) == (two.manifest_digest, two.config_digest)
    assert (tmp_path / "a" / "index.json").read_bytes() == (tmp_path / "b" / "index.json").read_bytes()


def test_retag_replaces_the_index_entry(tmp_path: Path) -> None:
    layout = tmp_path / "img"
    build(layout, tiny_tree(tmp_path / "t1", "one"))
    second = build(layout, tiny_tree(tmp_path / "t2", "two"))
    other = build(layout, tiny_tree(tmp_path / "t3", "three"), tag="other")
    index = json.loads((layout / "index.json").read_text())
    tags = [(m["annotations"][REF_NAME], m["digest"]) for m in index["manifests"]]
    assert tags == [("latest", second.manifest_digest), ("other", other.manifest_digest)]


def test_staged_layout_leaves_nothing_on_error(tmp_path: Path) -> None:
    from rootfs_forge.util.outputs import staged_output

    dest = tmp_path / "img"
    with pytest.raises(ImageError), staged_output(dest, directory=True) as tmp:
        write_layer(tiny_tree(tmp_path / "t"), tmp, epoch=EPOCH, paths=["etc/missing"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]


def test_staged_layout_replaces_an_existing_layout(tmp_path: Path) -> None:
    from rootfs_forge.util.outputs import staged_output

    dest = tmp_path / "img"
    with staged_output(dest, directory=True) as tmp:
        build(tmp, tiny_tree(tmp_path / "t1", "one"))
    with staged_output(dest, directory=True) as tmp:
        ref = build(tmp, tiny_tree(tmp_path / "t2", "two"))
    assert read_image(dest, "latest").manifest_digest == ref.manifest_digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img", "t1", "t2"]
    assert oct(dest.stat().st_mode & 0o777) == "0o755"


def test_read_image_round_trip_and_errors(tmp_path: Path) -> None:
    layout = tmp_path / "img"
    ref = build(layout, tiny_tree(tmp_path / "t"))
    image = read_image(f"{layout}:latest")
    assert image.manifest_digest == ref.manifest_digest
    assert image.config["config"]["Cmd"] == ["/bin/sh"]
    ((path, media_type),) = image.layers()
    with open_layer(path, media_type) as fh, tarfile.open(fileobj=fh, mode="r|") as tar:
        assert [m.name for m in tar] == ["etc", "etc/motd"]
    with pytest.raises(ImageError, match=r"cannot find tag .*:nope: the layout has latest"):
        read_image(layout, "nope")
    with pytest.raises(ImageError, match="not an OCI image layout"):
        read_image(tmp_path / "t")
    config_blob = layout / "blobs" / "sha256" / ref.config_digest[7:]
    config_blob.write_bytes(config_blob.read_bytes().replace(b"/bin/sh", b"/bin/xx"))
    with pytest.raises(ImageError, match="does not match its digest"):
        read_image(layout, "latest")


def test_multi_arch_index(tmp_path: Path) -> None:
    layout = tmp_path / "img"
    refs = []
    for arch in ("arm64", "amd64"):
        blob = write_layer(tiny_tree(tmp_path / arch, arch), layout, epoch=EPOCH)
        cfg = ImageConfig(architecture=arch, created=EPOCH)
        refs.append((write_image(layout, [blob], cfg, ref_name=None), cfg.platform()))
    index_ref = write_index(layout, refs, "multi")
    assert index_ref.media_type == INDEX_TYPE
    doc = json.loads((layout / "blobs" / "sha256" / index_ref.manifest_digest[7:]).read_bytes())
    assert [m["platform"] for m in doc["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ]
    assert read_image(layout, "multi", platform="arm64").config["architecture"] == "arm64"
    assert read_image(layout, "multi", platform="linux/amd64").config["architecture"] == "amd64"
    # a reader not told which platform reads the host's, and says so (a multi-platform image is no error)
    host = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, "")
    if host:
        got = read_image(layout, "multi")
        assert got.config["architecture"] == host
        assert "2 platforms (linux/amd64, linux/arm64/v8): reading linux/" + host in got.note
    with pytest.raises(ImageError, match=r"no image for linux/s390x \(the index has: linux/amd64, linux/arm64/v8\)"):
        read_image(layout, "multi", platform="linux/s390x")
    if shutil.which("skopeo"):
        raw = skopeo("inspect", "--raw", f"oci:{layout}:multi")
        assert raw["mediaType"] == INDEX_TYPE
        got = skopeo("--override-arch", "arm64", "inspect", f"oci:{layout}:multi")
        assert got["Architecture"] == "arm64"


def test_oci_archive_is_deterministic_and_readable(tmp_path: Path) -> None:
    layout = tmp_path / "img"
    ref = build(layout, tiny_tree(tmp_path / "t"))
    write_oci_archive(layout, tmp_path / "a.tar")
    write_oci_archive(layout, tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    with tarfile.open(tmp_path / "a.tar") as tar:
        names = tar.getnames()
        assert all(m.uid == 0 and m.uname == "" and m.mtime == 0 for m in tar.getmembers())
    assert (
        names[:3] == ["blobs", "blobs/sha256", names[2]] and "index.json" in names and "oci-layout" in names
    )
    image = read_image(tmp_path / "a.tar", "latest", extract_to=tmp_path / "x")
    assert image.manifest_digest == ref.manifest_digest
    with pytest.raises(ImageError, match="needs a directory to unpack into"):
        read_image(tmp_path / "a.tar", "latest")


# ---- real peers ---------------------------------------------------------------------------------------


@needs_skopeo
@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_skopeo_reads_layout_and_archives(tmp_path: Path, compression: str) -> None:
    layout = tmp_path / "img"
    ref = build(
        layout,
        tiny_tree(tmp_path / "t"),
        compression=compression,
        config=ImageConfig(cmd=("/bin/true",), created=EPOCH, labels={"org.example": "yes"}),
    )
    got = skopeo("inspect", f"oci:{layout}:latest")
    assert got["Digest"] == ref.manifest_digest
    assert got["Labels"] == {"org.example": "yes"} and got["Created"] == "2023-11-14T22:13:20Z"
    config = skopeo("inspect", "--config", f"oci:{layout}:latest")
    assert config["config"]["Cmd"] == ["/bin/true"]
    write_oci_archive(layout, tmp_path / "img.tar")
    assert skopeo("inspect", f"oci-archive:{tmp_path / 'img.tar'}:latest")["Digest"] == ref.manifest_digest
    write_docker_archive(layout, tmp_path / "docker.tar", tag="latest", repo_tags=["forge/test:latest"])
    docker = skopeo("inspect", f"docker-archive:{tmp_path / 'docker.tar'}:forge/test:latest")  # by RepoTag
    assert docker["Layers"] == config["rootfs"]["diff_ids"]  # uncompressed layers: digests are the diff_ids
    assert skopeo("inspect", "--config", f"docker-archive:{tmp_path / 'docker.tar'}")["config"]["Cmd"] == [
        "/bin/true"
    ]


def test_docker_archive_layout(tmp_path: Path) -> None:
    layout = tmp_path / "img"
    ref = build(layout, tiny_tree(tmp_path / "t"), compression="zstd")
    write_docker_archive(layout, tmp_path / "d.tar", tag="latest", repo_tags=["forge/test:v1"])
    with tarfile.open(tmp_path / "d.tar") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        (entry,) = manifest
        assert entry["Config"] == ref.config_digest[7:] + ".json" and entry["RepoTags"] == ["forge/test:v1"]
        layer = tar.extractfile(entry["Layers"][0]).read()  # type: ignore[union-attr]
        assert (
            "sha256:" + hashlib.sha256(layer).hexdigest()
            == read_image(layout, "latest").config["rootfs"]["diff_ids"][0]
        )
        assert json.loads(tar.extractfile("repositories").read()) == {  # type: ignore[union-attr]
            "forge/test": {"v1": entry["Layers"][0].split("/")[0]}
        }


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.skipif(
    os.geteuid() != 0
    or not shutil.which("umoci")
    or not shutil.which("crun")
    or not os.path.exists("/bin/busybox"),
    reason="needs root, umoci, crun and /bin/busybox",
)
def test_umoci_unpacks_and_crun_runs_the_image(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", tree / "bin" / "busybox")
    (tree / "bin" / "sh").symlink_to("busybox")
    (tree / "etc").mkdir()
    (tree / "etc" / "motd").write_text("composed by forge\n")
    layout = tmp_path / "img"
    cfg = ImageConfig(cmd=("/bin/sh", "-c", "cat /etc/motd; echo uid=$(busybox id -u)"), created=EPOCH)
    blob = write_layer(tree, layout, epoch=EPOCH, compression="gzip")
    write_image(layout, [blob], cfg, ref_name="run", annotations={})
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:run", str(bundle)], check=True, capture_output=True
    )
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    (bundle / "config.json").write_text(json.dumps(spec))
    cid = f"forge-test-{uuid.uuid4().hex[:8]}"
    proc = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            f"umount /sys/fs/cgroup/unified 2>/dev/null; exec crun run --bundle {bundle} {cid}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    subprocess.run(["crun", "delete", "-f", cid], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "composed by forge\nuid=0\n"


@needs_skopeo
@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_go_decompressors_read_multi_chunk_layers(tmp_path: Path, compression: str) -> None:
    """skopeo (Go's compress/gzip and klauspost zstd) decompresses a layer made of several parallel chunks."""
    import random

    rng = random.Random(3)
    tree = tmp_path / "t"
    (tree / "data").mkdir(parents=True)
    for i in range(3):
        words = " ".join(rng.choice(["apt", "dpkg", "forge", str(i)]) for _ in range(700_000))
        (tree / "data" / f"words{i}").write_text(words)
    layout = tmp_path / "img"
    blob = write_layer(tree, layout, epoch=EPOCH, compression=compression)  # type: ignore[arg-type]
    assert blob.diff_size > 2 * (4 << 20)  # more than two compression chunks
    write_image(layout, [blob], ImageConfig(created=EPOCH), ref_name="latest", annotations={})
    out = tmp_path / "dir"
    subprocess.run(
        ["skopeo", "copy", "-q", "--dest-decompress", f"oci:{layout}:latest", f"dir:{out}"],
        check=True,
        capture_output=True,
    )
    plain = out / blob.diff_id.removeprefix("sha256:")
    assert plain.is_file() and plain.stat().st_size == blob.diff_size
    assert "sha256:" + hashlib.sha256(plain.read_bytes()).hexdigest() == blob.diff_id
