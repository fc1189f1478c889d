"""``forge run``'s mounts against an image (or volume) you did not write: masked and read-only /proc and /sys
paths, nodev everywhere but forge's own device nodes, recursively read-only ``:ro`` volumes, nosuid/nodev
volumes, and bounded tmpfs sizes. Each attack test is named after the attack; the probes are harmless even when
they succeed (a sysctl is written back with the value it already has, device nodes are copies of /dev/null or
opened read-only, the tmpfs a test mounts on the host is its own).
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rootfs_forge.errors import RunError
from rootfs_forge.run import spec
from rootfs_forge.run.spec import Volume, parse_volume
from tests.support.hostile import PRELUDE, HostileImage, results

REPO = Path(__file__).resolve().parents[1]
ROOT = os.geteuid() == 0
SYSTEM_PYTHON = "/usr/bin/python3"
MASKED = ("/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
          "/sys/devices/virtual/powercap")
READ_ONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys")
ST_RDONLY, ST_NOSUID, ST_NODEV, ST_NOEXEC = os.ST_RDONLY, os.ST_NOSUID, os.ST_NODEV, os.ST_NOEXEC


# ------------------------------------------------------------------------------------------------------------
# pure parts
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "read_only", "flags"), [
    ("/a:/b", False, {}),
    ("/a:/b:ro", True, {}),
    ("/a:/b:rw", False, {}),
    ("/a:/b:ro,dev", True, {"dev": True}),
    ("/a:/b:suid,dev,noexec", False, {"dev": True, "suid": True, "noexec": True}),
    ("/a:/b:nodev,nosuid,exec,rw", False, {}),
])
def test_parse_volume_options(text: str, read_only: bool, flags: dict[str, bool]) -> None:
    assert parse_volume(text) == Volume("/a", "/b", read_only, **flags)
    assert parse_volume(text) != Volume("/a", "/b", not read_only, **flags)


@pytest.mark.parametrize(("bad", "reason"), [
    ("/a:/b:rx", "unknown volume option 'rx'"), ("/a:/b:ro,rw", "conflicting"), ("/a:/b:dev,nodev", "conflicting"),
    ("/a:/b:", "unknown volume option ''"), ("/a:/b:ro,,dev", "unknown volume option ''"),
])
def test_parse_volume_rejects_unknown_options(bad: str, reason: str) -> None:
    with pytest.raises(RunError, match=reason):
        parse_volume(bad)


@pytest.mark.parametrize(("memory", "ram", "expected"), [
    (None, 16 << 30, 2 << 30),       # an eighth of RAM
    (64 << 20, 16 << 30, 16 << 20),  # a quarter of --memory
    (64 << 30, 16 << 30, 2 << 30),   # never more than an eighth of RAM
    (1 << 20, 16 << 30, 1 << 20),    # at least 1 MiB
    (None, 4 << 30, 512 << 20),
])
def test_default_tmpfs_size(memory: int | None, ram: int, expected: int) -> None:
    assert spec.default_tmpfs_size(memory, ram) == expected


# ------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------

@pytest.fixture()
def img(tmp_path: Path) -> HostileImage:
    if not ROOT:
        pytest.skip("needs root")
    return HostileImage.build(tmp_path)


def check(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return results(proc)


@pytest.fixture()
def rootless_base() -> Iterator[Path]:
    """A dir outside pytest's 0700 tree that uid 65534 can use, with a copy of the package; removed after."""
    if not (ROOT and os.path.exists(SYSTEM_PYTHON) and shutil.which("setpriv")):
        pytest.skip("needs root, /usr/bin/python3 and setpriv to run as an unprivileged user")
    base = Path(tempfile.mkdtemp(prefix="forge-mounts-"))
    try:
        base.chmod(0o755)
        shutil.copytree(REPO / "rootfs_forge", base / "pkg" / "rootfs_forge",
                        ignore=shutil.ignore_patterns("__pycache__"))
        for d in ("xdg", "state", "cache"):
            (base / d).mkdir()
        for p in [base, *base.rglob("*")]:
            os.lchown(p, 65534, 65534)
        yield base
    finally:
        shutil.rmtree(base)


