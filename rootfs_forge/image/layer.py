"""A rootfs directory → one deterministic OCI layer blob (tar, gzip or zstd), with its diff_id and digest.

The tar is written in the standard library ``tarfile``'s PAX format (so long and non-ASCII names get PAX
records; each header is ``TarInfo.tobuf``, the archive laid out as ``TarFile`` lays it out) from ``TarInfo``
values this module builds itself: entries in name order (the order of GNU tar
``--sort=name``: each directory's entries sorted bytewise, parents before children), mtimes clamped to the
epoch, numeric owners with empty user and group names, hard links kept as links, setuid/setgid/sticky bits
kept, device nodes and FIFOs kept, sockets left out.

The tar stream is cut into fixed 4 MiB chunks. gzip compresses the chunks in a thread pool (zlib releases the
GIL) the way pigz does: raw deflate per chunk, primed with the previous chunk's last 32 KiB, ended by a sync
flush, the last chunk finished, all under one hand-written gzip header (mtime 0, no name, OS 255) and one
CRC-32 trailer. The result is a single ordinary gzip member whose bytes depend only on the input and the
level, never on the number of threads. zstd uses the ``zstandard`` library's own worker threads (libzstd's
streaming multi-thread mode, whose output is the same for any number of workers >= 1; we always ask for at
least one).

Both digests are computed in the same pass: diff_id over the tar, digest over the compressed bytes as they
reach the blob file. The blob is written to a temp name in ``blobs/sha256``, fsynced and renamed to its
digest.
"""

from __future__ import annotations

import collections
import hashlib
import os
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

from rootfs_forge.errors import ImageError
from rootfs_forge.util import inflate

Compression = Literal["gzip", "zstd", "none"]

MEDIA_TYPES: dict[str, str] = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
# Levels chosen by measurement on 105 MB of shared libraries, two cores (tar input MB/s, blob size):
#   zstd 3: 223 MB/s, 36.0 MB      gzip 1: 91 MB/s, 43.7 MB      gzip 6: 31 MB/s, 39.8 MB
# zstd 3 is the default: the only choice that writes a 100 MB layer in well under a second and also the
# smallest. gzip 1 is the choice for consumers without zstd support (docker < 23, old containerd).
DEFAULT_COMPRESSION: Compression = "zstd"
DEFAULT_LEVELS: dict[str, int] = {"gzip": 1, "zstd": 3, "none": 0}
CHUNK_SIZE = 4 << 20  # bytes of tar per compression job; fixed, so the output does not depend on the pool
_WINDOW = 32 << 10  # deflate window: the dictionary each chunk inherits from the one before
_COPY_BUFSIZE = 1 << 20

Owners = Mapping[str, tuple[int, int, int]]  # "usr/bin/x" -> (uid, gid, mode)
Xattrs = Mapping[str, tuple[tuple[str, bytes], ...]]  # "usr/bin/x" -> sorted (name, value) extended attributes


@dataclass(frozen=True, slots=True)
class LayerBlob:
    """One written layer: ``digest`` names the blob, ``diff_id`` the uncompressed tar (``sha256:<hex>``)."""

    digest: str
    diff_id: str
    size: int  # bytes of the blob as stored
    media_type: str
    path: Path  # blobs/sha256/<hex> inside the layout it was written to
    diff_size: int = 0  # bytes of the uncompressed tar


# ---------------------------------------------------------------------------------------------------------
# pure part: which entries, in which order, with which header
# ---------------------------------------------------------------------------------------------------------


def sort_key(path: str) -> tuple[bytes, ...]:
    """The order of entries: component by component, bytewise (GNU tar ``--sort=name``)."""
    return tuple(os.fsencode(part) for part in path.split("/"))


def with_parents(paths: Iterable[str]) -> list[str]:
    """``paths`` normalised (no leading ``/`` or ``./``), plus every ancestor directory, in layer order."""
    out: set[str] = set()
    for raw in paths:
        norm = os.path.normpath(raw.lstrip("/")) if raw.strip("/.") else ""
        if norm in ("", ".") or norm == ".." or norm.startswith("../"):
            continue
        parts = norm.split("/")
        for i in range(1, len(parts) + 1):
            out.add("/".join(parts[:i]))
    return sorted(out, key=sort_key)


