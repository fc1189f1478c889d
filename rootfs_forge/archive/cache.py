"""The content-addressed download cache.

Layout under the cache root::

    blobs/sha256/<hex>      verified downloads (.deb files, Packages indexes), named by their SHA256
    index/<hex>.idx         name/provides maps built from the Packages file <hex> (see rootfs_forge.index.packages)
    unpacked/<hex>.tar      the decompressed data.tar of the .deb <hex> (a warm compose skips xz entirely)
    unpacked/<hex>.members.json  its member table (a warm compose reads no tar header to plan the tree)
    unpacked/<hex>.control.json  the files of its control.tar (a warm compose decompresses no control.tar)
    state/<hex>.json        the last verified index set of a source list (offline composes use it)
    composed-layers/        deflated chunks of gzip image layers (rootfs_forge.image.layercache)
    layer-blobs/v1/         whole layer blobs of earlier composes, keyed by their tar (rootfs_forge.image.layershare)
    bytecode/, cacerts/     what effects derive from packages: compiled .pycs, openssl rehash answers
                            (rootfs_forge.configure.effects.pycompile, .cacerts)
    tmp/                    temp names; a file enters blobs/ only after its digest was checked

Nothing enters ``blobs/`` unverified: writers stream into ``tmp/``, hash while writing, compare, fsync and
``rename`` — atomic on one filesystem, so concurrent forge processes sharing a cache never see a partial
entry, and two writers of the same entry simply race to an identical rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rootfs_forge.errors import CacheError, FetchError
from rootfs_forge.util.files import write_atomic

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout: rootfs_forge/archive/cache.py


def default_cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--cache-dir`` wins, then ``$FORGE_CACHE``, then ``cache/`` at the project root."""
    if explicit:
        return Path(explicit).absolute()
    env = os.environ.get("FORGE_CACHE")
    if env:
        return Path(env).absolute()
    return PROJECT_ROOT / "cache"


@dataclass(frozen=True)
class Cache:
    root: Path

    def __post_init__(self) -> None:
        for sub in ("blobs/sha256", "index", "state", "tmp", "unpacked"):
            try:
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CacheError("create", f"cache directory {self.root / sub}", exc.strerror or str(exc)) from exc

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / "sha256" / sha256

    def has(self, sha256: str) -> bool:
        return self.blob_path(sha256).is_file()

    def index_path(self, sha256: str) -> Path:
        return self.root / "index" / f"{sha256}.idx"

    def data_tar_path(self, sha256: str) -> Path:
        return self.root / "unpacked" / f"{sha256}.tar"

    def members_path(self, sha256: str) -> Path:
        return self.root / "unpacked" / f"{sha256}.members.json"

    def control_path(self, sha256: str) -> Path:
        return self.root / "unpacked" / f"{sha256}.control.json"

    def state_path(self, key: str) -> Path:
        return self.root / "state" / f"{key}.json"

    @contextlib.contextmanager
    def writer(self, sha256: str, size: int | None, what: str) -> Iterator[BinaryIO]:
        """Yield a file to stream ``what`` into; on exit verify size and digest, then rename into place.

        A mismatch raises FetchError and leaves nothing behind.
        """
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", prefix=sha256[:16] + ".")
        hasher = _HashingFile(os.fdopen(fd, "wb"))
        try:
            yield hasher  # type: ignore[misc]
            hasher.flush_and_sync()
            if size is not None and hasher.size != size:
                raise FetchError("verify", what, f"size {hasher.size} does not match the index ({size})")
            digest = hasher.sha256.hexdigest()
            if digest != sha256:
                raise FetchError("verify", what, f"SHA256 {digest} does not match the index ({sha256})")
            os.replace(tmp, self.blob_path(sha256))
        except BaseException:
            hasher.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        hasher.close()

    def write_atomic(self, path: Path, data: bytes) -> None:
        """Write a derived file (index, state) through a temp name."""
        write_atomic(path, data, mode=None, tmp_dir=self.root / "tmp")

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """An advisory lock shared by every forge process using this cache (e.g. one download of a URL)."""
        path = self.root / "tmp" / f"{name}.lock"
        with open(path, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def verify_blob(self, sha256: str) -> bool:
        """Re-hash a blob; True when it matches its name."""
        h = hashlib.sha256()
        with open(self.blob_path(sha256), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest() == sha256


class _HashingFile:
    """A write-only file wrapper that hashes and counts what passes through."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._f.write(data)

    def flush_and_sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()
