from __future__ import annotations

from pathlib import Path

import pytest

from rootfs_forge.archive import IndexFile
from rootfs_forge.errors import IndexError_
from rootfs_forge.index import build_index, scan_stanzas, stanza_to_package
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
