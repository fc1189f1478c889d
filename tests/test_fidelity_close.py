"""The last differences between a forge tree and one dpkg (mmdebstrap) installs, closed (issue #14).

Each test pins one behaviour to what Debian's own tools leave in a tree: the merged-/usr links usr-is-merged
keeps, /etc/shells as update-shells orders it (checked against the host's update-shells where it exists), no
empty statoverride file, /etc/shadow only with the ``passwd`` package, the placeholder /etc/fstab.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import rootfs_forge
from bench.fidelity import shadow_differs_by_day_only, status_differs_by_hook_only, without_stanza
from rootfs_forge.configure.dpkgwriter import write_dpkg_db
from rootfs_forge.configure.effects import (
    accounts,
    cacerts,
    fcaps,
    identity,
    literal,
    nginxmods,
    shells,
    sshdconfig,
)
from rootfs_forge.configure.effects.base import EffectContext, EffectOptions, EffectResult, HostTools, PackageInfo
from rootfs_forge.configure.effects.literal_plan import plan
from rootfs_forge.unpack.writer import TreeWriter
from tests.conftest import base_specs, source_block
from tests.support.debs import DebSpec, Dir, Reg, build_deb
from tests.support.repo import Signer, build_repo, serve

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


def test_ca_certificates_makes_the_local_certificates_directory(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/share/ca-certificates/mozilla").mkdir(parents=True)
    (root / "usr/share/ca-certificates/mozilla/A.crt").write_text("-----A-----\n")
    (root / "usr/local/share").mkdir(parents=True)
    os.chmod(root / "usr/local", 0o2775)
    result = cacerts.apply(_ctx(root, ("ca-certificates",)))
    made = {c.path: c for c in result.changed}["/usr/local/share/ca-certificates"]
    assert (made.kind, made.mode) == ("dir", 0o2775)  # /usr/local's mode, as `mkdir -m $(stat …)` gives
    assert (root / "usr/local/share/ca-certificates").is_dir()
    assert (root / "etc/ssl/certs/ca-certificates.crt").read_text() == "-----A-----\n"


PYTHON3_POSTINST = """#! /bin/sh
set -e

new_config_file()
{
    cat > /etc/python3/debian_config <<-EOF
\t[DEFAULT]
\t# how to byte-compile (comma separated: standard, optimize)
\tbyte-compile = standard
\tEOF
}

case "$1" in
    configure)
\t[ -d /etc/python3 ] || mkdir /etc/python3
\t[ -f /etc/python3/debian_config ] || new_config_file
    ;;
esac
"""
DEBIAN_CONFIG = "[DEFAULT]\n# how to byte-compile (comma separated: standard, optimize)\nbyte-compile = standard\n"
PYTHON_PREINST = """#! /bin/sh
set -e
case "$1" in
    install)
\t# remember newly installed runtime
\tmkdir -p /var/lib/python
\ttouch /var/lib/python/python3.11_installed
    ;;
    upgrade)
\trm -f /usr/bin/python3.11
    ;;
