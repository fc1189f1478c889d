"""The library entry point: ``rootfs_forge.compose`` in-process gives what ``forge compose`` gives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import rootfs_forge
from rootfs_forge.errors import ForgeError, RecipeError
from tests.conftest import source_block
from tests.support.repo import RepoServer, Signer
from tests.test_image_compose import BODY, GOLDEN_MANIFEST

REPO = Path(__file__).resolve().parents[1]


def test_library_compose_gives_the_golden_image_and_a_report(tmp_path: Path, repo_server: RepoServer,
                                                             signer: Signer) -> None:
    recipe = tmp_path / "img.toml"
    recipe.write_text(BODY + "\n" + source_block(repo_server, signer))
    report = rootfs_forge.compose(recipe, tmp_path / "img", cache_dir=tmp_path / "cache", epoch=1_700_000_000)
    index = json.loads((tmp_path / "img" / "index.json").read_text())
    assert report["manifest_digest"] == index["manifests"][0]["digest"] == GOLDEN_MANIFEST
    arch = report["architectures"]
    assert len(arch) == 1 and next(iter(arch.values()))["packages"] == 3  # hello, libc6, mawk
    assert report["format"] == "oci" and report["from_lock"] is False
    assert {"plan", "fetch", "unpack", "effects", "output"} <= set(report["timings"])


def test_library_compose_raises_one_error_and_writes_nothing(tmp_path: Path, repo_server: RepoServer,
                                                            signer: Signer) -> None:
    recipe = tmp_path / "img.toml"
    recipe.write_text('packages = ["no-such-thing"]\n' + source_block(repo_server, signer))
    with pytest.raises(RecipeError, match="no-such-thing"):
        rootfs_forge.compose(recipe, tmp_path / "img", format="rootfs", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "img").exists()
    with pytest.raises(ForgeError, match="unknown format"):
        rootfs_forge.compose(recipe, tmp_path / "img", format="zip", cache_dir=tmp_path / "cache")


def test_importing_the_package_loads_nothing_else() -> None:
    """``forge run`` imports the package first: it may load no other module, not even typing (``-S``: without
    the site hooks that load typing in some interpreters)."""
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); before = set(sys.modules); import rootfs_forge; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["rootfs_forge"]
