"""The cache's layer blobs (image/layershare.py, ``LayerShare.in_cache``): a compose whose tree gives the tar an
earlier compose wrote copies that layer's blob instead of compressing the tar again; the image is always the one
a compose without the cache gives, whatever was done to the cache. The share's own mechanics (the key, the
damaged copy, two writers at once) are in tests/test_layershare.py; the chunk cache under it in
tests/test_layer_reuse.py."""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from rootfs_forge.image.layershare import LAYER_BLOBS_DIR
from tests.conftest import source_block
from tests.support.forge import forge as run_forge
from tests.support.repo import RepoServer, Signer
from tests.test_image_compose import BODY, GOLDEN_DIFF_ID, GOLDEN_MANIFEST, digest_of, manifest


def forge(*args: str, cache: Path, timeout: float = 120) -> dict[str, Any]:
    done = run_forge(*args, "--json", cache=cache, epoch="1700000000", timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def compose(recipe: Path, out: Path, cache: Path) -> dict[str, Any]:
    return forge("compose", str(recipe), "-o", str(out), cache=cache)


def recipe_of(tmp: Path, server: RepoServer, signer: Signer, extra: str = "", name: str = "img.toml") -> Path:
    path = tmp / name
    path.write_text(BODY + extra + "\n" + source_block(server, signer))
    return path


def cached(cache: Path, suffix: str) -> list[Path]:
    return sorted((cache / LAYER_BLOBS_DIR / "v1").glob(f"*{suffix}"))


def layers_of(layout: Path) -> list[bytes]:
    m = manifest(layout, digest_of(layout))
    return [(layout / "blobs/sha256" / layer["digest"].split(":")[1]).read_bytes() for layer in m["layers"]]


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_second_compose_copies_its_layer_from_the_cache_with_the_same_digest(
        tmp_path: Path, repo_server: RepoServer, signer: Signer, compression: str) -> None:
    recipe = recipe_of(tmp_path, repo_server, signer, f'[image]\ncompression = "{compression}"\n')
    cache = tmp_path / "cache"
    first = compose(recipe, tmp_path / "one", cache)
    assert first["layer_share"] == {"reused": 0, "written": 1}
    second = compose(recipe, tmp_path / "two", cache)
    assert second["layer_share"] == {"reused": 1, "written": 0}
    if compression == "gzip":  # nothing was deflated, not even looked up: the whole layer was copied
        assert second["layer_cache"] == {"chunks_reused": 0, "chunks_deflated": 0, "chunks_rejected": 0}
    compose(recipe, tmp_path / "cold", tmp_path / "fresh-cache")
    assert digest_of(tmp_path / "one") == digest_of(tmp_path / "two") == digest_of(tmp_path / "cold")
    assert layers_of(tmp_path / "two") == layers_of(tmp_path / "cold")
    if compression == "gzip":
        assert digest_of(tmp_path / "two") == GOLDEN_MANIFEST
        config = manifest(tmp_path / "two", GOLDEN_MANIFEST)["config"]["digest"].split(":")[1]
        diff_ids = json.loads((tmp_path / "two/blobs/sha256" / config).read_text())["rootfs"]["diff_ids"]
        assert diff_ids == [GOLDEN_DIFF_ID]
    # the output is a copy: damaging it later cannot reach the cache's entry, nor the other way round
    (entry,) = cached(cache, ".blob")
    layer = manifest(tmp_path / "two", digest_of(tmp_path / "two"))["layers"][0]["digest"].split(":")[1]
    copy = tmp_path / "two/blobs/sha256" / layer
    assert copy.stat().st_ino != entry.stat().st_ino


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.unlink()  # the entry may be a link to the first output's blob: damage the cache's name only
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["flipped-byte", "truncated", "symlink", "fifo-blob", "fifo-entry", "other-digest",
                                 "other-diff-id", "other-media-type", "digest-with-a-path", "garbage-entry"])
