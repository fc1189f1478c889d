"""``forge run``, ``forge ps``, ``forge rm``, ``forge commit``: thin wiring over ``rootfs_forge.run``.

Imports of the launcher happen inside the handlers so that ``forge run`` pays only for what it uses.
"""

from __future__ import annotations

import sys

from rootfs_forge.commands.fmt import human_size
from rootfs_forge.commands.platform_arg import add_platform_arg, platform_of

TYPE_CHECKING = False  # argparse and typing stay off the start path (commands/run_argv.py parses the common forms)
if TYPE_CHECKING:
    import argparse


def register(sub: argparse._SubParsersAction) -> None:
    import argparse

    p = sub.add_parser("run", help="run a command in a container made from an image or a rootfs directory",
                       description="Run CMD in new namespaces on an OCI image (DIR[:TAG] or oci-archive tar) "
                                   "or a rootfs directory, with overlayfs, pivot_root and cgroup limits.")
    p.add_argument("target", metavar="IMAGE|ROOTFS")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD", help="command and arguments ([--] CMD ARGS...)")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="set an environment variable")
    p.add_argument("-w", "--workdir", help="working directory inside the container")
    p.add_argument("--entrypoint", metavar="PROGRAM",
                   help="replace the image's Entrypoint (and drop its Cmd, as Docker does); '' clears it")
    p.add_argument("-u", "--user", help="NAME[:GROUP] from the image's /etc/passwd, or UID[:GID]")
    p.add_argument("--hostname", help="hostname inside the container")
    p.add_argument("-v", "--volume", action="append", default=[], metavar="HOST:CTR[:OPTS]",
                   help="bind mount; OPTS: comma list of ro|rw, dev, suid, noexec (default rw, nosuid, nodev; ro, "
                        "nosuid, nodev and noexec apply to every mount below HOST too)")
    p.add_argument("--network", default="none", choices=("none", "host"),
                   help="none: a new network namespace with only lo (default); host: the host's network")
    p.add_argument("-m", "--memory", help="memory limit, e.g. 64m (exceeding it kills the container)")
    p.add_argument("--pids", help="maximum number of processes")
    p.add_argument("--cpus", help="CPU quota, e.g. 0.5")
    p.add_argument("--name", help="keep the container's writable layer under this name (see ps, rm, commit)")
    p.add_argument("--rm", action="store_true", help="with --name: remove the container after it exits")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin connected (else /dev/null)")
    p.add_argument("-t", "--tty", action="store_true",
                   help="give the command a pseudo-terminal of its own, relayed to yours (implies -i)")
    p.add_argument("--read-only", action="store_true", help="mount the container's root read-only")
    add_platform_arg(p, "the platform to run from a multi-platform image or registry reference (linux/amd64 ...; "
                        "default: the host's); forge run does not emulate other architectures")
    p.add_argument("--cache-dir", help="layer unpack cache (default $FORGE_CACHE or <project>/cache)")
    p.add_argument("--state-dir", help="named containers (default /var/lib/forge/containers as root)")
    p.add_argument("--storage", default="auto", choices=("auto", "overlay", "copy"),
                   help="overlay (default when available) or copy the layers into a tmpfs at start")
    p.add_argument("--no-init", action="store_true",
                   help="exec the command as PID 1 instead of under forge's reaping, signal-forwarding init")
    p.add_argument("--tmp-size", metavar="SIZE", help="size of the container's /tmp tmpfs, e.g. 64m (default: a "
                                                      "quarter of --memory, at most an eighth of RAM)")
    p.add_argument("--stop-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="after SIGTERM/SIGINT/SIGHUP/SIGQUIT, SIGKILL a container still running this long (default "
                        "10; negative: never)")
    p.add_argument("--upper-size", metavar="SIZE",
                   help="size of the tmpfs holding the container's writable layer (default as --tmp-size; a named "
                        "container's layer is kept on disk instead)")
    p.add_argument("--cap-add", action="append", default=[], metavar="CAP",
                   help="add a capability (NET_ADMIN, CAP_SYS_PTRACE, ALL ...) to the default set")
    p.add_argument("--cap-drop", action="append", default=[], metavar="CAP",
                   help="drop a capability from the default set (ALL: all of them)")
    p.add_argument("--security-opt", action="append", default=[], metavar="OPT",
                   help="seccomp=unconfined (no filter), seccomp=PROFILE.json (Docker's format) or "
                        "no-new-privileges (always on)")
    p.set_defaults(func=_run)

    ps = sub.add_parser("ps", help="list kept (named) containers")
    ps.add_argument("--state-dir", help="named containers dir")
    ps.set_defaults(func=_ps)

    rm = sub.add_parser("rm", help="remove kept containers")
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.add_argument("--state-dir", help="named containers dir")
    rm.set_defaults(func=_rm)

    cm = sub.add_parser("commit", help="turn a kept container's changes into a new image layer")
    cm.add_argument("name", metavar="NAME")
    cm.add_argument("dest", metavar="IMAGE_DIR:TAG")
    cm.add_argument("--state-dir", help="named containers dir")
    cm.set_defaults(func=_commit)


def _warn(message: str) -> None:
    print(f"forge: warning: {message}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    import time

    from rootfs_forge.run.launcher import RunOptions, run
    from rootfs_forge.run.spec import parse_limits, parse_size, parse_volume

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if args.name:
        from rootfs_forge.run.state import check_name

        check_name(args.name)
    opts = RunOptions(
        args.target, cmd, now=time.time(), env=args.env, workdir=args.workdir, user=args.user,
        entrypoint=args.entrypoint,
        hostname=args.hostname, volumes=tuple(parse_volume(v) for v in args.volume), network=args.network,
        limits=parse_limits(args.memory, args.pids, args.cpus), name=args.name, remove=args.rm,
        interactive=args.interactive, tty=args.tty, read_only=args.read_only, cache_dir=args.cache_dir,
        state_dir=args.state_dir, storage=args.storage, no_init=args.no_init, stop_timeout=args.stop_timeout,
        tmp_size=parse_size(args.tmp_size, "--tmp-size") if args.tmp_size else 0,
        upper_size=parse_size(args.upper_size, "--upper-size") if args.upper_size else 0,
        cap_add=args.cap_add, cap_drop=args.cap_drop, security_opt=args.security_opt,
        platform=platform_of(args, "run", args.target),
    )
    sys.stdout.flush()
    result = run(opts, _warn)
    if result.escalated:
        print(f"forge: container ignored the stop signal for {args.stop_timeout:g} s: killed", file=sys.stderr)
    elif result.oom_killed:
        print(f"forge: container killed: memory limit {opts.limits.memory_label} exceeded", file=sys.stderr)
    elif result.pids_refused:
        print(f"forge: pids limit {opts.limits.pids} reached: {result.pids_refused} fork(s) refused",
              file=sys.stderr)
    return result.exit_code


def _state_dir(args: argparse.Namespace) -> str:
    from rootfs_forge.run.paths import default_state_dir

    return str(args.state_dir or default_state_dir())


def _sweep(state_dir: str) -> None:
    """What killed runs left behind (cgroups, unpacked archives, partial layer unpacks, --rm containers)."""
    from rootfs_forge.run import paths, sweep

    problem = sweep.everything(state_dir, paths.default_runtime_dir(), paths.default_cache_dir())
    if problem:
        _warn(f"{problem}: not swept")


def _ps(args: argparse.Namespace) -> int:
    import time

    from rootfs_forge.run import state

    _sweep(_state_dir(args))
    rows = [("NAME", "IMAGE", "CREATED", "SIZE")]
    for name, meta, size in state.listing(_state_dir(args)):
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(meta.get("created", 0))))
        rows.append((name, str(meta.get("image") or meta.get("rootfs") or "?"), created, human_size(size)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0



def _rm(args: argparse.Namespace) -> int:
    from rootfs_forge.run import state

    d = _state_dir(args)
    _sweep(d)
    for name in args.names:
        state.remove(d, name)
        print(name)
    return 0


def _commit(args: argparse.Namespace) -> int:
    from rootfs_forge.run.commit import commit_container
    from rootfs_forge.util.env import source_date_epoch

    epoch = source_date_epoch() or 0  # a bad value is a one-line error, not a traceback
    digest = commit_container(_state_dir(args), args.name, args.dest, epoch=epoch)
    print(digest)
    return 0
