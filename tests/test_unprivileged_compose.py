"""A compose run by an unprivileged user gives the image a root compose gives (the README's promise): every
owner, mode and mtime in the layers comes from forge's record of the tree, never from who wrote the files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import source_block
from tests.support.repo import RepoServer, Signer
from tests.support.unprivileged import hand_over, private_dir, remove, run_unprivileged

pytestmark = pytest.mark.root
EPOCH = "1700000000"

# effects (accounts with a home, alternatives, dirs, identity), the dpkg database, the manifest, local files
# with an owner of their own, and layer groups: every writer of the tree is in it
BODY = """\
packages = ["hello", "base-files", "data-all"]
[image]
layering = "groups"
[[layer]]
name = "libs"
packages = ["libc6"]
[[account]]
name = "app"
uid = 1234
gid = 1234
home = "/home/app"
[[file]]
src = "greeting"
dest = "/srv/app/greeting"
mode = "0640"
owner = "1234:1234"
[config]
cmd = ["/usr/bin/hello"]
user = "app"
"""


def _recipe(base: Path, server: RepoServer, signer: Signer) -> Path:
    work = base / "work"
    work.mkdir()
    keyring = work / "keyring.gpg"
    shutil.copy(signer.keyring, keyring)
    (work / "greeting").write_text("hello from the recipe\n")
    recipe = work / "img.toml"
    recipe.write_text(BODY + "\n" + source_block(server, signer).replace(str(signer.keyring), str(keyring)))
    return recipe


def _digest(layout: Path) -> str:
    (m,) = json.loads((layout / "index.json").read_text())["manifests"]
    return str(m["digest"])


def _layer_listing(layout: Path) -> list[str]:
    """Every entry of every layer: name, type, owner, mode, mtime (what a difference between two composes is)."""
    index = json.loads((layout / "index.json").read_text())
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"].split(":")[1]).read_text())
    out = []
    for n, layer in enumerate(manifest["layers"]):
        with tarfile.open(blobs / layer["digest"].split(":")[1]) as tar:
            out += [f"{n} {m.name} {m.type.decode()} {m.uid}:{m.gid} {m.mode:04o} {m.mtime}" for m in tar]
    return out


def test_unprivileged_compose_gives_the_root_compose_digest(repo_server: RepoServer, signer: Signer) -> None:
    base = private_dir()
    try:
        recipe = _recipe(base, repo_server, signer)
        root_out, user_out = base / "root-img", base / "user-img"
        env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH, "PYTHONPATH": str(base / "pkg")}
        done = subprocess.run([sys.executable, "-m", "rootfs_forge", "compose", str(recipe), "-o", str(root_out),
                               "--cache-dir", str(base / "root-cache"), "-q"],
                              capture_output=True, text=True, env=env, cwd=base)
        assert done.returncode == 0, done.stderr
        (base / "cache").mkdir()
        hand_over(base)
        done = run_unprivileged(["compose", str(recipe), "-o", str(user_out), "--cache-dir", str(base / "cache"),
                                 "-q"], base=base, env={"SOURCE_DATE_EPOCH": EPOCH})
        assert done.returncode == 0, done.stderr
        assert os.stat(user_out / "index.json").st_uid == 65534  # it really ran unprivileged
        root_layers, user_layers = _layer_listing(root_out), _layer_listing(user_out)
        differ = sorted(set(root_layers) ^ set(user_layers))
        assert differ == [], "\n".join(differ[:40])
        assert _digest(user_out) == _digest(root_out)
        # owners no writer left to chance: the local file and the account's home
        assert any(" srv/app/greeting 0 1234:1234 0640 " in line for line in user_layers)
        assert any(" home/app 5 1234:1234 0755 " in line for line in user_layers)
    finally:
        remove(base)


RECIPES = Path(__file__).resolve().parent.parent / "recipes"


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize("name", ["static", "base", "python3"])
def test_unprivileged_gallery_compose_gives_the_root_digest(name: str) -> None:
    """The gallery's acceptance: the same image index (amd64 and arm64) whoever composes it. The unprivileged
    compose runs first with a cache of its own; the root compose then finds that cache warm."""
    base = private_dir()
    try:
        work = base / "work"
        work.mkdir()
        recipe = work / f"{name}.toml"
        shutil.copy(RECIPES / f"{name}.toml", recipe)
        shutil.copy(RECIPES / f"{name}.lock", work / f"{name}.lock")
        (base / "cache").mkdir()
        hand_over(base)
        args = ["compose", str(recipe), "--locked", "--cache-dir", str(base / "cache"), "-q", "-o"]
        done = run_unprivileged([*args, str(base / "user-img")], base=base, env={"SOURCE_DATE_EPOCH": EPOCH})
        assert done.returncode == 0, done.stderr
        assert os.stat(base / "user-img" / "index.json").st_uid == 65534
        env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH, "PYTHONPATH": str(base / "pkg")}
        done = subprocess.run([sys.executable, "-m", "rootfs_forge", *args, str(base / "root-img")],
                              capture_output=True, text=True, env=env, cwd=base)
        assert done.returncode == 0, done.stderr
        assert _digest(base / "user-img") == _digest(base / "root-img")
    finally:
        remove(base)
