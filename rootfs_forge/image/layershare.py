"""The layers one gallery compose shares between its images: each distinct layer is written once per call.

``forge compose recipes/`` composes every recipe in a forked child of its own. Recipes built on the same
packages write byte-identical layers: the gallery's ``base``, ``base-nonroot``, ``cc`` and ``cc-nonroot`` all
start with the same ``[[layer]]`` of glibc, libssl and their data, for each architecture. A :class:`LayerShare`
is a private directory (mode 0700) made for one call and removed with it: the first image to write a layer
leaves a copy of its blob and its digests there, and a later image with the same layer copies the blob instead
of writing it again (no tar of the tree into the compressor, no chunk checks, no deflate).

Reuse is decided from the tree being written, never from how it was built:

- the key is the sha256 of the layer's parameters (compression, level, threads) and of every tar header of the
  layer in order (names, types, modes, owners, sizes, mtimes, link targets, extended attributes): two layers
  with one key can differ only in the bytes of their regular files;
- those bytes: the tree's tar is streamed through sha256 (nothing compressed) and must give the diff_id the
  first writer published, so the tar is byte for byte the one that was compressed, and so is the blob (its
  bytes depend only on the tar and the parameters the key holds);
- the copy: the published blob is hashed while it is copied and must give the published digest.

Anything else -- no entry, another content, a damaged copy, an error of the share directory -- and the layer
is written as it would be without the share (and published for the next image). A layer being written under
one key is waited for by an image that needs the same key (one lock per key), so two twin recipes composed at
once write each shared layer once. The output is the same as without the share: same tar, same blob, same
digests (``tests/test_layershare.py``, ``tests/test_gallery.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from rootfs_forge.image.layer import (
    DEFAULT_LEVELS,
    MEDIA_TYPES,
    Compression,
    Deflate,
    Entry,
    LayerBlob,
    Owners,
    Xattrs,
    fsync_dir,
    layer_entries,
    write_layer,
    write_tar,
)
from rootfs_forge.util.files import atomic_file, write_atomic

_COPY = 1 << 20


def layer_key(compression: str, level: int, threads: int, entries: Sequence[Entry]) -> str:
    """The key of a layer: its parameters and every tar header, in order (pure)."""
    h = hashlib.sha256(f"forge-layer-share-v1 {compression} {level} {threads}\n".encode())
    for _, head in entries:
        h.update(head)
    return h.hexdigest()


class _HashSink:
    """Where :func:`write_tar` writes to compute a tar's diff_id without keeping or compressing it."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset


class LayerShare:
    """A private directory of the layers written so far in one call: ``<key>.blob``, ``<key>.json`` (digest,
    diff_id, size, media type, tar size) and ``<key>.lock``. ``reused`` / ``written`` count this process's
    layers (a forked child starts with its parent's counts: read them as differences)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.reused = 0
        self.written = 0

    @classmethod
    def create(cls, parent: Path, prefix: str) -> LayerShare:
        parent.mkdir(parents=True, exist_ok=True)
        return cls(Path(tempfile.mkdtemp(prefix=prefix, dir=parent)))  # mkdtemp: mode 0700

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def write_layer(self, root: Path, out_dir: Path, *, paths: Sequence[str] | None, epoch: int,
                    compression: Compression, owners: Owners | None, xattrs: Xattrs | None,
                    deflate: Deflate | None = None, threads: int = 2) -> LayerBlob:
        """:func:`rootfs_forge.image.layer.write_layer`'s blob, copied from an earlier image of this call when
        that image wrote the very same layer (see the module docstring)."""
        if compression not in MEDIA_TYPES or not root.is_dir():  # write_layer says what is wrong
            return write_layer(root, out_dir, paths=paths, epoch=epoch, compression=compression, owners=owners,
                               xattrs=xattrs, deflate=deflate, threads=threads)
        entries = layer_entries(root, paths=paths, epoch=epoch, owners=owners, xattrs=xattrs)
        key = layer_key(compression, DEFAULT_LEVELS[compression], threads, entries)
        with self._locked(key):
            published = self._published(key)
            if published is not None:
                blob = self._reuse(key, published, root, entries, out_dir)
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
            fd = os.open(self.root / f"{key}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError:  # the share is gone: write without it
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by close, or by the kernel if this process dies
            yield
        finally:
            os.close(fd)

    def _published(self, key: str) -> dict[str, object] | None:
        try:
            entry = json.loads((self.root / f"{key}.json").read_bytes())
        except (OSError, ValueError):
            return None
        return entry if isinstance(entry, dict) else None

    def _reuse(self, key: str, published: dict[str, object], root: Path, entries: Sequence[Entry],
               out_dir: Path) -> LayerBlob | None:
        sink = _HashSink()
        write_tar(sink, root, entries=entries)
        if f"sha256:{sink.sha.hexdigest()}" != published.get("diff_id") or sink.offset != published.get("diff_size"):
            return None
        digest = published.get("digest")
        if not isinstance(digest, str) or not digest.startswith("sha256:"):
            return None
        final = _copy_verified(self.root / f"{key}.blob", out_dir / "blobs" / "sha256", digest[len("sha256:"):])
        if final is None:
            return None
        return LayerBlob(digest=digest, diff_id=str(published["diff_id"]), size=final.stat().st_size,
                         media_type=str(published.get("media_type")), path=final, diff_size=sink.offset)

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


class _Mismatch(Exception):
    """The copied bytes do not hash to the digest they were published under."""


def _copy_verified(src: Path, blob_dir: Path, hexdigest: str) -> Path | None:
    """Copy ``src`` to ``blob_dir/<hexdigest>`` if its bytes hash to ``hexdigest`` (through the one atomic
    writer: a temp name, fsync, rename); None, and nothing left behind, otherwise."""
    final = blob_dir / hexdigest
    try:
        with atomic_file(final, fsync=True) as out, open(src, "rb") as fh:
            sha = hashlib.sha256()
            while block := fh.read(_COPY):
                sha.update(block)
                out.write(block)
            if sha.hexdigest() != hexdigest:
                raise _Mismatch(src)
        fsync_dir(blob_dir)
    except (OSError, _Mismatch):
        return None
    return final