def tar_header(
    name: str,
    st: os.stat_result,
    *,
    epoch: int,
    owner: tuple[int, int, int] | None,
    linkname: str = "",
    hardlink_to: str | None = None,
) -> tarfile.TarInfo | None:
    """The header for one entry, or None for what a layer cannot carry (sockets)."""
    mode = st.st_mode
    info = tarfile.TarInfo(name)
    if hardlink_to is not None:
        info.type = tarfile.LNKTYPE
        info.linkname = hardlink_to
    elif stat.S_ISREG(mode):
        info.type = tarfile.REGTYPE
        info.size = st.st_size
    elif stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        info.type = tarfile.SYMTYPE
        info.linkname = linkname
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        info.devmajor = os.major(st.st_rdev)
        info.devminor = os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
    else:
        return None
    uid, gid, perm = (st.st_uid, st.st_gid, stat.S_IMODE(mode)) if owner is None else owner
    info.mode = 0o777 if info.type == tarfile.SYMTYPE else perm & 0o7777
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    info.mtime = min(int(st.st_mtime), epoch)
    return info


_MAX_ID = 8**7  # uid and gid: 7 octal digits in a ustar header
_MAX_NUM = 8**11  # size and mtime: 11
_PLAIN_TYPES = frozenset((tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE))


def header_bytes(info: tarfile.TarInfo) -> bytes:
    """``info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")``, the same bytes, built directly for the
    entries of nearly every layer: no PAX record needed (ASCII names and link targets that fit their fields,
    numbers that fit theirs, no xattrs), no device numbers. ``tobuf`` copies the header into a dict, checks
    every field for a PAX record and packs it with ``struct``: a fifth of a warm layer's tar time. Anything else
    still goes through ``tobuf``; a property test holds the two to the same bytes."""
    name, link, uname, gname = info.name, info.linkname, info.uname, info.gname
    kind = info.type
    if kind == tarfile.DIRTYPE and not name.endswith("/"):
        name += "/"
    uid, gid, size, mtime = info.uid, info.gid, info.size, info.mtime
    if (info.pax_headers or kind not in _PLAIN_TYPES or len(name) > 100 or len(link) > 100
            or len(uname) > 32 or len(gname) > 32 or not (name + link + uname + gname).isascii()
            or type(mtime) is not int or not (0 <= uid < _MAX_ID and 0 <= gid < _MAX_ID
                                              and 0 <= size < _MAX_NUM and 0 <= mtime < _MAX_NUM)):
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    head = b"%s%07o\0%07o\0%07o\0%011o\0%011o\0        %s%sustar\x0000%s%s" % (
        name.encode().ljust(100, b"\0"), info.mode & 0o7777, uid, gid, size, mtime, kind,
        link.encode().ljust(100, b"\0"), uname.encode().ljust(32, b"\0"), gname.encode().ljust(32, b"\0"))
    head += bytes(512 - len(head))  # device numbers, prefix and padding: all NUL
    return b"%s%06o\0 %s" % (head[:148], sum(head), head[156:])


def with_xattrs(info: tarfile.TarInfo, xattrs: tuple[tuple[str, bytes], ...]) -> tarfile.TarInfo:
    """``info`` carrying ``xattrs`` as PAX ``SCHILY.xattr.NAME`` records, as GNU tar, BuildKit and umoci write
    them (values are raw bytes: the layer's tarfile encodes them back with ``surrogateescape``)."""
    if xattrs and info.type in (tarfile.REGTYPE, tarfile.DIRTYPE):
        info.pax_headers = {f"SCHILY.xattr.{name}": value.decode("utf-8", "surrogateescape")
                            for name, value in xattrs}
    return info


# ---------------------------------------------------------------------------------------------------------
# I/O: walking the tree
# ---------------------------------------------------------------------------------------------------------


def _walk(root: Path) -> Iterator[str]:
    """Every path under ``root`` (relative, without the root itself), in layer order, not following links."""
    stack: list[tuple[str, Iterator[tuple[str, bool]]]] = [("", iter(_sorted_entries(root)))]
    while stack:
        prefix, entries = stack[-1]
        item = next(entries, None)
        if item is None:
            stack.pop()
            continue
        name, is_dir = item
        rel = prefix + name
        yield rel
        if is_dir:
            stack.append((rel + "/", iter(_sorted_entries(os.path.join(root, rel)))))


def _sorted_entries(directory: str | Path) -> list[tuple[str, bool]]:
    """(name, is a real directory) of every entry, sorted bytewise."""
    try:
        with os.scandir(directory) as it:
            found = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    except OSError as exc:
        raise ImageError("write layer", str(directory), exc.strerror or str(exc)) from exc
    return sorted(found, key=lambda item: os.fsencode(item[0]))


