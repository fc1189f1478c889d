"""Read-only access to ``.deb`` files with libarchive-c: the control part and a stream of data members.

A ``.deb`` is an ``ar`` archive: ``debian-binary`` (``2.x``) first, then ``control.tar[.gz|.xz|.zst|.bz2]``,
then ``data.tar[...]``; members whose name starts with ``_`` may sit in between and are ignored, as dpkg does.
Anything else — not an ar, a truncated archive, members out of order, an unknown compression, a missing member
— is a :class:`~rootfs_forge.errors.DebError`.

The control tar is small and read into memory. The data tar is *streamed*: a second libarchive reader pulls its
compressed bytes block by block straight out of the outer ``ar`` reader (no copy of the member is kept), so a
large package never sits in memory and libarchive decompresses with the GIL released.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
from collections.abc import Generator, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libarchive
from libarchive import ffi
from libarchive.exception import ArchiveError
from libarchive.read import ArchiveRead, new_archive_read

from rootfs_forge.errors import DebError
from rootfs_forge.util.deb822 import Deb822

SCRIPT_NAMES = ("config", "postinst", "postrm", "preinst", "prerm", "triggers")

# member-name suffix -> libarchive read filter; anything else is refused
_FILTERS = {"": "none", ".gz": "gzip", ".xz": "xz", ".zst": "zstd", ".bz2": "bzip2"}
_DEBIAN_BINARY = re.compile(r"2\.\d+\n?")
_HEX = re.compile(r"[0-9a-fA-F]{32}")
_BLOCK = 1 << 16


@dataclass(frozen=True, slots=True)
class DebControl:
    """The control part of a package: fields, maintainer scripts and the other control files."""

    fields: dict[str, str]
    scripts: dict[str, str] = field(default_factory=dict)  # postinst, preinst, prerm, postrm, config, triggers
    conffiles: tuple[str, ...] = ()
    md5sums: str = ""
    shlibs: str | None = None
    triggers: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)  # every regular file of control.tar, raw

    @property
    def name(self) -> str:
        return self.fields["Package"]

    @property
    def version(self) -> str:
        return self.fields.get("Version", "")

    @property
    def architecture(self) -> str:
        return self.fields.get("Architecture", "")

    @property
    def multi_arch(self) -> str:
        return self.fields.get("Multi-Arch", "no").strip().lower() or "no"

    @property
    def installed_size(self) -> int:
        """``Installed-Size`` in KiB, 0 when absent or not a number."""
        value = self.fields.get("Installed-Size", "").strip()
        return int(value) if value.isdigit() else 0


@dataclass(slots=True, eq=False)
class DataMember:
    """One member of ``data.tar``. ``path`` is normalised: absolute, no ``.``/``..``/``//``; the root is ``/``.

    ``linkname`` is a symlink's target verbatim, or a hard link's target normalised like ``path``. The content
    of a regular file is read with :meth:`blocks` while the member is current, i.e. before the iterator from
    :func:`iter_data` advances; afterwards it raises ``DebError``.
    """

    path: str
    kind: str  # file | dir | symlink | hardlink | char | block | fifo | socket
    mode: int  # permission bits including setuid/setgid/sticky (0o7777)
    uid: int
    gid: int
    mtime: int
    size: int
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    _archive_p: Any = None
    _feed: Any = None
    _alive: bool = False

    def blocks(self) -> Iterator[bytes]:
        """The file's content in blocks as libarchive decodes them (one copy, from libarchive's buffer)."""
        if not self._alive:
            raise DebError("read", self._feed.deb if self._feed else "package",
                           f"content of {self.path} read after the next member")
        if self.kind != "file":
            return
        buf = ctypes.c_void_p()
        size = ctypes.c_size_t()
        offset = ctypes.c_longlong()
        pos = 0
        read_block = ffi.read_data_block
        try:
            while True:
                r = read_block(self._archive_p, ctypes.byref(buf), ctypes.byref(size), ctypes.byref(offset))
                if r == ffi.ARCHIVE_EOF:
                    break
                if offset.value > pos:  # a hole in a sparse member
                    yield bytes(offset.value - pos)
                    pos = offset.value
                if size.value:
                    yield ctypes.string_at(buf.value or 0, size.value)
                    pos += size.value
        except ArchiveError as exc:
            raise self._feed.error(exc, self.path) from None
        if pos < self.size:
            yield bytes(self.size - pos)

    def read(self) -> bytes:
        return b"".join(self.blocks())


def normalize_path(name: str) -> str:
    """``./usr//bin/../bin/x`` -> ``/usr/bin/x``. Raises ``ValueError`` when ``..`` climbs above the root."""
    out: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                raise ValueError(f"path {name!r} escapes the root")
            out.pop()
        else:
            out.append(part)
    return "/" + "/".join(out)


