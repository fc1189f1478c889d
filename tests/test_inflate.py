"""The inflate accelerator (util/inflate.py): ISA-L where it is installed, zlib otherwise, the same verdicts."""

from __future__ import annotations

import platform
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rootfs_forge.errors import IndexError_
from rootfs_forge.image import layercache
from rootfs_forge.index.scan import build_index_compressed
from rootfs_forge.util import inflate

BACKENDS = ["zlib", "isal"] if inflate.BACKEND == "isal" else ["zlib"]


@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="isal has wheels for these only")
def test_isal_is_installed_where_forge_depends_on_it() -> None:
    assert inflate.BACKEND == "isal"  # pyproject.toml: without it every warm OCI compose inflates 2x slower


def _verdict(backend: str, prefix: bytes, last: bool, data: bytes, limit: int,
             monkeypatch: pytest.MonkeyPatch) -> bytes | str:
    monkeypatch.setattr(inflate, "BACKEND", backend)
    try:
        return layercache.inflate_entry(prefix, last, data, limit)
    except ValueError:
        return "rejected"


@settings(max_examples=300, deadline=None)
@given(chunk=st.binary(max_size=20000), prefix=st.sampled_from([b"", b"p" * 10, bytes(range(256)) * 128]),
       last=st.booleans(), flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 7)), max_size=3),
       cut=st.one_of(st.none(), st.integers(0, 1 << 20)), tail=st.sampled_from([b"", b"\x00", b"junk"]))
def test_both_decoders_accept_and_reject_the_same_chunk_entries(chunk: bytes, prefix: bytes, last: bool,
                                                               flips: list[tuple[int, int]], cut: int | None,
                                                               tail: bytes) -> None:
    """A reused layer chunk is checked by inflating it: a tampered, truncated or extended stream must be turned
    away by ISA-L exactly as by zlib, and a good one give the chunk."""
    data = bytearray(layercache.deflate_chunk(6, chunk, prefix, last))
    for pos, bit in flips:
        if data:
            data[pos % len(data)] ^= 1 << bit
    if cut is not None:
        del data[cut % (len(data) + 1):]
    data += tail
    with pytest.MonkeyPatch.context() as mp:
        verdicts = {b: _verdict(b, prefix, last, bytes(data), len(chunk), mp) for b in BACKENDS}
    assert len(set(map(repr, verdicts.values()))) == 1, verdicts
    if not flips and cut is None and not tail:
        assert verdicts["zlib"] == chunk


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("mangle", "reason"), [
    (lambda gz: gz[:-9], "truncated"),
    (lambda gz: gz + b"trailing", "trailing data"),
    (lambda gz: gz[:40] + bytes(b ^ 0x55 for b in gz[40:80]) + gz[80:], ""),
])
def test_a_broken_packages_gz_is_refused_by_either_decoder(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                          backend: str, mangle, reason: str) -> None:
    monkeypatch.setattr(inflate, "BACKEND", backend)
    text = b"".join(b"Package: p%d\nVersion: 1\nDescription: d\n\n" % i for i in range(2000))
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    gz = mangle(c.compress(text) + c.flush())
    with pytest.raises(IndexError_, match=f"cannot decompress Packages.gz: .*{reason}"):
        build_index_compressed(gz, ".gz", "Packages.gz", tmp_path / "x.idx")
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_good_packages_gz_gives_the_same_index_with_either_decoder(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                                    backend: str) -> None:
    monkeypatch.setattr(inflate, "BACKEND", backend)
    text = b"".join(b"Package: p%d\nVersion: 1\nDescription: d%d\n\n" % (i, i) for i in range(5000))
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    columns, fd = build_index_compressed(c.compress(text) + c.flush(), ".gz", "Packages.gz", tmp_path / "x.idx")
    try:
        assert columns.names == [f"p{i}" for i in range(5000)]
        assert (tmp_path / "x.idx.txt").read_bytes() == text
    finally:
        import os

        os.close(fd)


@settings(max_examples=200, deadline=None)
@given(first=st.binary(max_size=5000), second=st.binary(max_size=5000), start=st.integers(0, 2**32 - 1))
def test_the_gzip_trailer_crc_is_zlibs_crc32(first: bytes, second: bytes, start: int) -> None:
    """The CRC-32 of a gzip layer's trailer (ISA-L's where installed) is zlib's, continued across chunks."""
    assert inflate.crc32(second, inflate.crc32(first, start)) == zlib.crc32(first + second, start)


@settings(max_examples=200, deadline=None)
@given(first=st.binary(max_size=5000), second=st.binary(max_size=5000), start=st.integers(1, 2**32 - 1))
def test_the_chunk_keys_adler32_is_zlibs(first: bytes, second: bytes, start: int) -> None:
    """The Adler-32 in a layer chunk's cache name (ISA-L's where installed) is zlib's, continued across pieces."""
    assert inflate.adler32(second, inflate.adler32(first, start)) == zlib.adler32(first + second, start)
