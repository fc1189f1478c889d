"""Verified ``Packages`` files → a ``PackageIndex`` that answers by name, by provided name and by Essential.

A resolve touches a few hundred stanzas, not the 63,000 of bookworm main, so the index never parses them all:
once per verified Packages digest, a single pass over the raw text records where each stanza is and which
names it defines or provides, into an SQLite file in the cache (``index/<sha256>.idx``; stdlib, atomic rename,
milliseconds to open) next to the decompressed text (``index/<sha256>.idx.txt``, read with pread).
Stanzas are parsed with python-debian only when asked for, and kept per index object.

The process that meets a Packages file first scans it as it decompresses it into the text file (on two cores
when it is large), answers from the scan and that file, and leaves writing the database to a detached child:
a cold compose does not wait for the database.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from rootfs_forge.archive.cache import Cache
from rootfs_forge.archive.release import IndexFile
from rootfs_forge.errors import IndexError_
from rootfs_forge.index.scan import (
    SCHEMA_VERSION,
    Columns,
    build_index_compressed,
)
from rootfs_forge.model import Package
from rootfs_forge.util.deb822 import Deb822

MANDATORY = ("Package", "Version", "Architecture", "Filename", "Size", "SHA256")
MAX_DEB_SIZE = 4 << 30  # no Debian package is 4 GiB; a larger Size is a hostile or broken index
VERSION_RE = re.compile(r"^(\d+:)?[A-Za-z0-9][A-Za-z0-9.+~:-]*$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


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
    in the same order, as the database gives. Stanzas are read from the text file the scan wrote."""

    def __init__(self, file: IndexFile, columns: Columns, text_fd: int) -> None:
        super().__init__(file)
        self.c = columns
        self.text_fd = text_fd
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
        return os.pread(self.text_fd, length, start)

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

    def close(self) -> None:
        os.close(self.text_fd)


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
                            with cache.blob_path(f.sha256).open("rb") as raw:
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

    def names(self) -> set[str]:
        """Every package name (for "did you mean" suggestions)."""
        return {name for part in self._parts for _, name, _, _, _ in part.described()}

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