MEMBER_TABLE_SCHEMA = 1


def members_of(rows: Sequence[Sequence[Any]]) -> tuple[list[DataMember], dict[str, str]]:
    """DataMembers (without content: the scan needs none) and the md5s a member table carries."""
    members, md5s = [], {}
    for path, kind, mode, uid, gid, mtime, size, linkname, devmajor, devminor, md5 in rows:
        members.append(DataMember(str(path), str(kind), int(mode), int(uid), int(gid), int(mtime), int(size),
                                  str(linkname), int(devmajor), int(devminor)))
        if md5:
            md5s[str(path)] = str(md5)
    return members, md5s


def parse_md5sums(text: str) -> dict[str, str]:
    """A package's ``md5sums`` control file as {member path (normalised): md5 hex} (pure).

    Lines that do not read ``<32 hex digits>  <path>`` are left out: their files are then hashed on unpack.
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        digest, _, name = line.partition(" ")
        name = name.lstrip(" *")
        if len(digest) != 32 or not name or not _HEX.fullmatch(digest):
            continue
        try:
            out[normalize_path(name)] = digest.lower()
        except ValueError:
            continue
    return out


def read_control(path: Path | str) -> DebControl:
    """Fields, scripts and control files of the package at ``path``; validates the ``ar`` layout."""
    deb = str(path)
    files: dict[str, bytes] = {}
    with ExitStack() as stack:
        for name, outer_p in _members(deb, stack, stop_after="control"):
            with _inner_tar(deb, outer_p, name) as (feed, tar):
                for entry in _checked(feed, tar):
                    if _kind(entry) != "file":
                        continue
                    try:
                        member = normalize_path(_text_name(entry.pathname)).lstrip("/")
                        files[member] = b"".join(entry.get_blocks(_BLOCK))
                    except ValueError as exc:
                        raise DebError("read", deb, f"{name}: {exc}") from None
                    except ArchiveError as exc:
                        raise feed.error(exc) from None
    return control_from_files(deb, files)


def control_from_files(deb: str, files: dict[str, bytes]) -> DebControl:
    """The control part made of the regular files of a control.tar (``deb`` names it in errors)."""
    if "control" not in files:
        raise DebError("read", deb, "control.tar has no control file")
    try:
        fields = dict(Deb822(files["control"].decode("utf-8", "replace")))
    except Exception as exc:  # python-debian raises assorted errors on garbage
        raise DebError("read", deb, f"control file does not parse: {exc}") from None
    if not fields.get("Package"):
        raise DebError("read", deb, "control file has no Package field")

    def text(name: str) -> str | None:
        data = files.get(name)
        return None if data is None else data.decode("utf-8", "surrogateescape")

    scripts = {n: t for n in SCRIPT_NAMES if (t := text(n)) is not None}
    conffiles = tuple(line.strip() for line in (text("conffiles") or "").splitlines() if line.strip())
    return DebControl(fields=fields, scripts=scripts, conffiles=conffiles, md5sums=text("md5sums") or "",
                      shlibs=text("shlibs"), triggers=text("triggers"), files=files)


def iter_data(path: Path | str) -> Generator[DataMember, None, None]:
    """Stream the members of ``data.tar`` in archive order, validating the ``ar`` layout on the way.

    Close the iterator (or exhaust it) to release the archive; a ``for`` loop that finishes or a ``with
    contextlib.closing(...)`` does.
    """
    deb = str(path)
    with ExitStack() as stack:
        for name, outer_p in _members(deb, stack, stop_after="data"):
            if not name.startswith("data.tar"):
                continue
            with _inner_tar(deb, outer_p, name) as (feed, tar):
                yield from _live_members(deb, feed, tar)
                _drain(feed)  # the rest of the member (tar padding) must be there too: catches truncation


def iter_tar(tar: Path | str, deb: Path | str) -> Generator[DataMember, None, None]:
    """Like :func:`iter_data`, over a ``data.tar`` that :func:`extract_data_tar` already decompressed.

    ``deb`` names the package in errors. The members go through the same checks as :func:`iter_data`'s.
    """
    label = str(deb)
    feed = _Feed(label, None, "data.tar")
    try:
        reader = libarchive.file_reader(str(tar), format_name="tar", filter_name="none")
    except ArchiveError as exc:
        raise DebError("read", label, f"data.tar: {_reason(exc)}") from None
    with reader as archive:
        yield from _live_members(label, feed, archive)


def _live_members(label: str, feed: _Feed, reader: Any) -> Generator[DataMember, None, None]:
    """Members whose content is readable while they are current (``DataMember.blocks``), and not after."""
    for entry in _checked(feed, reader):
        member = _member(label, feed, entry)
        member._alive = True
        try:
            yield member
        finally:
            member._alive = False


def extract_data_tar(deb: Path | str, dest: Path | str, max_bytes: int | None = None) -> tuple[int, str]:
    """Write the decompressed ``data.tar`` of ``deb`` to ``dest`` (a new file); return its size and SHA256.

    The decompression runs in Python's codecs (they release the GIL); more than ``max_bytes`` of output is a
    decompression bomb and raises before the disk fills.
    """
    import bz2
    import lzma

    from rootfs_forge.util import inflate

    errors: tuple[type[Exception], ...] = (lzma.LZMAError, *inflate.ERRORS, OSError, ValueError)
    label = str(deb)
    with ExitStack() as stack:
        for name, outer_p in _members(label, stack, stop_after="data"):
            if not name.startswith("data.tar"):
                continue
            suffix = name[len("data.tar"):]
            codec: Any
            if suffix == ".xz":
                codec = lzma.LZMADecompressor()
            elif suffix == ".gz":
                codec = inflate.decompressobj(47)
            elif suffix == ".zst":
                import zstandard

                codec = zstandard.ZstdDecompressor().decompressobj()
            elif suffix == ".bz2":
                codec = bz2.BZ2Decompressor()
            else:
                codec = None
            feed = _Feed(label, outer_p, name)
            ptr = ctypes.c_void_p()
            written = 0
            digest = hashlib.sha256()
            with open(dest, "xb") as out:
                while (n := feed.read(None, None, ctypes.pointer(ptr))) > 0:
                    chunk = ctypes.string_at(ptr.value or 0, n)
                    try:
                        data = codec.decompress(chunk) if codec is not None else chunk
                    except errors as exc:
                        raise DebError("read", label, f"{name}: {exc}") from None
                    written += len(data)
                    if max_bytes is not None and written > max_bytes:
                        raise DebError("unpack", label, f"its data exceeds the limit of {max_bytes} bytes "
                                                        "(decompression bomb?)")
                    out.write(data)
                    digest.update(data)
                if n < 0 and feed.failure is not None:
                    raise feed.failure
                tail = codec.flush() if codec is not None and hasattr(codec, "flush") else b""
                out.write(tail)
                digest.update(tail)
                written += len(tail)
                if codec is not None and hasattr(codec, "eof") and not codec.eof:
                    raise DebError("read", label, f"{name}: truncated compressed stream")
            return written, digest.hexdigest()
    raise DebError("read", label, "missing member data.tar (truncated or not a .deb)")


# -- internals ---------------------------------------------------------------------------------------------


def _reason(exc: ArchiveError) -> str:
    msg = exc.msg.decode("utf-8", "replace") if isinstance(exc.msg, bytes) else str(exc.msg)
    lines = (msg or "").strip().splitlines()
    return lines[0] if lines else "libarchive error"


def _text_name(name: str | bytes | None) -> str:
    if name is None:
        return ""
    return os.fsdecode(name) if isinstance(name, bytes) else name


class _Feed:
    """Feeds an inner libarchive reader from the current member of the outer ``ar`` reader, zero-copy.

    libarchive calls :meth:`read` from C; an exception must not cross that boundary, so it is kept in
    ``failure`` and reported once libarchive gives up.
    """

    def __init__(self, deb: str, outer_p: Any, member: str) -> None:
        self.deb = deb
        self.outer_p = outer_p
        self.member = member
        self.failure: DebError | None = None
        self._buf = ctypes.c_void_p()
        self._size = ctypes.c_size_t()
        self._offset = ctypes.c_longlong()

    def read(self, _archive_p: Any, _context: Any, ptrptr: Any) -> int:
        try:
            r = ffi.read_data_block(self.outer_p, ctypes.byref(self._buf), ctypes.byref(self._size),
                                    ctypes.byref(self._offset))
            if r == ffi.ARCHIVE_EOF:
                return 0
            ptrptr[0] = self._buf.value
            return int(self._size.value)
        except ArchiveError as exc:
            self.failure = DebError("read", self.deb, f"{self.member}: {_reason(exc)}")
        except Exception as exc:  # pragma: no cover - defensive: nothing may escape into C
            self.failure = DebError("read", self.deb, f"{self.member}: {exc}")
        return -1

    def error(self, exc: ArchiveError, what: str = "") -> DebError:
        if self.failure is not None:
            return self.failure
        where = f"{self.member} {what}".strip()
        return DebError("read", self.deb, f"{where}: {_reason(exc)}")


def _drain(feed: _Feed) -> None:
    ptr = ctypes.c_void_p()
    while feed.read(None, None, ctypes.pointer(ptr)) > 0:
        pass
    if feed.failure is not None:
        raise feed.failure


def _checked(feed: _Feed, reader: Any) -> Iterator[Any]:
    """Iterate a libarchive reader, turning its errors into ``DebError``."""
    it = iter(reader)
    while True:
        try:
            entry = next(it)
        except StopIteration:
            return
        except ArchiveError as exc:
            raise feed.error(exc) from None
        yield entry


@contextmanager
def _inner_tar(deb: str, outer_p: Any, member: str) -> Iterator[tuple[_Feed, Any]]:
    feed = _Feed(deb, outer_p, member)
    # libarchive.custom_reader insists on a seek callback (5.3); an ar member cannot seek, so open directly.
    read_cb = ffi.READ_CALLBACK(feed.read)
    try:
        with new_archive_read("tar", _filter_for(deb, member)) as archive_p:
            ffi.read_open(archive_p, None, ffi.NO_OPEN_CB, read_cb, ffi.NO_CLOSE_CB)
            yield feed, ArchiveRead(archive_p)
    except ArchiveError as exc:
        raise feed.error(exc) from None


def _members(deb: str, stack: ExitStack, stop_after: str) -> Iterator[tuple[str, Any]]:
    """Yield ``(name, outer archive pointer)`` for control.tar* and data.tar*, checking order and names."""
    if not os.path.isfile(deb):
        raise DebError("read", deb, "no such file")
    try:
        ar = stack.enter_context(libarchive.file_reader(deb, format_name="ar", filter_name="none"))
    except ArchiveError as exc:
        raise DebError("read", deb, _reason(exc)) from None
    outer = _Feed(deb, ar._pointer, "ar archive")
    state = "start"  # start -> binary -> control -> data
    for entry in _checked(outer, ar):
        name = _text_name(entry.pathname).rstrip("/")
        if state == "start":
            if name != "debian-binary":
                raise DebError("read", deb, f"first member is {name!r}, not 'debian-binary'")
            try:
                version = b"".join(entry.get_blocks(_BLOCK))[:64].decode("ascii", "replace")
            except ArchiveError as exc:
                raise outer.error(exc) from None
            if not _DEBIAN_BINARY.fullmatch(version):
                raise DebError("read", deb, f"unsupported format version {version.strip()!r} (want 2.x)")
            state = "binary"
        elif name.startswith("_"):
            continue
        elif name.startswith("control.tar") and state == "binary":
            _filter_for(deb, name)
            state = "control"
            yield name, ar._pointer
            if stop_after == "control":
                return
        elif name.startswith("data.tar") and state == "control":
            _filter_for(deb, name)
            yield name, ar._pointer
            return
        elif name.startswith("data.tar") and state == "binary":
            raise DebError("read", deb, f"member {name!r} comes before control.tar")
        else:
            raise DebError("read", deb, f"unexpected member {name!r} after {state}")
    missing = {"start": "debian-binary", "binary": "control.tar", "control": "data.tar"}[state]
    raise DebError("read", deb, f"missing member {missing} (truncated or not a .deb)")


def _filter_for(deb: str, name: str) -> str:
    base = "control.tar" if name.startswith("control.tar") else "data.tar"
    suffix = name[len(base):]
    if suffix not in _FILTERS:
        raise DebError("read", deb, f"unsupported compression of member {name!r}")
    return _FILTERS[suffix]


def _kind(entry: Any) -> str:
    if entry.islnk:
        return "hardlink"
    ftype = entry.filetype & 0o170000
    return _KINDS.get(ftype, "unknown")


_KINDS = {0o100000: "file", 0o040000: "dir", 0o120000: "symlink", 0o020000: "char", 0o060000: "block",
          0o010000: "fifo", 0o140000: "socket"}


def _member(deb: str, feed: _Feed, entry: Any) -> DataMember:
    name = _text_name(entry.pathname)
    kind = _kind(entry)
    if kind == "unknown":
        raise DebError("read", deb, f"member {name!r} has an unknown file type")
    try:
        path = normalize_path(name)
        linkname = ""
        if kind == "hardlink":
            linkname = normalize_path(_text_name(entry.linkpath))
        elif kind == "symlink":
            linkname = _text_name(entry.linkpath)
            if not linkname:
                raise ValueError(f"symlink {name!r} has an empty target")
    except ValueError as exc:
        raise DebError("read", deb, str(exc)) from None
    return DataMember(
        path=path, kind=kind, mode=entry.mode & 0o7777, uid=int(entry.uid), gid=int(entry.gid),
        mtime=int(entry.mtime or 0), size=int(entry.size or 0) if kind == "file" else 0, linkname=linkname,
        devmajor=int(entry.rdevmajor) if kind in ("char", "block") else 0,
        devminor=int(entry.rdevminor) if kind in ("char", "block") else 0,
        _archive_p=entry._archive_p, _feed=feed,
    )
