"""The last differences between a forge tree and one dpkg (mmdebstrap) installs, closed (issue #14).

Each test pins one behaviour to what Debian's own tools leave in a tree: the merged-/usr links usr-is-merged
keeps, /etc/shells as update-shells orders it (checked against the host's update-shells where it exists), no
empty statoverride file, /etc/shadow only with the ``passwd`` package, the placeholder /etc/fstab.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.fidelity import status_differs_by_hook_only, without_stanza
from rootfs_forge.configure.dpkgwriter import write_dpkg_db
from rootfs_forge.configure.effects import accounts, identity, shells
from rootfs_forge.configure.effects.base import EffectContext, EffectOptions, HostTools, PackageInfo
from rootfs_forge.unpack.writer import TreeWriter
from tests.support.debs import DebSpec, Dir, Reg, build_deb

EPOCH = 1_700_000_000


def _writer(root: Path) -> TreeWriter:
    return TreeWriter(root, merged_usr=True, arch_multiarch="amd64", allow_devices=False, epoch=EPOCH)


def _deb(tmp: Path, spec: DebSpec) -> Path:
    path = tmp / f"{spec.name}.deb"
    path.write_bytes(build_deb(spec))
    return path


def test_unowned_biarch_links_are_dropped_like_usr_is_merged(tmp_path: Path) -> None:
    w = _writer(tmp_path / "root")
    w.add_package("libc6", _deb(tmp_path, DebSpec("libc6", members=[
        Dir("./lib64"), Reg("./lib64/ld-linux-x86-64.so.2", "ld")])))
    assert w.drop_unowned_libdirs() == ["/lib32", "/usr/lib32", "/libx32", "/usr/libx32"]
    root = tmp_path / "root"
    assert sorted(p.name for p in root.iterdir()) == ["bin", "lib", "lib64", "sbin", "usr"]
    assert os.readlink(root / "lib64") == "usr/lib64"
    assert (root / "usr/lib64/ld-linux-x86-64.so.2").read_text() == "ld"
    assert not (root / "usr/lib32").exists() and "/lib32" not in w.entries() and "/usr/lib32" not in w.entries()


def test_biarch_link_a_package_ships_into_is_kept(tmp_path: Path) -> None:
    w = _writer(tmp_path / "root")
    w.add_package("libc6-i386", _deb(tmp_path, DebSpec("libc6-i386", members=[
        Dir("./lib32"), Reg("./lib32/ld-linux.so.2", "ld32")])))
    w.add_package("x32-libs", _deb(tmp_path, DebSpec("x32-libs", members=[
        Dir("./usr"), Dir("./usr/libx32"), Reg("./usr/libx32/libfoo.so", "x")])))
    removed = w.drop_unowned_libdirs()
    # /lib32 is owned; /libx32 is not (only /usr/libx32 is), so only the link goes, the directory stays
    assert removed == ["/lib64", "/usr/lib64", "/libx32"]
    root = tmp_path / "root"
    assert os.readlink(root / "lib32") == "usr/lib32" and (root / "lib32/ld-linux.so.2").read_text() == "ld32"
    assert (root / "usr/libx32/libfoo.so").read_text() == "x" and not (root / "libx32").is_symlink()


def test_dpkg_database_has_no_empty_statoverride(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    write_dpkg_db(root, [], "amd64", epoch=EPOCH)
    admin = root / "var/lib/dpkg"
    assert (admin / "status").exists() and (admin / "diversions").exists()
    assert not (admin / "statoverride").exists()


def _ctx(root: Path, packages: tuple[str, ...], **options: object) -> EffectContext:
    infos = {n: PackageInfo(n, {"Package": n}, {}, ()) for n in packages}
    return EffectContext(root, infos, "amd64", HostTools(architecture="amd64"), EPOCH,
                         EffectOptions(**options))  # type: ignore[arg-type]


MASTER_PASSWD = "root:*:0:0:root:/root:/bin/bash\nnobody:*:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
MASTER_GROUP = "root:*:0:\nshadow:*:42:\nnogroup:*:65534:\n"


def _base_passwd_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "usr/share/base-passwd").mkdir(parents=True)
    (root / "usr/share/base-passwd/passwd.master").write_text(MASTER_PASSWD)
    (root / "usr/share/base-passwd/group.master").write_text(MASTER_GROUP)
    return root


def test_without_passwd_package_there_is_no_shadow_file(tmp_path: Path) -> None:
    root = _base_passwd_root(tmp_path)
    result = accounts.apply(_ctx(root, ("base-passwd",)))
    assert (root / "etc/passwd").read_text() == MASTER_PASSWD  # base-passwd's postinst copy, as dpkg leaves it
    assert (root / "etc/group").read_text() == MASTER_GROUP
    assert not (root / "etc/shadow").exists() and not (root / "etc/gshadow").exists()
    assert {c.path for c in result.changed} == {"/etc/passwd", "/etc/group"}


def test_passwd_package_runs_shadowconfig_on(tmp_path: Path) -> None:
    root = _base_passwd_root(tmp_path)
    accounts.apply(_ctx(root, ("base-passwd", "passwd")))
    assert (root / "etc/passwd").read_text().splitlines()[0] == "root:x:0:0:root:/root:/bin/bash"
    assert (root / "etc/shadow").read_text().splitlines()[0].split(":")[:2] == ["root", "*"]
    assert (root / "etc/gshadow").stat().st_mode & 0o777 == 0o640


def test_forge_made_rows_are_locked_without_shadow(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    accounts.apply(_ctx(root, ()))
    rows = [line.split(":") for line in (root / "etc/passwd").read_text().splitlines()]
    assert [r[:2] for r in rows] == [["root", "*"], ["nobody", "*"]]


def test_fstab_placeholder_is_written_like_debootstrap(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    identity.apply(_ctx(root, ()))
    fstab = root / "etc/fstab"
    assert fstab.read_text() == "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n" and fstab.stat().st_mode & 0o777 == 0o644
    fstab.write_text("/dev/sda1 / ext4 defaults 0 1\n")
    identity.apply(_ctx(root, ()))
    assert fstab.read_text() == "/dev/sda1 / ext4 defaults 0 1\n"  # a shipped or recipe fstab is kept


TEMPLATE = "# /etc/shells: valid login shells\n/bin/sh\n"
REGISTERED = {"bash": "/bin/bash\n/bin/rbash\n", "dash": "/bin/dash\n", "zsh": "/bin/zsh\n/usr/bin/zsh\n"}


def _shells_tree(root: Path) -> None:
    (root / "usr/bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "usr/share/debianutils/shells.d").mkdir(parents=True)
    (root / "usr/share/debianutils/shells").write_text(TEMPLATE)
    for name, text in REGISTERED.items():
        (root / "usr/share/debianutils/shells.d" / name).write_text(text)
    (root / "etc").mkdir()
    (root / "var/lib").mkdir(parents=True)


def test_shells_interleave_each_shell_with_its_real_path(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _shells_tree(root)
    shells.apply(_ctx(root, ("debianutils",)))
    assert (root / "etc/shells").read_text().splitlines() == [
        "# /etc/shells: valid login shells", "/bin/sh", "/usr/bin/sh", "/bin/bash", "/usr/bin/bash", "/bin/rbash",
        "/usr/bin/rbash", "/bin/dash", "/usr/bin/dash", "/bin/zsh", "/usr/bin/zsh", "/usr/bin/zsh"]
    # (zsh names /usr/bin/zsh itself too: update-shells appends it twice, so does forge)


@pytest.mark.skipif(shutil.which("update-shells") is None or shutil.which("dpkg-realpath") is None,
                    reason="needs debianutils' update-shells and dpkg-realpath (Debian)")
def test_shells_match_the_real_update_shells(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for root in (ours, theirs):
        _shells_tree(root)
    shells.apply(_ctx(ours, ("debianutils",)))
    shutil.copy(theirs / "usr/share/debianutils/shells", theirs / "etc/shells")  # debianutils' postinst
    update = shutil.which("update-shells")
    assert update is not None
    subprocess.run(["sh", update, "--root", str(theirs)], check=True, capture_output=True)
    assert (ours / "etc/shells").read_text() == (theirs / "etc/shells").read_text()
    assert (ours / "var/lib/shells.state").read_text() == (theirs / "var/lib/shells.state").read_text()


STATUS_A = "Package: a\nStatus: install ok installed\nVersion: 1\n\n"
HOOK = "Package: usr-is-merged\nStatus: install ok installed\nVersion: 37\n\n"
STATUS_B = "Package: zz\nStatus: install ok installed\nVersion: 2\n\n"


def test_bench_explains_a_status_file_only_by_the_hook_stanza(tmp_path: Path) -> None:
    mm, forge = tmp_path / "mm", tmp_path / "forge"
    for root in (mm, forge):
        (root / "var/lib/dpkg").mkdir(parents=True)
    (mm / "var/lib/dpkg/status").write_text(STATUS_A + HOOK + STATUS_B)
    (forge / "var/lib/dpkg/status").write_text(STATUS_A + STATUS_B)
    assert without_stanza(STATUS_A + HOOK + STATUS_B, "usr-is-merged") == STATUS_A + STATUS_B
    assert status_differs_by_hook_only(mm, forge)
    (forge / "var/lib/dpkg/status").write_text(STATUS_A + STATUS_B.replace("Version: 2", "Version: 3"))
    assert not status_differs_by_hook_only(mm, forge)  # any other difference stays unexplained
