"""Layers written once and copied after: within one gallery compose, and from one compose to the next.

A :class:`LayerShare` is a directory of layer blobs, each with its digests, keyed by the layer's content:

- **in the download cache** (:meth:`LayerShare.in_cache`, ``layer-blobs/v1/`` under the cache root): every OCI
  compose leaves its layers there and a later compose whose tree gives the same tar copies the blob instead of
  compressing the tar again. A warm re-compose of an unchanged recipe pays the tar's sha256, not its zstd or
  gzip (essential set, 54 MB tar: output 0.26 s -> ~0.1 s); ``--format oci`` costs what a directory costs.
- **for one gallery call** (:meth:`LayerShare.create`, a private 0700 directory beside the outputs, removed
  with the call), when the cache cannot take entries: recipes built on the same packages write byte-identical
  layers (the gallery's ``base``, ``base-nonroot``, ``cc`` and ``cc-nonroot`` all start with the same
  ``[[layer]]`` of glibc, libssl and their data, for each architecture), so each is written once a call.

Reuse is decided from the tree being written, never from how it was built:

- the key is the sha256 of the layer's parameters (compression, level, threads, the compressor's library
  version and the chunking scheme: everything a blob's bytes depend on besides its tar) and of every tar
  header of the layer in order (names, types, modes, owners, sizes, mtimes, link targets, extended
  attributes): two layers with one key can differ only in the bytes of their regular files;
- those bytes: the tree's tar is streamed through sha256 (nothing compressed) and must give the diff_id the
  writer published, so the tar is byte for byte the one that was compressed, and so is the blob (its bytes
  depend only on the tar and the parameters the key holds);
- the copy: the published blob is hashed while it is copied and must give the published digest, so a damaged,
  truncated or swapped blob never enters an image. Entries are opened without following a symlink or waiting
  on a FIFO, and only as regular files.

Anything else -- no entry, another content, a damaged copy, an error of the directory -- and the layer is
written as it would be without the share (and published for the next compose). A layer being written under
one key is waited for by a compose that needs the same key (one lock per key), so two twin recipes composed
at once write each shared layer once. The output is the same as without the share: same tar, same blob, same
digests (``tests/test_layershare.py``, ``tests/test_layer_blobs.py``, ``tests/test_gallery.py``).

What a reuse takes on trust is that the blob decompresses to that tar: forge wrote both when it compressed
the tar, and checking it again on every reuse means decompressing the layer, the cost the cache saves. This is
the trust the rest of the cache gets (an unpacked ``data.tar`` is reused without being hashed again): the
cache is guarded against damage and against two inputs sharing a name, not against a writer of the cache
directory, who could as well replace a package's unpacked files. ``forge cache verify`` decompresses every
blob and checks its diff_id; ``forge cache prune`` drops the entries (``--older-than DAYS``: those unused that
long; a reuse touches them); ``forge cache du`` counts them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rootfs_forge.image.layer import (
    CHUNK_SIZE,
    DEFAULT_LEVELS,
    MEDIA_TYPES,
    Compression,
    Deflate,
    Entry,
    LayerBlob,
    OrderedSha256,
    Owners,
    Xattrs,
    fsync_dir,
    layer_entries,
    write_layer,
    write_tar,
)
from rootfs_forge.util.files import open_cache_entry, write_atomic

LAYER_BLOBS_DIR = "layer-blobs"
FORMAT_VERSION = 1
_COPY = 1 << 20
_ENTRY_MAX = 64 << 10  # a published entry's JSON is ~300 bytes
_STALE_TEMP = 86400  # a temp name this old belongs to no live compose
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def layer_params(compression: str, level: int, threads: int) -> str:
    """Everything a layer blob's bytes depend on besides its tar (pure, but for the libraries' versions)."""
    if compression == "gzip":
        impl = f"zlib{zlib.ZLIB_RUNTIME_VERSION} pigz-chunks{CHUNK_SIZE}"
    elif compression == "zstd":
        import zstandard

        impl = "zstd" + ".".join(map(str, zstandard.ZSTD_VERSION))
    else:
        impl = "tar"
    return f"{compression} {level} {threads} {impl}"


def layer_key(compression: str, level: int, threads: int, entries: Sequence[Entry]) -> str:
    """The key of a layer: its parameters and every tar header, in order."""
    h = hashlib.sha256(f"forge-layer-share-v2 {layer_params(compression, level, threads)}\n".encode())
    for _, head in entries:
        h.update(head)
    return h.hexdigest()


class _HashSink:
    """Where :func:`write_tar` writes to compute a tar's diff_id without keeping or compressing it: hashed in
    1 MiB blocks by an :class:`OrderedSha256` while this thread goes on building the tar."""

    def __init__(self) -> None:
        self.hasher = OrderedSha256()
        self.offset = 0
        self.buf = bytearray()

    def write(self, data: bytes) -> int:
        self.buf += data
        self.offset += len(data)
        if len(self.buf) >= _COPY:
            self.hasher.update(bytes(self.buf))
            self.buf.clear()
        return len(data)

    def tell(self) -> int:
        return self.offset

    def hexdigest(self) -> str:
        """The tar's sha256, once it is all written."""
        self.close()
        return self.hasher.sha.hexdigest()

    def close(self) -> None:
        if self.buf:
            self.hasher.update(bytes(self.buf))
            self.buf.clear()
        self.hasher.close()


