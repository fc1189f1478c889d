"""Verified ``Packages`` files → a ``PackageIndex`` that answers by name, by provided name and by Essential.

A resolve touches a few hundred stanzas, not the 63,000 of bookworm main, so the index never parses them all:
once per verified Packages digest, a single pass over the raw text records where each stanza is and which
names it defines or provides, into an SQLite file in the cache (``index/<sha256>.idx``; stdlib, atomic rename,
milliseconds to open) next to the decompressed text (``index/<sha256>.idx.txt``, read with pread).
Stanzas are parsed with python-debian only when asked for, and kept per index object.
"""

from __future__ import annotations

import contextlib
import gzip
import lzma
import os
import queue
import re
import sqlite3
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debian.deb822 import Deb822

from rootfs_forge.archive import IndexFile
from rootfs_forge.cache import Cache
from rootfs_forge.errors import IndexError_
from rootfs_forge.model import Package

SCHEMA_VERSION = 3
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


def scan_stanzas(text: bytes) -> Iterator[tuple[int, int, bytes, list[bytes], bool, bytes]]:
    """Yield (start, end, name, provided names, essential, short description) for every stanza.

    Pure and fast: bytes.find over the raw text within each stanza's bounds (no copies), no field parsing
    beyond the four fields the maps need. 63,000 stanzas: the loop body is kept free of function calls.
    """
    find, startswith = text.find, text.startswith
    pos = 0
    n = len(text)
    fields = [(name + b":", b"\n" + name + b":") for name in (b"Package", b"Provides", b"Essential", b"Description")]
    while pos < n:
        while pos < n and text[pos] in b"\n\r":
            pos += 1
        if pos >= n:
            break
        end = find(b"\n\n", pos)
        if end < 0:
            end = n
        values = []
        for head, needle in fields:  # the first "Name:" line of the stanza, as _field finds it
            if startswith(head, pos):
                i = pos + len(head)
            else:
                i = find(needle, pos, end)
                if i < 0:
                    values.append(b"")
                    continue
                i += len(needle)
            j = find(b"\n", i, end)
            values.append(text[i:end if j < 0 else j])
        name, prov, essential, desc = values
        provides: list[bytes] = []
        if prov:
            for item in prov.split(b","):
                word = item.strip().split(b" ", 1)[0].split(b"(", 1)[0].split(b":", 1)[0]
                if word:
                    provides.append(word)
        yield pos, end, name.strip(), provides, essential.strip().lower() == b"yes", desc.strip()
        pos = end + 2


def build_index(text: bytes, db_path: Path) -> None:
    """Write the index of a decompressed Packages text: ``<db>`` (SQLite maps) and ``<db>.txt`` (the text)."""
    build_index_streamed(iter((text,)), db_path)


def build_index_compressed(raw: bytes, compression: str, what: str, db_path: Path) -> None:
    """Like :func:`build_index` from the Packages file as downloaded: one thread decompresses (the codecs
    release the GIL) and writes the text while this one scans the stanzas already complete."""
    pieces: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=16)

    def produce() -> None:
        try:
            for piece in _decompressed(raw, compression, what):
                pieces.put(piece)
            pieces.put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            pieces.put(exc)

    def consume() -> Iterator[bytes]:
        while True:
            item = pieces.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    producer = threading.Thread(target=produce, name="index-decompress", daemon=True)
    producer.start()
    try:
        build_index_streamed(consume(), db_path)
    finally:
        while producer.is_alive():  # unblock a producer waiting on a full queue after a failure
            with contextlib.suppress(queue.Empty):
                pieces.get_nowait()
            producer.join(0.01)


def _decompressed(raw: bytes, compression: str, what: str) -> Iterator[bytes]:
    step = 1 << 20
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


