"""``forge run``'s seccomp filter and capability options (issue #13): attacks a hostile image tries from inside,
each refused by the default filter; ordinary work that must still run; ``--security-opt``, ``--cap-add`` and
``--cap-drop``; the compiled-filter cache. The launching tests need root (``@pytest.mark.root``); the profile,
capability and option logic is tested without.

Blocked syscalls are probed with arguments the kernel itself would reject with another errno (EINVAL, EFAULT,
EBADF, ENOTTY ...): EPERM then shows that the filter stopped the call before the kernel looked at it, and the
probe is harmless even where nothing filters it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rootfs_forge.errors import RunError
from rootfs_forge.run import caps as capset
from rootfs_forge.run import seccomp, seccomp_profile
from rootfs_forge.run.syscalls import DEFAULT_CAPS
from tests.support.forge import forge as run_forge
from tests.support.hostile import PRELUDE, HostileImage, results
from tests.support.images import BUSYBOX
from tests.support.images import busybox_root as make_busybox_root

REPO = Path(__file__).resolve().parents[1]
ROOT = os.geteuid() == 0
X86_64 = os.uname().machine == "x86_64"
SYSTEM_PYTHON = "/usr/bin/python3"

# x86_64 syscall numbers (arm64 in brackets where the test runs there too)
NR = {"x86_64": {"keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321, "perf_event_open": 298,
                 "userfaultfd": 323, "open_by_handle_at": 304, "kexec_load": 246, "kexec_file_load": 320,
                 "init_module": 175, "finit_module": 313, "delete_module": 176, "clone": 56, "clone3": 435,
                 "getpid": 39},
      "aarch64": {"keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280, "perf_event_open": 241,
                  "userfaultfd": 282, "open_by_handle_at": 265, "kexec_load": 104, "kexec_file_load": 294,
                  "init_module": 105, "finit_module": 273, "delete_module": 106, "clone": 220, "clone3": 435,
                  "getpid": 172}}.get(os.uname().machine, {})

needs_root = pytest.mark.skipif(not ROOT, reason="needs root")
needs_nr = pytest.mark.skipif(not NR, reason="syscall numbers known for x86_64 and aarch64 only")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> HostileImage:
    if not ROOT:
        pytest.skip("needs root")
    return HostileImage.build(tmp_path_factory.mktemp("seccomp"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("seccomp-cache")


def probe(img: HostileImage, cache_dir: Path, code: str, *options: str, timeout: float = 60
          ) -> subprocess.CompletedProcess[str]:
    return img.run(["--cache-dir", str(cache_dir), *options], f"NR = {NR!r}\n" + code, timeout=timeout)


# Each probe prints ``result=<errno name or ok>`` for a call the kernel would refuse with another errno.
ATTACKS = {
    "keyring_keyctl": "print('result=' + err(lambda: libc.syscall(NR['keyctl'], 9999, 0, 0, 0, 0)))",  # EOPNOTSUPP
    "keyring_add_key": "print('result=' + err(lambda: libc.syscall(NR['add_key'], None, None, None, 0, -2)))",
    "keyring_request_key": "print('result=' + err(lambda: libc.syscall(NR['request_key'], None, None, None, 0)))",
    "bpf_program": "print('result=' + err(lambda: libc.syscall(NR['bpf'], 9999, None, 0)))",  # EINVAL
    "perf_event_open": "print('result=' + err(lambda: libc.syscall(NR['perf_event_open'], None, 0, -1, -1, 0)))",
    "userfaultfd": "print('result=' + err(lambda: libc.syscall(NR['userfaultfd'], 0x7fffffff)))",  # EINVAL
    "open_by_handle_at": "print('result=' + err(lambda: libc.syscall(NR['open_by_handle_at'], -1, None, 0)))",
    "terminal_injection_tiocsti": "print('result=' + err(lambda: libc.ioctl(0, ctypes.c_ulong(0x5412), b'x')))",
    "terminal_injection_tiocsti_high_bits":
        "print('result=' + err(lambda: libc.ioctl(0, ctypes.c_ulong(0xffffffff00005412), b'x')))",
    "console_tioclinux": "print('result=' + err(lambda: libc.ioctl(0, ctypes.c_ulong(0x541c), b'\\x0b')))",
}


@pytest.mark.root
@needs_nr
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_syscall_is_refused_with_eperm(hostile: HostileImage, cache: Path, attack: str) -> None:
    proc = probe(hostile, cache, ATTACKS[attack])
    assert proc.returncode == 0, proc.stderr
    assert results(proc)["result"] == "EPERM", proc.stdout


@pytest.mark.root
@pytest.mark.skipif(not X86_64, reason="the x32 ABI exists on x86_64 only")
def test_foreign_abi_syscall_is_refused_with_eperm(hostile: HostileImage, cache: Path) -> None:
    """x32 (number | 0x40000000) and i386 (int 0x80) syscalls would dodge rules written for x86_64 numbers;
    the kernel answers getpid through them (or ENOSYS without that ABI), the filter refuses every foreign ABI."""
    proc = probe(hostile, cache, "r = libc.syscall(0x40000000 | 39)\n"
                                 "print('result=' + ('ok' if r > 0 else errno.errorcode[ctypes.get_errno()]))\n"
                                 + I386_GETPID)
    assert proc.returncode == 0, proc.stderr
    got = results(proc)
    assert got["result"] == "EPERM", proc.stdout
    assert got["i386"] == "EPERM", proc.stdout  # int 0x80 from a 64-bit process: the i386 ABI


# getpid (20) through ``int 0x80``, the i386 entry, from a page of machine code: mov eax, 20; int 0x80; ret
I386_GETPID = r'''
import mmap
page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
page.write(bytes([0xb8, 20, 0, 0, 0, 0xcd, 0x80, 0xc3]))
addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
r = ctypes.CFUNCTYPE(ctypes.c_int)(addr)()
print('i386=' + ('ok' if r > 0 else errno.errorcode.get(-r, str(r))))
'''


@pytest.mark.root
@needs_nr
@pytest.mark.parametrize("options", [["--no-init"], ["-u", "nobody"], ["--no-init", "-u", "65534:65534"]])
def test_keyring_is_refused_without_init_and_as_another_user(hostile: HostileImage, cache: Path,
                                                             options: list[str]) -> None:
    """The filter is installed on both start paths (init spawning the command, or the command as PID 1) and
    survives the switch to a non-root user."""
    proc = probe(hostile, cache, ATTACKS["keyring_keyctl"] + "\nprint(f'uid={os.getuid()}')", *options)
    assert proc.returncode == 0, proc.stderr
    got = results(proc)
    assert got["result"] == "EPERM" and got["uid"] == ("65534" if "-u" in options else "0"), got


NESTED_USERNS = r'''
CLONE_NEWNS, CLONE_NEWUSER = 0x20000, 0x10000000
def fresh(name, call):
    # each attempt from a fresh child: a namespace made by one must not change what the next one sees
    pid = os.fork()
    if pid == 0:
        print(name + '=' + call(), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
def clone_newuser():
    r = libc.syscall(NR['clone'], CLONE_NEWUSER | 17, 0, 0, 0, 0)  # SIGCHLD; like fork when it works
    if r == 0:
        os._exit(0)
    if r > 0:
        os.waitpid(r, 0)
    return 'ok' if r > 0 else errno.errorcode[ctypes.get_errno()]
fresh('unshare_user', lambda: err(lambda: libc.unshare(CLONE_NEWUSER)))
fresh('unshare_user_mount', lambda: err(lambda: libc.unshare(CLONE_NEWUSER | CLONE_NEWNS)))
fresh('clone_newuser', clone_newuser)
fresh('clone3', lambda: err(lambda: libc.syscall(NR['clone3'], None, 0)))  # EINVAL from the kernel
'''


@pytest.mark.root
@needs_nr
def test_nested_user_namespace_creation_is_refused(hostile: HostileImage, cache: Path) -> None:
    """``unshare -Ur`` inside the container would make the caller root of a new user namespace, with every
    capability there (mount, cgroup v1, namespace-only kernel code): refused, by unshare and by clone."""
    proc = probe(hostile, cache, NESTED_USERNS)
    assert proc.returncode == 0, proc.stderr
    got = results(proc)
    assert (got["unshare_user"], got["unshare_user_mount"], got["clone_newuser"]) == ("EPERM",) * 3, got
    assert got["clone3"] == "ENOSYS", got  # so glibc falls back to clone, whose flags the filter can see


LIFT_LIMIT = r'''
import mmap
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUSER = 0x20000, 0x2000000, 0x10000000
uid, gid = os.getuid(), os.getgid()
r = err(lambda: libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWCGROUP))
print('unshare=' + r, flush=True)
if r == 'ok':
    for name, text in (('setgroups', 'deny'), ('uid_map', f'0 {uid} 1'), ('gid_map', f'0 {gid} 1')):
        with open(f'/proc/self/{name}', 'w') as f:
            f.write(text)
    os.makedirs('/tmp/cg', exist_ok=True)
    m = err(lambda: libc.mount(b'cgroup', b'/tmp/cg', b'cgroup', 0, CONTROLLER))
    print('mount=' + m, flush=True)
    if m == 'ok':
        for name in LIMIT_FILES:
            def write():
                with open('/tmp/cg/' + name, 'w') as f:
                    f.write(RAISED)
            print(name + '=' + attempt(write), flush=True)
'''


@pytest.mark.root
@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/memory"), reason="needs the cgroup v1 memory controller")
def test_nested_userns_cannot_lift_memory_limit(hostile: HostileImage, cache: Path) -> None:
    """Attack #4 of issue #13: root of a nested user namespace mounts cgroup v1 and raises the container's own
    --memory limit, then allocates past it. The container must still be OOM-killed at 64 MiB. (Harmless where
    it works: the raised limit is the test container's own cgroup, removed when it exits.)"""
    code = (f"CONTROLLER = b'memory'; RAISED = '{1 << 30}'\n"
            "LIMIT_FILES = ('memory.memsw.limit_in_bytes', 'memory.limit_in_bytes')\n"
            + LIFT_LIMIT +
            "buf = mmap.mmap(-1, 160 << 20)\n"
            "for i in range(0, 160 << 20, 4096):\n    buf[i] = 1\n"
            "print('allocated=160m', flush=True)\n")
    proc = probe(hostile, cache, code, "--memory", "64m", timeout=120)
    got = results(proc)
    assert got.get("unshare") == "EPERM", (proc.stdout, proc.stderr)
    assert "allocated" not in got and proc.returncode == 137, (proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.root
@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/pids"), reason="needs the cgroup v1 pids controller")
def test_nested_userns_cannot_lift_pids_limit(hostile: HostileImage, cache: Path) -> None:
    """The same with --pids: raise pids.max from a nested user namespace, then start more processes."""
    code = ("CONTROLLER = b'pids'; LIMIT_FILES = ('pids.max',); RAISED = 'max'\n" + LIFT_LIMIT +
            "import time\nkids = []\n"
            "for _ in range(30):\n"
            "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
            "    if pid == 0:\n        time.sleep(2); os._exit(0)\n"
            "    kids.append(pid)\n"
            "print(f'started={len(kids)}', flush=True)\n"
            "for pid in kids:\n    os.waitpid(pid, 0)\n")
    proc = probe(hostile, cache, code, "--pids", "10")
    got = results(proc)
    assert got.get("unshare") == "EPERM", (proc.stdout, proc.stderr)
    assert int(got["started"]) < 10, proc.stdout


KERNEL_LOADING = r'''
for name in ('kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module'):
    print(name + '=' + err(lambda: libc.syscall(NR[name], -1, -1, None, 0xffff0000)))
status = dict(line.split(':\t', 1) for line in open('/proc/self/status').read().splitlines() if ':\t' in line)
print('seccomp_mode=' + status.get('Seccomp', '?'))
'''


@pytest.mark.root
@needs_nr
def test_kernel_loading_syscalls_are_refused_by_the_filter(hostile: HostileImage, cache: Path) -> None:
    """kexec and module loading: the capability checks refuse them already; the filter refuses them first
    (seccomp mode 2 in /proc/self/status), so a capability handed out by mistake does not open them."""
    proc = probe(hostile, cache, KERNEL_LOADING)
    assert proc.returncode == 0, proc.stderr
    got = results(proc)
    assert got.pop("seccomp_mode") == "2", proc.stdout
    assert set(got.values()) == {"EPERM"}, got


@pytest.mark.root
@needs_nr
def test_kexec_load_is_refused_even_with_cap_sys_boot(hostile: HostileImage, cache: Path) -> None:
    """Docker's profile never allows kexec: with CAP_SYS_BOOT the kernel would reach the (invalid) flags and
    answer EINVAL; the filter answers EPERM."""
    proc = probe(hostile, cache, KERNEL_LOADING, "--cap-add", "SYS_BOOT")
    assert proc.returncode == 0, proc.stderr
    got = results(proc)
    assert got["kexec_load"] == got["kexec_file_load"] == "EPERM", got


ORDINARY = r'''
import threading, subprocess, json, sqlite3, ssl, hashlib, socket
t = threading.Thread(target=lambda: None); t.start(); t.join(); print('thread=ok')
pid = os.fork()
if pid == 0:
    os._exit(7)
print('fork=' + str(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])))
print('sh=' + subprocess.run(['/bin/sh', '-c', 'echo $((6*7))'], capture_output=True, text=True).stdout.strip())
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.close(); print('socket=ok')
print('personality=' + err(lambda: libc.personality(ctypes.c_ulong(0xffffffff))))
print('mkdir=' + attempt(os.mkdir, '/tmp/d'))
'''


@pytest.mark.root
def test_ordinary_work_runs_under_the_default_filter(hostile: HostileImage, cache: Path) -> None:
    proc = probe(hostile, cache, ORDINARY)
    assert proc.returncode == 0, proc.stderr
    assert results(proc) == {"thread": "ok", "fork": "7", "sh": "42", "socket": "ok", "personality": "ok",
                             "mkdir": "ok"}


@pytest.fixture(scope="module")
def busybox_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (ROOT and os.path.exists(BUSYBOX)):
        pytest.skip("needs root and busybox-static")
    applets = ("sh", "true", "ls", "cat", "mkdir", "sleep", "grep")
    return make_busybox_root(tmp_path_factory.mktemp("bb") / "root", applets)


def forge_run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_forge("run", *args, epoch=None, cli=True, timeout=timeout)


@pytest.mark.root
def test_busybox_shell_pipeline_and_background_jobs_run(busybox_root: Path, cache: Path) -> None:
    proc = forge_run("--cache-dir", str(cache), str(busybox_root), "sh", "-c",
                     "mkdir /tmp/x && ls / | grep -c proc; sleep 0.1 & wait; cat /proc/self/status | grep Seccomp:")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "1" and lines[1].split() == ["Seccomp:", "2"]


@pytest.mark.root
@needs_nr
def test_seccomp_unconfined_removes_the_filter(hostile: HostileImage, cache: Path) -> None:
    proc = probe(hostile, cache, ATTACKS["keyring_keyctl"] + "\n" + KERNEL_LOADING.split("status =")[0]
                 + "print('seccomp_mode=' + open('/proc/self/status').read().split('Seccomp:')[1].split()[0])",
                 "--security-opt", "seccomp=unconfined")
    assert proc.returncode == 0, proc.stderr
    got = results(proc)
    assert got["result"] == "ENOTSUP" and got["seccomp_mode"] == "0", got  # the kernel answered keyctl


@pytest.mark.root
@needs_nr
def test_custom_docker_profile_replaces_the_default(hostile: HostileImage, cache: Path, tmp_path: Path) -> None:
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                      "comment": "no new directories"},
                     {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                      "includes": {"caps": ["CAP_SYS_ADMIN"]}}]}))
    proc = probe(hostile, cache, "print('mkdir=' + attempt(os.mkdir, '/tmp/d'))\n"
                                 "open('/tmp/f', 'w').write('x'); print('write=ok')\n"
                                 "print('rmdir=' + attempt(os.rmdir, '/tmp/none'))\n"
                                 + ATTACKS["keyring_keyctl"], "--security-opt", f"seccomp={profile}")
    assert proc.returncode == 0, proc.stderr
    # mkdir refused; writing works; the cap-conditioned rule does not apply; keyctl reaches the kernel
    assert results(proc) == {"mkdir": "EPERM", "write": "ok", "rmdir": "ENOENT", "result": "ENOTSUP"}


