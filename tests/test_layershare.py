"""A gallery compose's shared layers (rootfs_forge.image.layershare): a layer an earlier image of the call wrote
is copied only when the tree being written gives the very same tar, and the result is always the blob a plain
write of that tree gives. The gallery-level behaviour (twin recipes share their package layer, digests equal
to separate composes) is in tests/test_compose_many.py."""

from __future__ import annotations

import multiprocessing
import os
import shutil
from pathlib import Path

import pytest

from rootfs_forge.image.layer import LayerBlob, write_layer
from rootfs_forge.image.layershare import LayerShare

EPOCH = 1_700_000_000
COMPRESSIONS = ["gzip", "zstd", "none"]


def make_tree(root: Path, payload: bytes = b"payload of the library\n" * 4000) -> Path:
    for d in ("usr", "usr/lib", "etc"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "usr/lib/libx.so.1").write_bytes(payload)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    os.symlink("libx.so.1", root / "usr/lib/libx.so")
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames + ["."]:
            os.utime(os.path.join(dirpath, name), (EPOCH, EPOCH), follow_symlinks=False)
    return root


def write(share: LayerShare | None, root: Path, out: Path, compression: str = "gzip") -> LayerBlob:
    if share is None:
        return write_layer(root, out, epoch=EPOCH, compression=compression)  # type: ignore[arg-type]
    return share.write_layer(root, out, paths=None, epoch=EPOCH, compression=compression,  # type: ignore[arg-type]
                             owners=None, xattrs=None)


def same_blob(got: LayerBlob, want: LayerBlob) -> None:
    assert (got.digest, got.diff_id, got.size, got.media_type, got.diff_size) == \
        (want.digest, want.diff_id, want.size, want.media_type, want.diff_size)
    assert got.path.read_bytes() == want.path.read_bytes()
    assert got.path.name == got.digest.split(":")[1]


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_an_identical_layer_is_copied_from_the_share_not_written_again(tmp_path: Path, compression: str) -> None:
    share = LayerShare.create(tmp_path, ".share-")
    one, two = make_tree(tmp_path / "one"), make_tree(tmp_path / "two")
    plain = write(None, two, tmp_path / "plain", compression)
    first = write(share, one, tmp_path / "o1", compression)
    second = write(share, two, tmp_path / "o2", compression)
    assert (share.written, share.reused) == (1, 1)
    same_blob(first, plain)
    same_blob(second, plain)
    assert second.path.parent == tmp_path / "o2" / "blobs" / "sha256"
    assert second.path.stat().st_ino != first.path.stat().st_ino  # a copy: no output shares an inode
    share.remove()
    assert not share.root.exists()


def test_same_headers_but_other_file_bytes_is_written_not_copied(tmp_path: Path) -> None:
    """The attack on a metadata-only key: one byte of a file changed, same size, same mtime, same names."""
    share = LayerShare.create(tmp_path, ".share-")
    payload = b"payload of the library\n" * 4000
    write(share, make_tree(tmp_path / "one", payload), tmp_path / "o1")
    other = make_tree(tmp_path / "two", payload[:-2] + b"X\n")
    got = write(share, other, tmp_path / "o2")
    assert (share.written, share.reused) == (2, 0)
    same_blob(got, write(None, other, tmp_path / "plain"))


def test_a_damaged_shared_blob_is_never_copied_into_an_image(tmp_path: Path) -> None:
    share = LayerShare.create(tmp_path, ".share-")
    write(share, make_tree(tmp_path / "one"), tmp_path / "o1")
    (blob,) = share.root.glob("*.blob")
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.unlink()  # the share holds a link to the first image's blob: damage a copy of its own
    blob.write_bytes(bytes(data))
    two = make_tree(tmp_path / "two")
    got = write(share, two, tmp_path / "o2")
    assert (share.written, share.reused) == (2, 0)
    same_blob(got, write(None, two, tmp_path / "plain"))
    assert sorted(p.name for p in (tmp_path / "o2" / "blobs" / "sha256").iterdir()) == [got.path.name]


def test_a_removed_share_falls_back_to_writing(tmp_path: Path) -> None:
    share = LayerShare.create(tmp_path, ".share-")
    write(share, make_tree(tmp_path / "one"), tmp_path / "o1")
    shutil.rmtree(share.root)
    two = make_tree(tmp_path / "two")
    same_blob(write(share, two, tmp_path / "o2"), write(None, two, tmp_path / "plain"))


