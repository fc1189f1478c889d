"""The cold index path: the Packages text streamed to disk (never whole in memory), the database written by a
fresh interpreter from the packed scan, and the benchmark's process-tree memory probe."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import re
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from rootfs_forge.archive.cache import Cache
from rootfs_forge.archive.release import IndexFile
from rootfs_forge.archive.sources import SourceEntry
from rootfs_forge.index import scan
from rootfs_forge.index.packages import PackageIndex
from rootfs_forge.index.scan import Packed, build_index, scan_stanzas, write_db
from tests.support.treedump import index_db_dump, wait_for_index_db

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = IndexFile(SourceEntry("http://x.invalid/debian", "testing", ("main",)), "main", "amd64", "0" * 64, "",
                   "testing")


def _stanza(i: int) -> bytes:
    """A stanza like bookworm's (540 bytes, there 790), with a description outside Latin-1 now and then."""
    descr = f"tool number {i} \u2014 \u65e5\u672c" if i % 97 == 0 else f"tool number {i}"
    prov = f"Provides: virt{i % 13}, other{i % 7} (= 1)\n" if i % 3 == 0 else ""
    return (f"Package: pkg{i}\nVersion: 1.{i}-1\nInstalled-Size: {i % 900}\nMaintainer: Someone <a@b.invalid>\n"
            f"Architecture: amd64\n{prov}Depends: libc6 (>= 2.36), libfoo{i % 50} (>= 1.0), libbar | libbaz\n"
            f"{'Essential: yes' + chr(10) if i % 500 == 0 else ''}Description: {descr}\n"
            f"Homepage: https://example.invalid/{i}\nDescription-md5: {'c' * 32}\nTag: role::program, "
            f"implemented-in::c, interface::commandline\nSection: utils\nPriority: optional\n"
            f"Filename: pool/main/p/pkg{i}/pkg{i}_1.{i}-1_amd64.deb\nSize: {1000 + i}\n"
            f"SHA256: {hashlib.sha256(str(i).encode()).hexdigest()}\n").encode()


def _fresh_index(tmp_path: Path, text: bytes) -> tuple[Cache, IndexFile]:
    raw = gzip.compress(text, compresslevel=1)
    cache = Cache(tmp_path / "cache")
    sha = hashlib.sha256(raw).hexdigest()
    cache.blob_path(sha).write_bytes(raw)
    return cache, dataclasses.replace(ORIGIN, sha256=sha, compression=".gz")


def _open_peak(tmp_path: Path, text: bytes) -> int:
    """The peak of this process's Python allocations while a fresh index of ``text`` is opened and asked."""
    cache, f = _fresh_index(tmp_path, text)
    tracemalloc.start()
    try:
        index = PackageIndex.open([f], cache)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    try:
        assert [p.version for p in index.packages("pkg5999")] == ["1.5999-1"]
    finally:
        index.close()
    wait_for_index_db(cache.index_path(f.sha256))
    return peak


@pytest.mark.parametrize("helper", [False, True], ids=["one-process", "helper-child"])
def test_cold_index_memory_does_not_grow_with_the_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       helper: bool) -> None:
    """Two Packages texts with the same 6,000 stanzas, the second padded with a 2 KB field in each (12 MB
    more text): opening a fresh index of the second peaks at most a quarter of those 12 MB higher. The scan's
    columns grow with the stanzas, not the text, which is decompressed, written and scanned a piece at a time
    (the code before held the whole text, and for a while two or three copies of it)."""
    monkeypatch.setattr(scan, "PARALLEL_SCAN_MIN", 0 if helper else 1 << 40)
    monkeypatch.setattr(scan, "BACKGROUND_DB_MIN", 0)  # both through the same path (the detached writer)
    pad = "X-Padding: " + "\n ".join(["p" * 60] * 32) + "\n"
    plain = b"\n".join(_stanza(i) for i in range(6000))
    padded = b"\n".join(_stanza(i).replace(b"Section:", pad.encode() + b"Section:") for i in range(6000))
    growth = len(padded) - len(plain)
    assert growth > 11_900_000
    small = _open_peak(tmp_path / "plain", plain)
    large = _open_peak(tmp_path / "padded", padded)
    assert large - small < growth / 4, f"peak {small} -> {large} bytes for {growth} bytes more text"


def test_fresh_index_answers_as_the_database_its_writer_leaves(tmp_path: Path) -> None:
    """The first open answers from its scan and the text file; the database a fresh interpreter then writes
    (from the packed scan) answers the same, equals the one written in-process, and no pack file is left."""
    text = b"\n".join(_stanza(i) for i in range(16000))  # > BACKGROUND_DB_MIN: written in the background
    assert len(text) >= scan.BACKGROUND_DB_MIN
    cache, f = _fresh_index(tmp_path, text)

    def answers(index: PackageIndex) -> object:
        return ([p.sha256 for p in index.packages("pkg300")], sorted(p.name for p in index.providers("virt5")),
                sorted(p.name for p in index.essential()), index.count(),
                sorted(p.name for p in index.search(re.compile("\u65e5")))[:5])

    fresh = PackageIndex.open([f], cache)
    try:
        assert type(fresh._parts[0]).__name__ == "_MemoryPart"
        first = answers(fresh)
    finally:
        fresh.close()
    db = cache.index_path(f.sha256)
    wait_for_index_db(db)
    again = PackageIndex.open([f], cache)
    try:
        assert type(again._parts[0]).__name__ == "_SqlPart"
        assert answers(again) == first
    finally:
        again.close()
    build_index(text, tmp_path / "inline.idx")
    assert index_db_dump(db) == index_db_dump(tmp_path / "inline.idx")
    assert sorted(p.name for p in db.parent.iterdir()) == [db.name, db.name + ".txt"]


@pytest.mark.parametrize("count", [0, 1, 300])
def test_packed_scan_writes_the_same_database_in_a_fresh_interpreter(tmp_path: Path, count: int) -> None:
    text = b"\n".join(_stanza(i) for i in range(count))
    columns = scan_stanzas(text)
    write_db(tmp_path / "direct.idx", columns, len(text))
    import marshal

    pack = tmp_path / "scan.pack"
    pack.write_bytes(marshal.dumps(Packed(columns).as_tuple()))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from rootfs_forge.index.dbwriter import main; "
            "main(sys.argv[2:])")
    subprocess.run([sys.executable, "-I", "-S", "-c", code, str(ROOT), str(pack), str(tmp_path / "writer.idx"),
                    str(len(text))], check=True)
    assert index_db_dump(tmp_path / "writer.idx") == index_db_dump(tmp_path / "direct.idx")
    assert not pack.exists()


def test_bench_memory_probe_counts_a_daemonised_grandchild() -> None:
    """bench/compose.py's probe: a grandchild that outlives its parent (as forge's index writer does) is still
    sampled and waited for: a run whose only big process is such an orphan peaks above its 60 MB."""
    sys.path.insert(0, str(ROOT))
    try:
        from bench.compose import run_sampled
    finally:
        sys.path.remove(str(ROOT))
    prog = ("import os, time\nif os.fork() == 0:\n    b = bytearray(60 << 20)\n    b[::4096] = b'x' * len(b[::4096])\n"
            "    time.sleep(0.5)\n    os._exit(0)\nprint('parent done')\n")
    started = time.monotonic()
    code, out, _, peak = run_sampled([sys.executable, "-c", prog])
    assert (code, out) == (0, "parent done\n")
    assert time.monotonic() - started >= 0.5  # the orphan was waited for
    assert peak > 60 << 20
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # nothing left to reap