CAPS = "print('capeff=' + [l for l in open('/proc/self/status') if l.startswith('CapEff:')][0].split()[1])\n"


@pytest.mark.root
def test_cap_add_sys_admin_lifts_the_cap_conditioned_rules(hostile: HostileImage, cache: Path) -> None:
    """Docker's rules: with CAP_SYS_ADMIN, unshare is allowed. (Only a UTS namespace is made: harmless.)"""
    code = CAPS + "print('unshare_uts=' + err(lambda: libc.unshare(0x04000000)))\n"
    default = results(probe(hostile, cache, code))
    added = results(probe(hostile, cache, code, "--cap-add", "cap_sys_admin"))
    assert default["unshare_uts"] == "EPERM" and added["unshare_uts"] == "ok", (default, added)
    assert int(added["capeff"], 16) == int(default["capeff"], 16) | 1 << 21


@pytest.mark.root
def test_cap_drop_all_leaves_no_capabilities(hostile: HostileImage, cache: Path) -> None:
    assert results(probe(hostile, cache, CAPS, "--cap-drop", "ALL"))["capeff"] == "0" * 16
    only = results(probe(hostile, cache, CAPS, "--cap-drop", "all", "--cap-add", "NET_RAW"))
    assert int(only["capeff"], 16) == 1 << 13


