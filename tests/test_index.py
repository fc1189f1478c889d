from __future__ import annotations

import gzip
import itertools
import lzma
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rootfs_forge.archive import IndexFile
from rootfs_forge.errors import IndexError_
from rootfs_forge.index import (
    build_index,
    build_index_compressed,
    build_index_streamed,
    scan_stanzas,
    stanza_to_package,
)
from rootfs_forge.sources import SourceEntry

ORIGIN = IndexFile(SourceEntry("http://x.invalid/debian", "testing", ("main",)), "main", "amd64", "0" * 64, "",
                   "testing")
GOOD = (b"Package: foo\nVersion: 1:2.0~rc1-1\nArchitecture: amd64\nProvides: bar (= 2), baz:any\n"
        b"Essential: yes\nDepends: libc6\nFilename: pool/f/foo.deb\nSize: 10\nInstalled-Size: 3\n"
        b"SHA256: " + b"a" * 64 + b"\nDescription: the foo\n more\n")


def test_scan_finds_names_provides_and_essential() -> None:
    text = GOOD + b"\nPackage: other\nVersion: 1\nDescription: x\n\n\n"
    rows = list(scan_stanzas(text))
    assert [(r[2], r[3], r[4], r[5]) for r in rows] == [
        (b"foo", [b"bar", b"baz"], True, b"the foo"), (b"other", [], False, b"x")]
    assert text[rows[1][0]:rows[1][1]].startswith(b"Package: other")


def test_stanza_becomes_package() -> None:
    p = stanza_to_package(GOOD, ORIGIN)
    assert (p.name, p.version, p.essential, p.installed_size, p.provides) == (
        "foo", "1:2.0~rc1-1", True, 3, "bar (= 2), baz:any")
    assert p.url == "http://x.invalid/debian/pool/f/foo.deb"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: s.replace(b"Size: 10\n", b""), "missing mandatory field Size"),
        (lambda s: s.replace(b"Size: 10", b"Size: 99999999999999"), "Size 99999999999999 is absurd"),
        (lambda s: s.replace(b"Size: 10", b"Size: ten"), "Size 'ten' is not a number"),
        (lambda s: s.replace(b"a" * 64, b"zz"), "is not a SHA256 digest"),
        (lambda s: s.replace(b"pool/f/foo.deb", b"../../etc/passwd"), "leaves the archive"),
        (lambda s: s.replace(b"1:2.0~rc1-1", b"not a version!"), "is not a Debian version"),
    ],
)
def test_malformed_stanza_names_package_and_field(mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IndexError_) as err:
        stanza_to_package(mutate(GOOD), ORIGIN)
    assert str(err.value).startswith("cannot read stanza foo in testing/main/binary-amd64/Packages: ")
    assert expected in str(err.value)


def test_build_index_is_atomic(tmp_path: Path) -> None:
    db = tmp_path / "x.idx"
    build_index(GOOD, db)
    assert db.is_file() and (tmp_path / "x.idx.txt").read_bytes() == GOOD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.idx", "x.idx.txt"]


def _dump(db: Path) -> list[object]:
    con = sqlite3.connect(db)
    try:
        return [con.execute(q).fetchall() for q in ("SELECT * FROM stanza ORDER BY id",
                                                     "SELECT * FROM provides ORDER BY rowid", "SELECT * FROM meta")]
    finally:
        con.close()


STANZAS = [GOOD, b"Package: b\nProvides: x\n", b"\n\n\nPackage: c\nEssential: yes\n", b"Package: d\nDescription: d"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(STANZAS), min_size=1, max_size=6), st.lists(st.integers(0, 400), max_size=5))
def test_index_built_from_chunks_equals_index_built_whole(tmp_path: Path, stanzas: list[bytes],
                                                          cuts: list[int]) -> None:
    text = b"\n".join(stanzas)
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    chunks = [text[a:b] for a, b in itertools.pairwise(bounds)]
    n = len(list(tmp_path.iterdir()))  # hypothesis reuses the directory: fresh names each example
    whole, streamed = tmp_path / f"w{n}.idx", tmp_path / f"s{n}.idx"
    build_index(text, whole)
    build_index_streamed(iter(chunks), streamed)
    assert _dump(streamed) == _dump(whole)
    assert streamed.with_name(streamed.name + ".txt").read_bytes() == text


@pytest.mark.parametrize("compression", [".gz", ".xz"])
def test_index_from_compressed_file_equals_plain(tmp_path: Path, compression: str) -> None:
    text = b"\n".join(STANZAS * 500)
    raw = gzip.compress(text) if compression == ".gz" else lzma.compress(text)
    build_index(text, tmp_path / "plain.idx")
    build_index_compressed(raw, compression, "Packages" + compression, tmp_path / "packed.idx")
    assert _dump(tmp_path / "packed.idx") == _dump(tmp_path / "plain.idx")


@pytest.mark.parametrize("compression", [".gz", ".xz"])
def test_truncated_compressed_index_is_refused_and_leaves_no_database(tmp_path: Path, compression: str) -> None:
    text = b"\n".join(STANZAS * 500)
    raw = gzip.compress(text) if compression == ".gz" else lzma.compress(text)
    with pytest.raises(IndexError_, match=f"cannot decompress Packages{compression}: "):
        build_index_compressed(raw[: len(raw) // 2], compression, f"Packages{compression}", tmp_path / "x.idx")
    assert not (tmp_path / "x.idx").exists()