def rootless_image(base: Path) -> Path:
    """A hostile image root for the system Python (host /usr bound read-only), readable by uid 65534."""
    root = HostileImage.build(base / "img").root
    for p in [base / "img", *(base / "img").rglob("*")]:
        os.lchown(p, 65534, 65534)
    return root


def run_rootless(base: Path, root: Path, options: list[str], code: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(base), "XDG_RUNTIME_DIR": str(base / "xdg"),
           "XDG_STATE_HOME": str(base / "state"), "PYTHONPATH": str(base / "pkg"), "PYTHONDONTWRITEBYTECODE": "1"}
    argv = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", SYSTEM_PYTHON, "-m",
            "rootfs_forge", "run", "--cache-dir", str(base / "cache"), "-v", "/usr:/usr:ro", *options, str(root),
            SYSTEM_PYTHON, "-I", "-S", "-c", PRELUDE + code]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, cwd=base)


@pytest.fixture()
def host_tmpfs_dir() -> Iterator[Path]:
    """A host dir (usable by uid 65534) with a test-owned tmpfs mounted on its ``sub`` dir; unmounted after."""
    if not ROOT:
        pytest.skip("needs root")
    base = Path(tempfile.mkdtemp(prefix="forge-vol-"))
    sub = base / "sub"
    sub.mkdir()
    mounted = False
    try:
        base.chmod(0o777)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0777", "forge-test-vol", str(sub)], check=True)
        mounted = True
        yield base
    finally:
        if mounted:
            subprocess.run(["umount", str(sub)], check=True)
        shutil.rmtree(base)


# ------------------------------------------------------------------------------------------------------------
# attack 1: host root through /proc/sys (core_pattern), and the other read-only /proc paths
# ------------------------------------------------------------------------------------------------------------

WRITE_BACK = r'''
def write_back(path):
    """Write a file's own current content back to it (harmless even when allowed)."""
    try:
        value = open(path, "rb").read()
    except OSError as exc:
        return "read:" + errno.errorcode.get(exc.errno, "?")
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as exc:
        return errno.errorcode.get(exc.errno, "?")
    try:
        os.write(fd, value)
        return "written"
    except OSError as exc:
        return "write:" + errno.errorcode.get(exc.errno, "?")
    finally:
        os.close(fd)
print("core_pattern=" + write_back("/proc/sys/kernel/core_pattern"))
print("file_max=" + write_back("/proc/sys/fs/file-max"))
print("sysrq=" + attempt(lambda: os.close(os.open("/proc/sysrq-trigger", os.O_WRONLY))))
for p in ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"):
    f = os.statvfs(p).f_flag if os.path.exists(p) else -1
    print(f"flags:{p}={f}")
print("proc_flags=%d" % os.statvfs("/proc").f_flag)
'''


def _assert_proc_sys_read_only(out: dict[str, str]) -> None:
    assert out["core_pattern"] in ("EROFS", "EACCES"), out
    assert out["file_max"] in ("EROFS", "EACCES"), out
    sysrq_expected = ("EROFS", "EACCES") if os.path.exists("/proc/sysrq-trigger") else ("ENOENT",)
    assert out["sysrq"] in sysrq_expected, out
    for p in READ_ONLY:
        if os.path.exists(p):
            flags = int(out[f"flags:{p}"])
            assert flags & ST_RDONLY and flags & ST_NOSUID and flags & ST_NODEV and flags & ST_NOEXEC, (p, flags)
    flags = int(out["proc_flags"])
    assert not flags & ST_RDONLY and flags & ST_NOSUID and flags & ST_NODEV and flags & ST_NOEXEC