MKNOD = CAPS + "print('mknod=' + attempt(os.mknod, '/tmp/null', 0o600 | 0o020000, os.makedev(1, 3)))\n"


@pytest.mark.root
def test_device_node_creation_needs_cap_add_mknod(hostile: HostileImage, cache: Path) -> None:
    """Without a device cgroup, CAP_MKNOD lets the container make a node for any host device: not in the
    default set; ``--cap-add MKNOD`` brings it back (the node is never opened here)."""
    default = results(probe(hostile, cache, MKNOD))
    assert not int(default["capeff"], 16) & 1 << 27 and default["mknod"] == "EPERM", default
    added = results(probe(hostile, cache, MKNOD, "--cap-add", "MKNOD"))
    assert int(added["capeff"], 16) & 1 << 27 and added["mknod"] == "ok", added


@pytest.mark.root
def test_compiled_filter_is_cached_and_reused(hostile: HostileImage, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    assert probe(hostile, cache_dir, "print('x=1')").returncode == 0
    files = list((cache_dir / "seccomp").iterdir())
    assert len(files) == 1 and files[0].suffix == ".bpf"
    before = files[0].stat()
    files[0].chmod(0o444)  # not replaced: a recompile would write a new file (rename) with mode 0644
    assert probe(hostile, cache_dir, "print('x=1')").returncode == 0
    after = files[0].stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert list((cache_dir / "seccomp").iterdir()) == files
    assert probe(hostile, cache_dir, "print('x=1')", "--cap-add", "SYS_ADMIN").returncode == 0
    assert len(list((cache_dir / "seccomp").iterdir())) == 2  # another capability set, another program


@pytest.mark.root
def test_tampered_cache_file_is_not_trusted(hostile: HostileImage, tmp_path: Path) -> None:
    """A cache file writable by others (or not ours) could hold an allow-all program: it is compiled anew."""
    cache_dir = tmp_path / "cache"
    assert probe(hostile, cache_dir, "print('x=1')").returncode == 0
    (path,) = (cache_dir / "seccomp").iterdir()
    path.write_bytes(b"junk")
    path.chmod(0o666)
    proc = probe(hostile, cache_dir, ATTACKS["keyring_keyctl"])
    assert results(proc)["result"] == "EPERM", proc.stderr
    assert path.read_bytes().startswith(b"forge-seccomp")  # replaced by a fresh compile


@pytest.mark.root
@pytest.mark.parametrize(("text", "reason"), [
    ("{not json", "not valid JSON"),
    ('{"defaultAction": "SCMP_ACT_NOTIFY"}', "SCMP_ACT_NOTIFY is not supported"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/x.sock"}', "'listenerPath': not supported"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_BOGUS"}]}',
     "syscalls[0]: unknown action 'SCMP_ACT_BOGUS'"),
])
def test_bad_profile_is_a_one_line_error(busybox_root: Path, tmp_path: Path, text: str, reason: str) -> None:
    profile = tmp_path / "bad.json"
    profile.write_text(text)
    proc = forge_run("--cache-dir", str(tmp_path / "c"), "--security-opt", f"seccomp={profile}",
                     str(busybox_root), "true")
    assert proc.returncode == 125
    assert proc.stderr.count("\n") == 1 and str(profile) in proc.stderr and reason in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.root
