"""The dpkg database writer: stanza rendering as tables, then the written database checked by dpkg itself."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from rootfs_forge.configure.dpkgwriter import list_file, md5sums_file, status_stanza, write_dpkg_db
from rootfs_forge.errors import RootfsError
from rootfs_forge.model import InstalledPackage

ARCH = "amd64"
needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs dpkg-query and dpkg")


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.mark.parametrize(
    ("control", "conffiles", "expected"),
    [
        (
            {
                "Description": "tiny\n a longer text\n .\n more",
                "Version": "1.0",
                "Homepage": "https://example.org/",
                "Architecture": "amd64",
                "Depends": "libc6 (>= 2.34)",
                "Package": "tiny",
                "Maintainer": "M <m@example.org>",
                "Essential": "yes",
                "Installed-Size": "12",
                "Custom-Field": "kept",
                "Multi-Arch": "foreign",
                "Source": "t",
            },
            (),
            "Package: tiny\nEssential: yes\nStatus: install ok installed\nInstalled-Size: 12\n"
            "Maintainer: M <m@example.org>\nArchitecture: amd64\nMulti-Arch: foreign\nSource: t\n"
            "Version: 1.0\n"
            "Depends: libc6 (>= 2.34)\nDescription: tiny\n a longer text\n .\n more\nHomepage: https://example.org/\n"
            "Custom-Field: kept\n",
        ),
        (
            {
                "Package": "conf",
                "Version": "2",
                "Architecture": "all",
                "Status": "purge ok not-installed",
                "Description": "with conffiles",
                "Priority": "optional",
                "Section": "misc",
                "Pre-Depends": "dpkg",
                "Breaks": "old",
                "Replaces": "old",
                "Provides": "virt",
                "Protected": "yes",
                "Recommends": "",
            },
            (("/etc/conf.conf", "0" * 32), ("/etc/conf.d/a", "1" * 32)),
            "Package: conf\nProtected: yes\nStatus: install ok installed\nPriority: optional\nSection: misc\n"
            "Architecture: all\nVersion: 2\nReplaces: old\nProvides: virt\nPre-Depends: dpkg\nBreaks: old\n"
            "Conffiles:\n /etc/conf.conf "
            + "0" * 32
            + "\n /etc/conf.d/a "
            + "1" * 32
            + "\nDescription: with conffiles\n",
        ),
    ],
)
def test_status_stanza_field_order(
    control: dict[str, str], conffiles: tuple[tuple[str, str], ...], expected: str
) -> None:
    assert status_stanza(InstalledPackage(control, conffiles=conffiles)) == expected
    shuffled = dict(reversed(list(control.items())))
    out = status_stanza(InstalledPackage(shuffled, conffiles=conffiles)).splitlines()
    known = [ln for ln in out if not ln.startswith((" ", "Homepage", "Custom"))]
    assert known == [ln for ln in expected.splitlines() if not ln.startswith((" ", "Homepage", "Custom"))]


@pytest.mark.parametrize(
    ("multi_arch", "db_name"), [("same", "libfoo:arm64"), ("foreign", "libfoo"), ("", "libfoo")]
)
def test_db_name_follows_multi_arch(multi_arch: str, db_name: str) -> None:
    pkg = InstalledPackage({"Package": "libfoo", "Architecture": "arm64", "Multi-Arch": multi_arch})
    assert pkg.db_name == db_name


def test_list_and_md5sums_files() -> None:
    assert list_file(["/", "/usr", "./usr/bin/", "/usr/bin/x", "/usr"]) == "/.\n/usr\n/usr/bin\n/usr/bin/x\n"
    assert md5sums_file({"/usr/b": "b" * 32, "usr/a": "a" * 32}) == f"{'a' * 32}  usr/a\n{'b' * 32}  usr/b\n"


# -- a tree with three packages
HELLO = b"#!/bin/sh\necho hello\n"
CONF = b"greeting=hi\n"
LIB = b"\x7fELF fake"


def make_tree(root: Path) -> list[InstalledPackage]:
    for d in (
        "usr/bin",
        "usr/lib/x86_64-linux-gnu",
        "usr/lib/aarch64-linux-gnu",
        "etc",
        "usr/share/doc/hello",
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "usr/bin/hello").write_bytes(HELLO)
    os.symlink("hello", root / "usr/bin/hi")
    (root / "etc/hello.conf").write_bytes(CONF)
    (root / "usr/lib/x86_64-linux-gnu/libfoo.so.1").write_bytes(LIB)
    (root / "usr/lib/aarch64-linux-gnu/libfoo.so.1").write_bytes(LIB + b"arm")
    hello = InstalledPackage(
        {
            "Package": "hello",
            "Version": "2.10-3",
            "Architecture": ARCH,
            "Maintainer": "M <m@example.org>",
            "Description": "says hello\n A friendly program.",
            "Depends": "libfoo1",
        },
        files=("/.", "/usr", "/usr/bin", "/usr/bin/hello", "/usr/bin/hi", "/etc", "/etc/hello.conf"),
        md5sums={"usr/bin/hello": md5(HELLO), "usr/share/doc/hello/changelog.gz": "c" * 32},  # doc pruned
        conffiles=(("/etc/hello.conf", md5(CONF)), ("/etc/hello.d/pruned.conf", "d" * 32)),
    )
    libs = [
        InstalledPackage(
            {
                "Package": "libfoo1",
                "Version": "1.0",
                "Architecture": arch,
                "Multi-Arch": "same",
                "Maintainer": "M <m@example.org>",
                "Description": "a library",
            },
            files=("/.", "/usr", "/usr/lib", f"/usr/lib/{triplet}", f"/usr/lib/{triplet}/libfoo.so.1"),
        )
        for arch, triplet in (("arm64", "aarch64-linux-gnu"), (ARCH, "x86_64-linux-gnu"))
    ]
    return [hello, *libs]


def query(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", *args], capture_output=True, text=True
    )


def verify(root: Path) -> str:
    done = subprocess.run(
        ["dpkg", f"--admindir={root}/var/lib/dpkg", f"--instdir={root}", "--verify"],
        capture_output=True,
        text=True,
    )
    return done.stdout + done.stderr


@needs_dpkg
def test_dpkg_query_lists_exactly_the_written_packages(tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = write_dpkg_db(root, make_tree(root), ARCH, ["arm64"], epoch=1_700_000_000)
    done = query(root, "-W", "-f", "${Package}:${Architecture} ${Version} ${Status}\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "hello:amd64 2.10-3 install ok installed",
        "libfoo1:amd64 1.0 install ok installed",
        "libfoo1:arm64 1.0 install ok installed",
    ]
    assert "hello: conffile /etc/hello.d/pruned.conf is not kept: left out of Conffiles" in result.notes
    assert (root / "var/lib/dpkg/arch").read_text() == "amd64\narm64\n"
    assert sorted(os.listdir(root / "var/lib/dpkg/info")) == [
        "format",
        "hello.conffiles",
        "hello.list",
        "hello.md5sums",
        "libfoo1:amd64.list",
        "libfoo1:amd64.md5sums",
        "libfoo1:arm64.list",
        "libfoo1:arm64.md5sums",
    ]


@needs_dpkg
@pytest.mark.parametrize(
    ("path", "owner"),
    [
        ("/usr/bin/hello", "hello: /usr/bin/hello"),
        ("/etc/hello.conf", "hello: /etc/hello.conf"),
        ("/usr/lib/aarch64-linux-gnu/libfoo.so.1", "libfoo1:arm64: /usr/lib/aarch64-linux-gnu/libfoo.so.1"),
    ],
)
def test_dpkg_query_finds_the_owner(tmp_path: Path, path: str, owner: str) -> None:
    root = tmp_path / "root"
    write_dpkg_db(root, make_tree(root), ARCH, ["arm64"])
    done = query(root, "-S", path)
    assert done.stdout.strip() == owner, done.stderr


@needs_dpkg
def test_dpkg_verify_is_clean_then_reports_a_deleted_and_a_changed_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_dpkg_db(root, make_tree(root), ARCH, ["arm64"])
    assert verify(root) == ""
    (root / "usr/bin/hello").unlink()
    (root / "etc/hello.conf").write_bytes(b"greeting=changed\n")
    (root / "usr/lib/aarch64-linux-gnu/libfoo.so.1").write_bytes(b"tampered")
    lines = sorted(verify(root).splitlines())
    assert lines == sorted(
        [
            "??5?????? c /etc/hello.conf",
            "??5??????   /usr/lib/aarch64-linux-gnu/libfoo.so.1",
            "missing     /usr/bin/hello",
        ]
    )


def test_md5sums_list_only_kept_regular_files_matching_disk(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_dpkg_db(root, make_tree(root), ARCH, ["arm64"])
    info = root / "var/lib/dpkg/info"
    # the symlink, directories, the conffile and the pruned doc file are not listed; hashes match the disk
    assert (info / "hello.md5sums").read_text() == f"{md5(HELLO)}  usr/bin/hello\n"
    assert (
        info / "libfoo1:arm64.md5sums"
    ).read_text() == f"{md5(LIB + b'arm')}  usr/lib/aarch64-linux-gnu/libfoo.so.1\n"
    assert (info / "hello.conffiles").read_text() == "/etc/hello.conf\n"
    assert (info / "hello.list").read_text().splitlines()[0] == "/."


def test_changed_file_is_reported_and_keeps_the_package_md5(tmp_path: Path) -> None:
    root = tmp_path / "root"
    pkgs = make_tree(root)
    (root / "usr/bin/hello").write_bytes(b"modified")
    result = write_dpkg_db(root, pkgs, ARCH, ["arm64"])
    assert "hello: /usr/bin/hello differs from the package's md5sum" in result.notes
    assert md5(HELLO) in (root / "var/lib/dpkg/info/hello.md5sums").read_text()


def test_output_is_deterministic_whatever_the_input_order(tmp_path: Path) -> None:
    outputs = []
    for n, order in ((1, slice(None)), (2, slice(None, None, -1))):
        root = tmp_path / f"r{n}"
        pkgs = make_tree(root)[order]
        write_dpkg_db(root, pkgs, ARCH, ["arm64", "arm64"], epoch=1_700_000_000)
        db = root / "var/lib/dpkg"
        outputs.append(
            {
                str(p.relative_to(db)): (p.read_bytes() if p.is_file() else b"dir", int(p.stat().st_mtime))
                for p in sorted(db.rglob("*"))
            }
        )
    assert outputs[0] == outputs[1]
    assert {m for _, m in outputs[0].values()} == {1_700_000_000}


def test_rewrite_removes_stale_info_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    pkgs = make_tree(root)
    write_dpkg_db(root, pkgs, ARCH, ["arm64"])
    result = write_dpkg_db(root, pkgs[:1], ARCH)
    assert sorted(os.listdir(root / "var/lib/dpkg/info")) == [
        "format",
        "hello.conffiles",
        "hello.list",
        "hello.md5sums",
    ]
    assert "removed stale /var/lib/dpkg/info/libfoo1:arm64.list" in result.notes


@pytest.mark.parametrize(
    ("packages", "foreign", "message"),
    [
        (
            [{"Package": "Bad_Name", "Version": "1", "Architecture": ARCH}],
            [],
            "package name 'Bad_Name' is not valid",
        ),
        ([{"Package": "ab", "Architecture": ARCH}], [], "ab has no Version"),
        (
            [{"Package": "ab", "Version": "1", "Architecture": "arm64"}],
            [],
            "ab is arm64, not a configured architecture",
        ),
        ([{"Package": "ab", "Version": "1", "Architecture": ARCH}] * 2, [], "ab is listed twice"),
        (
            [
                {"Package": "ab", "Version": "1", "Architecture": ARCH},
                {"Package": "ab", "Version": "1", "Architecture": "arm64"},
            ],
            ["arm64"],
            "ab is installed for two architectures but is not Multi-Arch: same",
        ),
        ([], ["../../x"], "architecture '../../x' is not valid"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    tmp_path: Path, packages: list[dict[str, str]], foreign: list[str], message: str
) -> None:
    with pytest.raises(RootfsError, match="cannot write the dpkg database: .*" + message.replace("(", r"\(")):
        write_dpkg_db(tmp_path, [InstalledPackage(c) for c in packages], ARCH, foreign)
    assert list(tmp_path.iterdir()) == []


def test_info_files_cannot_escape_through_a_symlinked_admindir(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    (root / "var/lib").mkdir(parents=True)
    os.symlink(str(outside), root / "var/lib/dpkg")
    write_dpkg_db(root, [], ARCH)
    assert list(outside.iterdir()) == []
