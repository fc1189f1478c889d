"""PID 1 of the container until it execs the init: build the filesystem, harden, become the user, exec.

Runs in the forked grandchild, already inside the new namespaces. Setup failures are written to ``errfd``
(close-on-exec; the launcher reads it until EOF) as ``code\\0verb\\0object\\0reason``; on exec the pipe closes
silently. PID 1 exits with the command's exit status, or 128+N when the command died of signal N.
"""

from __future__ import annotations

import os

from rootfs_forge.errors import RunError
from rootfs_forge.run import mounts, seccomp, staticinit
from rootfs_forge.run import syscalls as sc
from rootfs_forge.run.spec import ContainerSetup, User, resolve_user

TYPE_CHECKING = False  # typing stays off the start path; mypy reads this as typing.TYPE_CHECKING
if TYPE_CHECKING:
    import signal
else:  # the C module under signal: the same calls and numbers, without its enums (enum, functools, collections)
    import _signal as signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGWINCH, signal.SIGCONT)
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT, signal.SIGWINCH)  # with -t, made by the container's pty
SETUP_FAILED = 125  # like `docker run`: the launcher itself failed
EXEC_FAILED = 127


def report(errfd: int, code: int, exc: BaseException) -> None:
    """Write a failure for the launcher to raise; never raises itself."""
    if isinstance(exc, RunError):
        parts = [str(code), exc.verb, exc.obj, exc.reason]
    else:
        parts = [str(code), "run", "container", f"{type(exc).__name__}: {exc}"]
    try:
        os.write(errfd, "\0".join(parts).encode(errors="replace"))
    except OSError:
        return  # the launcher is gone; nobody to tell


def parse_report(data: bytes) -> tuple[int, RunError] | None:
    if not data:
        return None
    parts = data.decode(errors="replace").split("\0")
    if len(parts) != 4 or not parts[0].isdigit():
        return SETUP_FAILED, RunError("run", "container", data.decode(errors="replace"))
    return int(parts[0]), RunError(parts[1], parts[2], parts[3])


def wait_status_to_code(status: int) -> int:
    """A wait status as a shell exit code: the exit code, or 128+signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _hostname(plan: ContainerSetup) -> None:
    if plan.network == "none":
        mounts.loopback_up()
    sc.sethostname(plan.hostname)


def _become(user: User) -> None:
    if os.getuid() == 0 and not _setgroups_denied():
        os.setgroups(list(user.groups))
    os.setgid(user.gid)
    os.setuid(user.uid)


def _setgroups_denied() -> bool:
    """Rootless: /proc/self/setgroups says deny and the single mapped group stays."""
    return _read_text("/proc/self/setgroups").strip() == "deny"


def command_env(plan: ContainerSetup, user: User, term: str | None) -> dict[str, str]:
    env = dict(item.split("=", 1) for item in plan.process.env)
    env.setdefault("HOSTNAME", plan.hostname)
    env.setdefault("HOME", user.home)
    if plan.tty:
        env.setdefault("TERM", term or "xterm")
    return env


def which(name: str, path: str) -> str:
    """``name`` looked up in the container's ``PATH`` (execvp rules: names with a slash are taken as they are),
    checked the way execve would refuse it, because the init execs it where forge can no longer report why."""
    if "/" in name:
        if not os.path.exists(name):
            raise FileNotFoundError(2, os.strerror(2), name)
        if not (os.path.isfile(name) and os.access(name, os.X_OK)):
            raise PermissionError(13, os.strerror(13), name)
        return name
    denied = None
    for d in path.split(":"):
        candidate = os.path.join(d or ".", name)
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            denied = candidate
    if denied:
        raise PermissionError(13, os.strerror(13), denied)
    raise FileNotFoundError(2, os.strerror(2), name)


def container_main(plan: ContainerSetup, errfd: int, console: int = -1, mask: set[int] | None = None) -> int:
    """Everything PID 1 does before it becomes the container's init. Returns an exit code only on failure (the
    caller ``os._exit``s with it); on success the process image is replaced. PID 1 is already the leader of a
    session of its own; with ``-t``, ``console`` is the socket to send its terminal's master on.

    PID 1 builds the filesystem, hardens itself, becomes the container's user, and then execs: the static init
    from a sealed memfd (``plan.init_fd``, see ``staticinit``), which starts the command, reaps and forwards
    signals; or, with ``--no-init`` or no static init on the host, the command itself. Either way nothing of
    forge (its memory, the caller's environment) stays in the container.

    The launcher forks with the forwarded signals blocked; they stay blocked until ``hold`` catches them, then
    the caller's signal mask (``mask``) comes back, for the init and the command to inherit."""
    pending: list[int] = []

    def hold(signum: int, _frame: object) -> None:
        if plan.tty and signum in TERMINAL_SIGNALS:
            return  # with -t the launcher delivers these through the container's terminal
        pending.append(signum)  # nothing to forward to yet

    for sig in FORWARDED:
        signal.signal(sig, hold)
    if mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    term = os.environ.get("TERM")
    try:
        sc.set_pdeathsig(signal.SIGKILL)
        sc.set_process_title("forge-init")
        _hostname(plan)  # before pivot_root: it imports modules from the host's Python
        new_root = mounts.setup_root(plan)
        mounts.pivot(new_root)
        user = resolve_user(plan.process.user, _read_text("/etc/passwd"), _read_text("/etc/group"))
        sc.join_session_keyring()  # none of the caller's keys
        if console >= 0:
            from rootfs_forge.run import terminal  # already loaded by the launcher: nothing is read after pivot

            terminal.attach(console, user.uid)
        sc.set_no_new_privs()
        keep = sc.DEFAULT_CAPS if plan.caps is None else plan.caps
        sc.drop_bounding(keep)
        env = command_env(plan, user, term)
        _become(user)  # still with CAP_SETUID/SETGID, even when --cap-drop removes them from the container
        sc.limit_sets(keep)
        sc.set_pdeathsig(signal.SIGKILL)  # a credential change clears it
        try:
            os.chdir(plan.process.workdir)
        except OSError as exc:
            raise RunError("enter working directory", plan.process.workdir, exc.strerror or str(exc)) from None
        seccomp.install(plan.seccomp)  # the last step: whatever starts from here on (the command) inherits it
    except BaseException as exc:
        report(errfd, SETUP_FAILED, exc)
        return SETUP_FAILED
    argv = list(plan.process.argv)
    try:
        path = which(argv[0], env.get("PATH", ""))
        stops = [s for s in pending if s in STOP_SIGNALS]
        if stops:  # asked to stop before the command started: it never starts
            os.close(errfd)
            return 128 + stops[0]
        if not plan.interactive:
            os.dup2(os.open("/dev/null", os.O_RDONLY), 0)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)  # Python ignores them; an exec would keep them ignored
        if plan.init_fd >= 0:
            staticinit.exec_from_memfd(plan.init_fd, ["forge-init", "--", path, *argv[1:]], env)
        os.execve(path, argv, env)
    except OSError as exc:
        code = 126 if isinstance(exc, PermissionError) else EXEC_FAILED
        report(errfd, code, RunError("execute", argv[0], exc.strerror or str(exc)))
        return code
    except BaseException as exc:  # after pivot_root nothing of the host can be imported: say what happened
        report(errfd, SETUP_FAILED, exc)
    return SETUP_FAILED