def test_unknown_capability_and_option_are_one_line_errors(busybox_root: Path, tmp_path: Path) -> None:
    for opts, words in ((["--cap-add", "SYS_EVERYTHING"], "'SYS_EVERYTHING'"),
                        (["--security-opt", "apparmor=unconfined"], "apparmor=unconfined"),
                        (["--security-opt", f"seccomp={tmp_path / 'missing.json'}"], "missing.json")):
        proc = forge_run("--cache-dir", str(tmp_path / "c"), *opts, str(busybox_root), "true")
        assert proc.returncode == 125 and proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr
    proc = forge_run("--cache-dir", str(tmp_path / "c"), "--security-opt", "no-new-privileges",
                     str(busybox_root), "true")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.root
@needs_nr
@pytest.mark.skipif(not (os.path.exists(SYSTEM_PYTHON) and shutil.which("setpriv")),
                    reason="needs /usr/bin/python3 and setpriv to run as an unprivileged user")
def test_rootless_container_gets_the_filter_too(tmp_path: Path) -> None:
    """As uid 65534 with the system Python (which compiles the filter with libseccomp through ctypes): the
    nested user namespace and the keyring are refused there too, and the filter is cached."""
    base = Path(tempfile.mkdtemp(prefix="forge-rootless-"))  # outside pytest's 0700 tree
    try:
        shutil.copytree(REPO / "rootfs_forge", base / "pkg" / "rootfs_forge")
        img = HostileImage.build(base)
        cache_dir = base / "cache"
        for p in [base, *base.rglob("*")]:
            os.lchown(p, 65534, 65534)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(base), "XDG_RUNTIME_DIR": str(base / "xdg"),
               "PYTHONPATH": str(base / "pkg"), "PYTHONDONTWRITEBYTECODE": "1"}
        code = PRELUDE + f"NR = {NR!r}\n" + ATTACKS["keyring_keyctl"] + "\n" + NESTED_USERNS
        argv = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", SYSTEM_PYTHON, "-m",
                "rootfs_forge", "run", "--cache-dir", str(cache_dir), "-v", "/usr:/usr:ro", str(img.root),
                SYSTEM_PYTHON, "-I", "-S", "-c", code]
        runs = [subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, cwd=base)
                for _ in range(2)]
        cached = [p.name for p in (cache_dir / "seccomp").iterdir()]
    finally:
        shutil.rmtree(base)
    for proc in runs:
        assert proc.returncode == 0, proc.stderr
        got = results(proc)
        assert (got["result"], got["unshare_user"], got["clone_newuser"]) == ("EPERM",) * 3, got
    assert len(cached) == 1


