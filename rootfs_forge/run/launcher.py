"""``forge run`` orchestration: resolve the image, prepare a runtime dir and cgroup, fork into namespaces,
wait, map the exit status, and clean up everything on the host side.

Process tree as root::

    forge run (host namespaces; unshares the PID namespace for its next child, owns the cgroup, forwards
      │        signals, maps the exit status)
      └─ PID 1 (``_pid1`` -> ``init.container_main``): joins the cgroup, unshares mount/uts/ipc/net/cgroup,
           │   mounts, pivot_root, hardening, becomes the user, reaps zombies, forwards signals
           └─ the command (posix_spawn)

Rootless, a middle process (``_child``) sits between the two: it unshares the user namespace first (mapping the
caller to root), then the others, forks PID 1 and relays its status.

The first process forked calls ``setsid``: nothing of the container shares the caller's session, and the caller's
terminal never enters it (-t: a pty of the container's own, see terminal.py; otherwise terminals on fds 0/1/2 are
replaced by pipes, see relay.py).

Mounts exist only in the container's mount namespace, so they vanish with it. The scratch space (upper dir,
generated /etc files, merged root) is a tmpfs mounted inside that namespace on a fixed, always-empty host dir
(``<runtime dir>/mnt``), so nothing per run is created on the host; cgroup dirs (and an unpacked oci-archive)
are removed in ``finally`` blocks after the processes are gone. The runtime dir is checked before use
(``runtime``), and every run first sweeps what killed runs left behind (``sweep``).
"""

from __future__ import annotations

import os
import select

from rootfs_forge.errors import RunError
from rootfs_forge.run import caps as capset
from rootfs_forge.run import cgroups, init, paths, runtime, seccomp, staticinit, sweep
from rootfs_forge.run import syscalls as sc
from rootfs_forge.run.spec import (
    ContainerSetup,
    Limits,
    ProcessDefaults,
    Volume,
    default_tmpfs_size,
    parse_env,
    plan_process,
)
from rootfs_forge.util.pids import owner_tag

TYPE_CHECKING = False  # typing itself stays off the start path; mypy reads this as typing.TYPE_CHECKING
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable

    from rootfs_forge.run import relay, terminal

    Warn = Callable[[str], None]
else:  # the C module under signal: the same calls and numbers, without its enums (enum, functools, collections)
    import _signal as signal


class RunOptions:
    """What the user asked for (already parsed by the CLI). Treated as immutable."""

    __slots__ = ("cache_dir", "cap_add", "cap_drop", "cmd", "entrypoint", "env", "hostname", "interactive", "limits",
                 "name", "network", "no_init", "now", "platform", "read_only", "remove", "runtime_dir", "security_opt",
                 "state_dir", "stop_timeout", "storage", "target", "tmp_size", "tty", "upper_size", "user", "volumes",
                 "workdir")

    def __init__(self, target: str, cmd: list[str], *, now: float, env: list[str] | None = None,
                 workdir: str | None = None, user: str | None = None, hostname: str | None = None,
                 volumes: tuple[Volume, ...] = (), network: str = "none", limits: Limits | None = None,
                 name: str | None = None, remove: bool = False, interactive: bool = False, tty: bool = False,
                 read_only: bool = False, cache_dir: str | None = None, state_dir: str | None = None,
                 runtime_dir: str | None = None, storage: str = "auto", no_init: bool = False,
                 stop_timeout: float = 10.0, tmp_size: int = 0, upper_size: int = 0, cap_add: list[str] | None = None,
                 cap_drop: list[str] | None = None, security_opt: list[str] | None = None,
                 entrypoint: str | None = None, platform: tuple[str, str, str] | None = None) -> None:
        self.target = target
        self.entrypoint = entrypoint  # None: the image's
        self.cmd = cmd
        self.now = now
        self.env = env or []
        self.workdir = workdir
        self.user = user
        self.hostname = hostname
        self.volumes = volumes
        self.network = network
        self.limits = limits or Limits()
        self.name = name
        self.remove = remove
        self.interactive = interactive
        self.tty = tty
        self.read_only = read_only
        self.cache_dir = cache_dir or paths.default_cache_dir()
        self.state_dir = state_dir or paths.default_state_dir()
        self.runtime_dir = runtime_dir or paths.default_runtime_dir()
        self.storage = storage
        self.no_init = no_init
        self.stop_timeout = stop_timeout
        self.tmp_size = tmp_size  # 0: spec.default_tmpfs_size
        self.upper_size = upper_size  # 0: spec.default_tmpfs_size
        self.cap_add = cap_add or []
        self.cap_drop = cap_drop or []
        self.security_opt = security_opt or []
        self.platform = platform  # of a multi-platform image; None: the host's