def headers(
    root: Path, *, paths: Iterable[str] | None, epoch: int, owners: Owners | None, xattrs: Xattrs | None = None
) -> Iterator[tarfile.TarInfo]:
    """The tar headers of the layer in order; regular files' ``size`` is their size on disk."""
    names: Iterable[str] = _walk(root) if paths is None else with_parents(paths)
    first_by_inode: dict[tuple[int, int], str] = {}
    base = os.fspath(root)  # paths as strings: a Path per entry costs more than the lstat
    dirs = {""}  # real directories seen so far: a path is only read through these, never through a symlink
    for rel in names:
        if rel.rpartition("/")[0] not in dirs:
            raise ImageError("write layer", rel, "a parent is a symlink or not a directory")
        full = os.path.join(base, rel)
        try:
            st = os.lstat(full)
        except FileNotFoundError as exc:
            raise ImageError("write layer", rel, "no such path in the tree") from exc
        except OSError as exc:
            raise ImageError("write layer", rel, exc.strerror or str(exc)) from exc
        if stat.S_ISDIR(st.st_mode):
            dirs.add(rel)
        hardlink_to = None
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            hardlink_to = first_by_inode.setdefault((st.st_dev, st.st_ino), rel)
            if hardlink_to == rel:
                hardlink_to = None
        linkname = os.readlink(full) if stat.S_ISLNK(st.st_mode) else ""
        owner = owners.get(rel) if owners is not None else None
        info = tar_header(rel, st, epoch=epoch, owner=owner, linkname=linkname, hardlink_to=hardlink_to)
        if info is not None:
            yield with_xattrs(info, xattrs.get(rel, ())) if xattrs else info


Entry = tuple[tarfile.TarInfo, bytes]  # a header and its bytes in the tar


def layer_entries(root: Path, *, paths: Iterable[str] | None, epoch: int, owners: Owners | None,
                  xattrs: Xattrs | None = None) -> list[Entry]:
    """Every header of the layer in order, with its bytes: for a caller that needs them before the tar is written
    (``image/layershare.py`` keys a layer by them), so that the tar does not build them again."""
    return [(info, header_bytes(info)) for info in headers(root, paths=paths, epoch=epoch, owners=owners,
                                                           xattrs=xattrs)]


# ---------------------------------------------------------------------------------------------------------
# I/O: tar → compressor → blob file, hashed on the way
# ---------------------------------------------------------------------------------------------------------


class _Output:
    """The blob file plus the sha256 of every byte written to it."""

    def __init__(self, fh: BinaryIO, *, hashed: bool = True) -> None:
        self.fh = fh
        self.sha = hashlib.sha256() if hashed else None
        self.size = 0

    def write(self, data: bytes) -> None:
        if data:
            self.fh.write(data)
            if self.sha is not None:
                self.sha.update(data)
            self.size += len(data)


class _Codec:
    def feed(self, chunk: bytes) -> None:
        raise NotImplementedError

    def finish(self, tail: bytes) -> None:
        raise NotImplementedError


class _Plain(_Codec):
    def __init__(self, out: _Output) -> None:
        self.out = out

    def feed(self, chunk: bytes) -> None:
        self.out.write(chunk)

    def finish(self, tail: bytes) -> None:
        self.out.write(tail)


# deflates one chunk: (level, chunk, the previous chunk's last 32 KiB, is it the last chunk) -> raw deflate bytes
Deflate = Callable[[int, bytes, bytes, bool], bytes]


def deflate_chunk(level: int, chunk: bytes, prefix: bytes, last: bool) -> bytes:
    """One chunk of a pigz-style gzip layer: raw deflate primed with ``prefix``, ended by a sync flush (or
    finished, for the last chunk)."""
    comp = (
        zlib.compressobj(level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, prefix)
        if prefix
        else zlib.compressobj(level, zlib.DEFLATED, -15, 9)
    )
    return comp.compress(chunk) + comp.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