def _child(share_root: str, tree: str, out: str, queue: multiprocessing.Queue[tuple[int, int, str]]) -> None:
    share = LayerShare(Path(share_root))
    blob = write(share, Path(tree), Path(out))
    queue.put((share.written, share.reused, blob.digest))


def test_two_images_writing_one_layer_at_once_write_it_once(tmp_path: Path) -> None:
    """The twins of a gallery compose run at the same time: the second waits for the first's layer."""
    share = LayerShare.create(tmp_path, ".share-")
    trees = [make_tree(tmp_path / f"t{i}") for i in range(2)]
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[tuple[int, int, str]] = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(str(share.root), str(t), str(tmp_path / f"o{i}"), queue))
             for i, t in enumerate(trees)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted((w, r) for w, r, _ in results) == [(0, 1), (1, 0)]
    assert len({d for _, _, d in results}) == 1


def test_the_cache_share_outlives_its_compose_and_a_cache_that_cannot_hold_one_gives_none(tmp_path: Path) -> None:
    from rootfs_forge.image.layershare import LAYER_BLOBS_DIR

    share = LayerShare.in_cache(tmp_path / "cache")
    assert share is not None and share.persistent
    write(share, make_tree(tmp_path / "one"), tmp_path / "o1")
    share.remove()  # a compose ends: the cache's entries stay for the next one
    again = LayerShare.in_cache(tmp_path / "cache")
    assert again is not None and again.root == share.root
    two = make_tree(tmp_path / "two")
    same_blob(write(again, two, tmp_path / "o2"), write(None, two, tmp_path / "plain"))
    assert (again.written, again.reused) == (0, 1)

    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / LAYER_BLOBS_DIR).write_text("a file where the directory belongs\n")
    assert LayerShare.in_cache(blocked) is None
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / LAYER_BLOBS_DIR).symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere" / "v1").mkdir(parents=True)
    assert LayerShare.in_cache(planted) is None  # entries are never written through a planted link


def test_a_tree_that_fails_while_its_tar_is_hashed_leaves_no_staged_copy(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that vanishes under the tar (ImageError) fails the layer; the blob copied meanwhile goes too."""
    import rootfs_forge.image.layershare as layershare
    from rootfs_forge.errors import ImageError

    share = LayerShare.create(tmp_path, ".share-")
    write(share, make_tree(tmp_path / "one"), tmp_path / "o1")
    real = layershare.write_tar

    def failing(sink, root, **kw):  # type: ignore[no-untyped-def]
        real(sink, root, **kw)
        raise ImageError("write layer", "usr/lib/libx.so.1", "no such path in the tree")

    monkeypatch.setattr(layershare, "write_tar", failing)
    with pytest.raises(ImageError):
        write(share, make_tree(tmp_path / "two"), tmp_path / "o2")
    assert list((tmp_path / "o2" / "blobs" / "sha256").iterdir()) == []


@pytest.mark.parametrize("path", ["reuse", "write"])
def test_hashing_a_large_tar_holds_a_few_blocks_not_the_tar(path: str) -> None:
    """The diff_id hasher may fall behind the tar (a reuse only hashes it; an uncompressed layer's writer never
    waits for a compressor): the blocks waiting for it stay bounded, so a 1 GB layer is not buffered whole,
    and the digest is the tar's."""
    import hashlib
    import io
    import threading
    import time

    from rootfs_forge.image.layer import _Output, _Plain, _TarSink
    from rootfs_forge.image.layershare import _HashSink

    sink: _HashSink | _TarSink = _HashSink() if path == "reuse" else _TarSink(_Plain(_Output(io.BytesIO(),
                                                                                          hashed=False)))
    real = sink.hasher.sha
    waiting = {"now": 0, "most": 0}
    lock = threading.Lock()

    class Slow:
        def update(self, data: bytes) -> None:
            time.sleep(0.004)  # slower than the writer below
            real.update(data)
            with lock:
                waiting["now"] -= len(data)

    sink.hasher.sha = Slow()  # type: ignore[assignment]
    block = bytes(range(256)) * 4096  # 1 MiB
    for _ in range(96):
        with lock:
            waiting["now"] += len(block)
            waiting["most"] = max(waiting["most"], waiting["now"])
        sink.write(block)
    sink.close()
    assert real.hexdigest() == hashlib.sha256(block * 96).hexdigest()
    assert waiting["most"] <= 24 << 20  # a few blocks of 1 MiB (reuse) or 4 MiB (write), not the 96 MiB tar
