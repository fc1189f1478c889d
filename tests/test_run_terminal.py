"""``forge run`` and the caller's terminal and keyring (issue #13).

forge is started the way an interactive shell starts a command: a pseudo-terminal pair made by the test, forge in
a new session with the pty's slave as its controlling terminal and as stdin/stdout/stderr (``Terminal``). The
attacks run as Python probes inside a hostile image (``tests.support.hostile``), as root and as an unprivileged
user (uid 65534, through setpriv, as in ``test_rootless_maps_caller_to_root_in_user_namespace``).
"""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.hostile import PRELUDE, HostileImage

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = 65534
PAYLOAD = b"echo pwned\n"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)"),
]
rootless_tools = pytest.mark.skipif(not (os.path.exists(SYSTEM_PYTHON) and shutil.which("setpriv")),
                                    reason="needs /usr/bin/python3 and setpriv to run as an unprivileged user")


# ------------------------------------------------------------------------------------------------------------
# harness: a terminal for forge, and forge as root or as nobody
# ------------------------------------------------------------------------------------------------------------

def _winsize(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return rows, cols


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _make_controlling_tty() -> None:  # preexec_fn: after setsid, with the slave already on fds 0/1/2
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """A pty the test owns: forge runs in a new session with the slave as its controlling terminal and
    stdin/stdout/stderr, like a command started by an interactive shell. The test keeps the slave open, so
    whatever is queued on it (the caller shell's input) can be inspected after forge exits."""

    def __init__(self, rows: int = 24, cols: int = 80) -> None:
        self.master, self.slave = os.openpty()
        _set_winsize(self.slave, rows, cols)
        os.set_blocking(self.master, False)
        self.output = bytearray()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, argv: list[str], env: dict[str, str], cwd: str | None = None, ctty: bool = True) -> None:
        """``ctty=False``: the terminal is nobody's controlling terminal (forge in a session without one)."""
        self.proc = subprocess.Popen(argv, stdin=self.slave, stdout=self.slave, stderr=self.slave, env=env,
                                     cwd=cwd, start_new_session=True,
                                     preexec_fn=_make_controlling_tty if ctty else None)

    def pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                self.output += os.read(self.master, 65536)
            except OSError:
                return

    def expect(self, text: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline, (text, bytes(self.output))
            self.pump(0.05)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"forge did not exit: {bytes(self.output)!r}")
            self.pump(0.05)
        for _ in range(20):
            self.pump(0.01)
        return self.proc.returncode

    def queued_input(self) -> bytes:
        """What the caller's shell would read next from its terminal (without blocking)."""
        n = struct.unpack("i", fcntl.ioctl(self.slave, termios.FIONREAD, b"\0" * 4))[0]
        attrs = termios.tcgetattr(self.slave)
        raw = list(attrs)
        raw[3] &= ~termios.ICANON  # a partial line counts too
        raw[6] = list(raw[6])
        raw[6][termios.VMIN], raw[6][termios.VTIME] = 0, 0
        termios.tcsetattr(self.slave, termios.TCSANOW, raw)
        try:
            data = os.read(self.slave, 4096)
        except BlockingIOError:
            data = b""
        finally:
            termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        return data if data else b"?" * n

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    t = Terminal()
    try:
        yield t
    finally:
        t.close()


