"""File capabilities (setcap's text → security.capability, the effect, the record, layers) and the bytecode
effect's selection, offline. The real-mirror acceptance is in tests/test_fidelity_real.py."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import libarchive
import pytest

from rootfs_forge.audit.privileges import decode_capability
from rootfs_forge.audit.xattrs import entry_capability
from rootfs_forge.configure.effects.base import PackageInfo
from rootfs_forge.configure.effects.bytecode import cache_from_source, interpreter_of, selection
from rootfs_forge.configure.effects.fcaps import setcap_calls
from rootfs_forge.configure.effects.pycompile import parse_records, records
from rootfs_forge.image.layer import write_layer
from rootfs_forge.unpack.writer import TreeWriter
from rootfs_forge.util.fcaps import XATTR, CapabilityTextError, encode

# cap_from_text input → the xattr libcap2-bin 2.66's setcap writes (read back with os.getxattr)
SETCAP_TABLE = {
    "cap_net_raw+ep": "0100000200200000000000000000000000000000",
    "cap_net_raw+e": "0100000200000000000000000000000000000000",
    "=ep": "01000002ffffffff00000000ff01000000000000",
    "all=ep": "01000002ffffffff00000000ff01000000000000",
    "cap_net_raw,cap_sys_admin+eip": "0100000200202000002020000000000000000000",
    "=": "0000000200000000000000000000000000000000",
    "cap_net_raw=ep cap_net_raw-e": "0000000200200000000000000000000000000000",
    "13+ep": "0100000200200000000000000000000000000000",
    "40+p": "0000000200000000000000000001000000000000",
    "cap_net_raw+ie": "0100000200000000002000000000000000000000",
    "cap_net_raw=p+e": "0100000200200000000000000000000000000000",
    "cap_sys_admin,cap_setfcap+i": "0000000200000000000020800000000000000000",
    "cap_net_bind_service=+ep": "0100000200040000000000000000000000000000",
}
REFUSED = ("cap_net_raw+p cap_chown+ep", "CAP_NET_RAW+EP", "cap_bogus+ep", "+ep", "cap_net_raw", "", "41+p")

PING_POSTINST = """#!/bin/sh
set -e
PROGRAM=$(dpkg-divert --truename /bin/ping)
if [ "$1" = configure ]; then
    if command -v setcap > /dev/null; then
        if setcap cap_net_raw+ep $PROGRAM; then
            chmod u-s $PROGRAM
        else
            echo "Setcap failed on $PROGRAM, falling back to setuid" >&2
            chmod u+s $PROGRAM
        fi
    fi
