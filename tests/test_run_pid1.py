"""PID 1 of a ``forge run`` container carries nothing of the caller: container processes can read PID 1's
environment, command line and memory (it is their own namespace's init), so that process must be a fresh image
(a static init exec'd from a sealed memfd) and never a fork of forge holding the caller's environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.hostile import HostileImage, results

ROOT = os.geteuid() == 0
pytestmark = pytest.mark.skipif(not ROOT, reason="needs root")

SECRET = "forge-test-secret-" + os.urandom(8).hex()

# Read PID 1's environment, command line and every readable byte of its memory; report where the secret shows.
PROBE = r'''
secret = os.environ["PROBE_SECRET_REVERSED"][::-1].encode()
def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, "?").encode()
print("environ=" + ("LEAK" if secret in read("/proc/1/environ") else "clean"))
print("cmdline=" + ("LEAK" if secret in read("/proc/1/cmdline") else "clean"))
found, readable = False, 0
try:
    maps = open("/proc/1/maps").read().splitlines()
    mem = open("/proc/1/mem", "rb", buffering=0)
except OSError as exc:
    maps, mem = [], None
    print("mem_open=" + errno.errorcode.get(exc.errno, "?"))
for line in maps:
    fields = line.split()
    if "r" not in fields[1]:
        continue
    lo, hi = (int(x, 16) for x in fields[0].split("-"))
    try:
        mem.seek(lo)
        data = mem.read(hi - lo)
    except (OSError, OverflowError, ValueError):
        continue
    readable += len(data)
    found = found or secret in data
print("mem=" + ("LEAK" if found else "clean"))
print("own_environ=" + ("LEAK" if any(secret in v.encode() for v in os.environ.values()) else "clean"))
'''


def _check(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stderr
    got = results(proc)
    assert got == {"environ": "clean", "cmdline": "clean", "mem": "clean", "own_environ": "clean"} or (
        got.get("mem_open") and got["environ"] == "clean"), (got, proc.stdout)


def test_pid1_holds_no_caller_environment(tmp_path: Path) -> None:
    """The caller's ``FORGE_REGISTRY_PASSWORD`` must not be readable through /proc/1 (environ, cmdline, mem)."""
    img = HostileImage.build(tmp_path)
    # the probe gets the secret reversed, so its own environment holds no copy that a scan could confuse
    proc = img.run(["-e", f"PROBE_SECRET_REVERSED={SECRET[::-1]}"], PROBE,
                   env={"FORGE_REGISTRY_PASSWORD": SECRET})
    _check(proc)


def test_pid1_is_a_fresh_static_init(tmp_path: Path) -> None:
    """PID 1 is the static init run from a sealed memfd (not a host path the container could reopen), named
    forge-init, and the command is its child."""
    if not shutil.which("tini-static"):
        pytest.skip("needs tini-static (apt-get install tini)")
    img = HostileImage.build(tmp_path)
    proc = img.run([], r'''
print("pid=%d" % os.getpid())
print("exe=" + os.readlink("/proc/1/exe"))
print("argv0=" + open("/proc/1/cmdline", "rb").read().split(b"\0")[0].decode())
print("write_exe=" + attempt(lambda: open("/proc/1/exe", "r+b")))
''')
    assert proc.returncode == 0, proc.stderr
    got = results(proc)
    assert got["pid"] == "2" and got["argv0"] == "forge-init"
    assert got["exe"].startswith("/memfd:forge-init"), got
    assert got["write_exe"] != "ok"


def test_without_a_static_init_the_command_is_pid_1_and_says_so(tmp_path: Path) -> None:
    img = HostileImage.build(tmp_path)
    env = {"PATH": str(tmp_path / "nowhere")}
    proc = img.run([], 'print("pid=%d" % os.getpid())', env=env)
    assert proc.returncode == 0, proc.stderr
    assert results(proc)["pid"] == "1"
    assert "tini" in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.skipif(not (os.path.exists("/usr/bin/python3") and shutil.which("setpriv")),
                    reason="needs /usr/bin/python3 and setpriv to run as an unprivileged user")
def test_pid1_holds_no_caller_environment_rootless(tmp_path: Path) -> None:
    """Rootless (uid 65534, the system Python running a copy of the package): the same probe."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="forge-pid1-"))
    try:
        shutil.copytree(Path(__file__).resolve().parents[1] / "rootfs_forge", base / "pkg" / "rootfs_forge")
        img = HostileImage.build(base, python="/usr/bin/python3")
        for p in [base, *base.rglob("*")]:
            os.lchown(p, 65534, 65534)
        argv = img.argv(["-e", f"PROBE_SECRET_REVERSED={SECRET[::-1]}"], PROBE)
        argv = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "/usr/bin/python3",
                *argv[1:]]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(base), "XDG_RUNTIME_DIR": str(base / "xdg"),
               "XDG_STATE_HOME": str(base / "state"), "PYTHONPATH": str(base / "pkg"),
               "PYTHONDONTWRITEBYTECODE": "1", "FORGE_REGISTRY_PASSWORD": SECRET}
        (base / "xdg").mkdir(mode=0o700)
        os.chown(base / "xdg", 65534, 65534)
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, cwd=base)
    finally:
        shutil.rmtree(base)
    _check(proc)


def test_inherited_descriptor_above_65536_is_closed(tmp_path: Path) -> None:
    """A descriptor forge inherits above 65535 (the old closing loop's limit) must not reach the container,
    where it would be a handle on a host file outside the root."""
    import resource

    secret = tmp_path / "host-secret"
    secret.write_text("host data\n")
    high = 70000
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= high:
        # raising the hard limit needs CAP_SYS_RESOURCE, which some sandboxes (this project's CI) withhold
        pytest.skip(f"the hard RLIMIT_NOFILE ({hard}) cannot hold a descriptor above 65536 here")
    img = HostileImage.build(tmp_path)

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (high + 1, hard))
        fd = os.open(secret, os.O_RDONLY)
        os.dup2(fd, high, inheritable=True)

    proc = img.run([], f'print("leak=" + attempt(os.fstat, {high}))', preexec_fn=preexec)
    assert proc.returncode == 0, proc.stderr
    assert results(proc)["leak"] == "EBADF"