@pytest.mark.root
def test_core_pattern_write_is_refused(img: HostileImage) -> None:
    before = Path("/proc/sys/kernel/core_pattern").read_text()
    out = check(img.run([], WRITE_BACK))
    assert Path("/proc/sys/kernel/core_pattern").read_text() == before
    _assert_proc_sys_read_only(out)


@pytest.mark.root
def test_core_pattern_write_is_refused_rootless(rootless_base: Path) -> None:
    out = check(run_rootless(rootless_base, rootless_image(rootless_base), [], WRITE_BACK))
    _assert_proc_sys_read_only(out)


# ------------------------------------------------------------------------------------------------------------
# masked /proc and /sys paths
# ------------------------------------------------------------------------------------------------------------

MASK_PROBE = f"for p in {MASKED!r}:" + r'''
    if not os.path.lexists(p):
        print(p + "=missing"); continue
    try:
        if os.path.isdir(p):
            n = len(os.listdir(p))
        else:
            with open(p, "rb") as f:
                n = len(f.read(65536))
        print(p + ("=empty" if n == 0 else f"=content:{n}"))
    except OSError as exc:
        print(p + "=" + errno.errorcode.get(exc.errno, "?"))
    if os.path.isdir(p):
        print(p + ":write=" + attempt(lambda: os.close(os.open(p + "/x", os.O_WRONLY | os.O_CREAT, 0o644))))
    else:  # a masked file is /dev/null (writing to it, even on a read-only mount, goes nowhere)
        st = os.stat(p)
        print(p + ":write=" + ("null" if st.st_mode & 0o170000 == 0o020000 and st.st_rdev == os.makedev(1, 3)
                               else "proc-file"))
'''


def _assert_masked(out: dict[str, str]) -> None:
    present = [p for p in MASKED if os.path.lexists(p)]
    assert present  # the test checks something on this host
    for p in MASKED:
        if p not in present:  # not on this kernel: nothing to mask, and nothing to see inside either
            assert out[p] == "missing", (p, out[p])
    assert {p: out[p] for p in present if out[p] not in ("empty", "EACCES", "EPERM")} == {}  # nothing readable
    for p in present:
        if os.path.isdir(p):
            assert out[f"{p}:write"] in ("EROFS", "EACCES", "EPERM"), (p, out[f"{p}:write"])
        else:
            assert out[f"{p}:write"] == "null", (p, out[f"{p}:write"])


@pytest.mark.root
def test_masked_proc_and_sys_paths_are_empty(img: HostileImage) -> None:
    _assert_masked(check(img.run([], MASK_PROBE)))


@pytest.mark.root
def test_masked_proc_and_sys_paths_are_empty_rootless(rootless_base: Path) -> None:
    root = rootless_image(rootless_base)
    _assert_masked(check(run_rootless(rootless_base, root, [], MASK_PROBE)))
    # with the host's network there is no sysfs of our own: the host's /sys is bound, masked and read-only
    # all the way down (its cgroup filesystems included)
    probe = MASK_PROBE + r'''
for p in ("/sys", "/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified"):
    if os.path.exists(p):
        print(f"sysflags:{p}=%d" % os.statvfs(p).f_flag)
'''
    out = check(run_rootless(rootless_base, root, ["--network", "host"], probe))
    _assert_masked(out)
    keys = [k for k in out if k.startswith("sysflags:")]
    assert len(keys) >= 2, out
    for k in keys:
        assert int(out[k]) & ST_RDONLY and int(out[k]) & ST_NODEV and int(out[k]) & ST_NOSUID, (k, out[k])


# ------------------------------------------------------------------------------------------------------------
# attack 3: host device nodes (shipped in the image, on a volume, or made with mknod inside)
# ------------------------------------------------------------------------------------------------------------

def _root_block_device() -> int:
    """st_dev of the host's / (its block device: the probe only ever opens it read-only)."""
    return os.stat("/").st_dev