# --- pure logic, no root ---------------------------------------------------------------------------------------


def test_cap_add_and_drop_follow_dockers_precedence() -> None:
    n = capset.NUMBERS
    assert capset.effective(DEFAULT_CAPS, [], []) == DEFAULT_CAPS
    assert n["MKNOD"] not in DEFAULT_CAPS and n["CHOWN"] in DEFAULT_CAPS
    assert capset.effective(DEFAULT_CAPS, ["NET_ADMIN"], ["chown"]) == DEFAULT_CAPS - {n["CHOWN"]} | {n["NET_ADMIN"]}
    assert capset.effective(DEFAULT_CAPS, ["CAP_NET_RAW"], ["ALL"]) == {n["NET_RAW"]}
    assert capset.effective(DEFAULT_CAPS, ["all"], ["SYS_ADMIN"]) == capset.ALL - {n["SYS_ADMIN"]}
    assert capset.effective(DEFAULT_CAPS, ["KILL"], ["KILL"]) == DEFAULT_CAPS  # add wins
    with pytest.raises(RunError, match="unknown capability"):
        capset.effective(DEFAULT_CAPS, ["SYS_EVERYTHING"], [])


def test_security_opts_parse() -> None:
    assert seccomp.parse_security_opts([]) == seccomp.DEFAULT
    assert seccomp.parse_security_opts(["seccomp=unconfined"]) == seccomp.UNCONFINED
    assert seccomp.parse_security_opts(["seccomp:unconfined", "no-new-privileges:true"]) == seccomp.UNCONFINED
    assert seccomp.parse_security_opts(["seccomp=/p.json"]) == "/p.json"
    for bad in ("no-new-privileges=false", "label=disable", "seccomp"):
        with pytest.raises(RunError):
            seccomp.parse_security_opts([bad])


