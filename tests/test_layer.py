"""Deterministic layer tars: order, clamped times, numeric owners, hard links, special bits, compression."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rootfs_forge.errors import ImageError
from rootfs_forge.image.layer import (
    Compression,
    LayerBlob,
    header_bytes,
    sort_key,
    tar_header,
    with_parents,
    with_xattrs,
    write_layer,
)

EPOCH = 1_700_000_000
LONG = "d" * 60 + "/" + "f" * 80  # > 100 characters: needs a PAX path record
UNICODE = "usr/share/zoneinfo/Amérique/Ciudad_de_México"

# kind, path, payload-or-target, mode
TREE: list[tuple[str, str, str, int]] = [
    ("dir", "usr", "", 0o755),
    ("dir", "usr/bin", "", 0o755),
    ("file", "usr/bin/su", "setuid binary", 0o4755),
    ("file", "usr/bin/wall", "setgid binary", 0o2755),
    ("file", "usr/bin/true", "true", 0o755),
    ("hard", "usr/bin/[", "usr/bin/true", 0),
    ("hard", "usr/bin/test", "usr/bin/true", 0),
    ("link", "usr/bin/sh", "dash", 0),
    ("file", "usr/bin/dash", "dash", 0o755),
    ("dir", "tmp", "", 0o1777),
    ("dir", "d" * 60, "", 0o755),
    ("file", LONG, "long name", 0o644),
    ("dir", "usr/share", "", 0o755),
    ("dir", "usr/share/zoneinfo", "", 0o755),
    ("dir", "usr/share/zoneinfo/Amérique", "", 0o755),
    ("file", UNICODE, "TZif", 0o644),
    ("dir", "usr-x", "", 0o700),  # sorts after "usr" but its entries come after all of usr/
    ("file", "usr-x/f", "x", 0o600),
    ("fifo", "run-initctl", "", 0o600),
]


def build_tree(root: Path, mtime: float) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for kind, path, data, mode in TREE:
        p = root / path
        if kind == "dir":
            p.mkdir(exist_ok=True)
        elif kind == "file":
            p.write_text(data)
        elif kind == "hard":
            os.link(root / data, p)
        elif kind == "link":
            p.symlink_to(data)
        elif kind == "fifo":
            os.mkfifo(p)
        if kind != "link" and kind != "hard":
            os.chmod(p, mode)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (mtime, mtime), follow_symlinks=False)


def owners_for(root: Path) -> dict[str, tuple[int, int, int]]:
    """Fixed owners for every path so the golden digest does not depend on who runs the test."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            out[rel] = (0, 5 if rel == "usr/bin/wall" else 0, stat.S_IMODE(os.lstat(full).st_mode))
    return out


def read_tar(blob: LayerBlob) -> list[tarfile.TarInfo]:
    data = blob.path.read_bytes()
    if blob.media_type.endswith("+gzip"):
        data = gzip.decompress(data)
    elif blob.media_type.endswith("+zstd"):
        import zstandard

        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return tar.getmembers()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    build_tree(root, EPOCH + 86400)
    return root


# ---- pure helpers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["usr/bin/x"], ["usr", "usr/bin", "usr/bin/x"]),
        (["/usr/bin/x", "./etc/passwd"], ["etc", "etc/passwd", "usr", "usr/bin", "usr/bin/x"]),
        (["usr-x/a", "usr/b"], ["usr", "usr/b", "usr-x", "usr-x/a"]),
        (["../etc/passwd", "/", "."], []),
    ],
)
def test_with_parents_adds_ancestors_in_layer_order(paths: list[str], expected: list[str]) -> None:
    assert with_parents(paths) == expected


def test_sort_key_orders_per_directory_bytewise() -> None:
    names = ["usr-x", "usr/bin", "usr", "Usr", "usr/bin/é", "usr/bin/z"]
    assert sorted(names, key=sort_key) == ["Usr", "usr", "usr/bin", "usr/bin/z", "usr/bin/é", "usr-x"]


def test_tar_header_leaves_sockets_out(tmp_path: Path) -> None:
    import socket

    sock_path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock_path))
        assert tar_header("s", sock_path.lstat(), epoch=EPOCH, owner=None) is None


