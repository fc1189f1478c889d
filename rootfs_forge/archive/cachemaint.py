"""Cache maintenance: verify (re-hash, drop mismatches), prune (unreferenced or old entries), du."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rootfs_forge.archive.cache import Cache


@dataclass(frozen=True)
class Usage:
    blobs: int
    blob_bytes: int
    index_bytes: int
    other_bytes: int

    @property
    def total(self) -> int:
        return self.blob_bytes + self.index_bytes + self.other_bytes


def _size_of(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def usage(cache: Cache) -> Usage:
    blobs = list((cache.root / "blobs" / "sha256").iterdir())
    blob_bytes = sum(p.stat().st_size for p in blobs if p.is_file())
    index_bytes = _size_of(cache.root / "index") + _size_of(cache.root / "unpacked")
    other = _size_of(cache.root) - blob_bytes - index_bytes
    return Usage(len(blobs), blob_bytes, index_bytes, other)


def verify(cache: Cache) -> tuple[int, list[str]]:
    """Re-hash every blob; remove (and return) those whose content does not match their name."""
    bad = []
    checked = 0
    for p in sorted((cache.root / "blobs" / "sha256").iterdir()):
        checked += 1
        if not p.is_file() or p.is_symlink() or not cache.verify_blob(p.name):
            bad.append(p.name)
            p.unlink(missing_ok=True)
            for idx in cache.root.glob(f"index/{p.name}.idx*"):
                idx.unlink(missing_ok=True)
    _drop_orphans(cache)
    for tar in sorted((cache.root / "unpacked").glob("*.tar")):
        checked += 1
        table = tar.with_name(tar.name[: -len(".tar")] + ".members.json")
        if not _tar_matches(tar):
            bad.append(f"unpacked/{tar.name}")
            tar.unlink(missing_ok=True)
            table.unlink(missing_ok=True)
        elif table.exists():
            checked += 1
            if not _table_matches(table, tar):
                bad.append(f"unpacked/{table.name}")
                table.unlink(missing_ok=True)
    for saved in sorted((cache.root / "unpacked").glob("*.control.json")):
        checked += 1
        if not _control_matches(cache, saved):
            bad.append(f"unpacked/{saved.name}")
            saved.unlink(missing_ok=True)
    # temp files of killed processes are never valid entries; a day-old one belongs to no live download
    cutoff = time.time() - 86400
    for t in (cache.root / "tmp").iterdir():
        with contextlib.suppress(FileNotFoundError):
            if not t.name.endswith(".lock") and t.lstat().st_mtime < cutoff:
                t.unlink()
    return checked, bad


def referenced_digests(cache: Cache, locks: Iterable[Path]) -> set[str]:
    """Digests a lock file or the last verified index sets still need."""
    keep: set[str] = set()
    for lock in locks:
        try:
            doc = tomllib.loads(lock.read_text())
        except (OSError, tomllib.TOMLDecodeError):
            continue
        for img in doc.get("image", []):
            keep |= {p.get("sha256", "") for p in img.get("package", [])}

    for state in (cache.root / "state").glob("*.json"):
        try:
            keep |= {f["sha256"] for f in json.loads(state.read_text())}
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return keep


def prune(cache: Cache, locks: Iterable[Path], older_than_days: float | None,
          now: float | None = None) -> tuple[int, int]:
    """Drop blobs no lock or index state references (or, with ``older_than_days``, not used for that long).

    Returns (entries removed, bytes freed).
    """
    now = time.time() if now is None else now
    keep = referenced_digests(cache, locks)
    removed = freed = 0
    for p in sorted((cache.root / "blobs" / "sha256").iterdir()):
        st = p.stat()
        old = older_than_days is not None and now - max(st.st_atime, st.st_mtime) > older_than_days * 86400
        if p.name not in keep or old:
            removed += 1
            freed += st.st_size
            p.unlink()
            for idx in cache.root.glob(f"index/{p.name}.idx*"):
                freed += idx.stat().st_size
                idx.unlink()
    freed += _drop_orphans(cache)
    return removed, freed


def _tar_matches(tar: Path) -> bool:
    """A decompressed data.tar still has the SHA256 recorded when it was made."""
    try:
        want = tar.with_name(tar.name + ".sha256").read_text().strip()
    except OSError:
        return False
    h = hashlib.sha256()
    with open(tar, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest() == want


def _table_matches(table: Path, tar: Path) -> bool:
    """A member table still describes its data.tar: every header field, and the md5 of the files it hashed."""
    from rootfs_forge.errors import DebError
    from rootfs_forge.unpack.debfile import MEMBER_TABLE_SCHEMA, iter_tar

    try:
        doc = json.loads(table.read_bytes())
        rows = doc["members"] if doc.get("schema") == MEMBER_TABLE_SCHEMA else None
        if not isinstance(rows, list):
            return False
        n = 0
        for m in iter_tar(tar, tar):
            if n >= len(rows):
                return False
            row = rows[n]
            n += 1
            if list(row[:10]) != [m.path, m.kind, m.mode, m.uid, m.gid, m.mtime, m.size, m.linkname, m.devmajor,
                                  m.devminor]:
                return False
            if row[10]:
                digest = hashlib.md5(usedforsecurity=False)
                for block in m.blocks():
                    digest.update(block)
                if digest.hexdigest() != row[10]:
                    return False
        return n == len(rows)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, DebError):
        return False


def _control_matches(cache: Cache, saved: Path) -> bool:
    """A saved control part is the one its .deb holds, byte for byte."""
    from rootfs_forge.errors import DebError
    from rootfs_forge.unpack.debcache import control_doc
    from rootfs_forge.unpack.debfile import read_control

    deb = cache.blob_path(saved.name[: -len(".control.json")])
    try:
        return saved.read_bytes() == control_doc(read_control(deb))
    except (OSError, DebError):
        return False


def _drop_orphans(cache: Cache) -> int:
    """Remove derived entries (decompressed data.tars) whose .deb is gone; return the bytes freed."""
    freed = 0
    for tar in (cache.root / "unpacked").glob("*.tar"):
        if not cache.has(tar.name[: -len(".tar")]):
            with contextlib.suppress(FileNotFoundError):
                freed += tar.stat().st_size
                tar.unlink()
    for side in (cache.root / "unpacked").glob("*.tar.sha256"):
        if not side.with_name(side.name[: -len(".sha256")]).exists():
            side.unlink(missing_ok=True)
    for saved in (cache.root / "unpacked").glob("*.control.json"):  # derived from the .deb: goes with it
        if not cache.has(saved.name[: -len(".control.json")]):
            with contextlib.suppress(FileNotFoundError):
                freed += saved.stat().st_size
                saved.unlink()
    for table in (cache.root / "unpacked").glob("*.members.json"):  # derived from the tar: goes with it
        if not table.with_name(table.name[: -len(".members.json")] + ".tar").exists():
            with contextlib.suppress(FileNotFoundError):
                freed += table.stat().st_size
                table.unlink()
    return freed