class RunResult:
    __slots__ = ("escalated", "exit_code", "oom_killed", "pids_refused")

    def __init__(self, exit_code: int, oom_killed: bool = False, pids_refused: int = 0,
                 escalated: bool = False) -> None:
        self.exit_code = exit_code
        self.oom_killed = oom_killed
        self.pids_refused = pids_refused
        self.escalated = escalated  # a stop signal was ignored for stop_timeout seconds: killed


def _source(opts: RunOptions, rootless: bool, temps: list[str],
            rt_fd: int, warn: Warn) -> tuple[tuple[str, ...], ProcessDefaults, dict]:
    """(lower dirs top first, image defaults, metadata for a named container). Temp dirs made on the way (an
    unpacked oci-archive) in the runtime dir (open as ``rt_fd``) are appended to ``temps`` (names in it) for the
    caller to remove."""
    target = opts.target
    if os.path.isdir(target) and not os.path.isfile(os.path.join(target, "oci-layout")):
        if opts.platform is not None:
            raise RunError("run", target, "--platform only applies to an image; this is a rootfs directory")
        root = os.path.abspath(target)
        return (root,), ProcessDefaults(), {"rootfs": root}
    from rootfs_forge.run import image as img  # json and friends: only for images

    path, tag = img.split_ref(target)
    if os.path.isfile(path):
        name = runtime.private_dir(rt_fd, runtime.ARCHIVE_PREFIX)
        temps.append(name)
        layout = os.path.join(opts.runtime_dir, name)
        img.extract_archive(path, layout)
    elif os.path.isdir(path) and img.is_layout(path):
        layout = path
    elif "/" in target and not target.startswith(("/", ".")) and not os.path.exists(path):
        from rootfs_forge.image.pull import pull_for_run  # a registry reference: pulled, verified, blobs cached

        name = runtime.private_dir(rt_fd, runtime.ARCHIVE_PREFIX)  # swept like an unpacked archive if killed
        temps.append(name)
        layout = os.path.join(opts.runtime_dir, name)
        tag = pull_for_run(target, layout, opts.cache_dir, opts.platform)
    else:
        raise RunError("run", target, "no such directory, OCI layout or oci-archive")
    image = img.open_layout(layout, tag, opts.platform)
    _check_runnable(target, image.platform)
    if image.note:
        warn(f"{target}: {image.note}")
    sweep.layer_temps(opts.cache_dir)
    lowers = img.layer_dirs(image, opts.cache_dir, rootless)
    if not lowers:
        raise RunError("run", target, "the image has no layers")
    meta = {"layout": os.path.abspath(path) if layout == path else None, "tag": tag,
            "manifest": image.manifest_digest}
    return lowers, image.config, meta


def _check_runnable(target: str, platform: str) -> None:
    """forge run does not emulate: an image of another architecture is refused before anything is unpacked."""
    from rootfs_forge.util.platform import host_platform, label

    host = host_platform()
    parts = platform.split("/")
    if len(parts) >= 2 and parts[1] != host[1]:
        raise RunError("run", target, f"the image is {platform} and this host is {label(host)}; forge run does "
                                      "not emulate other architectures")