def test_tar_header_clamps_mtime_and_keeps_older() -> None:
    st = os.stat_result((0o100644, 1, 1, 1, 0, 0, 3, 0, EPOCH + 5, 0))
    assert tar_header("f", st, epoch=EPOCH, owner=None).mtime == EPOCH  # type: ignore[union-attr]
    st = os.stat_result((0o100644, 1, 1, 1, 0, 0, 3, 0, EPOCH - 5, 0))
    assert tar_header("f", st, epoch=EPOCH, owner=None).mtime == EPOCH - 5  # type: ignore[union-attr]


# ---- the tar ------------------------------------------------------------------------------------------


def test_layer_tar_properties(tree: Path, tmp_path: Path) -> None:
    blob = write_layer(tree, tmp_path / "out", epoch=EPOCH, compression="none", owners=owners_for(tree))
    members = read_tar(blob)
    names = [m.name for m in members]
    assert names == sorted(names, key=sort_key)
    assert names.index("usr-x") > names.index(UNICODE)  # all of usr/ before usr-x
    assert len(names) == len(TREE)
    by = {m.name: m for m in members}
    assert all(m.mtime == EPOCH for m in members)
    assert all(m.uname == "" and m.gname == "" for m in members)
    assert by["usr/bin/su"].mode == 0o4755
    assert by["usr/bin/wall"].mode == 0o2755 and by["usr/bin/wall"].gid == 5
    assert by["tmp"].mode == 0o1777 and by["tmp"].isdir()
    assert by["usr-x"].mode == 0o700
    # hard links: the first name in order holds the data, later ones link to it
    assert by["usr/bin/["].isfile() and by["usr/bin/["].size == 4
    assert by["usr/bin/test"].islnk() and by["usr/bin/test"].linkname == "usr/bin/["
    assert by["usr/bin/true"].islnk() and by["usr/bin/true"].linkname == "usr/bin/["
    assert by["usr/bin/sh"].issym() and by["usr/bin/sh"].linkname == "dash"
    assert by["run-initctl"].isfifo()
    assert LONG in by and UNICODE in by
    assert blob.digest == blob.diff_id and blob.size == blob.diff_size == blob.path.stat().st_size


def test_layer_pax_records_carry_long_and_unicode_names(tree: Path, tmp_path: Path) -> None:
    blob = write_layer(tree, tmp_path / "out", epoch=EPOCH, compression="none")
    raw = blob.path.read_bytes()
    assert f"path={LONG}\n".encode() in raw
    assert f"path={UNICODE}\n".encode() in raw
    for word in (b"atime=", b"ctime=", b"mtime=", b"uname=", b"gname="):
        assert word not in raw


def test_owners_override_what_is_on_disk(tree: Path, tmp_path: Path) -> None:
    owners = {"usr/bin/su": (0, 0, 0o4711), "usr-x/f": (1000, 1000, 0o640)}
    by = {
        m.name: m
        for m in read_tar(write_layer(tree, tmp_path / "o", epoch=EPOCH, compression="none", owners=owners))
    }
    assert (by["usr/bin/su"].uid, by["usr/bin/su"].mode) == (0, 0o4711)
    assert (by["usr-x/f"].uid, by["usr-x/f"].gid, by["usr-x/f"].mode) == (1000, 1000, 0o640)
    assert by["usr-x/f"].isfile()


def test_paths_restrict_the_layer_and_bring_parents(tree: Path, tmp_path: Path) -> None:
    blob = write_layer(
        tree, tmp_path / "o", epoch=EPOCH, compression="none", paths=["usr/bin/test", "usr/bin/sh"]
    )
    members = read_tar(blob)
    assert [m.name for m in members] == ["usr", "usr/bin", "usr/bin/sh", "usr/bin/test"]
    # the hard link's first sibling is not in this layer, so the file itself is stored
    assert members[3].isfile() and members[3].size == 4