class LayerShare:
    """A directory of written layers: ``<key>.blob``, ``<key>.json`` (digest, diff_id, size, media type, tar
    size) and ``<key>.lock``. ``reused`` / ``written`` count this process's layers (a forked child starts with
    its parent's counts: read them as differences). ``persistent``: the download cache's, kept across composes
    (never removed; a reuse touches its entry's files for ``forge cache prune --older-than``)."""

    def __init__(self, root: Path, *, persistent: bool = False) -> None:
        self.root = Path(root)
        self.persistent = persistent
        self.reused = 0
        self.written = 0

    @classmethod
    def create(cls, parent: Path, prefix: str) -> LayerShare:
        """A private share for one call, in a new directory under ``parent``."""
        parent.mkdir(parents=True, exist_ok=True)
        return cls(Path(tempfile.mkdtemp(prefix=prefix, dir=parent)))  # mkdtemp: mode 0700

    @classmethod
    def in_cache(cls, cache_root: Path) -> LayerShare | None:
        """The download cache's share; None when the cache cannot hold one (read-only, not a directory)."""
        root = Path(cache_root) / LAYER_BLOBS_DIR / f"v{FORMAT_VERSION}"
        try:
            root.mkdir(parents=True, exist_ok=True)
            if root.is_symlink() or root.parent.is_symlink() or not os.access(root, os.W_OK):
                return None
        except OSError:
            return None
        return cls(root, persistent=True)

    def remove(self) -> None:
        if not self.persistent:
            shutil.rmtree(self.root, ignore_errors=True)

    def write_layer(self, root: Path, out_dir: Path, *, paths: Sequence[str] | None, epoch: int,
                    compression: Compression, owners: Owners | None, xattrs: Xattrs | None,
                    deflate: Deflate | None = None, threads: int = 2) -> LayerBlob:
        """:func:`rootfs_forge.image.layer.write_layer`'s blob, copied from the share when an earlier write
        left the very same layer there (see the module docstring)."""
        if compression not in MEDIA_TYPES or not root.is_dir():  # write_layer says what is wrong
            return write_layer(root, out_dir, paths=paths, epoch=epoch, compression=compression, owners=owners,
                               xattrs=xattrs, deflate=deflate, threads=threads)
        entries = layer_entries(root, paths=paths, epoch=epoch, owners=owners, xattrs=xattrs)
        key = layer_key(compression, DEFAULT_LEVELS[compression], threads, entries)
        with self._locked(key):
            published = self._published(key)
            if published is not None:
                blob = self._reuse(key, published, root, entries, out_dir, compression)
                if blob is not None:
                    self.reused += 1
                    return blob
            blob = write_layer(root, out_dir, entries=entries, epoch=epoch, compression=compression,
                               deflate=deflate, threads=threads)
            self.written += 1
            self._publish(key, blob)
            return blob

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        try:
            fd = os.open(self.root / f"{key}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
                         | os.O_NONBLOCK, 0o600)
        except OSError:  # the share is gone, or the name is taken by something else: write without it
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by close, or by the kernel if this process dies
            yield
        finally:
            os.close(fd)

    def _published(self, key: str) -> dict[str, object] | None:
        try:
            entry = json.loads(read_entry_file(self.root / f"{key}.json", _ENTRY_MAX))
        except (OSError, ValueError):
            return None
        return entry if isinstance(entry, dict) else None

    def _reuse(self, key: str, published: dict[str, object], root: Path, entries: Sequence[Entry],
               out_dir: Path, compression: Compression) -> LayerBlob | None:
        digest, diff_id = published.get("digest"), published.get("diff_id")
        if not (isinstance(digest, str) and _DIGEST.fullmatch(digest) and isinstance(diff_id, str)
                and published.get("media_type") == MEDIA_TYPES[compression]):
            return None
        hexdigest = digest[len("sha256:"):]
        source = self.root / f"{key}.blob"
        blob_dir = out_dir / "blobs" / "sha256"
        blob_dir.mkdir(parents=True, exist_ok=True)
        # the copy is made (and checked) while the tree's tar is hashed, and kept only if the tar is the same
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="forge-layer-copy") as pool:
            staged = pool.submit(_stage_verified, source, blob_dir, hexdigest)
            sink = _HashSink()
            try:
                write_tar(sink, root, entries=entries)
            except BaseException:
                sink.close()
                _discard(staged.result())
                raise
            tar_sha = sink.hexdigest()
            tmp = staged.result()
        if tmp is None:
            return None
        if f"sha256:{tar_sha}" != diff_id or sink.offset != published.get("diff_size"):
            _discard(tmp)
            return None
        final = blob_dir / hexdigest
        try:
            os.replace(tmp, final)
            fsync_dir(blob_dir)
        except OSError:
            _discard(tmp)
            return None
        if self.persistent:
            now = time.time()
            for used in (source, self.root / f"{key}.json"):
                with contextlib.suppress(OSError):
                    os.utime(used, (now, now), follow_symlinks=False)
        return LayerBlob(digest=digest, diff_id=diff_id, size=final.stat().st_size,
                         media_type=MEDIA_TYPES[compression], path=final, diff_size=sink.offset)

    def _publish(self, key: str, blob: LayerBlob) -> None:
        """Leave ``blob`` for the next image (best effort: a share that cannot take it is simply not used)."""
        entry = {"digest": blob.digest, "diff_id": blob.diff_id, "diff_size": blob.diff_size,
                 "media_type": blob.media_type}
        tmp = self.root / f".{key}.blob.{os.getpid()}"
        try:
            try:
                os.link(blob.path, tmp)  # the blob is never written again: a link is a copy
            except OSError:
                shutil.copyfile(blob.path, tmp)
            os.replace(tmp, self.root / f"{key}.blob")
            write_atomic(self.root / f"{key}.json", json.dumps(entry, sort_keys=True).encode(), mode=0o600)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()


