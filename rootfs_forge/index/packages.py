"""Verified ``Packages`` files → a ``PackageIndex`` that answers by name, by provided name and by Essential.

A resolve touches a few hundred stanzas, not the 63,000 of bookworm main, so the index never parses them all:
once per verified Packages digest, a single pass over the raw text records where each stanza is and which
names it defines or provides, into an SQLite file in the cache (``index/<sha256>.idx``; stdlib, atomic rename,
milliseconds to open) next to the decompressed text (``index/<sha256>.idx.txt``, read with pread).
Stanzas are parsed with python-debian only when asked for, and kept per index object.

The process that meets a Packages file first scans it (on two cores when it is large), answers from the scan
and the text in memory, and leaves writing both files to a detached child: a cold compose does not wait
for the database.
"""

from __future__ import annotations

import bisect
import functools
import gzip
import lzma
import os
import re
import sqlite3
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from debian.deb822 import Deb822

from rootfs_forge.archive.cache import Cache
from rootfs_forge.archive.release import IndexFile
from rootfs_forge.errors import IndexError_
from rootfs_forge.model import Package
from rootfs_forge.util.forked import Forked, can_fork, detach

SCHEMA_VERSION = 3
BACKGROUND_DB_MIN = 8 << 20  # text bytes from which a fresh index's database is written in the background
PARALLEL_SCAN_MIN = 2 << 20  # compressed bytes from which a child process scans part of the text
DECOMPRESS_STEP = 1 << 20  # compressed bytes decompressed at a time
MANDATORY = ("Package", "Version", "Architecture", "Filename", "Size", "SHA256")
MAX_DEB_SIZE = 4 << 30  # no Debian package is 4 GiB; a larger Size is a hostile or broken index
VERSION_RE = re.compile(r"^(\d+:)?[A-Za-z0-9][A-Za-z0-9.+~:-]*$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


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


Row = tuple[int, int, int]  # stanza number, start, length


class _Part:
    """One Packages file of an index: its text and the maps over it."""

    def __init__(self, file: IndexFile) -> None:
        self.file = file

    def body(self, start: int, length: int) -> bytes:
        raise NotImplementedError

    def named(self, name: str) -> list[Row]:
        raise NotImplementedError

    def providing(self, name: str) -> list[Row]:
        raise NotImplementedError

    def essential(self) -> list[Row]:
        raise NotImplementedError

    def described(self) -> Iterator[tuple[int, str, str, int, int]]:
        """(stanza number, name, short description, start, length) of every stanza, in text order."""
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _SqlPart(_Part):
    """The maps as the SQLite database a build left in the cache."""

    def __init__(self, file: IndexFile, text_fd: int, con: sqlite3.Connection) -> None:
        super().__init__(file)
        self.text_fd = text_fd
        self.con = con

    def body(self, start: int, length: int) -> bytes:
        return os.pread(self.text_fd, length, start)

    def named(self, name: str) -> list[Row]:
        return self.con.execute("SELECT id, start, len FROM stanza WHERE name = ?", (name,)).fetchall()

    def providing(self, name: str) -> list[Row]:
        return self.con.execute("SELECT s.id, s.start, s.len FROM provides p JOIN stanza s ON s.id = p.id "
                                "WHERE p.name = ?", (name,)).fetchall()

    def essential(self) -> list[Row]:
        return self.con.execute("SELECT id, start, len FROM stanza WHERE essential = 1").fetchall()

    def described(self) -> Iterator[tuple[int, str, str, int, int]]:
        yield from self.con.execute("SELECT id, name, descr, start, len FROM stanza")

    def count(self) -> int:
        return int(self.con.execute("SELECT count(*) FROM stanza").fetchone()[0])

    def close(self) -> None:
        self.con.close()
        os.close(self.text_fd)


class _MemoryPart(_Part):
    """The maps of a scan this process just made (its database is being written meanwhile): the same rows,
    in the same order, as the database gives."""

    def __init__(self, file: IndexFile, columns: Columns, text: bytes) -> None:
        super().__init__(file)
        self.c = columns
        self.text = text
        names = columns.names
        # first and last stanza of each name, built in C; a name's other stanzas lie between the two
        self._last = dict(zip(names, range(len(names)), strict=True))
        self._first = self._last
        if len(self._last) != len(names):
            self._first = dict(zip(reversed(names), range(len(names) - 1, -1, -1), strict=True))
        self._provided: dict[str, list[int]] = {}
        for n, i in columns.provides:
            self._provided.setdefault(n, []).append(i)

    def body(self, start: int, length: int) -> bytes:
        return self.text[start:start + length]

    def _rows(self, ids: Iterable[int]) -> list[Row]:
        return [(i, self.c.starts[i], self.c.lengths[i]) for i in ids]

    def named(self, name: str) -> list[Row]:
        last = self._last.get(name)
        if last is None:
            return []
        ids, i = [], self._first[name]
        while i < last:
            ids.append(i)
            i = self.c.names.index(name, i + 1, last + 1)
        ids.append(last)
        return self._rows(ids)

    def providing(self, name: str) -> list[Row]:
        return self._rows(self._provided.get(name, ()))

    def essential(self) -> list[Row]:
        return self._rows(i for i, e in enumerate(self.c.essential) if e)

    def described(self) -> Iterator[tuple[int, str, str, int, int]]:
        c = self.c
        yield from zip(range(len(c)), c.names, c.descriptions, c.starts, c.lengths, strict=True)

    def count(self) -> int:
        return len(self.c)


class PackageIndex:
    """An ``IndexView`` over several verified Packages files (sources × components × architectures)."""

    def __init__(self, parts: Sequence[_Part]) -> None:
        self._parts = list(parts)
        self._parsed: dict[tuple[int, int], Package] = {}
        self._by_name: dict[str, list[Package]] = {}
        self._by_provided: dict[str, list[Package]] = {}
        self._essential: list[Package] | None = None

    @classmethod
    def open(cls, files: Iterable[IndexFile], cache: Cache) -> PackageIndex:
        """The index of ``files``. A Packages file seen for the first time is scanned now, and its database
        written in the background (see :func:`build_index_compressed`) while this index answers from the scan."""
        parts: list[_Part] = []
        try:
            for f in files:
                db = cache.index_path(f.sha256)
                fresh = None
                if not _valid_db(db):
                    with cache.lock(f"index-{f.sha256}"):
                        if not _valid_db(db):
                            raw = cache.blob_path(f.sha256).read_bytes()
                            fresh = build_index_compressed(raw, f.compression, f.label, db, background=True)
                if fresh is not None:
                    parts.append(_MemoryPart(f, *fresh))
                    continue
                fd = os.open(db.with_name(db.name + ".txt"), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False)
                except BaseException:
                    os.close(fd)
                    raise
                parts.append(_SqlPart(f, fd, con))
        except BaseException:
            for part in parts:
                part.close()
            raise
        return cls(parts)

    def close(self) -> None:
        for p in self._parts:
            p.close()

    @property
    def files(self) -> list[IndexFile]:
        return [p.file for p in self._parts]

    # --------------------------------------------------------------------------------------- IndexView

    def packages(self, name: str) -> Sequence[Package]:
        if name not in self._by_name:
            self._by_name[name] = self._gather(lambda part: part.named(name))
        return self._by_name[name]

    def providers(self, name: str) -> Sequence[Package]:
        if name not in self._by_provided:
            self._by_provided[name] = self._gather(lambda part: part.providing(name))
        return self._by_provided[name]

    def essential(self) -> Sequence[Package]:
        if self._essential is None:
            self._essential = self._gather(lambda part: part.essential())
        return self._essential

    # ------------------------------------------------------------------------------------------ extras

    def search(self, pattern: re.Pattern[str]) -> list[Package]:
        """Packages whose name or short description matches ``pattern`` (one stanza per name and version)."""
        hits: list[Package] = []
        for pi, part in enumerate(self._parts):
            for sid, name, descr, start, length in part.described():
                if pattern.search(name) or pattern.search(descr):
                    hits.append(self._package(pi, sid, start, length))
        return hits

    def count(self) -> int:
        return sum(part.count() for part in self._parts)

    def _gather(self, rows: Callable[[_Part], list[Row]]) -> list[Package]:
        return [self._package(pi, sid, start, length)
                for pi, part in enumerate(self._parts) for sid, start, length in rows(part)]

    def _package(self, part_no: int, sid: int, start: int, length: int) -> Package:
        key = (part_no, sid)
        pkg = self._parsed.get(key)
        if pkg is None:
            part = self._parts[part_no]
            pkg = stanza_to_package(part.body(start, length), part.file)
            self._parsed[key] = pkg
        return pkg


def _valid_db(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            meta = dict(con.execute("SELECT k, v FROM meta").fetchall())
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return False
    text = path.with_name(path.name + ".txt")
    return (meta.get("schema") == str(SCHEMA_VERSION) and text.is_file()
            and str(text.stat().st_size) == meta.get("text_size"))


def stanza_to_package(body: bytes, origin: IndexFile) -> Package:
    """Parse one stanza with python-debian and validate what later stages rely on."""
    para = Deb822(body.decode("utf-8", "replace"))
    name = para.get("Package", "").strip()
    what = f"stanza {name or '(no Package field)'} in {origin.label}"
    for key in MANDATORY:
        if not para.get(key, "").strip():
            raise IndexError_("read", what, f"missing mandatory field {key}")
    version = para["Version"].strip()
    if not VERSION_RE.match(version):
        raise IndexError_("read", what, f"Version {version!r} is not a Debian version")
    sha = para["SHA256"].strip().lower()
    if not SHA256_RE.match(sha):
        raise IndexError_("read", what, f"SHA256 {sha!r} is not a SHA256 digest")
    size = _int(para, "Size", what)
    if not 0 < size < MAX_DEB_SIZE:
        raise IndexError_("read", what, f"Size {size} is absurd")
    inst = _int(para, "Installed-Size", what, default=0)
    if not 0 <= inst < MAX_DEB_SIZE // 1024 * 64:
        raise IndexError_("read", what, f"Installed-Size {inst} is absurd")
    filename = para["Filename"].strip()
    if filename.startswith("/") or ".." in filename.split("/"):
        raise IndexError_("read", what, f"Filename {filename!r} leaves the archive")
    return Package(
        name=name,
        version=version,
        architecture=para["Architecture"].strip(),
        filename=filename,
        size=size,
        sha256=sha,
        multi_arch=para.get("Multi-Arch", "no").strip() or "no",
        essential=para.get("Essential", "no").strip().lower() == "yes",
        priority=para.get("Priority", "optional").strip(),
        depends=para.get("Depends", ""),
        pre_depends=para.get("Pre-Depends", ""),
        recommends=para.get("Recommends", ""),
        conflicts=para.get("Conflicts", ""),
        breaks=para.get("Breaks", ""),
        provides=para.get("Provides", ""),
        replaces=para.get("Replaces", ""),
        installed_size=inst,
        source=para.get("Source", "").strip(),
        section=para.get("Section", "").strip(),
        description=para.get("Description", ""),
        origin=origin.entry.id,
        base_url=origin.entry.url,
        suite=origin.entry.suite,
    )


def _int(para: Deb822, field: str, what: str, default: int | None = None) -> int:
    raw = para.get(field, "").strip()
    if not raw and default is not None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise IndexError_("read", what, f"{field} {raw!r} is not a number") from None
