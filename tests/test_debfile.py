"""debfile: control part and data stream of real (built) .debs, every compression, and malformed archives."""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from rootfs_forge.errors import DebError
from rootfs_forge.unpack.debfile import DebControl, iter_data, normalize_path, read_control
from tests.support.debs import (
    MTIME,
    DebSpec,
    Dev,
    Dir,
    Fifo,
    Hard,
    Lnk,
    Reg,
    ar_archive,
    build_deb,
    compress,
    make_tar,
)

COMPRESSIONS = ("none", "gz", "xz", "zst", "bz2")
BIG = bytes(range(256)) * 4096  # 1 MiB, several libarchive blocks

SPEC = DebSpec(
    "demo", "1.2-3", "amd64",
    fields={"Depends": "libc6 (>= 2.36)", "Multi-Arch": "same", "Description": "demo\n two lines"},
    members=[Dir("usr"), Dir("usr/bin"), Reg("usr/bin/demo", "#!/bin/sh\n", 0o4755, 0, 0),
             Reg("usr/bin/big", BIG), Lnk("usr/bin/alias", "/usr/bin/demo"), Hard("usr/bin/demo2", "usr/bin/demo"),
             Dir("var"), Dir("var/mail", 0o2775, 0, 8), Dev("dev-null", "char", 1, 3), Fifo("fifo")],
    scripts={"postinst": "#!/bin/sh\nexit 0\n", "prerm": "#!/bin/sh\n", "triggers": "interest foo\n"},
    conffiles=["/etc/demo.conf"],
)

EXPECTED_MEMBERS = [
    ("/", "dir", 0o755, 0, 0, 0, ""),
    ("/usr", "dir", 0o755, 0, 0, 0, ""),
    ("/usr/bin", "dir", 0o755, 0, 0, 0, ""),
    ("/usr/bin/demo", "file", 0o4755, 0, 0, 10, ""),
    ("/usr/bin/big", "file", 0o644, 0, 0, len(BIG), ""),
    ("/usr/bin/alias", "symlink", 0o777, 0, 0, 0, "/usr/bin/demo"),
    ("/usr/bin/demo2", "hardlink", 0o644, 0, 0, 0, "/usr/bin/demo"),
    ("/var", "dir", 0o755, 0, 0, 0, ""),
    ("/var/mail", "dir", 0o2775, 0, 8, 0, ""),
    ("/dev-null", "char", 0o666, 0, 0, 0, ""),
    ("/fifo", "fifo", 0o644, 0, 0, 0, ""),
]


def write(tmp_path: Path, data: bytes, name: str = "x.deb") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize(("data_c", "control_c"), list(itertools.product(COMPRESSIONS, ("none", "gz", "xz", "zst"))))
def test_every_compression_reads_the_same(tmp_path: Path, data_c: str, control_c: str) -> None:
    spec = DebSpec(SPEC.name, SPEC.version, SPEC.architecture, SPEC.fields, SPEC.members, SPEC.scripts,
                   SPEC.conffiles, compression=data_c, control_compression=control_c)
    deb = write(tmp_path, build_deb(spec))
    control = read_control(deb)
    assert control.name == "demo" and control.version == "1.2-3" and control.architecture == "amd64"
    assert control.multi_arch == "same" and control.fields["Depends"] == "libc6 (>= 2.36)"
    assert control.fields["Description"] == "demo\n two lines"
    assert control.installed_size == len(BIG) // 1024 + 1
    assert control.scripts == {"postinst": "#!/bin/sh\nexit 0\n", "prerm": "#!/bin/sh\n",
                               "triggers": "interest foo\n"}
    assert control.triggers == "interest foo\n" and control.shlibs is None
    assert control.conffiles == ("/etc/demo.conf",)
    assert f"{hashlib.md5(BIG).hexdigest()}  usr/bin/big\n" in control.md5sums

    got = []
    contents = {}
    for m in iter_data(deb):
        got.append((m.path, m.kind, m.mode, m.uid, m.gid, m.size, m.linkname))
        assert m.mtime == MTIME
        if m.kind == "file":
            contents[m.path] = m.read()
        if m.kind == "char":
            assert (m.devmajor, m.devminor) == (1, 3)
    assert got == EXPECTED_MEMBERS
    assert contents == {"/usr/bin/demo": b"#!/bin/sh\n", "/usr/bin/big": BIG}


def test_content_cannot_be_read_after_the_iterator_moved_on(tmp_path: Path) -> None:
    deb = write(tmp_path, build_deb(SPEC))
    members = list(iter_data(deb))
    big = next(m for m in members if m.path == "/usr/bin/big")
    with pytest.raises(DebError, match="read after the next member"):
        big.read()