def _discard(tmp: Path | None) -> None:
    if tmp is not None:
        with contextlib.suppress(OSError):
            tmp.unlink()


class _Mismatch(Exception):
    """The copied bytes do not hash to the digest they were published under."""


def read_entry_file(path: Path, limit: int) -> bytes:
    with open_cache_entry(path) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than an entry")
    return data


def _stage_verified(src: Path, blob_dir: Path, hexdigest: str) -> Path | None:
    """A copy of ``src`` under a temp name in ``blob_dir``, made durable, if its bytes hash to ``hexdigest``;
    None, and nothing left behind, otherwise. The caller renames it to ``hexdigest`` or removes it."""
    try:
        fd, name = tempfile.mkstemp(prefix=".tmp-layer-", dir=blob_dir)
    except OSError:
        return None
    tmp = Path(name)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as out, open_cache_entry(src) as fh:
            sha = hashlib.sha256()
            while block := fh.read(_COPY):
                sha.update(block)
                out.write(block)
            out.flush()
            if sha.hexdigest() != hexdigest:
                raise _Mismatch(src)
            os.fsync(out.fileno())
    except (OSError, _Mismatch):
        with contextlib.suppress(OSError):
            tmp.unlink()
        return None
    return tmp


# ---------------------------------------------------------------------------------------------------------
# the cache's entries: forge cache verify / prune / du
# ---------------------------------------------------------------------------------------------------------


def _cache_dir(cache_root: Path) -> Path:
    return Path(cache_root) / LAYER_BLOBS_DIR


def _files(cache_root: Path) -> Iterator[Path]:
    """Every file under ``layer-blobs/`` (an older format's directories included: prune drops them)."""
    top = _cache_dir(cache_root)
    if not top.is_dir() or top.is_symlink():
        return
    for sub in sorted(top.iterdir()):
        if sub.is_dir() and not sub.is_symlink():
            yield from sorted(sub.iterdir())