def test_missing_path_is_an_image_error(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot write layer usr/nope: no such path"):
        write_layer(tree, tmp_path / "o", epoch=EPOCH, compression="none", paths=["usr/nope"])
    assert list((tmp_path / "o" / "blobs" / "sha256").iterdir()) == []


@pytest.mark.parametrize("target", ["/etc", "../../..", "usr/bin/su"])
def test_path_through_symlink_cannot_escape_root(tree: Path, tmp_path: Path, target: str) -> None:
    (tree / "alt").symlink_to(target)
    with pytest.raises(ImageError, match="cannot write layer alt/passwd: a parent is a symlink"):
        write_layer(tree, tmp_path / "o", epoch=EPOCH, compression="none", paths=["alt/passwd"])
    # the whole-tree walk stores the link itself and never looks behind it
    names = [m.name for m in read_tar(write_layer(tree, tmp_path / "o2", epoch=EPOCH, compression="none"))]
    assert "alt" in names and not any(n.startswith("alt/") for n in names)


def test_unknown_compression_is_refused(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="unknown compression 'xz'"):
        write_layer(tree, tmp_path / "o", epoch=EPOCH, compression="xz")  # type: ignore[arg-type]


def test_device_nodes_are_kept(tmp_path: Path) -> None:
    root = tmp_path / "t"
    (root / "dev").mkdir(parents=True)
    try:
        os.mknod(root / "dev" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs CAP_MKNOD")
    by = {m.name: m for m in read_tar(write_layer(root, tmp_path / "o", epoch=EPOCH, compression="none"))}
    assert by["dev/null"].ischr() and (by["dev/null"].devmajor, by["dev/null"].devminor) == (1, 3)


# ---- determinism --------------------------------------------------------------------------------------

# diff_id of TREE written with owners_for(); recompute only when the tar format is changed on purpose
GOLDEN_DIFF_ID = "sha256:f9305d26f69bafa4bc8c69fa46ac660d5669734f3d1119385e2251deb94848c4"


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_same_tree_twice_gives_same_digest(tmp_path: Path, compression: Compression) -> None:
    a, b = tmp_path / "a", tmp_path / "elsewhere" / "b"
    build_tree(a, EPOCH + 10)
    build_tree(b, EPOCH + 99999)  # different on-disk times, all above the epoch
    one = write_layer(a, tmp_path / "o1", epoch=EPOCH, compression=compression, owners=owners_for(a))
    two = write_layer(
        b,
        tmp_path / "o2",
        epoch=EPOCH,
        compression=compression,
        owners=owners_for(b),
        threads=1,
    )
    assert (one.digest, one.diff_id, one.size) == (two.digest, two.diff_id, two.size)
    assert one.path.name == one.digest.removeprefix("sha256:")
    assert one.diff_id == GOLDEN_DIFF_ID


def test_golden_tree_changes_digest_when_a_byte_changes(tree: Path, tmp_path: Path) -> None:
    before = write_layer(tree, tmp_path / "o1", epoch=EPOCH, compression="none", owners=owners_for(tree))
    (tree / "usr/bin/dash").write_text("dasH")
    os.utime(tree / "usr/bin/dash", (EPOCH + 1, EPOCH + 1))
    after = write_layer(tree, tmp_path / "o2", epoch=EPOCH, compression="none", owners=owners_for(tree))
    assert before.diff_id != after.diff_id


# ---- compression --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Several chunks of mixed data so the parallel gzip path joins more than one deflate block."""
    import random

    rng = random.Random(7)
    root = tmp_path_factory.mktemp("big")
    for i in range(6):
        words = rng.choices(["alpha", "beta", "gamma", "delta", str(i)], k=400_000)
        (root / f"text{i}").write_text(" ".join(words))
        (root / f"noise{i}").write_bytes(rng.randbytes(700_000))
    return root


def test_gzip_layer_is_one_member_readable_by_python_and_gzip(big: Path, tmp_path: Path) -> None:
    root = big
    blob = write_layer(root, tmp_path / "o", epoch=EPOCH, compression="gzip")
    raw = blob.path.read_bytes()
    assert raw[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    tar = gzip.decompress(raw)
    assert len(tar) == blob.diff_size > 2 * (4 << 20)
    import hashlib

    assert "sha256:" + hashlib.sha256(tar).hexdigest() == blob.diff_id
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == blob.digest
    # a single member: nothing follows the first member's trailer
    import zlib

    d = zlib.decompressobj(31)
    d.decompress(raw)
    assert d.eof and d.unused_data == b""
    subprocess.run(["gzip", "-t", str(blob.path)], check=True)
    assert blob.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_gzip_and_zstd_output_does_not_depend_on_threads(big: Path, tmp_path: Path, threads: int) -> None:
    root = big
    comps: tuple[Compression, ...] = ("gzip", "zstd")
    for comp in comps:
        ref = write_layer(root, tmp_path / "ref", epoch=EPOCH, compression=comp, threads=2)
        got = write_layer(
            root,
            tmp_path / f"t{threads}",
            epoch=EPOCH,
            compression=comp,
            threads=threads,
        )
        assert got.digest == ref.digest


def test_zstd_layer_is_readable_by_zstd(big: Path, tmp_path: Path) -> None:
    root = big
    blob = write_layer(root, tmp_path / "o", epoch=EPOCH, compression="zstd")
    subprocess.run(["zstd", "-q", "-t", str(blob.path)], check=True)
    out = subprocess.run(["zstd", "-q", "-d", "-c", str(blob.path)], check=True, capture_output=True).stdout
    assert len(out) == blob.diff_size
    assert blob.media_type == "application/vnd.oci.image.layer.v1.tar+zstd"


def test_layer_matches_gnu_tar_listing(tree: Path, tmp_path: Path) -> None:
    if not shutil.which("tar"):
        pytest.skip("no tar")
    blob = write_layer(tree, tmp_path / "o", epoch=EPOCH, compression="gzip")
    listing = subprocess.run(
        ["tar", "-tzvf", str(blob.path), "--numeric-owner"], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    assert any(line.startswith("-rwsr-xr-x") and line.endswith("usr/bin/su") for line in listing)
    assert any(line.startswith("hrwxr-xr-x") and "usr/bin/test link to usr/bin/[" in line for line in listing)


_NAMES = st.one_of(st.text(alphabet="abcz./-_~", min_size=1, max_size=120),
                   st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t))


@settings(max_examples=400, deadline=None)
@given(name=_NAMES, link=st.one_of(st.just(""), _NAMES),
       kind=st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE,
                             tarfile.CHRTYPE, tarfile.BLKTYPE]),
       mode=st.integers(0, 0o177777), uid=st.integers(0, 8**8), gid=st.integers(0, 8**8),
       size=st.one_of(st.integers(0, 1 << 20), st.integers(8**11 - 2, 8**11 + 2)),
       mtime=st.one_of(st.integers(0, 8**11 + 1), st.floats(0, 2e9, allow_nan=False)),
       uname=st.sampled_from(["", "root", "u" * 40, "\u00e9"]),
       xattrs=st.sampled_from([(), (("security.capability", b"\x01\x00\x00\x02"),)]))
def test_header_bytes_are_tobufs_bytes(name: str, link: str, kind: bytes, mode: int, uid: int, gid: int, size: int,
                                       mtime: float, uname: str, xattrs: tuple[tuple[str, bytes], ...]) -> None:
    """The direct header builder writes what ``TarInfo.tobuf`` (PAX, UTF-8) writes, byte for byte, for every
    entry: the common ones it builds itself, the rest (long or non-ASCII names, big numbers, xattrs, devices)
    it hands to ``tobuf``. A layer's digest must not depend on which of the two built a header."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.uid, info.gid = kind, link, mode, uid, gid
    info.size, info.mtime, info.uname, info.gname = size, mtime, uname, ""
    if xattrs:
        info = with_xattrs(info, xattrs)
    assert header_bytes(info) == info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


@pytest.mark.parametrize("size", [100, (1 << 20) + 100])
def test_a_file_that_shrinks_while_the_layer_is_written_is_an_error_naming_it(tmp_path: Path, size: int) -> None:
    """The headers say how many bytes follow: a file cut short after its header was built must fail the layer
    (no truncated member, no blob left behind), whether it is written in one piece or in several."""
    from rootfs_forge.image.layer import layer_entries, write_tar

    root = tmp_path / "t"
    root.mkdir()
    (root / "shrinks").write_bytes(b"x" * size)
    entries = layer_entries(root, paths=None, epoch=EPOCH, owners=None)
    (root / "shrinks").write_bytes(b"x" * (size - 10))
    with pytest.raises(ImageError, match=r"shrinks.*unexpected end of data"):
        write_tar(io.BytesIO(), root, entries=entries)