def etc_files(hostname: str, network: str) -> dict[str, str]:
    """The text of /etc/hostname, /etc/hosts and /etc/resolv.conf for the container."""
    if network == "host":
        hosts = cgroups.read_text("/etc/hosts") or "127.0.0.1\tlocalhost\n"
        resolv = cgroups.read_text("/etc/resolv.conf")
    else:
        hosts = (f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n")
        resolv = "# no network (forge run --network none)\n"
    return {"hostname": hostname + "\n", "hosts": hosts, "resolv.conf": resolv}


def _storage(choice: str, warn: Warn) -> str:
    if choice in ("overlay", "copy"):
        return choice
    if "\toverlay\n" in cgroups.read_text("/proc/filesystems"):
        return "overlay"
    warn("overlayfs is not available: copying the image into a tmpfs at every start (slow)")
    return "copy"


def run(opts: RunOptions, warn: Warn) -> RunResult:
    """Run one container to completion and clean up. Raises RunError/ImageError for setup failures (with
    ``exit_code`` 125/126/127 when the failure happened inside the container)."""
    if opts.network not in ("none", "host"):
        raise RunError("use", f"network {opts.network!r}", "choose none or host")
    env = parse_env(opts.env)
    caps = capset.effective(sc.DEFAULT_CAPS, opts.cap_add, opts.cap_drop)
    profile = seccomp.parse_security_opts(opts.security_opt)
    rootless = os.geteuid() != 0
    if opts.tty and not os.isatty(0):
        raise RunError("allocate", "a terminal", "-t needs stdin to be a terminal")
    storage = _storage(opts.storage, warn)
    run_id = os.urandom(6).hex()
    rt_fd = runtime.open_dir(opts.runtime_dir)
    temps: list[str] = []
    cg: cgroups.Cgroup | None = None
    kept = created = False
    init_fd = -1
    try:
        if not opts.no_init:
            init_path = staticinit.find()
            if init_path is None:
                warn("no static init on this host (apt-get install tini): the command runs as PID 1 and does not "
                     "reap orphaned zombies")
            else:
                init_fd = os.open(init_path, os.O_RDONLY | os.O_CLOEXEC)  # closed in finally, like rt_fd
        anchor = runtime.anchor(rt_fd, opts.runtime_dir)
        sweep.on_run(rt_fd, opts.state_dir)
        lowers, config, meta = _source(opts, rootless, temps, rt_fd, warn)
        process = plan_process(config, opts.cmd, env, opts.workdir, opts.user, opts.target, opts.entrypoint)
        filters = seccomp.programs(profile, caps, opts.cache_dir)
        hostname = opts.hostname or opts.name or f"forge-{run_id}"
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        default_size = default_tmpfs_size(opts.limits.memory, ram)  # for /tmp and the writable layer
        upper = work = None
        if opts.name:
            from rootfs_forge.run import state

            if storage == "copy":
                warn(f"container {opts.name}: without overlayfs its changes are not kept")
            elif opts.upper_size:
                warn(f"container {opts.name}: its writable layer is kept on disk, --upper-size does not bound it")
            meta.update(name=opts.name, image=opts.target, created=int(opts.now), command=list(process.argv),
                        lowers=list(lowers), mountpoints=[v.target for v in opts.volumes])
            upper, work = state.create(opts.state_dir, opts.name, meta, owner_tag() if opts.remove else None)
            created, kept = True, not opts.remove
        plan = ContainerSetup(rt=anchor, lowers=lowers, process=process, upper=upper, work=work, storage=storage,
                              volumes=opts.volumes, read_only=opts.read_only, network=opts.network,
                              hostname=hostname, interactive=opts.interactive or opts.tty, tty=opts.tty,
                              rootless=rootless, etc_files=etc_files(hostname, opts.network),
                              no_init=opts.no_init, tmp_size=opts.tmp_size or default_size,
                              upper_size=opts.upper_size or default_size, init_fd=init_fd, caps=caps,
                              seccomp=filters)
        if opts.limits.any:
            cg = cgroups.create(opts.limits, cgroups.run_name(owner_tag(), run_id))
        return _supervise(plan, cg, opts.stop_timeout)
    finally:
        if init_fd >= 0:
            os.close(init_fd)
        try:
            if cg is not None:
                cg.remove()
        finally:
            try:
                if temps:
                    from rootfs_forge.run.rmtree import remove_at

                    for temp in temps:
                        remove_at(rt_fd, temp)
            finally:
                os.close(rt_fd)
            if opts.name and created and not kept:
                from rootfs_forge.run import state

                state.release(opts.state_dir, opts.name, owner_tag())


def _close_fds(*keep: int) -> None:
    """Close every inherited descriptor from 3 up except ``keep`` (all of them: close_range has no 64k cap)."""
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        if fd > low:
            sc.close_range(low, fd - 1)
        low = fd + 1
    sc.close_range(low, 0xFFFFFFFF)


def _pid1(plan: ContainerSetup, cg: cgroups.Cgroup | None, errw: int, console: int, mask: set[int]) -> int:
    """As root: already PID 1 of the new PID namespace (the launcher unshared it for us). Leave the caller's
    session, join the cgroup, unshare the other namespaces, become init. Returns an exit code for ``os._exit``."""
    try:
        os.setsid()  # first: nothing of the container may share the caller's session or controlling terminal
        _close_fds(errw, console, plan.init_fd)
        sc.set_pdeathsig(signal.SIGKILL)
        if cg is not None:
            cg.join(0)  # 0: this process; before anything of the container exists, let alone runs
        flags = sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWCGROUP
        if plan.network == "none":
            flags |= sc.CLONE_NEWNET
        sc.unshare(flags)
    except BaseException as exc:
        init.report(errw, init.SETUP_FAILED, exc)
        return init.SETUP_FAILED
    return init.container_main(plan, errw, console, mask)


def _child(plan: ContainerSetup, cg: cgroups.Cgroup | None, errw: int, parent: int, console: int,
           mask: set[int]) -> int:
    """Rootless: the namespace creator (user namespace first, then the rest), parent of PID 1. Returns an exit
    code for ``os._exit``. The forwarded signals stay blocked (``mask`` is the caller's) until it forwards them."""
    try:
        os.setsid()  # first: nothing of the container may share the caller's session or controlling terminal
        _close_fds(errw, console, plan.init_fd)
        sc.set_pdeathsig(signal.SIGKILL)
        if os.getppid() != parent:
            return init.SETUP_FAILED
        if cg is not None:
            cg.join(os.getpid())  # before anything of the container exists, let alone runs
        if plan.rootless:
            uid, gid = os.geteuid(), os.getegid()
            sc.unshare(sc.CLONE_NEWUSER)
            for file, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
                with open(f"/proc/self/{file}", "w") as f:
                    f.write(text)
            sc.set_dumpable(False)  # this process stays alive holding forge's memory: no /proc access to it
        flags = sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWPID | sc.CLONE_NEWCGROUP
        if plan.network == "none":
            flags |= sc.CLONE_NEWNET
        sc.unshare(flags)
        pid = os.fork()
    except BaseException as exc:
        init.report(errw, init.SETUP_FAILED, exc)
        return init.SETUP_FAILED
    if pid == 0:
        code = init.SETUP_FAILED
        try:
            os.setsid()  # PID 1 leads a session of its own, so it can take a terminal of its own (-t)
            code = init.container_main(plan, errw, console, mask)
        finally:
            os._exit(code)
    os.close(errw)
    if console >= 0:  # -t: the caller's terminal stays with the launcher alone
        os.close(console)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
    _forward_to(pid, -1, [])  # the outer forge process escalates; this middle process only forwards
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return init.wait_status_to_code(status)
        except ChildProcessError:
            return init.SETUP_FAILED


def _forward_to(pid: int, stop_timeout: float, escalated: list[bool],
                deliver: Callable[[int], bool] | None = None) -> dict[int, object]:
    """Forward signals to the container; a stop signal not obeyed within ``stop_timeout`` s becomes SIGKILL.
    ``deliver`` (``-t``) may deliver a signal itself instead, through the container's terminal."""

    def kill(_signum: int, _frame: object) -> None:
        escalated.append(True)
        os.kill(pid, signal.SIGKILL)  # PID 1 goes, and the kernel kills the rest of its namespace

    def forward(signum: int, _frame: object) -> None:
        if deliver is None or not deliver(signum):
            cgroups.send_signal(pid, signum)
        if signum in init.STOP_SIGNALS and stop_timeout >= 0 and signal.getitimer(signal.ITIMER_REAL)[0] == 0:
            signal.setitimer(signal.ITIMER_REAL, max(stop_timeout, 0.001))

    previous: dict[int, object] = {sig: signal.signal(sig, forward) for sig in init.FORWARDED}
    previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, kill)
    return previous


