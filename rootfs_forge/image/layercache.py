"""The compressed-chunk cache: a warm compose reuses the deflated chunks of its gzip layers that did not change.

A gzip layer is pigz-style (``image/layer.py``): the tar is cut into fixed 4 MiB chunks, each deflated on its
own, primed with the previous chunk's last 32 KiB. A chunk's deflate bytes therefore depend only on the chunk,
that primer, whether it is the last chunk, the level and the zlib that deflated it -- not on the rest of the
layer. This cache keeps them, so a warm compose whose tar is unchanged, or changed in a few places (one
package's files, a regenerated cache file), deflates only the chunks that differ. It is a cache of the
compressor's output, below the layer: the tar, its diff_id, the blob and its digest are produced exactly as
without it, byte for byte. A layer whose tar did not change at all does not get here: the cache's whole
layer blobs (``image/layershare.py``) are copied before any chunk is looked up; chunks serve a layer that
changed in places.

Layout under the download cache's root::

    composed-layers/<params>/<key hex>   one deflated chunk (see ENTRY below)
    composed-layers/tmp/                 temp names

``<params>`` names what the deflate bytes depend on besides the input: ``gzip-<level>-zlib<version>-c<chunk
size>-v<format>``. ``key`` names the input by checksums (:func:`chunk_key`): whether it is the last chunk, the
primer's length and CRC-32, the chunk's length, CRC-32 and Adler-32. A key only finds an entry, it never
vouches for one (every entry is checked against the chunk before it is used, see ENTRY): two inputs with one
key would cost a deflate, never a wrong layer. So it is no cryptographic hash: SHA-256 keys were a second full
hash of every layer's tar beside its diff_id (5 ms a 4 MiB chunk here; these checksums 0.5 ms with ISA-L).

ENTRY: ``FLC2``, the flag byte, the primer's length, the SHA-256 of the deflate bytes (a flipped bit that still
inflates to the same chunk would change the layer's digest), the primer (so that the entry can be checked on
its own, by ``forge cache verify``), then the raw deflate bytes. An entry is reused only after it was inflated,
primed with its stored primer, and gave exactly the chunk being compressed, with the stream ending where the
entry ends (a sync flush, or the final block for the last chunk) -- so a corrupted, truncated or tampered
entry is never used: the chunk is deflated again and the entry replaced. What a reused entry cannot be
checked for without deflating again is *how* it encodes the chunk: an entry written by another program with
access to the cache could hold another valid deflate stream of the same bytes, giving an image of the same
content under another digest.

Entries are written to a temp name and renamed (not fsynced: a torn entry fails the check above), so
concurrent composes see an entry complete or not at all. A reuse touches the entry's mtime: ``forge cache
prune --older-than DAYS`` drops entries unused that long, ``forge cache prune`` without it drops them all
(they are derived data), ``forge cache verify`` re-checks each one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from rootfs_forge.image.layer import CHUNK_SIZE, deflate_chunk
from rootfs_forge.util import inflate
from rootfs_forge.util.files import NotARegularFile, open_cache_entry, write_atomic

LAYER_CACHE_DIR = "composed-layers"
FORMAT_VERSION = 3  # 3: entries named by checksums (2: by SHA-256; its directory is skipped, pruned by age)
MAGIC = b"FLC2"
_SUM = 32  # SHA-256 of the deflate bytes: a flipped bit that still inflates to the chunk is caught
_HEAD = len(MAGIC) + 1 + 4 + _SUM


def params_name(level: int) -> str:
    """Everything a chunk's deflate bytes depend on besides its input, as a directory name."""
    return f"gzip-{level}-zlib{zlib.ZLIB_RUNTIME_VERSION}-c{CHUNK_SIZE}-v{FORMAT_VERSION}"


def chunk_key(chunk: bytes, prefix: bytes, last: bool) -> str:
    """The name of one chunk's entry (pure): a lookup key, not a proof (see the module docstring)."""
    return (f"{int(last)}-{len(prefix):x}-{inflate.crc32(prefix):08x}-{len(chunk):x}-"
            f"{inflate.crc32(chunk):08x}{inflate.adler32(chunk):08x}")


def encode_entry(prefix: bytes, last: bool, deflated: bytes) -> bytes:
    return (MAGIC + (b"\x01" if last else b"\x00") + len(prefix).to_bytes(4, "big") + hashlib.sha256(deflated).digest()
            + prefix + deflated)


def decode_entry(data: bytes) -> tuple[bytes, bool, bytes]:
    """(primer, last, deflate bytes) of an entry; ValueError if it is not one."""
    if len(data) < _HEAD or not data.startswith(MAGIC) or data[4] not in (0, 1):
        raise ValueError("not a chunk entry")
    n = int.from_bytes(data[5:9], "big")
    if n > 32 << 10 or len(data) < _HEAD + n:
        raise ValueError("bad primer length")
    deflated = data[_HEAD + n :]
    if hashlib.sha256(deflated).digest() != data[9:_HEAD]:
        raise ValueError("the deflate bytes do not match their checksum")
    return data[_HEAD : _HEAD + n], data[4] == 1, deflated


def inflate_entry(prefix: bytes, last: bool, deflated: bytes, limit: int) -> bytes:
    """The chunk a deflate stream encodes; ValueError unless it ends exactly where it should: at the final
    block for the last chunk, at a sync flush (no final block, no bytes left over) otherwise."""
    d = inflate.decompressobj(-15, prefix)
    try:
        out = d.decompress(deflated, limit + 1)
    except inflate.ERRORS as exc:
        raise ValueError(f"bad deflate stream: {exc}") from exc
    if len(out) > limit or d.unconsumed_tail or d.unused_data:
        raise ValueError("longer than a chunk, or data after the stream")
    if last != d.eof:
        raise ValueError("the stream ends too early" if d.eof else "the stream is not finished")
    if not last and not deflated.endswith(b"\x00\x00\xff\xff"):
        raise ValueError("not ended by a sync flush")
    return out


