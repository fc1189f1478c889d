from __future__ import annotations

from pathlib import Path

import pytest

from rootfs_forge.archive.sources import host_sources, parse_deb822, parse_one_line
from rootfs_forge.errors import SourceError

KEY = """ -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mDMEZZZZ
 -----END PGP PUBLIC KEY BLOCK-----"""


def test_deb822_expands_uris_and_suites_and_honours_enabled() -> None:
    text = """Types: deb deb-src
URIs: http://a.invalid/debian http://b.invalid/debian
Suites: bookworm bookworm-updates
Components: main contrib
Architectures: amd64 arm64
Signed-By: /usr/share/keyrings/x.gpg

Types: deb
URIs: http://c.invalid/debian
Suites: trixie
Components: main
Enabled: no

Types: deb-src
URIs: http://d.invalid/debian
Suites: bookworm
Components: main
"""
    entries = parse_deb822(text, "x.sources")
    assert [(e.url, e.suite) for e in entries] == [
        ("http://a.invalid/debian", "bookworm"), ("http://a.invalid/debian", "bookworm-updates"),
        ("http://b.invalid/debian", "bookworm"), ("http://b.invalid/debian", "bookworm-updates"),
    ]
    assert entries[0].components == ("main", "contrib")
    assert entries[0].architectures == ("amd64", "arm64")
    assert entries[0].keyring == "/usr/share/keyrings/x.gpg"


def test_deb822_inline_signed_by_key_is_kept_as_key_text() -> None:
    text = f"Types: deb\nURIs: http://a.invalid/debian\nSuites: s\nComponents: main\nSigned-By:\n{KEY}\n"
    (entry,) = parse_deb822(text, "x.sources")
    assert entry.keyring is not None and "BEGIN PGP PUBLIC KEY BLOCK" in entry.keyring


def test_one_line_entries_with_options_and_comments() -> None:
    text = """# comment
deb [arch=amd64,arm64 signed-by=/k.gpg] http://a.invalid/debian bookworm main contrib  # trailing
deb-src http://a.invalid/debian bookworm main
deb http://b.invalid/debian-security bookworm-security main
"""
    entries = parse_one_line(text, "sources.list")
    assert [(e.url, e.suite, e.components, e.architectures, e.keyring) for e in entries] == [
        ("http://a.invalid/debian", "bookworm", ("main", "contrib"), ("amd64", "arm64"), "/k.gpg"),
        ("http://b.invalid/debian-security", "bookworm-security", ("main",), (), None),
    ]


def test_one_line_entry_without_suite_is_an_error() -> None:
    with pytest.raises(SourceError, match=r"cannot read sources.list:1: a deb line needs a URI and a suite"):
        parse_one_line("deb http://a.invalid/debian\n", "sources.list")


def test_host_sources_reads_list_then_sorted_sources_dir(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://one.invalid/debian s1 main\n")
    (tmp_path / "sources.list.d" / "b.sources").write_text(
        "Types: deb\nURIs: http://three.invalid/d\nSuites: s3\nComponents: main\n")
    (tmp_path / "sources.list.d" / "a.list").write_text("deb http://two.invalid/d s2 main\n")
    assert [e.suite for e in host_sources(tmp_path)] == ["s1", "s2", "s3"]


def test_no_host_sources_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no enabled 'deb' entry"):
        host_sources(tmp_path)