esac
"""


def _literal_ctx(root: Path, scripts: dict[str, dict[str, str]]) -> EffectContext:
    infos = {n: PackageInfo(n, {"Package": n}, s, ()) for n, s in scripts.items()}
    return EffectContext(root, infos, "amd64", HostTools(architecture="amd64"), EPOCH, EffectOptions())


def test_heredoc_in_a_called_function_writes_the_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    result = literal.apply(_literal_ctx(root, {"python3": {"postinst": PYTHON3_POSTINST}}))
    assert (root / "etc/python3/debian_config").read_text() == DEBIAN_CONFIG
    assert (root / "etc/python3/debian_config").stat().st_mode & 0o777 == 0o644
    assert f"python3/postinst: cat > /etc/python3/debian_config <<EOF ({len(DEBIAN_CONFIG)} bytes)" in result.messages
    assert result.unhandled == ()


def test_heredoc_is_not_applied_when_the_file_exists_or_expands(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/python3").mkdir(parents=True)
    (root / "etc/python3/debian_config").write_text("mine\n")
    literal.apply(_literal_ctx(root, {"python3": {"postinst": PYTHON3_POSTINST}}))
    assert (root / "etc/python3/debian_config").read_text() == "mine\n"  # the [ -f ] guard holds
    expanding = PYTHON3_POSTINST.replace("byte-compile = standard", "byte-compile = $MODE")
    steps = plan(expanding, lambda test, path: False)
    cat = next(s for s in steps if s.words[0] == "cat")
    assert cat.reason == "the here-document expands variables or commands"


def test_heredoc_never_writes_through_a_link_out_of_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "etc/python3").mkdir(parents=True)
    outside.mkdir()
    (root / "etc/python3/debian_config").symlink_to(outside / "target")
    result = literal.apply(_literal_ctx(root, {"python3": {"postinst": PYTHON3_POSTINST.replace(
        "[ -f /etc/python3/debian_config ] || new_config_file", "new_config_file")}}))
    assert list(outside.iterdir()) == []
    assert os.readlink(root / "etc/python3/debian_config") == str(outside / "target")
    assert any("is a symbolic link" in m for m in result.messages) and result.unhandled == ("python3/postinst",)


def test_a_function_reading_its_arguments_is_not_replayed() -> None:
    script = 'f() {\n  mkdir -p "$1"\n}\ncase "$1" in\n  configure)\n    f\n  ;;\nesac\n'
    steps = plan(script, lambda test, path: False)
    assert [s.reason for s in steps] == ["in a shell function"]


def test_first_install_preinst_adds_only_what_it_makes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "var/lib").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/python3.11").write_text("binary")
    result = literal.apply(_literal_ctx(root, {"python3.11-minimal": {"preinst": PYTHON_PREINST}}))
    marker = root / "var/lib/python/python3.11_installed"
    assert marker.read_text() == "" and marker.stat().st_mode & 0o777 == 0o644
    assert (root / "usr/bin/python3.11").read_text() == "binary"  # the upgrade branch is not taken
    assert "python3.11-minimal/preinst: touch /var/lib/python/python3.11_installed" in result.messages
    removing = PYTHON_PREINST.replace("\ttouch /var", "\trm -f /usr/bin/python3.11\n\ttouch /var")
    (root / "var/lib/python/python3.11_installed").unlink()
    result = literal.apply(_literal_ctx(root, {"python3.11-minimal": {"preinst": removing}}))
    assert (root / "usr/bin/python3.11").read_text() == "binary"  # a preinst never removes what was unpacked
    assert result.unhandled == ("python3.11-minimal/preinst",)


IPROUTE2_POSTINST = """#!/bin/sh
set -e
. /usr/share/debconf/confmodule
case "$1" in
    configure)
        if command -v setcap > /dev/null; then
            db_get iproute2/setcaps
            if test "$RET" = "true"; then
                if ! setcap "cap_dac_override,cap_sys_admin,cap_net_admin=ep" /bin/ip; then
                   echo "Setcap failed on /bin/ip" >&2
                fi
            else
                if getcap /bin/ip | grep -qs "/bin/ip"; then
                    if ! setcap "-r" /bin/ip; then
                       echo "Setcap -r failed on /bin/ip" >&2
                    fi
                fi
            fi
        fi
    ;;
esac
"""


def _iproute2(tmp_path: Path, default: str) -> tuple[Path, EffectResult]:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "usr/bin/ip").write_text("ip")
    templates = f"Template: iproute2/setcaps\nType: boolean\nDefault: {default}\nDescription: caps?\n".encode()
    infos = {"iproute2": PackageInfo("iproute2", {"Package": "iproute2"}, {"postinst": IPROUTE2_POSTINST}, (),
                                     {"templates": templates}),
             "libcap2-bin": PackageInfo("libcap2-bin", {"Package": "libcap2-bin"}, {}, ())}
    ctx = EffectContext(root, infos, "amd64", HostTools(architecture="amd64"), EPOCH, EffectOptions(),
                        os.geteuid() == 0)
    return root, fcaps.apply(ctx)


def test_ip_gets_no_cap_sys_admin_when_debconf_says_no(tmp_path: Path) -> None:
    """iproute2 asks iproute2/setcaps (default false) before giving /bin/ip cap_sys_admin: an image must not
    hand every user a capability Debian's install withholds."""
    root, result = _iproute2(tmp_path, "false")
    assert result.changed == ()
    assert not [n for n in os.listxattr(root / "usr/bin/ip") if n == "security.capability"]
    assert "iproute2: no setcap: debconf iproute2/setcaps is false (the noninteractive answer)" in result.messages
    assert result.unhandled == ()