def test_tampered_cached_layer_never_enters_the_image(tmp_path: Path, repo_server: RepoServer, signer: Signer,
                                                      how: str) -> None:
    recipe = recipe_of(tmp_path, repo_server, signer)
    cache = tmp_path / "cache"
    compose(recipe, tmp_path / "one", cache)
    good = layers_of(tmp_path / "one")
    (blob,) = cached(cache, ".blob")
    (entry,) = cached(cache, ".json")
    published = json.loads(entry.read_text())
    if how == "flipped-byte":
        _flip(blob)
    elif how == "truncated":
        data = blob.read_bytes()
        blob.unlink()
        blob.write_bytes(data[: len(data) // 2])
    elif how == "symlink":  # the right bytes, elsewhere: an entry is never read through a link
        target = tmp_path / "elsewhere.blob"
        target.write_bytes(blob.read_bytes())
        blob.unlink()
        blob.symlink_to(target)
    elif how == "fifo-blob":  # would stall a reader that waits for a writer
        blob.unlink()
        os.mkfifo(blob)
    elif how == "fifo-entry":
        entry.unlink()
        os.mkfifo(entry)
    elif how == "other-digest":  # the entry names a blob of other bytes (a gzip of the same tar, say)
        other = gzip.compress(gzip.decompress(blob.read_bytes()), mtime=0)
        blob.unlink()
        blob.write_bytes(other)
        entry.write_text(json.dumps({**published, "digest": "sha256:" + "0" * 64}))
    elif how == "other-diff-id":  # the entry says it holds another tar
        entry.write_text(json.dumps({**published, "diff_id": "sha256:" + "1" * 64}))
    elif how == "other-media-type":  # the right blob, labelled as another compression in the manifest
        entry.write_text(json.dumps({**published, "media_type": "application/vnd.oci.image.layer.v1.tar+zstd"}))
    elif how == "digest-with-a-path":  # a name that would leave the layout's blob directory
        entry.write_text(json.dumps({**published, "digest": "sha256:../../../escaped"}))
    else:
        entry.write_bytes(b"\x00not json" * 10)
    second = compose(recipe, tmp_path / "two", cache)
    assert second["layer_share"] == {"reused": 0, "written": 1}
    assert layers_of(tmp_path / "two") == good
    assert digest_of(tmp_path / "two") == digest_of(tmp_path / "one") == GOLDEN_MANIFEST
    leftovers = [p.name for p in (tmp_path / "two/blobs/sha256").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert not (tmp_path / "escaped").exists()
    # the bad entry was replaced by a good one
    assert compose(recipe, tmp_path / "three", cache)["layer_share"] == {"reused": 1, "written": 0}


def test_same_headers_but_other_file_bytes_is_compressed_not_copied(tmp_path: Path, repo_server: RepoServer,
                                                                    signer: Signer) -> None:
    """The attack on a key made of headers: one byte of a file changed, same size, same names, same mtimes."""
    (tmp_path / "data.txt").write_bytes(b"the first content of the file\n" * 100)
    extra = '[[file]]\nsrc = "data.txt"\ndest = "/srv/data.txt"\nmode = "0644"\n'
    recipe = recipe_of(tmp_path, repo_server, signer, extra)
    cache = tmp_path / "cache"
    compose(recipe, tmp_path / "one", cache)
    (tmp_path / "data.txt").write_bytes(b"the first content of the file\n" * 99 + b"the other content of the file\n")
    second = compose(recipe, tmp_path / "two", cache)
    assert second["layer_share"] == {"reused": 0, "written": 1}
    compose(recipe, tmp_path / "cold", tmp_path / "fresh-cache")
    assert digest_of(tmp_path / "two") == digest_of(tmp_path / "cold") != digest_of(tmp_path / "one")
    assert layers_of(tmp_path / "two") == layers_of(tmp_path / "cold")


def test_cache_du_verify_and_prune_know_the_layer_blobs(tmp_path: Path, repo_server: RepoServer,
                                                        signer: Signer) -> None:
    cache = tmp_path / "cache"
    compose(recipe_of(tmp_path, repo_server, signer), tmp_path / "one", cache)
    compose(recipe_of(tmp_path, repo_server, signer, '[image]\ncompression = "zstd"\n', "z.toml"),
            tmp_path / "two", cache)
    blobs = cached(cache, ".blob")
    assert len(blobs) == 2
    du = forge("cache", "du", cache=cache)
    assert du["layers"] == 2
    assert du["layer_bytes"] >= sum(p.stat().st_size for p in blobs)

    assert forge("cache", "verify", cache=cache)["removed"] == []
    _flip(blobs[0])
    removed = forge("cache", "verify", cache=cache)["removed"]
    assert removed == [f"{LAYER_BLOBS_DIR}/v1/{blobs[0].name[:-len('.blob')]}.json"]
    assert cached(cache, ".blob") == [blobs[1]]

    forge("cache", "prune", "--older-than", "1", cache=cache)
    assert cached(cache, ".blob") == [blobs[1]]  # used just now: kept
    old = time.time() - 3 * 86400
    for p in cached(cache, ""):
        os.utime(p, (old, old))
    forge("cache", "prune", "--older-than", "1", cache=cache)
    assert cached(cache, "") == []
    assert forge("cache", "du", cache=cache)["layers"] == 0


def test_a_second_gallery_call_copies_every_layer_the_first_wrote(tmp_path: Path, repo_server: RepoServer,
                                                                  signer: Signer) -> None:
    import rootfs_forge
    from tests.test_compose_many import TWINS, write_recipes

    recipes = write_recipes(tmp_path / "r", repo_server, signer, TWINS)
    cache = tmp_path / "cache"
    first = rootfs_forge.compose_many(recipes, tmp_path / "one", cache_dir=cache, epoch=1_700_000_000)
    second = rootfs_forge.compose_many(recipes, tmp_path / "two", cache_dir=cache, epoch=1_700_000_000)
    assert sum(r["layer_share"]["written"] for r in first) == 3  # the shared package layer once, two tops
    assert [r["layer_share"]["written"] for r in second] == [0, 0]
    assert sum(r["layer_share"]["reused"] for r in second) == 4
    assert [r["manifest_digest"] for r in second] == [r["manifest_digest"] for r in first]
    # and no share of the call's own was left beside the outputs
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        f"{r.stem}-latest" for r in recipes)