class ChunkCache:
    """The ``composed-layers`` directory of a download cache, as a ``layer.Deflate``: call it for a chunk."""

    def __init__(self, cache_root: Path) -> None:
        self.root = Path(cache_root) / LAYER_CACHE_DIR
        self.reused = 0
        self.deflated = 0
        self.rejected = 0
        self._lock = threading.Lock()

    def outcomes(self) -> dict[str, int]:
        return {"chunks_reused": self.reused, "chunks_deflated": self.deflated, "chunks_rejected": self.rejected}

    def _count(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    def __call__(self, level: int, chunk: bytes, prefix: bytes, last: bool) -> bytes:
        """The chunk's deflate bytes: a verified entry's, else freshly deflated (and entered)."""
        entry = self.root / params_name(level) / chunk_key(chunk, prefix, last)
        try:
            # no symlink followed, no FIFO waited on: a planted entry can neither redirect nor stall a compose
            fh: BinaryIO | None = open_cache_entry(entry)
        except NotARegularFile:
            fh = None
            self._reject(entry)
        except OSError:  # no entry (or a symlink, which is never read)
            fh = None
        if fh is not None:
            try:
                with fh:
                    data = fh.read(CHUNK_SIZE * 2)
                stored_prefix, stored_last, deflated = decode_entry(data)
                if (stored_prefix, stored_last) != (prefix, last):
                    raise ValueError("another chunk's primer")
                if inflate_entry(prefix, last, deflated, len(chunk)) != chunk:
                    raise ValueError("another chunk's content")
            except (OSError, ValueError):
                self._reject(entry)
            else:
                self._count("reused")
                with contextlib.suppress(OSError):
                    os.utime(entry)
                return deflated
        deflated = deflate_chunk(level, chunk, prefix, last)
        self._count("deflated")
        self._store(entry, encode_entry(prefix, last, deflated))
        return deflated

    def _reject(self, entry: Path) -> None:
        """A bad entry is counted and removed (the chunk is deflated again and entered in its place)."""
        self._count("rejected")
        with contextlib.suppress(OSError):
            entry.unlink()

    def _store(self, entry: Path, data: bytes) -> None:
        """Enter ``data`` under ``entry``; a compose never fails for its cache (read-only, full: no entry)."""
        with contextlib.suppress(OSError):
            entry.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(entry, data, tmp_dir=self.root / "tmp")


# ---------------------------------------------------------------------------------------------------------
# maintenance (forge cache verify / prune / du)
# ---------------------------------------------------------------------------------------------------------


def _entries(cache_root: Path, *, current: bool = False) -> Iterator[Path]:
    """Every entry; ``current``: only those of this format (an older one's are never read, only pruned)."""
    top = Path(cache_root) / LAYER_CACHE_DIR
    if not top.is_dir():
        return
    for sub in sorted(top.iterdir()):
        if sub.name != "tmp" and sub.is_dir() and not sub.is_symlink():
            if current and not sub.name.endswith(f"-v{FORMAT_VERSION}"):
                continue
            yield from sorted(sub.iterdir())


def entry_matches(path: Path) -> bool:
    """An entry still holds the deflate stream of the input its name is the key of."""
    try:
        if path.is_symlink() or not path.is_file():
            return False
        prefix, last, deflated = decode_entry(path.read_bytes())
        chunk = inflate_entry(prefix, last, deflated, CHUNK_SIZE)
    except (OSError, ValueError):
        return False
    return chunk_key(chunk, prefix, last) == path.name


def verify_entries(cache_root: Path) -> tuple[int, list[str]]:
    """Re-check every entry of this format; remove (and return, relative to the cache root) those that do not
    match. An older format's entries are never read: left to ``prune``, which drops them once unused long enough."""
    checked, bad = 0, []
    for p in _entries(cache_root, current=True):
        checked += 1
        if not entry_matches(p):
            bad.append(f"{LAYER_CACHE_DIR}/{p.parent.name}/{p.name}")
            with contextlib.suppress(OSError):
                p.unlink()
    _drop_temps(cache_root, max_age=86400)
    return checked, bad


def prune_entries(cache_root: Path, older_than_days: float | None, now: float) -> tuple[int, int]:
    """Drop every entry, or with ``older_than_days`` those unused that long; (entries removed, bytes freed)."""
    removed = freed = 0
    for p in _entries(cache_root):
        try:
            st = p.lstat()
        except OSError:
            continue
        if older_than_days is None or now - st.st_mtime > older_than_days * 86400:
            with contextlib.suppress(OSError):
                p.unlink()
                removed += 1
                freed += st.st_size
    _drop_temps(cache_root, max_age=86400)
    return removed, freed


def entries_size(cache_root: Path) -> tuple[int, int]:
    """(entries, bytes) the cache holds."""
    n = size = 0
    for p in _entries(cache_root):
        with contextlib.suppress(OSError):
            size += p.lstat().st_size
            n += 1
    return n, size


def _drop_temps(cache_root: Path, max_age: float) -> None:
    """Temp files of killed composes; a day-old one belongs to no live compose."""
    import time

    tmp = Path(cache_root) / LAYER_CACHE_DIR / "tmp"
    if not tmp.is_dir():
        return
    cutoff = time.time() - max_age
    for t in tmp.iterdir():
        with contextlib.suppress(OSError):
            if t.lstat().st_mtime < cutoff:
                t.unlink()
