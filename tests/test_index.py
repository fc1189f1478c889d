from __future__ import annotations

import gzip
import itertools
import lzma
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rootfs_forge.archive.release import IndexFile
from rootfs_forge.archive.sources import SourceEntry
from rootfs_forge.errors import IndexError_
from rootfs_forge.index.packages import stanza_to_package
from rootfs_forge.index.scan import build_index, build_index_compressed, build_index_streamed, scan_stanzas
from tests.support.treedump import index_db_dump, wait_for_index_db

ORIGIN = IndexFile(SourceEntry("http://x.invalid/debian", "testing", ("main",)), "main", "amd64", "0" * 64, "",
                   "testing")
GOOD = (b"Package: foo\nVersion: 1:2.0~rc1-1\nArchitecture: amd64\nProvides: bar (= 2), baz:any\n"
        b"Essential: yes\nDepends: libc6\nFilename: pool/f/foo.deb\nSize: 10\nInstalled-Size: 3\n"
        b"SHA256: " + b"a" * 64 + b"\nDescription: the foo\n more\n")


def test_scan_finds_names_provides_and_essential() -> None:
    text = GOOD + b"\nPackage: other\nVersion: 1\nDescription: x\n\n\n"
    c = scan_stanzas(text)
    assert (c.names, c.essential, c.descriptions) == (["foo", "other"], [1, 0], ["the foo", "x"])
    assert c.provides == [("bar", 0), ("baz", 0)]
    assert text[c.starts[1]:c.starts[1] + c.lengths[1]].startswith(b"Package: other")


def _reference_scan(text: bytes) -> list[tuple[int, int, bytes, list[bytes], bool, bytes]]:
    """The scan as a plain loop over stanzas (what the index did before it used regular expressions)."""
    out = []
    pos, n = 0, len(text)
    fields = [(name + b":", b"\n" + name + b":") for name in (b"Package", b"Provides", b"Essential", b"Description")]
    while pos < n:
        while pos < n and text[pos] in b"\n\r":
            pos += 1
        if pos >= n:
            break
        end = text.find(b"\n\n", pos)
        end = n if end < 0 else end
        values = []
        for head, needle in fields:
            if text.startswith(head, pos):
                i = pos + len(head)
            else:
                i = text.find(needle, pos, end)
                if i < 0:
                    values.append(b"")
                    continue
                i += len(needle)
            j = text.find(b"\n", i, end)
            values.append(text[i:end if j < 0 else j])
        name, prov, essential, desc = values
        provides = [w for item in prov.split(b",") if (w := item.strip().split(b" ", 1)[0].split(b"(", 1)[0]
                                                       .split(b":", 1)[0])] if prov else []
        out.append((pos, end, name.strip(), provides, essential.strip().lower() == b"yes", desc.strip()))
        pos = end + 2
    return out


_PIECES = [b"Package: a", b"Package:b", b"Provides: x, y (= 1), z:any", b"Essential: yes", b"Essential:no",
           b"Description: d", b"\n", b"\n\n", b"\r", b" cont", b"x", b"Package: \xff\xfe", b":"]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=16))
def test_scan_agrees_with_a_plain_loop_over_stanzas(pieces: list[bytes]) -> None:
    text = b"".join(pieces)
    c = scan_stanzas(text)
    got = [(s, s + ln, nm, [p for p, i in c.provides if i == k], bool(e), d)
           for k, (s, ln, nm, e, d) in enumerate(zip(c.starts, c.lengths, c.names, c.essential, c.descriptions,
                                                    strict=True))]
    want = [(s, e, nm.decode("utf-8", "replace"), [p.decode() for p in prov], ess, d.decode("utf-8", "replace"))
            for s, e, nm, prov, ess, d in _reference_scan(text)]
    assert got == want


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
    assert index_db_dump(streamed) == index_db_dump(whole)
    assert streamed.with_name(streamed.name + ".txt").read_bytes() == text


@pytest.mark.parametrize("compression", [".gz", ".xz"])
def test_index_from_compressed_file_equals_plain(tmp_path: Path, compression: str) -> None:
    text = b"\n".join(STANZAS * 500)
    raw = gzip.compress(text) if compression == ".gz" else lzma.compress(text)
    build_index(text, tmp_path / "plain.idx")
    os.close(build_index_compressed(raw, compression, "Packages" + compression, tmp_path / "packed.idx")[1])
    assert index_db_dump(tmp_path / "packed.idx") == index_db_dump(tmp_path / "plain.idx")
    assert (tmp_path / "packed.idx.txt").read_bytes() == text