def blob_matches(blob: Path, entry: dict[str, Any]) -> bool:
    """``blob`` hashes to the entry's digest and decompresses to a tar of its diff_id and size."""
    media = {v: k for k, v in MEDIA_TYPES.items()}.get(str(entry.get("media_type")))
    if media is None:
        return False
    digest, tar_sha, size = hashlib.sha256(), hashlib.sha256(), 0
    caught: tuple[type[Exception], ...] = (OSError, ValueError, *_decode_errors())
    try:
        with open_cache_entry(blob) as fh:
            d = _decompressor(media)
            while block := fh.read(_COPY):
                digest.update(block)
                out = d.decompress(block) if d is not None else block
                tar_sha.update(out)
                size += len(out)
            if d is not None and (not d.eof or d.unused_data):
                return False
    except caught:
        return False
    return (f"sha256:{digest.hexdigest()}" == entry.get("digest")
            and f"sha256:{tar_sha.hexdigest()}" == entry.get("diff_id") and size == entry.get("diff_size"))


def _decompressor(media: str) -> Any:
    """A streaming decompressor of one gzip member or one zstd frame (None: a plain tar)."""
    if media == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()
    if media == "gzip":
        from rootfs_forge.util import inflate

        return inflate.decompressobj(31)
    return None


def _decode_errors() -> tuple[type[Exception], ...]:
    from rootfs_forge.util import inflate

    errors: tuple[type[Exception], ...] = inflate.ERRORS
    try:
        import zstandard
    except ImportError:
        return errors
    return (*errors, zstandard.ZstdError)


def verify_layers(cache_root: Path) -> tuple[int, list[str]]:
    """Re-check every layer entry of this format: remove (and return, relative to the cache root) those whose
    blob is missing or does not match, blobs without an entry and stale temp names."""
    checked, bad = 0, []
    root = _cache_dir(cache_root) / f"v{FORMAT_VERSION}"
    for path in list(_files(cache_root)):
        if path.parent != root:
            continue
        name = path.name
        if name.endswith(".json") and not name.startswith("."):
            checked += 1
            blob = path.with_name(name[: -len(".json")] + ".blob")
            try:
                entry = json.loads(read_entry_file(path, _ENTRY_MAX))
                ok = isinstance(entry, dict) and blob_matches(blob, entry)
            except (OSError, ValueError):
                ok = False
            if not ok:
                bad.append(f"{LAYER_BLOBS_DIR}/{root.name}/{name}")
                for gone in (path, blob):
                    with contextlib.suppress(OSError):
                        gone.unlink()
        elif name.endswith(".blob") and not name.startswith("."):
            if not path.with_name(name[: -len(".blob")] + ".json").exists():
                with contextlib.suppress(OSError):
                    path.unlink()
        elif name.startswith("."):
            _drop_if_stale(path, time.time())
    return checked, bad


def _drop(path: Path) -> int:
    with contextlib.suppress(OSError):
        size = path.lstat().st_size
        path.unlink()
        return size
    return 0


def _drop_if_stale(path: Path, now: float) -> int:
    with contextlib.suppress(OSError):
        st = path.lstat()
        if now - st.st_mtime > _STALE_TEMP:
            path.unlink()
            return st.st_size
    return 0


def prune_layers(cache_root: Path, older_than_days: float | None, now: float) -> tuple[int, int]:
    """Drop every layer entry, or with ``older_than_days`` those unused that long; (entries removed, bytes
    freed). Locks go with their entries; temp names once a day old."""
    removed = freed = 0
    for path in list(_files(cache_root)):
        name = path.name
        if name.startswith("."):
            freed += _drop_if_stale(path, now)
            continue
        if not name.endswith(".json"):
            continue
        try:
            st = path.lstat()
        except OSError:
            continue
        if older_than_days is not None and now - st.st_mtime <= older_than_days * 86400:
            continue
        stem = name[: -len(".json")]
        for gone in (path, path.with_name(stem + ".blob"), path.with_name(stem + ".lock")):
            with contextlib.suppress(OSError):
                freed += gone.lstat().st_size
                gone.unlink()
        removed += 1
    for path in list(_files(cache_root)):  # blobs and locks without an entry: a day old, or all when dropping all
        if path.suffix in (".blob", ".lock") and not path.name.startswith(".") \
                and not path.with_suffix(".json").exists():
            freed += _drop_if_stale(path, now) if older_than_days is not None else _drop(path)
    return removed, freed


def layers_size(cache_root: Path) -> tuple[int, int]:
    """(entries, bytes) the cache's layer blobs hold."""
    n = size = 0
    for path in _files(cache_root):
        with contextlib.suppress(OSError):
            size += path.lstat().st_size
            n += path.name.endswith(".json") and not path.name.startswith(".")
    return n, size