fi
"""


@pytest.mark.parametrize("text", sorted(SETCAP_TABLE))
def test_capability_text_encodes_as_setcap_writes_it(text: str) -> None:
    assert encode(text).hex() == SETCAP_TABLE[text]


@pytest.mark.parametrize("text", REFUSED)
def test_capability_text_setcap_refuses_is_refused(text: str) -> None:
    with pytest.raises(CapabilityTextError):
        encode(text)


@pytest.mark.root
def test_capability_table_matches_the_real_setcap_and_getcap(tmp_path: Path) -> None:
    """The table above is what Debian's setcap writes; getcap reads our bytes back as the text's meaning."""
    if os.geteuid() != 0 or not shutil.which("setcap") or not shutil.which("getcap"):
        pytest.skip("needs root and libcap2-bin (setcap, getcap)")
    f = tmp_path / "f"
    f.write_bytes(b"")
    for text, expected in SETCAP_TABLE.items():
        subprocess.run(["setcap", "-r", str(f)], capture_output=True)
        subprocess.run(["setcap", text, str(f)], check=True, capture_output=True)
        assert os.getxattr(f, XATTR).hex() == expected, text
        os.setxattr(f, XATTR, encode(text))
        shown = subprocess.run(["getcap", str(f)], capture_output=True, text=True, check=True).stdout
        subprocess.run(["setcap", text, str(f)], check=True)
        assert subprocess.run(["getcap", str(f)], capture_output=True, text=True).stdout == shown
    for text in REFUSED[:1]:
        assert subprocess.run(["setcap", text, str(f)], capture_output=True).returncode != 0


def test_ping_postinst_setcap_call_is_read_through_its_variable() -> None:
    calls, drop_setuid, failed = setcap_calls(PING_POSTINST)
    assert calls == [("cap_net_raw+ep", "/bin/ping")]
    assert drop_setuid == ["/bin/ping"] and failed == 0


def test_setcap_on_a_path_built_at_run_time_is_not_emulated() -> None:
    calls, _, failed = setcap_calls('for f in $(ls /usr/bin); do setcap cap_net_raw+ep "$f"; done\n'
                                    "P=/bin/a\nP=/bin/b\nsetcap cap_chown+ep $P\nsetcap -r /bin/x\n")
    assert calls == [] and failed == 3


def _writer(root: Path, privileged: bool) -> TreeWriter:
    w = TreeWriter(root, merged_usr=False, arch_multiarch="amd64", allow_devices=False, epoch=1700000000,
                   privileged=privileged)
    w.add_file("/usr/bin/ping", b"\x7fELF not really", 0o755)
    return w


def test_capability_is_recorded_and_carried_into_the_layer_as_a_pax_record(tmp_path: Path) -> None:
    w = _writer(tmp_path / "root", privileged=False)
    value = encode("cap_net_raw+ep")
    w.set_xattr("/usr/bin/ping", XATTR, value)
    assert w.lookup("/usr/bin/ping").xattrs == ((XATTR, value),)  # type: ignore[union-attr]
    xattrs = {p.lstrip("/"): e.xattrs for p, e in w.entries().items() if e.xattrs}
    blobs = [write_layer(tmp_path / "root", tmp_path / f"out{i}", epoch=1700000000, compression="none",
                         xattrs=xattrs) for i in range(2)]
    assert blobs[0].digest == blobs[1].digest  # deterministic
    data = blobs[0].path.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.getmember("usr/bin/ping")
    raw = member.pax_headers["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape")
    assert raw == value
    with libarchive.memory_reader(data) as archive:  # what the run unpack and the audit read
        found = {e.pathname: entry_capability(e) for e in archive}
    assert found["usr/bin/ping"] == value and decode_capability(value) == "cap_net_raw=ep"
    plain = write_layer(tmp_path / "root", tmp_path / "out3", epoch=1700000000, compression="none")
    assert b"SCHILY.xattr" not in plain.path.read_bytes()


@pytest.mark.root
def test_capability_is_set_on_disk_when_composing_as_root_and_survives_a_chown(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("security.* attributes need root")
    w = _writer(tmp_path / "root", privileged=True)
    value = encode("cap_net_raw+ep")
    w.set_xattr("/usr/bin/ping", XATTR, value)
    w.set_meta("/usr/bin/ping", 0o755, 0, 0)  # a chown clears security.capability on disk: it is set again
    assert os.getxattr(tmp_path / "root/usr/bin/ping", XATTR) == value


def _pkg(name: str, files: tuple[str, ...], postinst: str = "", version: str = "") -> PackageInfo:
    return PackageInfo(name, {"Version": version} if version else {}, {"postinst": postinst} if postinst else {},
                       files)


def test_bytecode_selection_follows_the_python_postinsts() -> None:
    pkgs = {
        "python3.11-minimal": _pkg("python3.11-minimal", ("/usr/bin/python3.11",), version="3.11.2-6"),
        "libpython3.11-minimal": _pkg("libpython3.11-minimal", ("/usr/lib/python3.11/os.py",
                                                                "/usr/lib/python3.11/encodings/utf_8.py",
                                                                "/usr/lib/python3.11/LICENSE.txt")),
        "libpython3.11-stdlib": _pkg("libpython3.11-stdlib", ("/usr/lib/python3.11/json/__init__.py",)),
        "python3-minimal": _pkg("python3-minimal", ("/usr/share/python3/debpython/files.py",
                                                    "/usr/bin/py3compile"),
                                "if which py3compile >/dev/null 2>&1; then\n"
                                "\tpy3compile -p python3-minimal /usr/share/python3/\nfi\n"),
        "python3-six": _pkg("python3-six", ("/usr/lib/python3/dist-packages/six.py",
                                            "/usr/share/doc/python3-six/x.py"),
                            "if which py3compile >/dev/null 2>&1; then\n\tpy3compile -p python3-six \nfi\n"),
        "weird": _pkg("weird", ("/opt/a.py",), "py3compile -p weird -V 3.11- /opt\n"),
        "python3-distutils": _pkg("python3-distutils", ("/usr/lib/python3.11/distutils/core.py",),
                                  "files=$(dpkg -L python3-distutils | sed -n '/^\\/usr\\/lib\\/.*\\.py$/p')\n"
                                  "/usr/bin/$python -E -S /usr/lib/$python/py_compile.py $files\n"),
    }
    assert interpreter_of(pkgs) == ("3.11", "3.11.2-6")
    groups, unhandled = selection(pkgs, "3.11", has_py3compile=True)
    assert groups == {
        "libpython3.11-minimal": ["/usr/lib/python3.11/encodings/utf_8.py", "/usr/lib/python3.11/os.py"],
        "python3-distutils": ["/usr/lib/python3.11/distutils/core.py"],
        "python3-minimal": ["/usr/share/python3/debpython/files.py"],
        "python3-six": ["/usr/lib/python3/dist-packages/six.py"],
    }  # libpython3.11-stdlib: compiled by python3.11's postinst, and python3.11 is not installed
    assert unhandled == ["weird/postinst"]
    groups, _ = selection(pkgs, "3.11", has_py3compile=False)
    assert sorted(groups) == ["libpython3.11-minimal", "python3-distutils"]
    assert cache_from_source("/usr/lib/python3.11/os.py", "cpython-311") == \
        "/usr/lib/python3.11/__pycache__/os.cpython-311.pyc"


def test_pyc_records_round_trip() -> None:
    pycs = {"/a/b.py": b"\x00\x01pyc", "/a/\udcff.py": b"", "/c.py": b"x" * 70000}
    assert parse_records(records(pycs)) == pycs
