"""The recipe gallery, proven: every recipe composes from its lock (real mirror), skopeo reads it, its smoke
command runs under forge run and under crun after umoci unpack, the audit finds no missing library, and two
composes give one digest."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.forge import forge

pytestmark = [pytest.mark.network, pytest.mark.slow, pytest.mark.root]

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
LOADER = "/lib64/ld-linux-x86-64.so.2"

# recipe -> (command appended to the image's entrypoint, expected stdout)
SMOKE: dict[str, tuple[list[str], str]] = {
    "static": (["/usr/local/bin/busybox", "echo", "ok"], "ok"),
    "static-nonroot": (["/usr/local/bin/busybox", "id", "-u"], "65532"),
    "base-nonroot": ([LOADER, "--version"], "ld.so (Debian GLIBC"),
    "cc-nonroot": ([LOADER, "--list", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"], "libgcc_s.so.1"),
    "base": ([LOADER, "--version"], "ld.so (Debian GLIBC"),
    "cc": ([LOADER, "--list", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"], "libgcc_s.so.1"),
    "python3": (["-c", "import ssl; print(ssl.OPENSSL_VERSION)"], "OpenSSL 3"),
    "python3-slim": (["-c", "import ssl, sqlite3; print(ssl.OPENSSL_VERSION)"], "OpenSSL 3"),
    "shell": (["/bin/sh", "-c", "echo ok"], "ok"),
    "debug": (["-c", "echo ok"], "ok"),
}


def test_every_recipe_has_a_smoke_test_and_a_current_lock_for_amd64_and_arm64() -> None:
    from rootfs_forge.archive.sources import host_sources
    from rootfs_forge.recipe import load_recipe
    from rootfs_forge.resolve.lock import load_lock

    names = sorted(p.stem for p in RECIPES.glob("*.toml"))
    assert names == sorted(SMOKE)
    for n in names:
        recipe = load_recipe(RECIPES / f"{n}.toml", "amd64")
        lock = load_lock(RECIPES / f"{n}.lock", host_sources())
        assert lock.is_current(recipe), n
        assert sorted(lock.resolutions) == ["amd64", "arm64"], n


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gallery-cache")


def recipe_for(name: str, tmp: Path) -> Path:
    """The gallery recipe; for static, a copy that adds a tiny static binary through a [[file]] entry."""
    path = RECIPES / f"{name}.toml"
    if not name.startswith("static"):
        return path
    shutil.copy("/bin/busybox", tmp / "busybox")  # statically linked (busybox-static)
    copy = tmp / f"{name}.toml"
    copy.write_text(path.read_text() + '\n[[file]]\nsrc = "busybox"\ndest = "/usr/local/bin/busybox"\nmode = "0755"\n')
    # same resolution as the gallery recipe, so its lock applies unchanged
    shutil.copy(RECIPES / f"{name}.lock", tmp / f"{name}.lock")
    return copy


def digest(layout: Path) -> str:
    return str(json.loads((layout / "index.json").read_text())["manifests"][0]["digest"])


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_gallery_recipe(name: str, tmp_path: Path, cache: Path) -> None:
    recipe = recipe_for(name, tmp_path)
    out = tmp_path / "image"
    proc = forge("compose", str(recipe), "--locked", "-o", str(out), "-q", cache=cache)
    # The committed lock must compose through the chain of places (cache, the host's sources, their mirrors and
    # snapshots, vendor stores). A lock naming .debs that no place serves any more is a defect of the gallery:
    # run `forge lock` on the recipe (or vendor its .debs), do not paper over it with a fresh lock here.
    assert proc.returncode == 0, f"recipes/{name}.lock cannot be composed through the chain: {proc.stderr.strip()}"
    assert proc.returncode == 0, proc.stderr
    from rootfs_forge.recipe import load_recipe

    tag = load_recipe(recipe, "amd64").tag
    inspect = subprocess.run(["skopeo", "inspect", f"oci:{out}:{tag}"], capture_output=True, text=True)
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)["Architecture"] == "amd64"
    for arch in ("amd64", "arm64"):  # every gallery image is built for both
        other = subprocess.run(["skopeo", "--override-arch", arch, "inspect", f"oci:{out}:{tag}"],
                               capture_output=True, text=True)
        assert other.returncode == 0 and json.loads(other.stdout)["Architecture"] == arch, other.stderr

    args, expected = SMOKE[name]
    run = forge("run", f"{out}:{tag}", "--", *args, cache=cache, cli=True)  # forks into namespaces
    assert run.returncode == 0, run.stderr
    assert expected in run.stdout

    # the gallery images are multi-arch indexes; umoci wants one image: skopeo picks this machine's
    single = tmp_path / "single"
    copy = subprocess.run(["skopeo", "copy", f"oci:{out}:{tag}", f"oci:{single}:{tag}"], capture_output=True,
                          text=True)
    assert copy.returncode == 0, copy.stderr
    bundle = tmp_path / "bundle"
    unpack = subprocess.run(["umoci", "unpack", "--image", f"{single}:{tag}", str(bundle)], capture_output=True,
                            text=True)
    assert unpack.returncode == 0, unpack.stderr
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    entry = _entrypoint(single, tag)
    config["process"]["args"] = [*entry, *args] if entry else list(args)
    (bundle / "config.json").write_text(json.dumps(config))
    crun = subprocess.run(["unshare", "-m", "sh", "-c", "umount /sys/fs/cgroup/unified 2>/dev/null; "
                           f"exec crun run --bundle {bundle} gallery-{name}-{os.getpid()}"],
                          capture_output=True, text=True, timeout=120)
    assert crun.returncode == 0, crun.stderr
    assert expected in crun.stdout

    audit = forge("audit", f"{out}:{tag}", "--fail-on", "missing-libs", "--json")
    assert audit.returncode == 0, audit.stdout[-2000:] + audit.stderr

    again = tmp_path / "again"
    assert forge("compose", str(recipe), "--locked", "-o", str(again), "-q", cache=cache).returncode == 0
    assert digest(again) == digest(out)


def _entrypoint(layout: Path, tag: str) -> list[str]:
    index = json.loads((layout / "index.json").read_text())
    (desc,) = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag]
    manifest = json.loads((layout / "blobs/sha256" / desc["digest"].split(":")[1]).read_text())
    config = json.loads((layout / "blobs/sha256" / manifest["config"]["digest"].split(":")[1]).read_text())
    return list(config["config"].get("Entrypoint") or [])
