"""Network faults injected into the test repository server: every case ends in success after retries or in
one clear error, and the cache never holds an unverified file."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from debian.debian_support import Version

from rootfs_forge.archive.cache import Cache
from rootfs_forge.archive.cachemaint import prune, usage, verify
from rootfs_forge.archive.fetch import fetch_debs
from rootfs_forge.archive.release import update_sources
from rootfs_forge.archive.sources import SourceEntry
from rootfs_forge.archive.transport import Transport
from rootfs_forge.errors import ArchiveError, FetchError
from rootfs_forge.index.packages import PackageIndex
from rootfs_forge.model import Package
from tests.conftest import base_specs
from tests.support.repo import Repo, RepoServer, Signer, build_repo, serve

NOW = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


@pytest.fixture()
def served(tmp_path: Path, signer: Signer) -> Iterator[tuple[Repo, RepoServer]]:
    repo = build_repo(tmp_path / "repo", base_specs(), signer=signer)
    with serve(repo.root) as server:
        yield repo, server


def transport() -> Transport:
    return Transport(retries=2, backoff=0.01, timeout=1.0)


def hello(repo: Repo, server: RepoServer, signer: Signer, cache: Cache) -> Package:
    entry = SourceEntry(server.url, "testing", ("main",), keyring=str(signer.keyring))
    files = update_sources([entry], ["amd64"], cache, transport(), NOW)
    return max(PackageIndex.open(files, cache).packages("hello"), key=lambda p: Version(p.version))


def once(kind: str, match: str = ".deb") -> Callable:  # type: ignore[type-arg]
    """A fault that strikes the first request whose path contains ``match``, then lets requests through."""
    state = {"hits": 0}

    def fault(handler, local: Path) -> bool:  # type: ignore[no-untyped-def]
        if match not in handler.path or state["hits"] >= 1:
            return False
        state["hits"] += 1
        return strike(handler, local, kind)

    return fault


def always(kind: str, match: str = ".deb") -> Callable:  # type: ignore[type-arg]
    def fault(handler, local: Path) -> bool:  # type: ignore[no-untyped-def]
        return match in handler.path and strike(handler, local, kind)

    return fault


def strike(handler, local: Path, kind: str) -> bool:  # type: ignore[no-untyped-def]
    data = local.read_bytes() if local.is_file() else b""
    if kind in ("500", "503", "404"):
        handler.send_response(int(kind))
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return True
    handler.send_response(200)
    if kind == "reset":
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data[: len(data) // 2])
        handler.wfile.flush()
        handler.connection.shutdown(2)
        handler.close_connection = True
        return True
    if kind == "truncated":
        handler.send_header("Content-Length", str(len(data) + 100))
        handler.end_headers()
        handler.wfile.write(data)
        handler.close_connection = True
        return True
    if kind == "corrupt":
        bad = bytearray(data)
        bad[len(bad) // 2] ^= 0xFF
        handler.send_header("Content-Length", str(len(bad)))
        handler.end_headers()
        handler.wfile.write(bytes(bad))
        return True
    if kind == "stall":
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        time.sleep(2.5)
        return True
    raise AssertionError(kind)


def only_verified_blobs(cache: Cache) -> None:
    for p in (cache.root / "blobs" / "sha256").iterdir():
        assert cache.verify_blob(p.name), p
    assert [t for t in (cache.root / "tmp").iterdir() if not t.name.endswith(".lock")] == []


@pytest.mark.parametrize("kind", ["reset", "truncated", "500", "503", "stall"])
def test_transient_fault_on_deb_is_retried(served: tuple[Repo, RepoServer], signer: Signer, tmp_path: Path,
                                           kind: str) -> None:
    repo, server = served
    cache = Cache(tmp_path / "cache")
    pkg = hello(repo, server, signer, cache)
    server.set_fault(once(kind))
    (got,) = fetch_debs([pkg], cache, transport())
    assert got.downloaded and cache.verify_blob(pkg.sha256)
    assert sum(r.endswith(".deb") for r in server.requests) == 2
    only_verified_blobs(cache)


@pytest.mark.parametrize(("kind", "expected"), [
    ("404", "HTTP 404"), ("503", "HTTP 503 (after 3 attempts)"), ("corrupt", "does not match the index"),
    ("reset", "connection broken mid-transfer (after 3 attempts)"), ("stall", "timed out"),
])
def test_persistent_fault_is_one_clear_error(served: tuple[Repo, RepoServer], signer: Signer, tmp_path: Path,
                                             kind: str, expected: str) -> None:
    repo, server = served
    cache = Cache(tmp_path / "cache")
    pkg = hello(repo, server, signer, cache)
    server.set_fault(always(kind))
    with pytest.raises(FetchError) as err:
        fetch_debs([pkg], cache, transport())
    assert str(err.value).startswith("cannot fetch hello 2.10-3 (hello_2.10-3_amd64.deb): ")
    assert expected in str(err.value) and "\n" not in str(err.value)
    assert not cache.has(pkg.sha256)
    only_verified_blobs(cache)


def test_corrupt_index_retries_by_hash_then_fails_cleanly(served: tuple[Repo, RepoServer], signer: Signer,
                                                          tmp_path: Path) -> None:
    _, server = served
    cache = Cache(tmp_path / "cache")
    server.set_fault(always("corrupt", match="binary-amd64"))
    entry = SourceEntry(server.url, "testing", ("main",), keyring=str(signer.keyring))
    with pytest.raises(ArchiveError, match="does not match"):
        update_sources([entry], ["amd64"], cache, transport(), NOW)
    # tried the by-hash name first, then the canonical name, once each
    index_requests = [r for r in server.requests if "binary-amd64" in r]
    assert len(index_requests) == 2
    assert "/by-hash/SHA256/" in index_requests[0] and index_requests[1].endswith("/Packages.gz")
    only_verified_blobs(cache)


def test_secondary_mirror_is_tried_when_the_first_fails(served: tuple[Repo, RepoServer], signer: Signer,
                                                         tmp_path: Path) -> None:
    repo, server = served
    cache = Cache(tmp_path / "cache")
    pkg = hello(repo, server, signer, cache)
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    moved = Package(**{**{f: getattr(pkg, f) for f in pkg.__slots__}, "base_url": dead})  # type: ignore[arg-type]
    (got,) = fetch_debs([moved], cache, transport(), mirrors={dead: [server.url]})
    assert got.downloaded and cache.verify_blob(pkg.sha256)


def test_cache_verify_drops_a_tampered_entry(served: tuple[Repo, RepoServer], signer: Signer,
                                             tmp_path: Path) -> None:
    repo, server = served
    cache = Cache(tmp_path / "cache")
    pkg = hello(repo, server, signer, cache)
    fetch_debs([pkg], cache, transport())
    path = cache.blob_path(pkg.sha256)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(b"XX")
    checked, bad = verify(cache)
    assert bad == [pkg.sha256] and checked >= 2
    assert not cache.has(pkg.sha256)
    only_verified_blobs(cache)


def test_cache_prune_keeps_what_locks_and_indexes_reference(served: tuple[Repo, RepoServer], signer: Signer,
                                                            tmp_path: Path) -> None:
    repo, server = served
    cache = Cache(tmp_path / "cache")
    pkg = hello(repo, server, signer, cache)
    fetch_debs([pkg], cache, transport())
    lock = tmp_path / "x.lock"
    lock.write_text(f'version = 1\n[[image]]\n[[image.package]]\nsha256 = "{pkg.sha256}"\n')
    assert usage(cache).blobs == 2  # the Packages index and the .deb
    orphan = cache.data_tar_path("0" * 64)
    orphan.write_bytes(b"a decompressed data.tar whose .deb is gone")
    removed, _ = prune(cache, [lock], None)
    assert removed == 1 and cache.has(pkg.sha256)  # the index is referenced by nothing: no state was saved
    assert not orphan.exists()  # derived entries go with their .deb
    removed, freed = prune(cache, [], None)
    assert removed == 1 and freed == pkg.size and usage(cache).blobs == 0