DEVICE_PROBE = r'''
def opens(path, flags):
    return attempt(lambda: os.close(os.open(path, flags)))
print("image_null=" + opens("/devnull-copy", os.O_RDWR))
print("image_block=" + opens("/rootblk", os.O_RDONLY))
print("volume_null=" + opens("/vol/devnull-copy", os.O_RDWR))
print("forge_null=" + opens("/dev/null", os.O_RDWR))
print("forge_zero=" + opens("/dev/zero", os.O_RDONLY))
print("forge_tty_ptmx=" + opens("/dev/ptmx", os.O_RDWR | os.O_NOCTTY))
print("forge_openpty=" + attempt(lambda: [os.close(fd) for fd in os.openpty()]))  # the /dev/pts/N side opens
for d in ("/tmp", "/", "/dev", "/dev/shm"):
    p = os.path.join(d, "made-null")
    try:
        os.mknod(p, 0o20666, os.makedev(1, 3))
    except OSError as exc:
        print(f"made:{d}=mknod:" + errno.errorcode.get(exc.errno, "?")); continue
    print(f"made:{d}=open:" + opens(p, os.O_RDWR))
for p in ("/", "/tmp", "/dev", "/dev/shm", "/vol", "/etc/hostname"):
    print(f"flags:{p}=%d" % os.statvfs(p).f_flag)
'''


