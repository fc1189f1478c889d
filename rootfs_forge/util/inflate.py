"""Inflate (raw deflate, zlib and gzip streams), CRC-32 and Adler-32 with the fastest implementation installed.

forge inflates a lot on its hot paths: every compressed layer chunk it reuses is inflated to check it (warm OCI
composes, ``image/layercache.py``), and a cold index decompresses ``Packages.gz`` (``index/scan.py``). Python's
``zlib`` inflates at 150-300 MB/s here; ISA-L's decoder (PyPI ``isal``, a compiled binding kept by the
pycompression project; installed with forge where it has wheels: x86-64 and 64-bit ARM) does the same 2-2.5x
faster and, like ``zlib``, releases the GIL. Inflating is fully specified (RFC 1951): every correct decoder
gives the same bytes for a stream and rejects the same malformed ones, so the choice changes speed, never an
output. Deflating stays with ``zlib`` everywhere: a compressor's bytes are part of an image's digest. The
CRC-32 of a gzip layer's trailer comes from ISA-L too (one pass over every tar byte, on the thread that builds
the tar: 2 ms a 4 MiB chunk with zlib 1.2.13, 0.2 ms with ISA-L), and it and Adler-32 name the layer cache's
chunks; a checksum is a function of its input.

Both decoders' objects answer ``decompress(data, max_length)``, ``flush()``, ``eof``, ``unused_data`` and
``unconsumed_tail`` alike (how much of the input a ``max_length``-bounded call leaves unconsumed may differ;
nothing here depends on it). They raise different exception types: catch :data:`ERRORS`.
"""

from __future__ import annotations

import zlib
from typing import Any

_fast: Any
try:
    from isal import isal_zlib as _fast
except ImportError:  # no wheel for this machine, or not installed: zlib does the same, slower
    _fast = None

BACKEND = "isal" if _fast is not None else "zlib"
ERRORS: tuple[type[Exception], ...] = (zlib.error,) if _fast is None else (zlib.error, _fast.error)


def decompressobj(wbits: int, zdict: bytes = b"", *, backend: str | None = None) -> Any:
    """A decompressor for ``wbits`` (-15 raw deflate, 15 zlib, 31 gzip, 47 zlib or gzip), primed with ``zdict``.
    ``backend`` ("isal" or "zlib") picks one explicitly (tests compare the two)."""
    mod: Any = zlib if (backend or BACKEND) == "zlib" or _fast is None else _fast
    return mod.decompressobj(wbits, zdict=zdict) if zdict else mod.decompressobj(wbits)


def adler32(data: bytes, value: int = 1) -> int:
    """Adler-32 of ``data``, continuing ``value``: ISA-L's when installed, zlib's value by definition."""
    return _fast.adler32(data, value) if _fast is not None else zlib.adler32(data, value)


def crc32(data: bytes, value: int = 0) -> int:
    """CRC-32 (gzip's trailer) of ``data``, continuing ``value``: ISA-L's folding implementation when installed
    (about ten times zlib's here), the same value by definition (tests compare the two)."""
    return _fast.crc32(data, value) if _fast is not None else zlib.crc32(data, value)