def test_ip_capabilities_follow_a_true_debconf_default(tmp_path: Path) -> None:
    root, result = _iproute2(tmp_path, "true")
    assert [c.path for c in result.changed] == ["/usr/bin/ip"]
    if os.geteuid() == 0:  # set on disk only when composing as root
        assert "security.capability" in os.listxattr(root / "usr/bin/ip")
    assert "cap_dac_override,cap_sys_admin,cap_net_admin=ep on /usr/bin/ip (iproute2)" in result.messages


def test_system_accounts_get_useradds_locked_shadow_rows(tmp_path: Path) -> None:
    root = _base_passwd_root(tmp_path)
    script = "adduser --system --group --no-create-home --home /run/sshd sshd\naddgroup --system _ssh\n"
    infos = {n: PackageInfo(n, {"Package": n}, s, ()) for n, s in
             {"base-passwd": {}, "passwd": {}, "openssh-server": {"postinst": script}}.items()}
    accounts.apply(EffectContext(root, infos, "amd64", HostTools(architecture="amd64"), EPOCH, EffectOptions()))
    shadow = {r.split(":")[0]: r for r in (root / "etc/shadow").read_text().splitlines()}
    day = EPOCH // 86400
    assert shadow["root"] == f"root:*:{day}:0:99999:7:::"  # pwconv's row for base-passwd's accounts
    assert shadow["sshd"] == f"sshd:!:{day}::::::"  # useradd's, as adduser --system leaves it
    gshadow = {r.split(":")[0]: r for r in (root / "etc/gshadow").read_text().splitlines()}
    assert gshadow["_ssh"] == "_ssh:!::" and gshadow["root"] == "root:*::"


OPENSSH_CLIENT_POSTINST = """#!/bin/sh
set -e
action="$1"
umask 022

set_ssh_agent_permissions() {
\tif ! getent group _ssh >/dev/null; then
\t\taddgroup --system --quiet --force-badname _ssh
\tfi
\tif ! dpkg-statoverride --list /usr/bin/ssh-agent >/dev/null; then
\t\tchgrp _ssh /usr/bin/ssh-agent
\t\tchmod 2755 /usr/bin/ssh-agent
\tfi
}

if [ "$action" = configure ]; then
\tset_ssh_agent_permissions
fi
"""


def test_ssh_agent_is_setgid_ssh_as_openssh_clients_postinst_makes_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/ssh-agent").write_text("agent")
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n_ssh:x:101:\n")
    result = literal.apply(_literal_ctx(root, {"openssh-client": {"postinst": OPENSSH_CLIENT_POSTINST}}))
    agent = {c.path: c for c in result.changed}["/usr/bin/ssh-agent"]
    assert (agent.mode, agent.uid, agent.gid) == (0o2755, 0, 101)
    assert result.messages == ("openssh-client/postinst: umask 022",
                               "openssh-client/postinst: chgrp _ssh /usr/bin/ssh-agent",
                               "openssh-client/postinst: chmod 2755 /usr/bin/ssh-agent")


SSHD_TEMPLATE = "#PermitRootLogin prohibit-password\n#PasswordAuthentication yes\nUsePAM yes\n"


def _sshd_root(tmp_path: Path, root_login: str) -> tuple[Path, EffectResult]:
    root = tmp_path / "root"
    (root / "usr/share/openssh").mkdir(parents=True)
    (root / "usr/share/openssh/sshd_config").write_text(SSHD_TEMPLATE)
    (root / "var/lib/ucf").mkdir(parents=True)
    (root / "var/lib/ucf/hashfile").write_text("")
    (root / "var/lib/ucf/registry").write_text("")
    templates = (f"Template: openssh-server/permit-root-login\nType: boolean\nDefault: {root_login}\n"
                 "Description: x\n\nTemplate: openssh-server/password-authentication\nType: boolean\n"
                 "Default: true\nDescription: y\n").encode()
    infos = {"openssh-server": PackageInfo("openssh-server", {"Package": "openssh-server"}, {}, (),
                                           {"templates": templates})}
    ctx = EffectContext(root, infos, "amd64", HostTools(architecture="amd64"), EPOCH, EffectOptions())
    return root, sshdconfig.apply(ctx)