def _device_tree(root: Path, vol: Path) -> None:
    os.mknod(root / "devnull-copy", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(root / "rootblk", stat.S_IFBLK | 0o666, _root_block_device())
    vol.mkdir()
    os.mknod(vol / "devnull-copy", stat.S_IFCHR | 0o666, os.makedev(1, 3))


def _assert_no_device_opens(out: dict[str, str]) -> None:
    for name in ("forge_null", "forge_zero", "forge_tty_ptmx", "forge_openpty"):  # forge's own nodes still work
        assert out[name] == "ok", (name, out)
    assert out["image_null"] in ("EACCES", "EPERM"), out
    assert out["image_block"] in ("EACCES", "EPERM"), out
    assert out["volume_null"] in ("EACCES", "EPERM"), out
    for d in ("/tmp", "/", "/dev", "/dev/shm"):
        assert out[f"made:{d}"] in ("mknod:EPERM", "open:EACCES", "open:EPERM"), (d, out[f"made:{d}"])
    for p in ("/", "/tmp", "/dev", "/dev/shm", "/vol", "/etc/hostname"):
        assert int(out[f"flags:{p}"]) & ST_NODEV, p


@pytest.mark.root
@pytest.mark.parametrize("storage", ["overlay", "copy"])
def test_host_device_node_cannot_be_opened(img: HostileImage, tmp_path: Path, storage: str) -> None:
    vol = tmp_path / "vol"
    _device_tree(img.root, vol)
    out = check(img.run(["--storage", storage, "-v", f"{vol}:/vol"], DEVICE_PROBE))
    _assert_no_device_opens(out)


@pytest.mark.root
def test_host_device_node_cannot_be_opened_rootless(rootless_base: Path) -> None:
    root = rootless_image(rootless_base)
    vol = rootless_base / "vol"
    _device_tree(root, vol)
    out = check(run_rootless(rootless_base, root, ["-v", f"{vol}:/vol"], DEVICE_PROBE))
    _assert_no_device_opens(out)


@pytest.mark.root
def test_host_device_node_in_an_image_layer_cannot_be_opened(img: HostileImage, tmp_path: Path) -> None:
    """The node comes in an OCI layer (unpacked into the layer cache, then an overlay lower)."""
    from tests.support.images import write_layout

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("usr", "proc", "dev", "sys", "tmp", "etc"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name in ("bin", "lib", "lib64", "sbin"):  # as HostileImage makes them (usr-merged host)
            if os.path.islink(f"/{name}"):
                info = tarfile.TarInfo(name)
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(f"/{name}")
                tar.addfile(info)
        info = tarfile.TarInfo("devnull-copy")
        info.type, info.mode, info.devmajor, info.devminor = tarfile.CHRTYPE, 0o666, 1, 3
        tar.addfile(info)
    write_layout(tmp_path / "layout", [buf.getvalue()], "t")
    argv = img.argv([], 'print("layer_null=" + attempt(lambda: os.close(os.open("/devnull-copy", os.O_RDWR))))',
                    forge_args=["--cache-dir", str(tmp_path / "cache")])
    argv[argv.index(str(img.root))] = f"{tmp_path / 'layout'}:t"
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert check(proc)["layer_null"] in ("EACCES", "EPERM", "ENOENT")
    # nor is it made on the host, where anyone reaching the layer cache could open it
    cached = [p for p in (tmp_path / "cache").rglob("*") if p.lstat().st_mode & 0o170000 in (stat.S_IFCHR,
                                                                                               stat.S_IFBLK)]
    assert [p.name for p in cached if p.lstat().st_rdev != 0] == []


@pytest.mark.root
def test_volume_dev_option_keeps_device_nodes_usable(img: HostileImage, tmp_path: Path) -> None:
    """The opt-out: ``-v HOST:CTR:dev`` is the user's explicit choice (forge then adds no nodev)."""
    vol = tmp_path / "vol"
    vol.mkdir()
    os.mknod(vol / "devnull-copy", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    out = check(img.run(["-v", f"{vol}:/vol:dev"], 'print("vol=" + attempt(lambda: os.close(os.open('
                                                   '"/vol/devnull-copy", os.O_RDWR))))'))
    assert out["vol"] == "ok"


# ------------------------------------------------------------------------------------------------------------
# attack 6: :ro volumes read-only below their top; volumes nosuid,nodev by default
# ------------------------------------------------------------------------------------------------------------

RO_PROBE = r'''
print("top=" + attempt(lambda: open("/v/top.txt", "w").close()))
print("sub=" + attempt(lambda: open("/v/sub/x", "w").close()))
print("subdir=" + attempt(os.mkdir, "/v/sub/d"))
print("flags_top=%d" % os.statvfs("/v").f_flag)
print("flags_sub=%d" % os.statvfs("/v/sub").f_flag)
'''


def _assert_ro_volume(out: dict[str, str], vol: Path) -> None:
    assert out["top"] == "EROFS" and out["sub"] == "EROFS" and out["subdir"] == "EROFS", out
    for key in ("flags_top", "flags_sub"):
        assert int(out[key]) & ST_RDONLY and int(out[key]) & ST_NODEV and int(out[key]) & ST_NOSUID, (key, out)
    assert sorted(p.name for p in vol.iterdir()) == ["sub"] and list((vol / "sub").iterdir()) == []


@pytest.mark.root
def test_ro_volume_submounts_are_readonly(img: HostileImage, host_tmpfs_dir: Path) -> None:
    out = check(img.run(["-v", f"{host_tmpfs_dir}:/v:ro"], RO_PROBE))
    _assert_ro_volume(out, host_tmpfs_dir)


@pytest.mark.root
def test_ro_volume_submounts_are_readonly_rootless(rootless_base: Path, host_tmpfs_dir: Path) -> None:
    out = check(run_rootless(rootless_base, rootless_image(rootless_base), ["-v", f"{host_tmpfs_dir}:/v:ro"],
                             RO_PROBE))
    _assert_ro_volume(out, host_tmpfs_dir)


@pytest.mark.root
def test_volumes_are_nosuid_nodev_unless_asked(img: HostileImage, host_tmpfs_dir: Path) -> None:
    probe = r'''
for p in ("/a", "/a/sub", "/b", "/b/sub", "/c"):
    print(f"{p}=%d" % os.statvfs(p).f_flag)
print("write_a=" + attempt(lambda: open("/a/sub/w", "w").close()))
'''
    out = check(img.run(["-v", f"{host_tmpfs_dir}:/a", "-v", f"{host_tmpfs_dir}:/b:dev,suid",
                         "-v", f"{host_tmpfs_dir}:/c:noexec"], probe))
    for p in ("/a", "/a/sub", "/c"):
        assert int(out[p]) & ST_NOSUID and int(out[p]) & ST_NODEV, (p, out)
    for p in ("/b", "/b/sub"):  # the host's own flags: neither dir's mount is nosuid or nodev
        assert not int(out[p]) & (ST_NOSUID | ST_NODEV), (p, out)
    assert not int(out["/a"]) & ST_NOEXEC and int(out["/c"]) & ST_NOEXEC
    assert out["write_a"] == "ok" and (host_tmpfs_dir / "sub" / "w").exists()


@pytest.mark.root
def test_unknown_volume_option_is_a_one_line_error(img: HostileImage) -> None:
    proc = img.run(["-v", "/tmp:/x:rshared"], "print('ran')")
    assert proc.returncode == 8 and "ran" not in proc.stdout
    assert proc.stderr.strip().startswith("forge: cannot parse volume '/tmp:/x:rshared': unknown volume option")
    assert proc.stderr.count("\n") == 1


# ------------------------------------------------------------------------------------------------------------
# attack 8 (part): bounded tmpfs for /tmp and the writable layer
# ------------------------------------------------------------------------------------------------------------

FILL_PROBE = r'''
import re
def size_of(mountpoint):
    for line in open("/proc/self/mountinfo"):
        f = line.split()
        if f[4] == mountpoint:
            m = re.search(r"\bsize=(\d+)k", line.split(" - ")[1])
            return int(m.group(1)) * 1024 if m else 0
    return -1
print("tmp_size=%d" % size_of("/tmp"))
def fill(path, limit):
    total, chunk = 0, b"x" * (1 << 20)
    try:
        with open(path, "wb", buffering=0) as f:
            while total < limit:
                total += f.write(chunk)
    except OSError as exc:
        return f"{errno.errorcode.get(exc.errno)}:{os.path.getsize(path)}"
    return f"full:{total}"
FILL
'''


def _fill(code: str) -> str:
    return FILL_PROBE.replace("FILL", code)


@pytest.mark.root
def test_filling_default_tmpfs_gives_enospc(img: HostileImage) -> None:
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    out = check(img.run([], _fill("")))
    expected = (ram // 8) & ~4095  # an eighth of RAM, in whole pages (see test_default_tmpfs_size)
    assert int(out["tmp_size"]) == expected
    assert spec.default_tmpfs_size(None, ram) == expected
    # --memory 64m: /tmp and the writable layer each get a quarter of it and fill up with ENOSPC (16 MiB), not
    # an OOM kill; the limit is 3x what fits, so a missing bound would show as a full write or a kill
    out = check(img.run(["--memory", "64m"], _fill(
        'print("tmp=" + fill("/tmp/fill", 48 << 20)); os.unlink("/tmp/fill")\n'
        'print("upper=" + fill("/fill", 48 << 20))')))
    assert int(out["tmp_size"]) == 16 << 20
    code, _, size = out["tmp"].partition(":")
    assert code == "ENOSPC" and int(size) == 16 << 20, out
    code, _, size = out["upper"].partition(":")
    assert code == "ENOSPC" and (15 << 20) <= int(size) <= 16 << 20, out


@pytest.mark.root
@pytest.mark.parametrize("storage", ["overlay", "copy"])
def test_writable_layer_size_option(img: HostileImage, storage: str) -> None:
    out = check(img.run(["--storage", storage, "--upper-size", "8m", "--tmp-size", "4m"], _fill(
        'print("upper=" + fill("/fill", 32 << 20)); print("tmp=" + fill("/tmp/fill", 32 << 20))')))
    code, _, size = out["upper"].partition(":")
    assert code == "ENOSPC" and (7 << 20) <= int(size) <= 8 << 20, out
    assert out["tmp"] == f"ENOSPC:{4 << 20}" and int(out["tmp_size"]) == 4 << 20, out
    bad = img.run(["--upper-size", "lots"], "print('ran')")
    assert bad.returncode == 8 and bad.stderr.count("\n") == 1 and "--upper-size" in bad.stderr


@pytest.mark.root
@pytest.mark.parametrize("storage", ["overlay", "copy"])
def test_filling_default_tmpfs_gives_enospc_rootless(rootless_base: Path, storage: str) -> None:
    root = rootless_image(rootless_base)
    out = check(run_rootless(rootless_base, root, ["--storage", storage], _fill("")))
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert int(out["tmp_size"]) == (ram // 8) & ~4095  # (no --memory: rootless forge cannot make cgroups here)
    options = ["--storage", storage, "--upper-size", "8m", "--tmp-size", "4m"]
    out = check(run_rootless(rootless_base, root, options,
                             _fill('print("upper=" + fill("/fill", 32 << 20)); '
                                   'print("tmp=" + fill("/tmp/fill", 32 << 20))')))
    code, _, size = out["upper"].partition(":")
    assert code == "ENOSPC" and (7 << 20) <= int(size) <= 8 << 20, out
    assert out["tmp"] == f"ENOSPC:{4 << 20}", out


# ------------------------------------------------------------------------------------------------------------
# the recursive flags without mount_setattr (kernels before 5.12)
# ------------------------------------------------------------------------------------------------------------

def test_tree_mounts_lists_a_tree_in_mount_order_with_escapes_decoded() -> None:
    from rootfs_forge.run.mountsec import tree_mounts

    info = ("20 1 0:1 / / rw - ext4 /dev/x rw\n"
            "21 20 0:2 / /v rw - tmpfs t rw\n"
            "22 21 0:3 / /v/sub rw - tmpfs t rw\n"
            "23 20 0:4 / /vv rw - tmpfs t rw\n"
            "24 21 0:5 / /v/with\\040space rw - tmpfs t rw\n")
    assert tree_mounts(info, "/v") == ["/v", "/v/sub", "/v/with space"]
    assert tree_mounts(info, "/v/") == ["/v", "/v/sub", "/v/with space"]
    assert tree_mounts(info, "/") == ["/", "/v", "/v/sub", "/vv", "/v/with space"]


FALLBACK = r'''
import os, subprocess, sys
from rootfs_forge.run import mountsec
from rootfs_forge.run import syscalls as sc
base = sys.argv[1]
a, b = os.path.join(base, "a"), os.path.join(base, "b")
os.mkdir(a); os.mkdir(b)
sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
sc.mount("tmpfs", a, "tmpfs", 0, "size=1m")
for name in ("sub", "with space"):
    os.mkdir(os.path.join(a, name))
    sc.mount("tmpfs", os.path.join(a, name), "tmpfs", 0, "size=1m")
sc.mount("tmpfs", os.path.join(a, "sub"), "tmpfs", sc.MS_NOEXEC, "size=1m")  # stacked: the top one counts
sc.mount(a, b, None, sc.MS_BIND | sc.MS_REC)
mountsec._mount_setattr = lambda path, flags: 38  # ENOSYS, as on Linux < 5.12
mountsec.add_flags_recursive(b, sc.MS_RDONLY | sc.MS_NODEV)
for p in (b, b + "/sub", b + "/with space", a, a + "/sub"):
    print(p[len(base):] + "=%d" % os.statvfs(p).f_flag)
'''


@pytest.mark.root
def test_recursive_flags_fallback_remounts_every_submount(tmp_path: Path) -> None:
    if not shutil.which("unshare"):
        pytest.skip("needs unshare (util-linux)")
    proc = subprocess.run(["unshare", "--mount", sys.executable, "-c", FALLBACK, str(tmp_path)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    out = check(proc)
    for p in ("/b", "/b/sub", "/b/with space"):
        assert int(out[p]) & ST_RDONLY and int(out[p]) & ST_NODEV, (p, out)
    assert int(out["/b/sub"]) & ST_NOEXEC  # kept
    for p in ("/a", "/a/sub"):  # the bound tree's source is untouched
        assert not int(out[p]) & (ST_RDONLY | ST_NODEV), (p, out)
