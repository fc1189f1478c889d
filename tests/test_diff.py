"""forge diff: packages, files and layers between lock files, rootfs trees and OCI images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rootfs_forge.audit.diff import diff_sides, open_side, read_lock
from rootfs_forge.cli import main
from rootfs_forge.errors import AuditError
from tests.support.debs import Dir, Reg, make_tar
from tests.test_audit import LOWER, UPPER, build_host_tree, oci_layout


def _lock(path: Path, packages: list[tuple[str, str, str]]) -> Path:
    path.write_text("# forge lock\n[recipe]\nsha256 = \"00\"\n\n" + "".join(
        f'[[package]]\nname = "{n}"\nversion = "{v}"\narchitecture = "{a}"\nsha256 = "ab"\nsize = 1\n\n'
        for n, v, a in packages))
    return path


@pytest.mark.parametrize(("a", "b", "added", "removed", "changed"), [
    ([("libc6", "2.36-9", "amd64")], [("libc6", "2.36-9", "amd64")], [], [], []),
    ([("libc6", "2.36-9", "amd64")], [("libc6", "2.36-9+deb12u4", "amd64"), ("zlib1g", "1:1.2.13", "amd64")],
     [("zlib1g:amd64", "1:1.2.13")], [], [("libc6:amd64", "2.36-9", "2.36-9+deb12u4")]),
    ([("libc6", "2.36-9", "amd64"), ("libc6", "2.36-9", "i386")], [("libc6", "2.36-9", "amd64")],
     [], [("libc6:i386", "2.36-9")], []),
])
def test_lock_files_compare_by_name_and_architecture(tmp_path: Path, a: list[tuple[str, str, str]],
                                                     b: list[tuple[str, str, str]], added: list[tuple[str, str]],
                                                     removed: list[tuple[str, str]],
                                                     changed: list[tuple[str, str, str]]) -> None:
    report = diff_sides(open_side(str(_lock(tmp_path / "a.lock", a))), open_side(str(_lock(tmp_path / "b.lock", b))))
    assert (list(report.added), list(report.removed), list(report.changed)) == (added, removed, changed)
    assert not report.compared_files and report.shared_layers is None


def test_lock_entry_without_version_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.lock"
    path.write_text('[[package]]\nname = "x"\n')
    with pytest.raises(AuditError, match=r"cannot read .*bad\.lock: package #1 has no name and version"):
        read_lock(str(path))


def test_toml_without_packages_is_not_a_lock(tmp_path: Path) -> None:
    path = tmp_path / "recipe.toml"
    path.write_text('[image]\nname = "x"\n')
    assert read_lock(str(path)) is None


@pytest.fixture
def two_trees(tmp_path: Path) -> tuple[Path, Path]:
    a = tmp_path / "a"
    a.mkdir()
    build_host_tree(a)
    b = tmp_path / "b"
    shutil.copytree(a, b, symlinks=True)
    (b / "etc/hostname").write_text("another-name\n")  # changed: 6 -> 13 bytes
    (b / "usr/bin/true").unlink()  # removed
    (b / "etc/new.conf").write_text("x" * 100)  # added
    status = b / "var/lib/dpkg/status"
    status.write_text(status.read_text().replace("Version: 9.1-1", "Version: 9.1-2"))
    return a, b


def test_trees_compare_packages_files_and_bytes(two_trees: tuple[Path, Path]) -> None:
    a, b = two_trees
    report = diff_sides(open_side(str(a)), open_side(str(b)))
    assert list(report.changed) == [("coreutils:amd64", "9.1-1", "9.1-2")]
    assert list(report.files_added) == [("/etc/new.conf", 100)]
    true_size = (a / "usr/bin/true").stat().st_size
    assert list(report.files_removed) == [("/usr/bin/true", true_size)]
    changed = dict((p, (x, y)) for p, x, y in report.files_changed)
    assert changed["/etc/hostname"] == (6, 13)
    assert "/var/lib/dpkg/status" in changed
    status_delta = changed["/var/lib/dpkg/status"][1] - changed["/var/lib/dpkg/status"][0]
    assert report.bytes_delta == 100 - true_size + 7 + status_delta


def test_same_size_different_content_counts_as_changed(two_trees: tuple[Path, Path]) -> None:
    a, b = two_trees
    (b / "etc/os-release").write_text((a / "etc/os-release").read_text().replace("12", "13"))
    report = diff_sides(open_side(str(a)), open_side(str(b)))
    assert "/etc/os-release" in [p for p, _, _ in report.files_changed]


def test_oci_images_report_shared_layers(tmp_path: Path) -> None:
    oci_layout(tmp_path / "one", [LOWER])
    oci_layout(tmp_path / "two", [LOWER, UPPER])
    report = diff_sides(open_side(str(tmp_path / "one")), open_side(str(tmp_path / "two")))
    assert report.shared_layers is not None and len(report.shared_layers) == 1
    assert report.shared_layers[0] == report.a.layers[0] == report.b.layers[0]
    assert [p for p, _ in report.files_added] == ["/opt/new"]
    assert sorted(p for p, _ in report.files_removed) == ["/etc/gone", "/opt/old", "/opt/sub/deep"]


def test_lock_against_tree_compares_packages_only(two_trees: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = two_trees
    lock = _lock(tmp_path / "x.lock", [("coreutils", "9.1-1", "amd64"), ("gone", "1", "all")])
    report = diff_sides(open_side(str(lock)), open_side(str(a)))
    assert ("gone:all", "1") in report.removed
    assert "coreutils:amd64" not in [k for k, _ in report.added]
    assert not report.compared_files


def test_cli_diff_json_is_canonical(two_trees: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_trees
    assert main(["diff", str(a), str(b), "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert out.strip() == json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert data["packages"]["changed"] == [{"package": "coreutils:amd64", "from": "9.1-1", "to": "9.1-2"}]
    assert data["files"]["bytes_added"] == 100


def test_cli_diff_human_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = tmp_path / "one.tar"
    one.write_bytes(make_tar([Dir("etc"), Reg("etc/a", "1")]))
    two = tmp_path / "two.tar"
    two.write_bytes(make_tar([Dir("etc"), Reg("etc/a", "22"), Reg("etc/b", "3")]))
    assert main(["diff", str(one), str(two)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "packages: +0 -0 ~0"
    assert "files: +1 -0 ~1, bytes +2 B" in out
    assert "  + /etc/b (1 B)" in out and "  ~ /etc/a (1 B -> 2 B)" in out
