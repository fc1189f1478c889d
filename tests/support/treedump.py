"""One tree dump for tests, in the notation of ``rootfs_forge.unpack.record.tree_dump``: ``{path: "kind mode
uid:gid detail"}`` with the content's sha256 (first 8 hex digits) for a file and the target for a symlink.

:func:`dump_dir` reads a directory (owners and modes as they are on disk; mtimes on request);
:func:`dump_layers` reads an OCI image layout's layers in order, so owners and modes are the ones the image
carries whoever composed it; :func:`index_db_dump` reads a package index database row by row.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path


def _under(path: str, prefixes: Sequence[str]) -> bool:
    return not prefixes or any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def _entry(path: Path, st: os.stat_result, mtimes: bool) -> str:
    head = f"{stat.S_IMODE(st.st_mode):04o} {st.st_uid}:{st.st_gid}" + (f" {int(st.st_mtime)}" if mtimes else "")
    if stat.S_ISLNK(st.st_mode):
        return f"symlink {os.readlink(path)}"
    if stat.S_ISDIR(st.st_mode):
        return f"dir {head}"
    if stat.S_ISREG(st.st_mode):
        return f"file {head} {hashlib.sha256(path.read_bytes()).hexdigest()[:8]}"
    return f"other {head}"


def dump_dir(root: Path, under: Sequence[str] = (), *, with_root: bool = False,
             mtimes: bool = False) -> dict[str, str]:
    """The tree below ``root`` (only paths below one of ``under`` when given), sorted by path; ``with_root``:
    ``/`` itself too; ``mtimes``: each directory's and file's mtime (whole seconds) after its owner."""
    out: dict[str, str] = {}
    if with_root:
        out["/"] = _entry(root, os.lstat(root), mtimes)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            h = Path(dirpath) / name
            rel = "/" + h.relative_to(root).as_posix()
            if _under(rel, under):
                out[rel] = _entry(h, os.lstat(h), mtimes)
    return dict(sorted(out.items()))


def dump_layers(layout: Path, under: Sequence[str] = ()) -> dict[str, str]:
    """The file system the image at ``layout`` (one manifest) describes, from its layers in order."""
    blobs = layout / "blobs" / "sha256"
    (desc,) = json.loads((layout / "index.json").read_text())["manifests"]
    manifest = json.loads((blobs / desc["digest"].split(":")[1]).read_text())
    out: dict[str, str] = {}
    for layer in manifest["layers"]:
        with tarfile.open(blobs / layer["digest"].split(":")[1]) as tar:
            for m in tar:
                rel = "/" + m.name.rstrip("/")
                if rel == "/" or not _under(rel, under):
                    continue
                owner, mode = f"{m.uid}:{m.gid}", f"{m.mode:04o}"
                if m.issym():
                    out[rel] = f"symlink {m.linkname}"
                elif m.isdir():
                    out[rel] = f"dir {mode} {owner}"
                elif m.isfile():
                    data = tar.extractfile(m)
                    digest = hashlib.sha256(data.read() if data else b"").hexdigest()[:8]
                    out[rel] = f"file {mode} {owner} {digest}"
                elif m.islnk():
                    out[rel] = f"hardlink /{m.linkname}"
                else:
                    out[rel] = f"other {mode} {owner}"
    return dict(sorted(out.items()))


def index_db_dump(db: Path) -> list[object]:
    """Every row of a package index database (stanzas, provides, meta), in a fixed order: two indexes built
    different ways are the same when their dumps are."""
    import sqlite3

    con = sqlite3.connect(db)
    try:
        return [con.execute(q).fetchall() for q in ("SELECT * FROM stanza ORDER BY id",
                                                     "SELECT * FROM provides ORDER BY rowid", "SELECT * FROM meta")]
    finally:
        con.close()


def wait_for_index_db(db: Path, timeout: float = 60) -> None:
    """Wait until the detached database writer has renamed ``db`` into place (it outlives the compose that
    started it); fail the test when it has not within ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not db.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert db.exists(), f"{db} was not written within {timeout} s"