def test_sshd_config_is_installed_and_registered_with_ucf(tmp_path: Path) -> None:
    root, _ = _sshd_root(tmp_path, "true")
    config = (root / "etc/ssh/sshd_config").read_bytes()
    assert config == SSHD_TEMPLATE.encode()  # the debconf defaults leave the shipped file as it is
    md5 = hashlib.md5(config).hexdigest()
    assert (root / "var/lib/ucf/hashfile").read_text() == f"{md5}  /etc/ssh/sshd_config\n"
    assert (root / "var/lib/ucf/registry").read_text() == "openssh-server \t /etc/ssh/sshd_config\n"
    assert (root / "var/lib/ucf/cache/:etc:ssh:sshd_config").read_bytes() == config
    assert not list((root / "etc/ssh").glob("ssh_host_*"))  # never a host key baked into an image


def test_sshd_config_follows_the_debconf_defaults(tmp_path: Path) -> None:
    root, _ = _sshd_root(tmp_path, "false")
    assert (root / "etc/ssh/sshd_config").read_text().splitlines()[0] == "PermitRootLogin yes"


def test_bench_explains_shadow_only_by_its_last_change_day(tmp_path: Path) -> None:
    mm, forge = tmp_path / "mm", tmp_path / "forge"
    for root in (mm, forge):
        (root / "etc").mkdir(parents=True)
    (mm / "etc/shadow").write_text("root:*:20792:0:99999:7:::\nsshd:!:20792::::::\n")
    (forge / "etc/shadow").write_text("root:*:20785:0:99999:7:::\nsshd:!:20785::::::\n")
    assert shadow_differs_by_day_only(mm, forge)
    (forge / "etc/shadow").write_text("root:*:20785:0:99999:7:::\nsshd:*:20785:0:99999:7:::\n")
    assert not shadow_differs_by_day_only(mm, forge)  # a row forge writes otherwise stays unexplained


NGINX_MODULE_POSTINST = """#!/bin/sh
set -e
# Automatically added by dh_nginx/UNDECLARED
for confpair in mod-http-echo.conf:50-mod-http-echo.conf  ; do
\tfrom=$(echo $confpair | cut -d: -f1)
\tto=$(echo $confpair | cut -d: -f2)

\tif [ -L /etc/nginx/modules-enabled/$to.removed ]; then
\t\trm /etc/nginx/modules-enabled/$to.removed
\t\tremoved_link=true
\telse
\t\tremoved_link=false
\tfi

\tif [ -z "$2" -o "$removed_link" = "true" ]; then
\t\tln -sf /usr/share/nginx/modules-available/$from \\
\t\t\t/etc/nginx/modules-enabled/$to
\tfi
done
"""


def test_nginx_module_is_enabled_like_dh_nginx_snippet(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/nginx/modules-enabled").mkdir(parents=True)
    (root / "usr/share/nginx/modules-available").mkdir(parents=True)
    (root / "usr/share/nginx/modules-available/mod-http-echo.conf").write_text("load_module x.so;\n")
    infos = {"nginx-common": PackageInfo("nginx-common", {"Package": "nginx-common"}, {}, ()),
             "libnginx-mod-http-echo": PackageInfo("libnginx-mod-http-echo", {}, {"postinst": NGINX_MODULE_POSTINST},
                                                   ())}
    nginxmods.apply(EffectContext(root, infos, "amd64", HostTools(architecture="amd64"), EPOCH, EffectOptions()))
    link = root / "etc/nginx/modules-enabled/50-mod-http-echo.conf"
    assert os.readlink(link) == "/usr/share/nginx/modules-available/mod-http-echo.conf"
    assert nginxmods.module_pairs(NGINX_MODULE_POSTINST.replace("50-mod-http-echo.conf", "../../evil")) == []


def test_os_release_takes_version_id_and_codename_from_the_release_file(tmp_path: Path, signer: Signer) -> None:
    repo = build_repo(tmp_path / "repo", base_specs(), signer=signer, suite="testing", codename="flamingo",
                      extra_release="Version: 14.1")
    with serve(repo.root) as server:
        recipe = tmp_path / "img.toml"
        recipe.write_text('packages = ["hello"]\n' + source_block(server, signer))
        rootfs_forge.compose(recipe, tmp_path / "out", format="rootfs", cache_dir=tmp_path / "cache",
                             epoch=EPOCH)
    fields = dict(line.split("=", 1) for line in (tmp_path / "out/etc/os-release").read_text().splitlines())
    assert fields["VERSION_ID"] == '"14"'  # not in forge's codename table: only the Release says 14
    assert fields["VERSION_CODENAME"] == "flamingo" and fields["ID"] == "debian"
