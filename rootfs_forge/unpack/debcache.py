"""The unpacked-.deb cache: each package's decompressed data.tar, its member table and the files of its
control.tar, kept under ``unpacked/`` in the cache (made on first use, under a per-package lock), so a warm
compose decompresses nothing and reads no tar header to plan the tree. :class:`UnpackAhead` fills it while the
downloads go on.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import libarchive

from rootfs_forge.archive.cache import Cache
from rootfs_forge.errors import ForgeError
from rootfs_forge.model import Package
from rootfs_forge.unpack.debfile import (
    MEMBER_TABLE_SCHEMA,
    DebControl,
    control_from_files,
    extract_data_tar,
    read_control,
)
from rootfs_forge.util.canonical import canonical_json

BOMB_MARGIN = 4  # a package may unpack to at most 4x its declared Installed-Size (+16 MiB)


def deb_build_time(path: Path) -> int:
    """The build time dpkg-deb records in the ar header of a .deb (0 if absent)."""
    with libarchive.file_reader(str(path), format_name="ar") as archive:
        for entry in archive:
            return int(entry.mtime or 0)
    return 0


def data_tar(cache: Cache | None, pkg: Package, deb: Path, max_bytes: int) -> Path | None:
    """The cached, decompressed data.tar of ``deb`` (made on first use: temp name, then rename)."""
    if cache is None:
        return None
    path = cache.data_tar_path(pkg.sha256)
    if path.is_file():
        return path
    with cache.lock(f"unpack-{pkg.sha256}"):  # one decompression per package, across threads and processes
        if not path.is_file():
            tmp = cache.root / "tmp" / f"{pkg.sha256}.{os.getpid()}.{threading.get_ident()}.tar"
            try:
                _, digest = extract_data_tar(deb, tmp, max_bytes)
                # its digest, for `forge cache verify`; written first, so a tar never exists without one
                cache.write_atomic(path.with_name(path.name + ".sha256"), digest.encode())
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
    return path


class UnpackAhead:
    """Decompress each package's data.tar into the cache as soon as its .deb is there, while the other
    downloads go on: a cold compose then decompresses in the shadow of the network instead of after it.

    Only warms the cache (the control part and the data.tar, through :func:`cached_control` and
    :func:`data_tar`, under its per-package lock); :func:`build_tree` does the real work and finds it done. A
    package that fails here is left alone: build_tree meets the same failure and reports it.
    """

    def __init__(self, cache: Cache, threads: int = 2) -> None:
        self.cache = cache
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="unpack-ahead")

    def submit(self, pkg: Package, deb: Path) -> None:
        if not self.cache.data_tar_path(pkg.sha256).is_file():
            self._pool.submit(self._warm, pkg, deb)

    def _warm(self, pkg: Package, deb: Path) -> None:
        with contextlib.suppress(ForgeError):
            data_tar(self.cache, pkg, deb, unpack_limit(pkg, cached_control(self.cache, pkg, deb)))

    def close(self) -> None:
        """Drop what has not started (build_tree does it) and wait for what runs: build_tree forks its
        writers, and no thread of this pool may be in the middle of anything then."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> UnpackAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


CONTROL_SCHEMA = 1


def cached_control(cache: Cache | None, pkg: Package, deb: Path) -> DebControl:
    """The control part of ``deb``: from ``unpacked/<sha256>.control.json`` when an earlier compose saved it
    there (read_control decompresses the control.tar of every package on every compose otherwise)."""
    if cache is None:
        return read_control(deb)
    path = cache.control_path(pkg.sha256)
    try:
        doc = json.loads(path.read_bytes())
        if doc.get("schema") == CONTROL_SCHEMA:
            return control_from_files(str(deb), {k: base64.b64decode(v) for k, v in doc["files"].items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        pass
    control = read_control(deb)
    cache.write_atomic(path, control_doc(control))
    return control


def control_doc(control: DebControl) -> bytes:
    """What :func:`cached_control` saves: the control.tar's files, base64, in canonical JSON."""
    files = {k: base64.b64encode(v).decode() for k, v in control.files.items()}
    return canonical_json({"schema": CONTROL_SCHEMA, "files": files})


def unpack_limit(pkg: Package, control: DebControl) -> int:
    """The most bytes a package's data.tar may hold: its declared Installed-Size with a wide margin."""
    declared = max(control.installed_size, pkg.installed_size)
    return declared * 1024 * BOMB_MARGIN + (16 << 20)


def cached_member_rows(cache: Cache, pkg: Package) -> list[list[Any]] | None:
    """The member table of a cached data.tar (``unpacked/<sha256>.members.json``), or None: a warm compose
    reads it instead of walking the tar's headers through libarchive. The first compose that unpacks the
    package records it while it scans."""
    try:
        doc = json.loads(cache.members_path(pkg.sha256).read_bytes())
        if doc.get("schema") == MEMBER_TABLE_SCHEMA and isinstance(doc.get("members"), list):
            return list(doc["members"])
    except (OSError, ValueError, AttributeError):
        pass
    return None