class _ParallelGzip(_Codec):
    """pigz-style single-member gzip: chunks deflated in parallel, written in order."""

    HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no flags, mtime 0, XFL 0, OS unknown

    def __init__(self, out: _Output, level: int, threads: int, deflate: Deflate | None = None) -> None:
        self.out = out
        self.level = level
        self.deflate = deflate or deflate_chunk
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="forge-gzip")
        self.pending: collections.deque[Future[bytes]] = collections.deque()
        self.limit = max(1, threads) * 2
        self.crc = 0
        self.isize = 0
        self.prefix = b""
        out.write(self.HEADER)

    def _submit(self, chunk: bytes, last: bool) -> None:
        self.crc = inflate.crc32(chunk, self.crc)
        self.isize += len(chunk)
        self.pending.append(self.pool.submit(self.deflate, self.level, chunk, self.prefix, last))
        self.prefix = chunk[-_WINDOW:]
        while len(self.pending) > self.limit:
            self.out.write(self.pending.popleft().result())

    def feed(self, chunk: bytes) -> None:
        self._submit(chunk, last=False)

    def finish(self, tail: bytes) -> None:
        self._submit(tail, last=True)
        while self.pending:
            self.out.write(self.pending.popleft().result())
        self.out.write(
            (self.crc & 0xFFFFFFFF).to_bytes(4, "little") + (self.isize & 0xFFFFFFFF).to_bytes(4, "little")
        )
        self.close()

    def close(self) -> None:
        for fut in self.pending:
            fut.cancel()
        self.pool.shutdown(wait=True)


class _Zstd(_Codec):
    def __init__(self, out: _Output, level: int, threads: int) -> None:
        import zstandard  # optional dependency: only needed for zstd layers

        self.out = out
        cctx = zstandard.ZstdCompressor(level=level, threads=max(1, threads), write_content_size=False)
        self.comp = cctx.compressobj()

    def feed(self, chunk: bytes) -> None:
        self.out.write(self.comp.compress(chunk))

    def finish(self, tail: bytes) -> None:
        self.out.write(self.comp.compress(tail))
        self.out.write(self.comp.flush())


class _Sink(Protocol):
    def write(self, data: bytes) -> int: ...

    def tell(self) -> int: ...


class OrderedSha256:
    """sha256 of the blocks given to :meth:`update`, in order, computed on a thread of its own (sha256 lets go
    of the interpreter lock) while the caller goes on producing them. At most ``PENDING`` blocks wait: a
    producer faster than the hash waits for it instead of holding the whole stream in memory."""

    PENDING = 4

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forge-diff-id")
        self._pending: collections.deque[Future[None]] = collections.deque()

    def update(self, block: bytes) -> None:
        self._pending.append(self._pool.submit(self.sha.update, block))
        while len(self._pending) > self.PENDING:
            self._pending.popleft().result()

    def close(self) -> None:
        """Wait for every block: ``sha`` then holds the digest of all of them."""
        self._pool.shutdown(wait=True)
        self._pending.clear()


class _TarSink:
    """The file object ``tarfile`` writes to: hashes the tar (the diff_id, an :class:`OrderedSha256`: an
    uncompressed layer's codec never makes this one wait, so the hash's own bound is what keeps a large layer
    out of memory) and hands fixed-size chunks to the codec."""

    def __init__(self, codec: _Codec) -> None:
        self.codec = codec
        self.hasher = OrderedSha256()
        self.offset = 0
        self.buf = bytearray()

    def write(self, data: bytes) -> int:
        self.buf += data
        self.offset += len(data)
        if len(self.buf) >= CHUNK_SIZE:
            view = memoryview(self.buf)
            whole = len(self.buf) - len(self.buf) % CHUNK_SIZE
            for start in range(0, whole, CHUNK_SIZE):
                chunk = bytes(view[start : start + CHUNK_SIZE])
                self.hasher.update(chunk)
                self.codec.feed(chunk)
            view.release()
            del self.buf[:whole]
        return len(data)

    def tell(self) -> int:
        return self.offset

    def close(self) -> None:
        tail = bytes(self.buf)
        self.buf.clear()
        self.hasher.update(tail)
        try:
            self.codec.finish(tail)
        finally:
            self.hasher.close()


def _codec(out: _Output, compression: str, level: int, threads: int, deflate: Deflate | None = None) -> _Codec:
    if compression == "gzip":
        return _ParallelGzip(out, level, threads, deflate)
    if compression == "zstd":
        return _Zstd(out, level, threads)
    return _Plain(out)