def test_default_profile_conditions_follow_capabilities_arch_and_kernel() -> None:
    from rootfs_forge.run.seccomp_default import PROFILE

    def allowed(caps: frozenset[str], machine: str = "x86_64", kernel: str = "6.1.0") -> dict[str, list]:
        out: dict[str, list] = {}
        for rule in seccomp_profile.resolve(PROFILE, "default", caps, machine, kernel).rules:
            out.setdefault(rule.name, []).append((rule.action, rule.args))
        return out

    plain = allowed(capset.names(DEFAULT_CAPS))
    admin = allowed(capset.names(DEFAULT_CAPS | {capset.NUMBERS["SYS_ADMIN"]}))
    allow = seccomp_profile.ACT_ALLOW
    assert "unshare" not in plain and "mount" not in plain and "keyctl" not in plain
    assert plain["clone"] == [(allow, ((0, 7, 0x7E020000, 0),))]  # no namespace flags
    assert plain["clone3"] == [(seccomp_profile.ACT_ERRNO | 38, ())]
    assert admin["clone"] == [(allow, ())] and admin["unshare"] == [(allow, ())] and "clone3" in admin
    assert len(plain["personality"]) == 5  # one value each: OR
    assert "arch_prctl" in plain and "arch_prctl" not in allowed(frozenset(), "aarch64")
    assert "ptrace" in plain and "ptrace" not in allowed(frozenset(), kernel="4.4.0")
    assert "open_by_handle_at" not in plain and "open_by_handle_at" in allowed(frozenset({"CAP_DAC_READ_SEARCH"}))


