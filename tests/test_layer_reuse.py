"""The compressed-chunk cache of gzip layers (image/layercache.py): reuse, verification, invalidation, maintenance.

A compose first looks for the whole layer among the cache's layer blobs (image/layershare.py, tested in
tests/test_layer_blobs.py); the chunk cache is what it falls back to. So that these tests reach it, ``compose``
clears the layer blobs first."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from rootfs_forge.image import layercache, layershare
from rootfs_forge.image.layer import CHUNK_SIZE, _Codec, deflate_chunk, write_layer
from rootfs_forge.image.layercache import ChunkCache
from tests.conftest import source_block
from tests.support.forge import forge as run_forge
from tests.support.repo import RepoServer, Signer
from tests.test_image_compose import BODY, GOLDEN_DIFF_ID, GOLDEN_MANIFEST, digest_of, manifest


def forge(*args: str, cache: Path) -> dict[str, Any]:
    done = run_forge(*args, "--json", cache=cache, epoch="1700000000")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def compose(recipe: Path, out: Path, cache: Path) -> dict[str, Any]:
    shutil.rmtree(cache / layershare.LAYER_BLOBS_DIR, ignore_errors=True)
    return forge("compose", str(recipe), "-o", str(out), cache=cache)


def entries(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / layercache.LAYER_CACHE_DIR).glob("gzip-*/*"))


def noise(n: int, seed: bytes) -> bytes:
    """``n`` deterministic, poorly compressible bytes."""
    out = bytearray()
    block = seed
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 2  # some redundancy, as in real files
    return bytes(out[:n])


def big_recipe(tmp: Path, server: RepoServer, signer: Signer, tail: bytes = b"") -> Path:
    """A recipe whose single layer spans several chunks: two 5 MB local files."""
    (tmp / "a.bin").write_bytes(noise(5 << 20, b"a"))
    (tmp / "b.bin").write_bytes(noise(5 << 20, b"b")[: (5 << 20) - len(tail)] + tail)
    body = BODY + "".join(f'[[file]]\nsrc = "{n}"\ndest = "/srv/{n}"\nmode = "0644"\n' for n in ("a.bin", "b.bin"))
    path = tmp / "big.toml"
    path.write_text(body + "\n" + source_block(server, signer))
    return path


def layer_blob(layout: Path) -> bytes:
    m = manifest(layout, digest_of(layout))
    return (layout / "blobs/sha256" / m["layers"][0]["digest"].split(":")[1]).read_bytes()


# ---------------------------------------------------------------------------------------------------------
# compose end to end
# ---------------------------------------------------------------------------------------------------------


def test_second_compose_reuses_every_chunk_and_keeps_the_golden_digest(tmp_path: Path, repo_server: RepoServer,
                                                                       signer: Signer) -> None:
    recipe = tmp_path / "img.toml"
    recipe.write_text(BODY + "\n" + source_block(repo_server, signer))
    cache = tmp_path / "cache"
    first = compose(recipe, tmp_path / "one", cache)
    assert first["layer_cache"] == {"chunks_reused": 0, "chunks_deflated": 1, "chunks_rejected": 0}
    second = compose(recipe, tmp_path / "two", cache)
    assert second["layer_cache"] == {"chunks_reused": 1, "chunks_deflated": 0, "chunks_rejected": 0}
    assert digest_of(tmp_path / "one") == digest_of(tmp_path / "two") == GOLDEN_MANIFEST
    config = manifest(tmp_path / "two", GOLDEN_MANIFEST)["config"]["digest"].split(":")[1]
    assert json.loads((tmp_path / "two/blobs/sha256" / config).read_text())["rootfs"]["diff_ids"] == [GOLDEN_DIFF_ID]


def test_multi_chunk_layer_is_reused_whole_and_changing_one_file_redeflates_only_its_chunks(
        tmp_path: Path, repo_server: RepoServer, signer: Signer) -> None:
    cache = tmp_path / "cache"
    recipe = big_recipe(tmp_path, repo_server, signer)
    first = compose(recipe, tmp_path / "one", cache)["layer_cache"]
    n = first["chunks_deflated"]
    assert n >= 3 and first["chunks_reused"] == 0
    assert compose(recipe, tmp_path / "two", cache)["layer_cache"]["chunks_reused"] == n
    assert digest_of(tmp_path / "one") == digest_of(tmp_path / "two")

    # one byte of the second file changes (same size, so every header stays the same): a new layer and digest
    changed = big_recipe(tmp_path, repo_server, signer, tail=b"!")
    third = compose(changed, tmp_path / "three", cache)["layer_cache"]
    assert third["chunks_deflated"] >= 1 and third["chunks_reused"] >= 1
    assert third["chunks_deflated"] + third["chunks_reused"] == n
    assert digest_of(tmp_path / "three") != digest_of(tmp_path / "one")
    # ... and exactly the image a compose without any cache gives
    cold = compose(changed, tmp_path / "cold", tmp_path / "fresh-cache")["layer_cache"]
    assert cold["chunks_reused"] == 0
    assert digest_of(tmp_path / "cold") == digest_of(tmp_path / "three")
    assert layer_blob(tmp_path / "cold") == layer_blob(tmp_path / "three")


def _forge_entry(prefix: bytes, last: bool, content: bytes) -> bytes:
    return layercache.encode_entry(prefix, last, deflate_chunk(1, content, prefix, last))


@pytest.mark.parametrize("how", ["flipped-byte", "other-content", "truncated", "finished-early", "symlink", "fifo"])
def test_tampered_cached_chunk_never_enters_the_image(tmp_path: Path, repo_server: RepoServer, signer: Signer,
                                                      how: str) -> None:
    cache = tmp_path / "cache"
    recipe = big_recipe(tmp_path, repo_server, signer)
    compose(recipe, tmp_path / "one", cache)
    good = layer_blob(tmp_path / "one")
    victims = entries(cache)
    assert len(victims) >= 3
    for entry in victims:
        data = entry.read_bytes()
        prefix, last, deflated = layercache.decode_entry(data)
        if how == "flipped-byte":
            bad = data[:-40] + bytes([data[-40] ^ 0x01]) + data[-39:]
        elif how == "other-content":  # a well-formed entry for the right key, holding other bytes
            chunk = layercache.inflate_entry(prefix, last, deflated, CHUNK_SIZE)
            bad = _forge_entry(prefix, last, b"EVIL" + chunk[4:])
        elif how == "truncated":
            bad = data[: len(data) // 2]
        elif how == "finished-early":  # the right bytes, but a final block where a sync flush belongs (or not)
            chunk = layercache.inflate_entry(prefix, last, deflated, CHUNK_SIZE)
            bad = layercache.encode_entry(prefix, last, deflate_chunk(1, chunk, prefix, not last))
        elif how == "fifo":  # would stall a reader that waits for a writer
            entry.unlink()
            os.mkfifo(entry)
            continue
        else:
            target = tmp_path / f"elsewhere-{entry.name}"
            target.write_bytes(data)
            entry.unlink()
            entry.symlink_to(target)
            continue
        entry.write_bytes(bad)
    second = compose(recipe, tmp_path / "two", cache)["layer_cache"]
    assert second["chunks_reused"] == 0
    assert second["chunks_deflated"] == len(victims)
    assert second["chunks_rejected"] == (0 if how == "symlink" else len(victims))
    assert layer_blob(tmp_path / "two") == good
    assert digest_of(tmp_path / "two") == digest_of(tmp_path / "one")
    assert gzip.decompress(layer_blob(tmp_path / "two"))  # one valid gzip member
    # the bad entries were replaced by good ones
    assert compose(recipe, tmp_path / "three", cache)["layer_cache"]["chunks_reused"] == len(victims)


def test_cache_verify_prune_and_du_know_the_layer_chunks(tmp_path: Path, repo_server: RepoServer,
                                                         signer: Signer) -> None:
    cache = tmp_path / "cache"
    compose(big_recipe(tmp_path, repo_server, signer), tmp_path / "one", cache)
    found = entries(cache)
    du = forge("cache", "du", cache=cache)
    assert du["layer_chunks"] == len(found)
    assert du["layer_chunk_bytes"] == sum(p.stat().st_size for p in found)

    bad = found[1]
    bad.write_bytes(bad.read_bytes()[:-8])
    leftover = cache / layercache.LAYER_CACHE_DIR / "tmp" / ".stale"
    leftover.write_bytes(b"x")
    os.utime(leftover, (1, 1))
    verified = forge("cache", "verify", cache=cache)
    assert f"{layercache.LAYER_CACHE_DIR}/{bad.parent.name}/{bad.name}" in verified["removed"]
    assert entries(cache) == [p for p in found if p != bad]
    assert not leftover.exists()

    old = found[0]
    os.utime(old, (1, 1))
    pruned = forge("cache", "prune", "--older-than", "30", cache=cache)
    assert pruned["removed"] >= 1
    assert entries(cache) == [p for p in found if p not in (bad, old)]
    forge("cache", "prune", cache=cache)
    assert entries(cache) == []


# ---------------------------------------------------------------------------------------------------------
# the layer writer with and without the cache
# ---------------------------------------------------------------------------------------------------------


def test_write_layer_through_the_cache_gives_the_same_bytes_cold_and_warm(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "data").mkdir(parents=True)
    for i in range(3):
        (root / "data" / f"f{i}").write_bytes(noise(CHUNK_SIZE, bytes([i])))
    plain = write_layer(root, tmp_path / "plain", epoch=0, compression="gzip")
    cache = ChunkCache(tmp_path / "cache")
    cold = write_layer(root, tmp_path / "cold", epoch=0, compression="gzip", deflate=cache)
    assert cache.outcomes()["chunks_deflated"] >= 4 and cache.outcomes()["chunks_reused"] == 0
    warm_cache = ChunkCache(tmp_path / "cache")
    warm = write_layer(root, tmp_path / "warm", epoch=0, compression="gzip", deflate=warm_cache)
    assert warm_cache.outcomes() == {"chunks_reused": cache.outcomes()["chunks_deflated"], "chunks_deflated": 0,
                                     "chunks_rejected": 0}
    assert plain.digest == cold.digest == warm.digest
    assert plain.path.read_bytes() == warm.path.read_bytes()


def test_an_entry_is_checked_against_its_own_key() -> None:
    prefix, chunk = b"p" * 100, noise(1000, b"c")
    entry = _forge_entry(prefix, False, chunk)
    assert layercache.inflate_entry(*layercache.decode_entry(entry), limit=len(chunk)) == chunk
    with pytest.raises(ValueError):  # a finished stream where a sync flush belongs
        layercache.inflate_entry(prefix, False, deflate_chunk(1, chunk, prefix, True), limit=len(chunk))
    with pytest.raises(ValueError):  # bytes after the stream
        layercache.inflate_entry(prefix, True, deflate_chunk(1, chunk, prefix, True) + b"x", limit=len(chunk))
    with pytest.raises(ValueError):  # more than the chunk it stands for
        layercache.inflate_entry(prefix, False, deflate_chunk(1, chunk, prefix, False), limit=len(chunk) - 1)
    with pytest.raises(ValueError):
        layercache.decode_entry(b"FLC2\x00\xff\xff\xff\xff" + bytes(32))
    assert layercache.chunk_key(chunk, prefix, False) != layercache.chunk_key(chunk, prefix, True)
    assert layercache.chunk_key(chunk, prefix, False) != layercache.chunk_key(prefix + chunk, b"", False)


def test_layer_tar_is_byte_for_byte_what_tarfile_writes(tmp_path: Path) -> None:
    """The layer writer lays the tar out itself (no TarFile); the reference here is TarFile, over every kind of
    entry and header a layer can hold."""
    import io
    import stat
    import tarfile

    from rootfs_forge.image.layer import _TarSink, headers, write_tar

    root = tmp_path / "t"
    long_dir = root / ("d" * 90) / ("e" * 60)
    long_dir.mkdir(parents=True)
    (long_dir / "long-name-file").write_bytes(b"x" * 513)
    (root / "empty").write_bytes(b"")
    (root / "block").write_bytes(b"b" * 512)
    (root / "big").write_bytes(noise(3 * CHUNK_SIZE // 2, b"big"))
    (root / "one-mib").write_bytes(noise(1 << 20, b"mib"))  # the largest file written in one piece
    (root / "one-mib-and-one").write_bytes(noise((1 << 20) + 1, b"mib+1"))  # the smallest read in pieces
    (root / "héllo-ünïcode").write_bytes(b"u")
    (root / os.fsdecode(b"raw-\xff-bytes")).write_bytes(b"r")
    (root / "suid").write_bytes(b"s")
    os.chmod(root / "suid", 0o4755)
    os.link(root / "block", root / "block-link")
    os.symlink("/" + "t" * 120, root / "long-symlink")
    os.symlink("empty", root / "short-symlink")
    os.mkfifo(root / "fifo")
    os.utime(root / "big", (4_000_000_000, 4_000_000_000))
    owners = {"suid": (0, 0, 0o4755), "empty": (70_000_000, 3, 0o600)}
    xattrs = {"suid": (("security.capability", b"\x01\x00\x00\x02\xff"),), "empty": (("user.k", b"v\xc3\xa9"),)}
    if os.geteuid() == 0:
        os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))

    layer_codec = _Collect()
    ours = _TarSink(layer_codec)
    write_tar(ours, root, paths=None, epoch=1_700_000_000, owners=owners, xattrs=xattrs)
    ours.close()
    ref = io.BytesIO()
    with tarfile.TarFile(fileobj=ref, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8",
                         errors="surrogateescape") as tar:
        for info in headers(root, paths=None, epoch=1_700_000_000, owners=owners, xattrs=xattrs):
            if info.type == tarfile.REGTYPE:
                with open(root / info.name, "rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    assert bytes(layer_codec.data) == ref.getvalue()
    assert ours.hasher.sha.hexdigest() == hashlib.sha256(ref.getvalue()).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(ref.getvalue())) as back:
        names = back.getnames()
    assert "block-link" in names and "long-symlink" in names and "fifo" in names


class _Collect(_Codec):
    """A codec that keeps the tar as it is."""

    def __init__(self) -> None:
        self.data = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.data += chunk

    def finish(self, tail: bytes) -> None:
        self.data += tail


def test_chunks_whose_names_collide_never_lend_each_other_their_bytes(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry's name is a checksum, not a proof: with every chunk given one name, each finds another chunk's
    entry, rejects it after inflating it, and deflates its own; the layer is the plain one, byte for byte."""
    root = tmp_path / "tree"
    (root / "data").mkdir(parents=True)
    for i in range(3):
        (root / "data" / f"f{i}").write_bytes(noise(CHUNK_SIZE, bytes([i])))
    plain = write_layer(root, tmp_path / "plain", epoch=0, compression="gzip")
    monkeypatch.setattr(layercache, "chunk_key", lambda chunk, prefix, last: "one-name-for-all")
    for run in ("cold", "warm"):
        cache = ChunkCache(tmp_path / "cache")
        layer = write_layer(root, tmp_path / run, epoch=0, compression="gzip", deflate=cache, threads=1)
        outcomes = cache.outcomes()
        assert outcomes["chunks_deflated"] >= 4 and outcomes["chunks_rejected"] >= outcomes["chunks_deflated"] - 1
        assert layer.path.read_bytes() == plain.path.read_bytes()


def test_entries_of_an_older_format_are_neither_read_nor_called_corrupt(tmp_path: Path, repo_server: RepoServer,
                                                                      signer: Signer) -> None:
    cache = tmp_path / "cache"
    compose(big_recipe(tmp_path, repo_server, signer), tmp_path / "one", cache)
    current = entries(cache)
    old_dir = current[0].parent.with_name(current[0].parent.name.replace(f"-v{layercache.FORMAT_VERSION}", "-v2"))
    old_dir.mkdir()
    old = old_dir / ("0" * 64)
    old.write_bytes(b"an entry of the SHA-256-named format")
    os.utime(old, (1, 1))
    assert forge("cache", "verify", cache=cache)["removed"] == []
    assert old.exists()
    assert compose(big_recipe(tmp_path, repo_server, signer), tmp_path / "two", cache)["layer_cache"][
        "chunks_reused"] == len(current)
    forge("cache", "prune", "--older-than", "30", cache=cache)
    assert not old.exists() and entries(cache) == current
