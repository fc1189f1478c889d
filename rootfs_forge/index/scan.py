"""The scan of a ``Packages`` file: stanza bounds and the four fields the index needs, by column (regular
expressions over the whole text; a large file on two cores while it is decompressed), and the SQLite database
written from the columns. The speed of a cold index is here; a hypothesis test holds the columnar scan to the
plain per-stanza loop it replaced."""

from __future__ import annotations

import bisect
import functools
import gzip
import lzma
import os
import re
import sqlite3
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rootfs_forge.errors import IndexError_
from rootfs_forge.util.forked import Forked, can_fork, detach

SCHEMA_VERSION = 3
BACKGROUND_DB_MIN = 8 << 20  # text bytes from which a fresh index's database is written in the background
PARALLEL_SCAN_MIN = 2 << 20  # compressed bytes from which a child process scans part of the text
DECOMPRESS_STEP = 1 << 20  # compressed bytes decompressed at a time


def decompress(data: bytes, compression: str, what: str) -> bytes:
    try:
        if compression == ".gz":
            return gzip.decompress(data)
        if compression == ".xz":
            return lzma.decompress(data)
    except (OSError, lzma.LZMAError, EOFError) as exc:
        raise IndexError_("decompress", what, str(exc)) from None
    return data


_SEPARATOR = re.compile(rb"\n\n[\n\r]*")  # what ends a stanza, and the blank run before the next one
_LEAD = re.compile(rb"[\n\r]*")
_FIELDS = rb"(Package|Provides|Essential|Description):([^\n]*)"
_FIELD_AT = re.compile(_FIELDS)
_FIELD_LINE = re.compile(rb"\n" + _FIELDS)


@dataclass
class Columns:
    """The scan of a Packages text, one list per column, one entry per stanza (in text order)."""

    starts: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    essential: list[int] = field(default_factory=list)
    descriptions: list[str] = field(default_factory=list)
    provides: list[tuple[str, int]] = field(default_factory=list)  # (provided name, stanza number)

    def __len__(self) -> int:
        return len(self.starts)

    def extend(self, other: Columns) -> None:
        """Append the scan of the text that follows (its stanza numbers shift by this scan's length)."""
        shift = len(self)
        self.starts += other.starts
        self.lengths += other.lengths
        self.names += other.names
        self.essential += other.essential
        self.descriptions += other.descriptions
        self.provides += [(name, i + shift) for name, i in other.provides]

    def as_lists(self) -> tuple[list[Any], ...]:
        return (self.starts, self.lengths, self.names, self.essential, self.descriptions, self.provides)


def scan_stanzas(text: bytes, base: int = 0, into: Columns | None = None) -> Columns:
    """Find every stanza of ``text`` and the four fields the maps need: its name, what it provides, whether it
    is Essential, its short description. Offsets are ``base`` + the offset in ``text``.

    A stanza starts at the first character that is not a line break after a blank line and ends at the next
    blank line; a field is the first line of the stanza that starts with its name and a colon. The work is done
    by regular expressions over the whole text (C loops) and list operations per column: a per-stanza Python
    loop over 63,000 stanzas took three times as long.
    """
    out = into if into is not None else Columns()
    n = len(text)
    lead = _LEAD.match(text).end()  # type: ignore[union-attr]  # matches the empty string at least
    starts = [lead]
    ends: list[int] = []
    for m in _SEPARATOR.finditer(text, lead):
        ends.append(m.start())
        starts.append(m.end())
    if starts[-1] >= n:
        starts.pop()
    else:
        ends.append(n)
    count = len(starts)
    if not count:
        return out
    cols: dict[bytes, list[bytes | None]] = {f: [None] * count for f in (b"Package", b"Provides", b"Essential",
                                                                        b"Description")}
    # a field on a stanza's first line follows no newline when the stanza starts the text (or a carriage return)
    for i, start in enumerate(starts):
        if i == 0 or text[start - 1] != 10:
            at = _FIELD_AT.match(text, start)
            if at:
                cols[at.group(1)][i] = at.group(2)
    i, nxt, after = 0, (starts[1] if count > 1 else n + 1), (starts[2] if count > 2 else n + 1)
    for m in _FIELD_LINE.finditer(text, lead):  # in text order: walk the stanzas alongside
        pos = m.start() + 1
        if pos >= nxt:
            i = i + 1 if pos < after else bisect.bisect_right(starts, pos) - 1
            nxt = starts[i + 1] if i + 1 < count else n + 1
            after = starts[i + 2] if i + 2 < count else n + 1
        col = cols[m.group(1)]
        if col[i] is None:
            col[i] = m.group(2)
    first = len(out)
    out.starts.extend(base + s for s in starts)
    out.lengths.extend(e - s for s, e in zip(starts, ends, strict=True))
    out.names.extend(_decoded(cols[b"Package"]))
    out.descriptions.extend(_decoded(cols[b"Description"]))
    out.essential.extend(int(v is not None and v.strip().lower() == b"yes") for v in cols[b"Essential"])
    for i, prov in enumerate(cols[b"Provides"]):
        if prov:
            for item in prov.split(b","):
                word = item.strip().split(b" ", 1)[0].split(b"(", 1)[0].split(b":", 1)[0]
                if word:
                    out.provides.append((word.decode("utf-8", "replace"), first + i))
    return out