def test_blocks_are_streamed_not_buffered(tmp_path: Path) -> None:
    deb = write(tmp_path, build_deb(DebSpec("big", members=[Reg("big", BIG * 8)])))
    sizes = [len(b) for m in iter_data(deb) if m.kind == "file" for b in m.blocks()]
    assert sum(sizes) == len(BIG) * 8 and max(sizes) < len(BIG)


def test_underscore_members_are_ignored(tmp_path: Path) -> None:
    _, control = compress(make_tar([Dir("."), Reg("control", SPEC.control_text())]), "gz")
    _, data = compress(make_tar([Dir("."), Reg("x", "x")]), "gz")
    deb = write(tmp_path, ar_archive([("debian-binary", b"2.0\n"), ("_gpgorigin", b"sig"),
                                      ("control.tar.gz", control), ("_extra", b"e"), ("data.tar.gz", data)]))
    assert read_control(deb).name == "demo"
    assert [m.path for m in iter_data(deb)] == ["/", "/x"]


def good_parts(data_c: str = "xz") -> dict[str, tuple[str, bytes]]:
    csuffix, control = compress(make_tar([Dir("."), Reg("control", SPEC.control_text())]), "xz")
    dsuffix, data = compress(make_tar([Dir("."), Dir("usr"), Reg("usr/x", b"x" * 70000)]), data_c)
    return {"binary": ("debian-binary", b"2.0\n"), "control": ("control.tar" + csuffix, control),
            "data": ("data.tar" + dsuffix, data)}


def deb_of(*names: str, **replace: tuple[str, bytes]) -> bytes:
    parts = good_parts() | replace
    return ar_archive([parts[n] for n in names])


MALFORMED: list[tuple[str, Callable[[], bytes], str]] = [
    ("not an ar", lambda: b"this is not an ar archive at all\n" * 10, "Unrecognized archive format|not"),
    ("empty file", lambda: b"", "missing member debian-binary|Unrecognized|empty"),
    ("truncated ar header", lambda: deb_of("binary", "control", "data")[:70], "Truncated|missing|trunc"),
    ("truncated data member", lambda: deb_of("binary", "control", "data")[:-300], "runcat|missing|Damaged"),
    ("truncated control member", lambda: deb_of("binary", "control", "data")[:200], "runcat|missing"),
    ("wrong member order: control first", lambda: deb_of("control", "binary", "data"),
     "first member is 'control.tar.xz', not 'debian-binary'"),
    ("wrong member order: data before control", lambda: deb_of("binary", "data", "control"),
     "comes before control.tar"),
    ("missing data member", lambda: deb_of("binary", "control"), "missing member data.tar"),
    ("missing control member", lambda: deb_of("binary"), "missing member control.tar"),
    ("unknown compression", lambda: deb_of("binary", "control", "data",
                                           data=("data.tar.lz4", good_parts()["data"][1])),
     "unsupported compression of member 'data.tar.lz4'"),
    ("compression does not match name", lambda: deb_of("binary", "control", "data",
                                                      data=("data.tar.zst", good_parts("gz")["data"][1])),
     "data.tar.zst"),
    ("format version 3", lambda: deb_of("binary", "control", "data", binary=("debian-binary", b"3.0\n")),
     "unsupported format version '3.0'"),
    ("format version garbage", lambda: deb_of("binary", "control", "data", binary=("debian-binary", b"2.x\n")),
     "unsupported format version"),
    ("unexpected member", lambda: ar_archive([good_parts()["binary"], ("evil", b"x"), good_parts()["control"],
                                              good_parts()["data"]]), "unexpected member 'evil'"),
    ("control.tar without control", lambda: deb_of(
        "binary", "control", "data",
        control=("control.tar.gz", compress(make_tar([Dir("."), Reg("md5sums", "")]), "gz")[1])),
     "control.tar has no control file"),
]


def drain(deb: Path) -> None:
    members = iter_data(deb)
    try:
        for m in members:
            m.read()
    finally:
        members.close()