def test_profile_args_on_one_index_become_separate_rules() -> None:
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]},
        {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_GT"}, {"index": 1, "value": 9, "op": "SCMP_CMP_NE"}]},
        {"names": ["read"], "action": "SCMP_ACT_ERRNO"}]}  # same as the default: dropped
    rules = seccomp_profile.resolve(profile, "p", frozenset(), "x86_64", "6.1").rules
    assert [(r.name, r.args) for r in rules] == [("ioctl", ((1, 4, 1, 0),)), ("ioctl", ((1, 4, 2, 0),)),
                                                 ("kill", ((0, 6, 1, 0), (1, 1, 9, 0)))]


def test_cache_file_round_trip_rejects_junk() -> None:
    progs = (b"\x06\x00\x00\x00\x00\x00\xff\x7f", b"\x06" + b"\x00" * 15)
    assert seccomp.decode(seccomp.encode(progs)) == progs
    assert seccomp.decode(b"junk") is None
    assert seccomp.decode(seccomp.encode(progs)[:-1]) is None


@pytest.mark.skipif(not os.path.exists(f"/usr/lib/{getattr(sys.implementation, '_multiarch', '')}/libseccomp.so.2"),
                    reason="needs libseccomp2")
def test_default_profile_written_as_docker_json_compiles_to_the_same_filter(tmp_path: Path) -> None:
    """The built-in profile is data in Docker's structure: saved as JSON and given as
    ``seccomp=PROFILE.json`` it gives the same main filter (without the extra ioctl filter)."""
    from rootfs_forge.run.seccomp_default import PROFILE

    path = tmp_path / "docker-default.json"
    path.write_text(json.dumps(PROFILE))
    for caps in (DEFAULT_CAPS, capset.ALL):
        builtin = seccomp.programs(seccomp.DEFAULT, caps, str(tmp_path / "c"))
        custom = seccomp.programs(str(path), caps, str(tmp_path / "c"))
        assert len(builtin) == 2 and custom == builtin[:1]
    assert len(list((tmp_path / "c" / "seccomp").iterdir())) == 4