def _supervise(plan: ContainerSetup, cg: cgroups.Cgroup | None, stop_timeout: float = 10.0) -> RunResult:
    """The caller's terminal never enters the container: with -t it gets a pty of its own (run/terminal.py),
    without, terminals on fds 0/1/2 are replaced by pipes (run/relay.py)."""
    console: terminal.Console | None = None
    pipes: relay.Pipes | None = None
    if plan.tty:
        from rootfs_forge.run import terminal  # socket, termios: only with -t

        console = terminal.Console()
    elif os.isatty(0) or os.isatty(1) or os.isatty(2):
        from rootfs_forge.run import relay

        pipes = relay.Pipes(plan.interactive)
    try:
        return _supervise_with(plan, cg, stop_timeout, console, pipes)
    finally:
        if console is not None:
            console.close()
        if pipes is not None:
            pipes.close()


def _supervise_with(plan: ContainerSetup, cg: cgroups.Cgroup | None, stop_timeout: float,
                    console: terminal.Console | None, pipes: relay.Pipes | None) -> RunResult:
    errr, errw = os.pipe()  # both close-on-exec
    console_fd = console.child_fd if console is not None else -1
    oom_fd = cg.oom_eventfd() if cg is not None and cg.limits.memory is not None else None
    parent = os.getpid()
    # As root the launcher makes its next child PID 1 of a new PID namespace itself (one Python fork fewer on
    # the start path) and steps back into its own PID namespace right after the fork. Rootless, the user
    # namespace has to come first, so a middle process creates the namespaces and forks PID 1.
    direct = not plan.rootless
    own_pidns = -1
    # The container starts (and may print, and be signalled) before this process runs another line after the
    # fork: a signal arriving before the forwarding handlers are in place would kill forge and the container,
    # or vanish if the caller ignored it. So the forwarded signals stay blocked, pending, until each process
    # of forge's has its handlers: this one, the rootless middle one, PID 1 until it execs.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, init.FORWARDED)
    try:
        if direct:
            own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            sc.unshare(sc.CLONE_NEWPID)
        try:
            pid = os.fork()
            if pid == 0:
                code = init.SETUP_FAILED
                try:
                    os.close(errr)
                    if pipes is not None:
                        pipes.in_child()
                    code = (_pid1(plan, cg, errw, console_fd, mask) if direct
                            else _child(plan, cg, errw, parent, console_fd, mask))
                finally:
                    os._exit(code)
        finally:
            if direct:
                sc.setns(own_pidns, sc.CLONE_NEWPID)  # later forks of this process stay in the host namespace
                os.close(own_pidns)
        os.close(errw)
        if console is not None:
            console.forked()
        if pipes is not None:
            pipes.forked()
        escalated: list[bool] = []
        previous = _forward_to(pid, stop_timeout, escalated, console.signal if console is not None else None)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # what arrived meanwhile is forwarded now
    status: int | None = None
    oom_event = False
    try:
        attached = console is not None and console.receive()
        chunks = []
        while chunk := os.read(errr, 4096):
            chunks.append(chunk)
        failure = init.parse_report(b"".join(chunks))
        if console is not None and attached and failure is None:
            oom_event = console.relay(pid, oom_fd)
        elif pipes is not None and failure is None:
            oom_event = pipes.relay(pid, oom_fd)
        elif oom_fd is not None:
            pidfd = os.pidfd_open(pid)
            try:
                while True:
                    ready, _, _ = select.select([pidfd, oom_fd], [], [])
                    if oom_fd in ready:
                        oom_event = True
                        os.kill(pid, signal.SIGKILL)  # PID 1 follows (pdeathsig), then the whole namespace
                        break
                    if pidfd in ready:
                        break
            finally:
                os.close(pidfd)
        _, status = os.waitpid(pid, 0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        os.close(errr)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
    code = init.wait_status_to_code(status)
    if failure is not None:
        fail_code, err = failure
        err.exit_code = fail_code
        raise err
    oom = False
    if cg is not None and cg.limits.memory is not None:
        kills = cg.oom_kills()
        # without an oom_kill count (v1 before Linux 4.13): a SIGKILLed container that hit its limit
        oom = oom_event or (kills > 0 if kills is not None else code == 137 and cg.memory_failcnt() > 0)
    refused = cg.pids_refused() if cg is not None else 0
    return RunResult(137 if oom else code, oom_killed=oom, pids_refused=refused, escalated=bool(escalated))