@pytest.mark.parametrize(("case", "make", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_archive_is_refused(tmp_path: Path, case: str, make: Callable[[], bytes], reason: str) -> None:
    deb = write(tmp_path, make())
    errors = []
    for reader in (read_control, drain):
        try:
            reader(deb)
        except DebError as exc:
            errors.append(exc)
            assert str(exc).startswith(f"cannot read {deb}: ")
            assert "\n" not in str(exc)
    # read_control stops after control.tar: a fault in the data member is only found by iter_data
    only_data = case in ("missing data member", "truncated data member", "compression does not match name",
                         "unknown compression")
    assert len(errors) == (1 if only_data or case == "control.tar without control" else 2), case
    assert re.search(reason, errors[-1].reason), errors[-1].reason


def test_truncated_ar_is_refused(tmp_path: Path) -> None:
    full = build_deb(DebSpec("t", members=[Reg("x", bytes(range(256)) * 400)], compression="none"))
    for cut in (len(full) - 1, len(full) - 5000, len(full) // 2, 100, 8):
        deb = write(tmp_path, full[:cut], f"t{cut}.deb")
        with pytest.raises(DebError):
            drain(deb)


def test_wrong_member_order_is_refused(tmp_path: Path) -> None:
    for order in itertools.permutations(("debian-binary", "control", "data")):
        deb = write(tmp_path, build_deb(SPEC, order=order), "o.deb")
        if order == ("debian-binary", "control", "data"):
            drain(deb)
            continue
        with pytest.raises(DebError):
            drain(deb)


def test_unknown_compression_is_refused(tmp_path: Path) -> None:
    for suffix in (".lz4", ".lzma", ".Z", ".gzip", "x"):
        _, data = compress(make_tar([Dir(".")]), "xz")
        deb = write(tmp_path, deb_of("binary", "control", "data", data=("data.tar" + suffix, data)), "u.deb")
        with pytest.raises(DebError, match="unsupported compression"):
            drain(deb)


def test_missing_file_is_a_deb_error(tmp_path: Path) -> None:
    with pytest.raises(DebError, match="no such file"):
        read_control(tmp_path / "nope.deb")


@pytest.mark.parametrize(("name", "expected"), [
    ("./usr/bin/x", "/usr/bin/x"), ("usr//bin/./x", "/usr/bin/x"), ("/abs/x", "/abs/x"), ("./", "/"),
    (".", "/"), ("usr/bin/../lib/x", "/usr/lib/x"), ("a/b/../../c", "/c"),
    ("..", None), ("./../x", None), ("a/../../x", None), ("/../x", None),
])
def test_normalize_path(name: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(ValueError, match="escapes the root"):
            normalize_path(name)
    else:
        assert normalize_path(name) == expected


def test_dotdot_member_is_a_deb_error(tmp_path: Path) -> None:
    raw = make_tar([Dir("."), Reg("./usr/../../etc/evil", "x")])
    deb = write(tmp_path, build_deb(DebSpec("evil"), raw_data_tar=raw))
    with pytest.raises(DebError, match="escapes the root"):
        drain(deb)


def test_debcontrol_defaults() -> None:
    c = DebControl(fields={"Package": "p", "Installed-Size": "n/a"})
    assert (c.name, c.version, c.multi_arch, c.installed_size) == ("p", "", "no", 0)


def test_extract_data_tar_matches_the_members_and_iter_tar_reads_them(tmp_path: Path) -> None:
    from rootfs_forge.unpack.debfile import extract_data_tar, iter_data, iter_tar

    spec = DebSpec("cached", members=[Dir("usr"), Dir("usr/bin"), Reg("usr/bin/x", b"#!/bin/sh\n" * 100, 0o755),
                                      Lnk("usr/bin/y", "x")])
    for how in ("xz", "gz", "zst", "bz2", "none"):
        deb = tmp_path / f"c-{how}.deb"
        deb.write_bytes(build_deb(DebSpec(spec.name, members=spec.members, compression=how)))
        tar = tmp_path / f"c-{how}.tar"
        size, digest = extract_data_tar(deb, tar)
        assert size == tar.stat().st_size > 0
        assert digest == hashlib.sha256(tar.read_bytes()).hexdigest()
        direct = [(m.path, m.kind, m.mode, m.linkname, m.read()) for m in iter_data(deb)]
        cached = [(m.path, m.kind, m.mode, m.linkname, m.read()) for m in iter_tar(tar, deb)]
        assert cached == direct, how


def test_decompression_bomb_is_bounded_while_caching_the_data_tar(tmp_path: Path) -> None:
    from rootfs_forge.unpack.debfile import extract_data_tar

    deb = tmp_path / "bomb.deb"
    deb.write_bytes(build_deb(DebSpec("bomb", members=[Reg("zeros", bytes(4 << 20))])))
    with pytest.raises(DebError, match="decompression bomb"):
        extract_data_tar(deb, tmp_path / "bomb.tar", max_bytes=1 << 20)


def test_truncated_compressed_data_is_refused_while_caching(tmp_path: Path) -> None:
    from rootfs_forge.unpack.debfile import extract_data_tar

    good = build_deb(DebSpec("t", members=[Reg("f", bytes(range(256)) * 512)]))
    data_at = good.index(b"data.tar.xz")
    size = int(good[data_at + 48:data_at + 58].decode().strip())
    start = data_at + 60
    header = good[data_at:data_at + 48] + f"{size // 2:<10}".encode() + good[data_at + 58:data_at + 60]
    broken = good[:data_at] + header + good[start:start + size // 2]
    deb = tmp_path / "t.deb"
    deb.write_bytes(broken)
    with pytest.raises(DebError):
        extract_data_tar(deb, tmp_path / "t.tar")