def write_tar(
    sink: _Sink,
    root: Path,
    *,
    paths: Iterable[str] | None = None,
    epoch: int = 0,
    owners: Owners | None = None,
    xattrs: Xattrs | None = None,
    entries: Iterable[Entry] | None = None,
) -> None:
    """Write the layer tar of ``root`` into ``sink`` (anything with ``write`` and ``tell``); ``xattrs``: the
    extended attributes of paths (from the tree's record, never read from disk). ``entries``: the headers with
    their bytes, when the caller already has them from :func:`layer_entries` (``paths``, ``epoch``, ``owners``
    and ``xattrs`` are then not used).

    The bytes are those of ``tarfile.TarFile(fileobj=sink, mode="w", format=PAX_FORMAT, encoding="utf-8",
    errors="surrogateescape")`` adding each header (and a regular file's content) and closing: every header is
    ``TarInfo.tobuf`` with those arguments (built by :func:`header_bytes`), content is padded to 512-byte
    blocks, the archive ends with two zero blocks, padded to a 10240-byte record. Written here without
    ``TarFile``, which copies every header and keeps a member list, work a layer of thousands of entries does
    not need."""
    base = os.fspath(root)
    write = sink.write
    if entries is None:
        entries = ((i, header_bytes(i)) for i in headers(root, paths=paths, epoch=epoch, owners=owners, xattrs=xattrs))
    for info, head in entries:
        if info.type != tarfile.REGTYPE:
            write(head)
            continue
        size = info.size
        pad = tarfile.NUL * (-size % tarfile.BLOCKSIZE)
        try:
            fd = os.open(os.path.join(base, info.name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                if size <= _COPY_BUFSIZE:  # nearly every file: header, content and padding in one write
                    data = os.read(fd, size) if size else b""
                    while len(data) < size:  # a short read: rare for a regular file, but not an error
                        more = os.read(fd, size - len(data))
                        if not more:
                            raise OSError("unexpected end of data")
                        data += more
                    write(b"".join((head, data, pad)))
                    continue
                write(head)
                left = size
                while left:
                    data = os.read(fd, min(left, _COPY_BUFSIZE))
                    if not data:
                        raise OSError("unexpected end of data")
                    write(data)
                    left -= len(data)
            finally:
                os.close(fd)
        except OSError as exc:  # unreadable, or shrank while we read it
            raise ImageError("write layer", info.name, exc.strerror or str(exc)) from exc
        if pad:
            write(pad)
    write(tarfile.NUL * (2 * tarfile.BLOCKSIZE))
    write(tarfile.NUL * (-sink.tell() % tarfile.RECORDSIZE))  # empty when the record is full


def write_layer(
    root: Path,
    out_dir: Path,
    *,
    paths: Iterable[str] | None = None,
    epoch: int,
    compression: Compression = DEFAULT_COMPRESSION,
    owners: Owners | None = None,
    threads: int = 2,
    level: int | None = None,
    xattrs: Xattrs | None = None,
    deflate: Deflate | None = None,
    entries: Iterable[Entry] | None = None,
) -> LayerBlob:
    """Write ``root`` (or only ``paths`` and their parent directories) as a layer blob into ``out_dir``.

    ``out_dir`` is an OCI layout directory (or its staging copy); the blob lands in ``out_dir/blobs/sha256``.
    ``owners`` overrides (uid, gid, mode) per path; paths it does not name take them from ``lstat``.
    ``deflate``: what deflates a gzip chunk instead of :func:`deflate_chunk` (the same bytes, e.g. from
    ``layercache.ChunkCache``). ``entries``: the layer's headers from :func:`layer_entries`, when the caller has them.
    """
    if compression not in MEDIA_TYPES:
        raise ImageError("write layer", str(root), f"unknown compression {compression!r} (gzip, zstd, none)")
    if not root.is_dir():
        raise ImageError("write layer", str(root), "not a directory")
    lvl = DEFAULT_LEVELS[compression] if level is None else level
    blob_dir = out_dir / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-layer-", dir=blob_dir)
    tmp = Path(tmp_name)
    codec: _Codec | None = None
    sink: _TarSink | None = None
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as fh:
            out = _Output(fh, hashed=compression != "none")  # uncompressed: the digest is the diff_id
            codec = _codec(out, compression, lvl, threads, deflate)
            sink = _TarSink(codec)
            write_tar(sink, root, paths=paths, epoch=epoch, owners=owners, xattrs=xattrs, entries=entries)
            sink.close()
            fh.flush()
            os.fsync(fh.fileno())
        digest = (out.sha or sink.hasher.sha).hexdigest()
        final = blob_dir / digest
        os.replace(tmp, final)
        fsync_dir(blob_dir)
    except BaseException:
        if isinstance(codec, _ParallelGzip):
            codec.close()
        if sink is not None:
            sink.hasher.close()
        tmp.unlink(missing_ok=True)
        raise
    return LayerBlob(
        digest="sha256:" + digest,
        diff_id="sha256:" + sink.hasher.sha.hexdigest(),
        size=out.size,
        media_type=MEDIA_TYPES[compression],
        path=final,
        diff_size=sink.offset,
    )


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