def build_index_streamed(chunks: Iterator[bytes], db_path: Path) -> None:
    """The index of a Packages text that arrives in ``chunks``: each chunk's complete stanzas are scanned as it
    comes, the text written as it comes.

    Both files go through temp names; the database is renamed last, so its presence means both are complete.
    """
    text_path = db_path.with_name(db_path.name + ".txt")
    tmp_text = text_path.with_name(text_path.name + ".tmp")
    tmp = db_path.with_name(db_path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    rows: list[tuple[int, str, int, str, int, int]] = []
    prov_rows: list[tuple[str, int]] = []

    def scan(text: bytes, base: int) -> None:
        for start, end, name, provides, essential, desc in scan_stanzas(text):
            i = len(rows)
            rows.append((i, name.decode("utf-8", "replace"), int(essential), desc.decode("utf-8", "replace"),
                         base + start, end - start))
            prov_rows.extend((p.decode("utf-8", "replace"), i) for p in provides)

    size = 0
    carry, base = b"", 0
    with open(tmp_text, "wb") as out:
        for chunk in chunks:
            out.write(chunk)
            size += len(chunk)
            buf = carry + chunk
            cut = buf.rfind(b"\n\n")
            while cut > 0 and buf[cut - 1] == 10:  # the first newline of the blank run ends the stanza
                cut -= 1
            if cut <= 0:
                carry = buf
                continue
            scan(buf[:cut], base)
            carry, base = buf[cut:], base + cut
        scan(carry, base)
    _write_db(tmp, rows, prov_rows, size)
    tmp_text.replace(text_path)
    tmp.replace(db_path)


def _write_db(path: Path, rows: list[tuple[int, str, int, str, int, int]], prov_rows: list[tuple[str, int]],
              text_size: int) -> None:
    con = sqlite3.connect(path)
    try:
        con.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
            "CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT);"
            "CREATE TABLE stanza(id INTEGER PRIMARY KEY, name TEXT, essential INT, descr TEXT, start INT, len INT);"
            "CREATE TABLE provides(name TEXT, id INT);"
        )
        con.executemany("INSERT INTO stanza VALUES (?,?,?,?,?,?)", rows)
        con.executemany("INSERT INTO provides VALUES (?,?)", prov_rows)
        con.execute("CREATE INDEX stanza_name ON stanza(name)")
        con.execute("CREATE INDEX provides_name ON provides(name)")
        con.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        con.execute("INSERT INTO meta VALUES ('text_size', ?)", (str(text_size),))
        con.commit()
    finally:
        con.close()


@dataclass
class _Part:
    file: IndexFile
    con: sqlite3.Connection
    text_fd: int

    def body(self, start: int, length: int) -> bytes:
        return os.pread(self.text_fd, length, start)


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
        parts = []
        for f in files:
            db = cache.index_path(f.sha256)
            if not _valid_db(db):
                with cache.lock(f"index-{f.sha256}"):
                    if not _valid_db(db):
                        raw = cache.blob_path(f.sha256).read_bytes()
                        build_index_compressed(raw, f.compression, f.label, db)
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False)
            fd = os.open(db.with_name(db.name + ".txt"), os.O_RDONLY | os.O_CLOEXEC)
            parts.append(_Part(f, con, fd))
        return cls(parts)

    def close(self) -> None:
        for p in self._parts:
            p.con.close()
            os.close(p.text_fd)

    @property
    def files(self) -> list[IndexFile]:
        return [p.file for p in self._parts]

    # --------------------------------------------------------------------------------------- IndexView

    def packages(self, name: str) -> Sequence[Package]:
        if name not in self._by_name:
            self._by_name[name] = self._query("SELECT id, start, len FROM stanza WHERE name = ?", (name,))
        return self._by_name[name]

    def providers(self, name: str) -> Sequence[Package]:
        if name not in self._by_provided:
            self._by_provided[name] = self._query(
                "SELECT s.id, s.start, s.len FROM provides p JOIN stanza s ON s.id = p.id WHERE p.name = ?", (name,)
            )
        return self._by_provided[name]

    def essential(self) -> Sequence[Package]:
        if self._essential is None:
            self._essential = self._query("SELECT id, start, len FROM stanza WHERE essential = 1", ())
        return self._essential

    # ------------------------------------------------------------------------------------------ extras

    def search(self, pattern: re.Pattern[str]) -> list[Package]:
        """Packages whose name or short description matches ``pattern`` (one stanza per name and version)."""
        hits: list[Package] = []
        for pi, part in enumerate(self._parts):
            for sid, name, descr, start, length in part.con.execute(
                    "SELECT id, name, descr, start, len FROM stanza"):
                if pattern.search(name) or pattern.search(descr):
                    hits.append(self._package(pi, sid, start, length))
        return hits

    def count(self) -> int:
        return sum(p.con.execute("SELECT count(*) FROM stanza").fetchone()[0] for p in self._parts)

    def _query(self, sql: str, params: tuple[object, ...]) -> list[Package]:
        out = []
        for pi, part in enumerate(self._parts):
            for sid, start, length in part.con.execute(sql, params):
                out.append(self._package(pi, sid, start, length))
        return out

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
    for field in MANDATORY:
        if not para.get(field, "").strip():
            raise IndexError_("read", what, f"missing mandatory field {field}")
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