class Forge:
    """Command lines for ``forge run`` on the hostile image, as root or as uid 65534 (a copy of the package run
    by the system Python, everything in a directory nobody can read and write; the probe runs with the host's
    /usr/bin/python3 under the image's read-only /usr)."""

    def __init__(self, base: Path, rootless: bool) -> None:
        self.base = base
        self.rootless = rootless
        self.image = HostileImage.build(base)
        if rootless:
            shutil.copytree(REPO / "rootfs_forge", base / "pkg" / "rootfs_forge")
            for p in [base, *base.rglob("*")]:
                os.lchown(p, NOBODY, NOBODY)

    @property
    def env(self) -> dict[str, str]:
        if not self.rootless:
            return {**os.environ, "PYTHONPATH": str(REPO)}
        return {"PATH": "/usr/bin:/bin", "HOME": str(self.base), "XDG_RUNTIME_DIR": str(self.base / "xdg"),
                "XDG_STATE_HOME": str(self.base / "state"), "PYTHONPATH": str(self.base / "pkg"),
                "PYTHONDONTWRITEBYTECODE": "1", "TERM": "xterm"}

    def caller(self) -> list[str]:
        """How the caller's own process starts (as root: the test's Python; rootless: nobody's)."""
        if not self.rootless:
            return [sys.executable]
        return ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups", SYSTEM_PYTHON]

    def run_args(self, options: list[str], *cmd: str) -> list[str]:
        """``-m rootfs_forge run ... IMAGE CMD`` (to follow ``caller()``)."""
        vols = ["-v", "/usr:/usr:ro"] if self.rootless else [a for v in self.image.volumes for a in ("-v", v)]
        return ["-m", "rootfs_forge", "run", *vols, *options, str(self.image.root), *cmd]

    def probe(self, options: list[str], code: str) -> list[str]:
        python = SYSTEM_PYTHON if self.rootless else os.path.realpath(sys.executable)
        return self.caller() + self.run_args(options, python, "-I", "-S", "-c", PRELUDE + code)


@pytest.fixture(params=["root", pytest.param("rootless", marks=rootless_tools)])
def forge(request: pytest.FixtureRequest) -> Iterator[Forge]:
    base = Path(tempfile.mkdtemp(prefix="forge-tty-"))  # outside pytest's 0700 tree, so nobody can enter
    try:
        yield Forge(base, request.param == "rootless")
    finally:
        shutil.rmtree(base)


@pytest.fixture(scope="module")
def as_root() -> Iterator[Forge]:
    base = Path(tempfile.mkdtemp(prefix="forge-tty-"))
    try:
        yield Forge(base, rootless=False)
    finally:
        shutil.rmtree(base)


