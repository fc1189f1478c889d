"""The chain of trust against a real signed repository served on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from rootfs_forge.archive.cache import Cache
from rootfs_forge.archive.release import dearmor, update_sources
from rootfs_forge.archive.sources import SourceEntry
from rootfs_forge.archive.transport import Transport
from rootfs_forge.errors import ArchiveError
from rootfs_forge.index.packages import PackageIndex
from tests.conftest import base_specs
from tests.support.repo import Repo, RepoServer, Signer, build_repo, serve

NOW = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


@pytest.fixture()
def fresh(tmp_path: Path, signer: Signer) -> Iterator[tuple[Repo, RepoServer]]:
    repo = build_repo(tmp_path / "repo", base_specs(), signer=signer)
    with serve(repo.root) as server:
        yield repo, server


def entry(server: RepoServer, keyring: Path | str, suite: str = "testing", **kw: object) -> SourceEntry:
    return SourceEntry(server.url, suite, ("main",), keyring=str(keyring), **kw)  # type: ignore[arg-type]


def blobs(cache: Cache) -> list[str]:
    return sorted(p.name for p in (cache.root / "blobs" / "sha256").iterdir())


def update(cache: Cache, e: SourceEntry, warn: list[str] | None = None) -> list:  # type: ignore[type-arg]
    return update_sources([e], ["amd64"], cache, Transport(retries=0), NOW,
                          warn.append if warn is not None else None)


def test_good_signature_is_accepted_and_index_is_cached(fresh: tuple[Repo, RepoServer], signer: Signer,
                                                        cache_dir: Path) -> None:
    repo, server = fresh
    cache = Cache(cache_dir)
    files = update(cache, entry(server, signer.keyring))
    gz = (repo.packages_path().parent / "Packages.gz").read_bytes()
    assert [(f.component, f.architecture, f.compression) for f in files] == [("main", "amd64", ".gz")]
    assert blobs(cache) == [hashlib.sha256(gz).hexdigest()]
    index = PackageIndex.open(files, cache)
    assert sorted(p.version for p in index.packages("hello")) == ["2.10-3", "2.9-1"]
    assert sorted(p.name for p in index.providers("awk")) == ["gawk", "mawk"]
    assert [p.name for p in index.essential()] == ["base-files"]
    # the Packages file was fetched by its hash, as the Release offers Acquire-By-Hash
    assert any("/by-hash/SHA256/" in r for r in server.requests)


def test_signature_by_unknown_key_is_refused(fresh: tuple[Repo, RepoServer], other_signer: Signer,
                                             cache_dir: Path) -> None:
    _, server = fresh
    cache = Cache(cache_dir)
    with pytest.raises(ArchiveError, match=r"cannot verify InRelease of .* testing: it is signed by a key that is "
                                           r"not in the keyring"):
        update(cache, entry(server, other_signer.keyring))
    assert blobs(cache) == []


def test_tampered_inrelease_is_refused(fresh: tuple[Repo, RepoServer], signer: Signer, cache_dir: Path) -> None:
    repo, server = fresh
    path = repo.root / "dists" / "testing" / "InRelease"
    path.write_bytes(path.read_bytes().replace(b"Label: Forge Tests", b"Label: Evil Tests"))
    cache = Cache(cache_dir)
    with pytest.raises(ArchiveError, match="signature does not match"):
        update(cache, entry(server, signer.keyring))
    assert blobs(cache) == []


def test_unsigned_text_around_signed_inrelease_is_ignored(fresh: tuple[Repo, RepoServer], signer: Signer,
                                                          cache_dir: Path) -> None:
    repo, server = fresh
    path = repo.root / "dists" / "testing" / "InRelease"
    path.write_bytes(b"Suite: evil\nSHA256:\n " + b"0" * 64 + b" 1 main/binary-amd64/Packages.gz\n\n"
                     + path.read_bytes())
    files = update(Cache(cache_dir), entry(server, signer.keyring))
    gz = (repo.packages_path().parent / "Packages.gz").read_bytes()
    assert files[0].sha256 == hashlib.sha256(gz).hexdigest()


def test_packages_not_matching_release_is_refused(fresh: tuple[Repo, RepoServer], signer: Signer,
                                                  cache_dir: Path) -> None:
    repo, server = fresh
    d = repo.packages_path().parent
    evil = gzip.compress(b"Package: evil\nVersion: 1\n", mtime=0)
    for p in [d / "Packages.gz", *(d / "by-hash" / "SHA256").iterdir()]:
        if p.name == "Packages.gz" or p.read_bytes()[:2] == b"\x1f\x8b":
            p.write_bytes(evil)
    cache = Cache(cache_dir)
    with pytest.raises(ArchiveError, match=r"cannot fetch testing/main/binary-amd64/Packages.gz: .*does not match"):
        update(cache, entry(server, signer.keyring))
    assert blobs(cache) == []
    assert list((cache.root / "tmp").glob("*")) == [p for p in (cache.root / "tmp").glob("*.lock")]


def test_stale_proxy_canonical_packages_is_bypassed_by_hash(fresh: tuple[Repo, RepoServer], signer: Signer,
                                                            cache_dir: Path) -> None:
    repo, server = fresh
    (repo.packages_path().parent / "Packages.gz").write_bytes(gzip.compress(b"Package: stale\n", mtime=0))
    files = update(Cache(cache_dir), entry(server, signer.keyring))
    assert files and not any(r.endswith("/Packages.gz") for r in server.requests)


def test_expired_valid_until_is_refused(tmp_path: Path, signer: Signer, cache_dir: Path) -> None:
    repo = build_repo(tmp_path / "r", base_specs(), signer=signer,
                      valid_until=int(NOW.timestamp()) - 3600)
    with serve(repo.root) as server, pytest.raises(ArchiveError, match=r"the Release expired on 2023-12-31"):
        update(Cache(cache_dir), entry(server, signer.keyring))


def test_missing_suite_is_named(fresh: tuple[Repo, RepoServer], signer: Signer, cache_dir: Path) -> None:
    _, server = fresh
    with pytest.raises(ArchiveError, match=r"suite 'nosuch' does not exist on the mirror"):
        update(Cache(cache_dir), entry(server, signer.keyring, suite="nosuch"))


def test_release_for_another_suite_is_refused(tmp_path: Path, signer: Signer, cache_dir: Path) -> None:
    repo = build_repo(tmp_path / "r", base_specs(), signer=signer, suite="testing", codename="trixie")
    (repo.root / "dists" / "stable").symlink_to(repo.root / "dists" / "testing")
    with serve(repo.root) as server, pytest.raises(ArchiveError, match="describes suite 'testing'"):
        update(Cache(cache_dir), entry(server, signer.keyring, suite="stable"))


def test_dead_mirror_is_one_clear_line(signer: Signer, cache_dir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    e = SourceEntry(f"http://127.0.0.1:{port}", "testing", ("main",), keyring=str(signer.keyring))
    with pytest.raises(ArchiveError) as err:
        update(Cache(cache_dir), e)
    assert "connection refused" in str(err.value) and "\n" not in str(err.value)


def test_release_gpg_fallback_when_no_inrelease(fresh: tuple[Repo, RepoServer], signer: Signer,
                                                cache_dir: Path) -> None:
    repo, server = fresh
    (repo.root / "dists" / "testing" / "InRelease").unlink()
    assert update(Cache(cache_dir), entry(server, signer.keyring))


def test_unsigned_release_is_refused_unless_allow_insecure(fresh: tuple[Repo, RepoServer], signer: Signer,
                                                           cache_dir: Path) -> None:
    repo, server = fresh
    (repo.root / "dists" / "testing" / "InRelease").unlink()
    (repo.root / "dists" / "testing" / "Release.gpg").unlink()
    with pytest.raises(ArchiveError, match="the Release is not signed"):
        update(Cache(cache_dir), entry(server, signer.keyring))
    warnings: list[str] = []
    assert update(Cache(cache_dir), entry(server, signer.keyring, allow_insecure=True), warnings)
    assert warnings and "signature NOT checked" in warnings[0]


def test_file_url_repository(tmp_path: Path, signer: Signer, cache_dir: Path) -> None:
    repo = build_repo(tmp_path / "r", base_specs(), signer=signer)
    e = SourceEntry(f"file://{repo.root}", "testing", ("main",), keyring=str(signer.keyring))
    files = update(Cache(cache_dir), e)
    assert [p.name for p in PackageIndex.open(files, Cache(cache_dir)).packages("mawk")] == ["mawk"]


def test_armored_keyring_is_accepted(fresh: tuple[Repo, RepoServer], signer: Signer, tmp_path: Path,
                                     cache_dir: Path) -> None:
    import base64

    _, server = fresh
    body = base64.encodebytes(signer.keyring.read_bytes()).decode()
    asc = tmp_path / "key.asc"
    asc.write_text(f"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n{body}=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n")
    assert dearmor(asc.read_text()) == signer.keyring.read_bytes()
    assert update(Cache(cache_dir), entry(server, asc))