@pytest.mark.parametrize("compression", [".gz", ".xz"])
def test_truncated_compressed_index_is_refused_and_leaves_no_database(tmp_path: Path, compression: str) -> None:
    text = b"\n".join(STANZAS * 500)
    raw = gzip.compress(text) if compression == ".gz" else lzma.compress(text)
    with pytest.raises(IndexError_, match=f"cannot decompress Packages{compression}: "):
        build_index_compressed(raw[: len(raw) // 2], compression, f"Packages{compression}", tmp_path / "x.idx")
    assert not (tmp_path / "x.idx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _stanza(name: str, provides: str = "", essential: bool = False) -> bytes:
    extra = (f"Provides: {provides}\n" if provides else "") + ("Essential: yes\n" if essential else "")
    return (f"Package: {name}\nVersion: 1.0\nArchitecture: amd64\n{extra}Filename: pool/{name}.deb\nSize: 10\n"
            f"SHA256: {'b' * 64}\nDescription: the {name}\n").encode()


@pytest.mark.parametrize("background_from", [0, 1 << 40], ids=["detached-writer", "written-inline"])
def test_fresh_index_answers_from_its_scan_while_the_database_is_written_in_the_background(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, background_from: int) -> None:
    import dataclasses
    import hashlib

    from rootfs_forge.archive.cache import Cache
    from rootfs_forge.index import scan as index_module
    from rootfs_forge.index.packages import PackageIndex

    monkeypatch.setattr(index_module, "BACKGROUND_DB_MIN", background_from)

    text = b"\n".join([_stanza("a", "x"), _stanza("b", "x, y (= 1)", essential=True), _stanza("a")] * 200)
    raw = gzip.compress(text)
    cache = Cache(tmp_path / "cache")
    sha = hashlib.sha256(raw).hexdigest()
    cache.blob_path(sha).write_bytes(raw)
    f = dataclasses.replace(ORIGIN, sha256=sha, compression=".gz")

    def answers(index: PackageIndex) -> object:
        return ([(p.name, p.provides) for p in index.packages("a")], [p.name for p in index.providers("x")],
                [p.name for p in index.providers("y")], [p.name for p in index.essential()], index.count(),
                len(index.search(re.compile("the b"))))

    fresh = PackageIndex.open([f], cache)
    first = answers(fresh)
    fresh.close()
    assert first == ([("a", "x"), ("a", "")] * 200, ["a", "b"] * 200, ["b"] * 200, ["b"] * 200, 600, 200)
    db = cache.index_path(sha)
    wait_for_index_db(db)
    again = PackageIndex.open([f], cache)
    try:
        assert type(again._parts[0]).__name__ == "_SqlPart"
        assert answers(again) == first
    finally:
        again.close()
    assert sorted(p.name for p in (tmp_path / "cache" / "index").iterdir()) == [db.name, db.name + ".txt"]


@pytest.mark.parametrize("compression", [".gz", ".xz"])
def test_index_scanned_with_a_helper_process_equals_plain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          compression: str) -> None:
    from rootfs_forge.index import scan as index_module

    monkeypatch.setattr(index_module, "PARALLEL_SCAN_MIN", 0)  # the first 60 % is scanned by a child
    monkeypatch.setattr(index_module, "DECOMPRESS_STEP", 4096)
    text = b"\n".join([_stanza(f"p{i}", f"v{i % 7}", essential=i % 50 == 0) for i in range(40000)])
    raw = gzip.compress(text) if compression == ".gz" else lzma.compress(text)
    build_index(text, tmp_path / "plain.idx")
    os.close(build_index_compressed(raw, compression, "Packages" + compression, tmp_path / "helped.idx")[1])
    assert index_db_dump(tmp_path / "helped.idx") == index_db_dump(tmp_path / "plain.idx")
    assert (tmp_path / "helped.idx.txt").read_bytes() == text


def test_scan_helper_that_dies_costs_only_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    from rootfs_forge.index import scan as index_module
    from rootfs_forge.util import forked as forked

    killed = []

    class Killed(forked.Forked):  # the helper child dies at once
        def __init__(self, call: object) -> None:
            super().__init__(call)  # type: ignore[arg-type]
            os.kill(self.pid, signal.SIGKILL)
            killed.append(self.pid)

    monkeypatch.setattr(index_module, "Forked", Killed)
    monkeypatch.setattr(index_module, "PARALLEL_SCAN_MIN", 0)
    monkeypatch.setattr(index_module, "DECOMPRESS_STEP", 4096)
    text = b"\n".join(_stanza(f"s{i}", "v") for i in range(3000))
    columns, fd = build_index_compressed(gzip.compress(text), ".gz", "Packages.gz", tmp_path / "x.idx")
    try:
        got = os.pread(fd, len(text) + 1, 0)
    finally:
        os.close(fd)
    assert len(killed) == 1 and got == text == (tmp_path / "x.idx.txt").read_bytes()
    assert columns.as_lists() == scan_stanzas(text).as_lists()