def _decoded(values: list[bytes | None]) -> list[str]:
    """Strip and decode a column in one call (a value is one line: a newline cannot occur in it)."""
    return b"\n".join((v or b"").strip() for v in values).decode("utf-8", "replace").split("\n")


def build_index(text: bytes, db_path: Path) -> Columns:
    """Write the index of a decompressed Packages text: ``<db>`` (SQLite maps) and ``<db>.txt`` (the text)."""
    return build_index_streamed(iter((text,)), db_path)


def build_index_compressed(raw: bytes, compression: str, what: str, db_path: Path, *,
                           background: bool = False) -> tuple[Columns, bytes]:
    """Like :func:`build_index` from the Packages file as downloaded. Returns the scan and the text.

    A large file is scanned on both cores (:func:`_scan_in_two`). (A decompressing thread beside a scanning one
    gained nothing: the codec gives the interpreter lock back between output blocks and waited up to a switch
    interval for it each time.)

    ``background``: the text and the database are written by a detached child process (see :func:`detach`)
    while this one goes on with the scan and the text in memory: for bookworm main that takes 0.5 s off the
    critical path of a cold compose. Until the child has renamed the database into place, another process
    builds its own.
    """
    if len(raw) >= PARALLEL_SCAN_MIN and can_fork():
        columns, text = _scan_in_two(_decompressed(raw, compression, what), -(-len(raw) // DECOMPRESS_STEP))
    else:
        columns, text = _scan_chunks(_decompressed(raw, compression, what))
    # a small index is written here: the fork would cost more than the write
    forked = detach() if background and len(text) >= BACKGROUND_DB_MIN else None
    if forked is None:
        write_index(db_path, columns, text)
    elif forked:
        try:  # the detached child
            write_index(db_path, columns, text)
        finally:
            os._exit(0)
    return columns, text


def _decompressed(raw: bytes, compression: str, what: str) -> Iterator[bytes]:
    """The text of ``raw``, one piece per DECOMPRESS_STEP bytes of it."""
    step = DECOMPRESS_STEP
    if compression not in (".gz", ".xz"):
        for i in range(0, len(raw), 8 * step):
            yield raw[i:i + 8 * step]
        return
    codec: Any = zlib.decompressobj(wbits=47) if compression == ".gz" else lzma.LZMADecompressor()
    try:
        for i in range(0, len(raw), step):
            out = codec.decompress(raw[i:i + step])
            if out:
                yield out
        if compression == ".gz":
            tail = codec.flush()
            if tail:
                yield tail
        if not codec.eof:
            raise IndexError_("decompress", what, "compressed stream ended early (truncated)")
        if compression == ".gz" and codec.unused_data:
            raise IndexError_("decompress", what, "trailing data after the compressed stream")
    except (zlib.error, lzma.LZMAError, EOFError) as exc:
        raise IndexError_("decompress", what, str(exc)) from None


def build_index_streamed(chunks: Iterator[bytes], db_path: Path) -> Columns:
    """The index of a Packages text that arrives in ``chunks``: each chunk's complete stanzas are scanned as it
    comes; then the text and the database are written. Returns the scan (it answers lookups at once)."""
    columns, text = _scan_chunks(chunks)
    write_index(db_path, columns, text)
    return columns


def _scan_chunks(chunks: Iterator[bytes]) -> tuple[Columns, bytes]:
    """Scan ``chunks`` as they come, each one's complete stanzas at once; the scan and the whole text."""
    columns = Columns()
    parts: list[bytes] = []
    carry, base = b"", 0
    for chunk in chunks:
        parts.append(chunk)
        buf = carry + chunk
        cut = _last_boundary(buf)
        if cut <= 0:
            carry = buf
            continue
        scan_stanzas(buf[:cut], base, columns)
        carry, base = buf[cut:], base + cut
    scan_stanzas(carry, base, columns)
    return columns, b"".join(parts)


def _last_boundary(buf: bytes) -> int:
    """Where the last complete stanza of ``buf`` ends (the first newline of the blank run after it), or -1."""
    cut = buf.rfind(b"\n\n")
    while cut > 0 and buf[cut - 1] == 10:
        cut -= 1
    return cut


def _scan_in_two(pieces: Iterator[bytes], count: int) -> tuple[Columns, bytes]:
    """Decompress ``pieces`` (``count`` of them, about) and scan the text on two cores: once 60 % of it is
    here, a forked child scans the complete stanzas so far — from memory it shares with this process, so
    nothing is copied to it — while this process decompresses and scans the rest. The two finish about
    together: the child starts after 60 % of the decompression and scans 60 % of the text."""
    parts: list[bytes] = []
    helper: Forked | None = None
    head = b""
    try:
        for n, piece in enumerate(pieces, 1):
            parts.append(piece)
            if helper is None and n * 5 >= count * 3:
                text = b"".join(parts)
                cut = _last_boundary(text)
                if cut > 0:
                    head = text[:cut]
                    helper = Forked(functools.partial(_scan_lists, head))
                    parts = [text]
        text = b"".join(parts)
        if helper is None:
            return scan_stanzas(text), text
        rest = scan_stanzas(text[len(head):], len(head))  # while the child scans the head
        done = helper.result()
        columns = Columns(*done) if done is not None else scan_stanzas(head)  # a failed child costs only time
        columns.extend(rest)
        return columns, text
    finally:
        if helper is not None:
            helper.close()


def _scan_lists(text: bytes) -> tuple[list[Any], ...]:
    return scan_stanzas(text).as_lists()


def write_index(db_path: Path, columns: Columns, text: bytes) -> None:
    """``<db>.txt`` and then ``<db>``, each through a temp name: a present database means both are complete."""
    text_path = db_path.with_name(db_path.name + ".txt")
    tmp_text = text_path.with_name(f"{text_path.name}.{os.getpid()}.tmp")
    try:
        tmp_text.write_bytes(text)
        tmp_text.replace(text_path)
    except BaseException:
        tmp_text.unlink(missing_ok=True)
        raise
    write_db(db_path, columns, len(text))


def write_db(path: Path, columns: Columns, text_size: int) -> None:
    """The SQLite maps of a scan, through a temp name (renamed last: a present database is complete)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        _write_db(tmp, columns, text_size)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_db(path: Path, c: Columns, text_size: int) -> None:
    con = sqlite3.connect(path)
    try:
        con.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
            "CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT);"
            "CREATE TABLE stanza(id INTEGER PRIMARY KEY, name TEXT, essential INT, descr TEXT, start INT, len INT);"
            "CREATE TABLE provides(name TEXT, id INT);"
        )
        con.executemany("INSERT INTO stanza VALUES (?,?,?,?,?,?)",
                        zip(range(len(c)), c.names, c.essential, c.descriptions, c.starts, c.lengths, strict=True))
        con.executemany("INSERT INTO provides VALUES (?,?)", c.provides)
        con.execute("CREATE INDEX stanza_name ON stanza(name)")
        con.execute("CREATE INDEX provides_name ON provides(name)")
        con.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        con.execute("INSERT INTO meta VALUES ('text_size', ?)", (str(text_size),))
        con.commit()
    finally:
        con.close()