def results(output: bytes) -> dict[str, str]:
    out = {}
    for line in output.decode(errors="replace").replace("\r", "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().isidentifier():
            out[key.strip()] = value.strip()
    return out


# ------------------------------------------------------------------------------------------------------------
# attacks
# ------------------------------------------------------------------------------------------------------------

TIOCSTI_PROBE = r'''
TIOCSTI, TIOCSCTTY = 0x5412, 0x540E
def inject(fd):
    for c in PAYLOAD:
        r = err(lambda: libc.ioctl(fd, TIOCSTI, ctypes.byref(ctypes.c_char(c))))
        if r != "ok":
            return r
    return "ok"
for fd in (0, 1, 2):
    print(f"fd{fd}={inject(fd)}")
for path in ("/dev/tty", "/dev/console"):
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    except OSError as exc:
        print(f"{path[5:]}=open:{errno.errorcode.get(exc.errno, exc.errno)}")
        continue
    print(f"{path[5:]}={inject(fd)}")
# a session of its own, then try to take the terminal as its controlling tty and inject through it
print("setsid=" + attempt(os.setsid))
for fd in (0, 1, 2):
    print(f"steal{fd}=" + err(lambda: libc.ioctl(fd, TIOCSCTTY, 1)) + "," + inject(fd))
'''.replace("PAYLOAD", repr(PAYLOAD))


@pytest.mark.parametrize("options", [[], ["-i"], ["-t"], ["-i", "--no-init"], ["-t", "--no-init"]],
                         ids=["plain", "i", "t", "i-no-init", "t-no-init"])
def test_tiocsti_cannot_reach_caller_terminal(forge: Forge, terminal: Terminal, options: list[str]) -> None:
    """A container pushes "echo pwned" into its terminal with TIOCSTI (CVE-2017-5226 in bubblewrap): on fds
    0/1/2, /dev/tty, /dev/console, and after taking a session of its own. Nothing may end up queued as input of
    the caller's shell after forge exits."""
    terminal.start(forge.probe(options, TIOCSTI_PROBE), forge.env, cwd=str(forge.base))
    code = terminal.wait()
    out = results(bytes(terminal.output))
    assert code == 0, bytes(terminal.output)
    assert "steal2" in out, bytes(terminal.output)  # the probe ran to the end
    assert terminal.queued_input() == b"", out


@pytest.mark.parametrize("options", [[], ["-i"], ["-t"]], ids=["plain", "i", "t"])
def test_tiocsti_cannot_reach_a_terminal_nobody_controls(forge: Forge, terminal: Terminal,
                                                          options: list[str]) -> None:
    """The same attack when forge's terminal is no session's controlling terminal (forge started by setsid, or
    by a program that never made it one): a process inside could take it as its own controlling terminal with
    TIOCSCTTY and inject through it, unless the terminal never reaches the container."""
    terminal.start(forge.probe(options, TIOCSTI_PROBE), forge.env, cwd=str(forge.base), ctty=False)
    code = terminal.wait()
    out = results(bytes(terminal.output))
    assert code == 0, bytes(terminal.output)
    assert "steal2" in out, bytes(terminal.output)
    assert terminal.queued_input() == b"", out


KEY_DESC = b"forge-test-secret"
KEY_PAYLOAD = b"hunter2-payload"
_KEY_NR = {"x86_64": (248, 250), "aarch64": (217, 219), "riscv64": (217, 219)}  # add_key, keyctl
KEYRING_CALLER = r'''
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
ADD_KEY, KEYCTL = NRS
ring = libc.syscall(KEYCTL, 1, b"forge-test-caller")  # KEYCTL_JOIN_SESSION_KEYRING (a fresh named one)
key = libc.syscall(ADD_KEY, b"user", DESC, PAYLOAD, len(PAYLOAD), -3)  # into KEY_SPEC_SESSION_KEYRING
if ring < 0 or key < 0:
    sys.exit(f"keyring setup failed: {os.strerror(ctypes.get_errno())}")
os.write(1, f"caller_ring={ring}\ncaller_key={key}\n".encode())
os.execv(sys.executable, [sys.executable, *(a.replace("@KEY@", str(key)) for a in sys.argv[1:])])
'''
KEYRING_PROBE = r'''
KEYCTL = NRS[1]
r = libc.syscall(KEYCTL, 0, -3, 0)  # KEYCTL_GET_KEYRING_ID of KEY_SPEC_SESSION_KEYRING, no create
print("ring=" + (str(r) if r >= 0 else err(lambda: -1)))
r = libc.syscall(KEYCTL, 10, -3, b"user", DESC, 0)  # KEYCTL_SEARCH
print("search=" + (str(r) if r >= 0 else err(lambda: -1)))
buf = ctypes.create_string_buffer(256)
r = libc.syscall(KEYCTL, 11, @KEY@, buf, 256)  # KEYCTL_READ of the caller's key, by its id
print("read=" + (repr(buf.raw[:r]) if r >= 0 else err(lambda: -1)))
try:
    with open("/proc/keys") as f:
        print("proc_keys=" + ("listed" if DESC.decode() in f.read() else "absent"))
except OSError as exc:
    print("proc_keys=" + errno.errorcode.get(exc.errno, str(exc.errno)))
'''


def test_session_keyring_is_not_the_callers(forge: Forge, terminal: Terminal) -> None:
    """The caller keeps a secret in its session keyring; the container must neither share that keyring nor find,
    list or read the key (keyctl refused outright counts as not found)."""
    nrs = _KEY_NR.get(os.uname().machine)
    if nrs is None:
        pytest.skip(f"add_key/keyctl numbers unknown for {os.uname().machine}")
    caller = KEYRING_CALLER.replace("NRS", repr(nrs)).replace("DESC", repr(KEY_DESC)).replace(
        "PAYLOAD", repr(KEY_PAYLOAD))
    argv = forge.probe([], KEYRING_PROBE.replace("NRS", repr(nrs)).replace("DESC", repr(KEY_DESC)))
    at = len(forge.caller())  # right after the caller's interpreter: its keyring set-up, then it execs forge
    terminal.start([*argv[:at], "-c", caller, *argv[at:]], forge.env, cwd=str(forge.base))
    code = terminal.wait()
    out = results(bytes(terminal.output))
    assert code == 0 and "proc_keys" in out, bytes(terminal.output)
    assert out["caller_ring"].isdigit() and out["caller_key"].isdigit(), out
    assert out["ring"] != out["caller_ring"], out
    assert not out["search"].isdigit(), out  # ENOKEY, or EPERM/EACCES when keyctl is refused
    assert "hunter2" not in out["read"] and out["read"] in ("EACCES", "EPERM", "ENOKEY"), out
    assert out["proc_keys"] != "listed", out


# ------------------------------------------------------------------------------------------------------------
# -t and its absence
# ------------------------------------------------------------------------------------------------------------
def test_tty_is_a_terminal_of_the_containers_own_with_the_callers_size(forge: Forge) -> None:
    term = Terminal(rows=33, cols=101)
    try:
        term.start(forge.caller() + forge.run_args(["-t"], "sh", "-c", "tty; stty size; ls -l /dev/console; exit 7"),
                   forge.env, cwd=str(forge.base))
        code = term.wait()
    finally:
        term.close()
    lines = bytes(term.output).decode().replace("\r", "").splitlines()
    assert code == 7, bytes(term.output)
    assert lines[:2] == ["/dev/pts/0", "33 101"], lines
    assert lines[2].startswith("c") and lines[2].endswith("/dev/console") and " 136, 0 " in lines[2], lines


def test_window_size_change_reaches_the_container(as_root: Forge, terminal: Terminal) -> None:
    code = """
import signal, fcntl, termios, struct
def size():
    return struct.unpack("HH", fcntl.ioctl(0, termios.TIOCGWINSZ, b"\\0" * 8)[:4])
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGWINCH])
print("before=%d,%d" % size(), flush=True)
info = signal.sigtimedwait([signal.SIGWINCH], 30)
print("after=%d,%d" % size() if info else "after=timeout", flush=True)
"""
    terminal.start(as_root.probe(["-t"], code), as_root.env)
    terminal.expect(b"before=24,80")
    assert terminal.proc is not None
    _set_winsize(terminal.master, 50, 132)  # the caller's terminal resized: its foreground group, forge, is told
    terminal.proc.send_signal(signal.SIGWINCH)
    assert terminal.wait() == 0, bytes(terminal.output)
    assert results(bytes(terminal.output))["after"] == "50,132", bytes(terminal.output)


def test_input_output_and_terminal_mode_restored(as_root: Forge, terminal: Terminal) -> None:
    before = termios.tcgetattr(terminal.slave)
    terminal.start(as_root.caller() + as_root.run_args(["-t"], "sh", "-c", "echo ready; read line; echo got:$line"),
                   as_root.env)
    terminal.expect(b"ready")
    raw = termios.tcgetattr(terminal.slave)
    terminal.write(b"hello\r")  # a raw terminal passes the Enter key on as typed; the container's pty maps it
    assert terminal.wait() == 0, bytes(terminal.output)
    assert b"got:hello" in terminal.output
    assert not raw[3] & termios.ECHO  # the caller's terminal was raw while the container ran ...
    assert termios.tcgetattr(terminal.slave) == before  # ... and is as it was afterwards


def test_ctrl_c_interrupts_the_command_through_its_terminal(as_root: Forge, terminal: Terminal) -> None:
    before = termios.tcgetattr(terminal.slave)
    terminal.start(as_root.caller() + as_root.run_args(["-t"], "sh", "-c", "echo ready; exec sleep 30"),
                   as_root.env)
    terminal.expect(b"ready")
    time.sleep(0.2)
    start = time.monotonic()
    terminal.write(b"\x03")
    assert terminal.wait(timeout=20) == 130, bytes(terminal.output)  # 128 + SIGINT
    assert time.monotonic() - start < 10
    assert termios.tcgetattr(terminal.slave) == before


def test_sigint_to_forge_reaches_the_command_once(as_root: Forge, terminal: Terminal) -> None:
    """kill -INT forge with -t: delivered like a Ctrl-C, through the container's terminal, and only once."""
    code = """
import signal, time
n = []
signal.signal(signal.SIGINT, lambda *a: n.append(1))
print("ready", flush=True)
end = time.monotonic() + 30
while not n and time.monotonic() < end:
    time.sleep(0.05)
time.sleep(0.5)
print("count=%d" % len(n), flush=True)
"""
    terminal.start(as_root.probe(["-t"], code), as_root.env)
    terminal.expect(b"ready")
    assert terminal.proc is not None
    terminal.proc.send_signal(signal.SIGINT)
    assert terminal.wait() == 0, bytes(terminal.output)
    assert results(bytes(terminal.output))["count"] == "1", bytes(terminal.output)


NO_TTY_PROBE = r"""
with open("/proc/self/stat") as f:
    print("tty_nr=" + f.read().rsplit(")", 1)[1].split()[4])
print("dev_tty=" + attempt(os.open, "/dev/tty", os.O_RDWR))
print("isatty=" + ",".join(str(os.isatty(fd)) for fd in (0, 1, 2)))
"""


@pytest.mark.parametrize("options", [[], ["-i"], ["-i", "--no-init"]], ids=["plain", "i", "i-no-init"])
def test_without_t_nothing_inside_has_a_controlling_terminal(forge: Forge, terminal: Terminal,
                                                              options: list[str]) -> None:
    terminal.start(forge.probe(options, NO_TTY_PROBE), forge.env, cwd=str(forge.base))
    assert terminal.wait() == 0, bytes(terminal.output)
    out = results(bytes(terminal.output))
    assert out["tty_nr"] == "0" and out["dev_tty"] == "ENXIO", out
    assert out["isatty"] == "False,False,False", out  # pipes in place of the caller's terminal (as Docker)


def test_i_without_t_keeps_stdin_connected(as_root: Forge, terminal: Terminal) -> None:
    terminal.start(as_root.caller() + as_root.run_args(["-i"], "sh", "-c", "echo ready; read l; echo got:$l"),
                   as_root.env)
    terminal.expect(b"ready")
    terminal.write(b"hello\n")
    assert terminal.wait() == 0, bytes(terminal.output)
    assert b"got:hello" in terminal.output


def test_t_without_a_terminal_is_a_one_line_error(as_root: Forge) -> None:
    proc = subprocess.run(as_root.caller() + as_root.run_args(["-t"], "true"), env=as_root.env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr == "forge: cannot allocate a terminal: -t needs stdin to be a terminal\n"


@pytest.mark.parametrize("options", [[], ["-t"]], ids=["plain", "t"])
def test_terminal_modules_load_only_with_t(as_root: Forge, terminal: Terminal, options: list[str]) -> None:
    """On a terminal, the start path without -t loads the pipe relay but not socket/termios/tty."""
    code = ("import sys; from rootfs_forge.cli import main; rc = main(sys.argv[1:]); "
            "print('modules=' + ','.join(sorted(sys.modules))); sys.exit(rc)")
    argv = as_root.caller() + as_root.run_args(options, "true")
    terminal.start([argv[0], "-c", code, *argv[3:]], as_root.env)  # argv[1:3]: "-m rootfs_forge"
    assert terminal.wait() == 0, bytes(terminal.output)
    loaded = set(results(bytes(terminal.output))["modules"].split(","))
    assert "rootfs_forge.run.relay" in loaded
    terminal_modules = {"socket", "termios", "tty", "rootfs_forge.run.terminal"}
    if options:
        assert terminal_modules <= loaded, loaded
    else:
        assert not terminal_modules & loaded, loaded
