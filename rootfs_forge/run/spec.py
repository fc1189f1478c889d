"""Pure parsing for ``forge run``: sizes, CPU quotas, volumes, env, users, and image defaults. No I/O."""

from __future__ import annotations

from rootfs_forge.errors import RunError
from rootfs_forge.util.passwd import table

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CFS_PERIOD_US = 100_000
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class _Value:
    """Equality, hash and repr by the fields a subclass lists in ``__slots__`` (a value, treated as immutable)."""

    __slots__: tuple[str, ...] = ()

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self.__slots__)})"


class Limits:
    """Resource limits; ``memory_label`` keeps the user's spelling for messages. Treated as immutable.

    (Plain slotted classes instead of dataclasses here: ``dataclasses`` imports ``inspect``, which costs
    ~8 ms on the ``forge run`` start path.)"""

    __slots__ = ("cpu_quota_us", "memory", "memory_label", "pids")

    def __init__(self, memory: int | None = None, memory_label: str = "", pids: int | None = None,
                 cpu_quota_us: int | None = None) -> None:
        self.memory = memory  # bytes
        self.memory_label = memory_label
        self.pids = pids
        self.cpu_quota_us = cpu_quota_us  # per CFS_PERIOD_US

    @property
    def any(self) -> bool:
        return self.memory is not None or self.pids is not None or self.cpu_quota_us is not None


class Volume(_Value):
    """A bind mount. Forge adds nosuid and nodev (to every mount below ``host`` too) unless ``suid``/``dev``
    ask it not to; ``noexec`` adds noexec; ``read_only`` applies to every mount below ``host`` as well."""

    __slots__ = ("dev", "host", "noexec", "read_only", "suid", "target")

    def __init__(self, host: str, target: str, read_only: bool = False, *, dev: bool = False, suid: bool = False,
                 noexec: bool = False) -> None:
        self.host = host
        self.target = target
        self.read_only = read_only
        self.dev = dev
        self.suid = suid
        self.noexec = noexec


class ProcessDefaults:
    """What an image says about the process ``forge run`` starts (entrypoint, cmd, env, working dir, user):
    read from its OCI config; the whole config an image is written with is ``image.oci.ImageConfig``."""

    __slots__ = ("cmd", "entrypoint", "env", "user", "workdir")

    def __init__(self, entrypoint: tuple[str, ...] = (), cmd: tuple[str, ...] = (), env: tuple[str, ...] = (),
                 workdir: str = "", user: str = "") -> None:
        self.entrypoint = entrypoint
        self.cmd = cmd
        self.env = env
        self.workdir = workdir
        self.user = user


class User(_Value):
    __slots__ = ("gid", "groups", "home", "uid")

    def __init__(self, uid: int, gid: int, groups: tuple[int, ...] = (), home: str = "/") -> None:
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.home = home


class Process:
    __slots__ = ("argv", "env", "user", "workdir")

    def __init__(self, argv: tuple[str, ...], env: tuple[str, ...] = (), workdir: str = "/", user: str = "") -> None:
        self.argv = argv
        self.env = env
        self.workdir = workdir
        self.user = user


def parse_size(text: str, what: str = "memory limit") -> int:
    """``64m`` -> 67108864 (binary units b/k/m/g/t, optional trailing ``b``/``ib``)."""
    s = text.strip().lower()
    if s.endswith("ib") and s[-3:-2] in ("k", "m", "g", "t"):
        s = s[:-2]
    elif s.endswith("b") and len(s) > 1:
        s = s[:-1]
    num, unit = s, ""
    if s and s[-1] in "kmgt":
        num, unit = s[:-1], s[-1]
    try:
        value = int(float(num) * _UNITS[unit])
    except ValueError:
        raise RunError("parse", what, f"{text!r} is not a size like 64m or 1g") from None
    if value <= 0:
        raise RunError("parse", what, f"{text!r} must be positive")
    return value


def parse_cpus(text: str) -> int:
    """``0.5`` -> CFS quota in microseconds per 100 ms period."""
    try:
        cpus = float(text)
    except ValueError:
        raise RunError("parse", "cpu limit", f"{text!r} is not a number of CPUs like 0.5") from None
    if not cpus > 0:
        raise RunError("parse", "cpu limit", f"{text!r} must be positive")
    return max(1000, round(cpus * CFS_PERIOD_US))


def parse_pids(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise RunError("parse", "pids limit", f"{text!r} is not a whole number") from None
    if n < 1:
        raise RunError("parse", "pids limit", f"{text!r} must be at least 1")
    return n


def parse_limits(memory: str | None, pids: str | None, cpus: str | None) -> Limits:
    return Limits(
        memory=parse_size(memory) if memory else None,
        memory_label=memory or "",
        pids=parse_pids(pids) if pids else None,
        cpu_quota_us=parse_cpus(cpus) if cpus else None,
    )


# volume option -> (what it sets, its value); an option and its opposite set the same thing
VOLUME_OPTIONS = {"ro": ("read_only", True), "rw": ("read_only", False), "dev": ("dev", True),
                  "nodev": ("dev", False), "suid": ("suid", True), "nosuid": ("suid", False),
                  "exec": ("noexec", False), "noexec": ("noexec", True)}


def parse_volume(text: str) -> Volume:
    """``HOST:CONTAINER[:OPTS]``, OPTS a comma list of ro|rw, dev|nodev, suid|nosuid, exec|noexec (defaults:
    rw, nodev, nosuid, exec)."""
    parts = text.split(":")
    what = f"volume {text!r}"
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise RunError("parse", what, "expected HOST:CONTAINER[:OPTIONS]")
    if not parts[1].startswith("/"):
        raise RunError("parse", what, "the container path must be absolute")
    chosen: dict[str, tuple[str, bool]] = {}
    for opt in parts[2].split(",") if len(parts) == 3 else ():
        if opt not in VOLUME_OPTIONS:
            raise RunError("parse", what, f"unknown volume option {opt!r} (choose from ro, rw, dev, nodev, suid, "
                                          "nosuid, exec, noexec)")
        field, value = VOLUME_OPTIONS[opt]
        if field in chosen and chosen[field][1] != value:
            raise RunError("parse", what, f"conflicting volume options {chosen[field][0]!r} and {opt!r}")
        chosen[field] = (opt, value)
    flags = {field: value for field, (_, value) in chosen.items()}
    return Volume(parts[0], parts[1], flags.pop("read_only", False), **flags)


def default_tmpfs_size(memory: int | None, ram: int) -> int:
    """The default size of the container's /tmp and of its writable layer (each): an eighth of the host's RAM,
    and with a memory limit at most a quarter of it (tmpfs pages count against the limit: both full leave half
    of it to the processes). At least 1 MiB, in whole 4 KiB pages."""
    size = ram // 8
    if memory:
        size = min(size, memory // 4)
    return max(size, 1 << 20) & ~4095


def parse_env(items: list[str]) -> tuple[str, ...]:
    for item in items:
        if "=" not in item or item.startswith("="):
            raise RunError("parse", f"environment entry {item!r}", "expected KEY=VALUE")
    return tuple(items)


def merge_env(*layers: tuple[str, ...]) -> tuple[str, ...]:
    """Later layers override earlier ones by key; order of first appearance is kept."""
    out: dict[str, str] = {}
    for layer in layers:
        for item in layer:
            key, _, value = item.partition("=")
            out[key] = value
    return tuple(f"{k}={v}" for k, v in out.items())


def plan_process(config: ProcessDefaults, cmd: list[str], env: tuple[str, ...], workdir: str | None,
                 user: str | None, what: str, entrypoint: str | None = None) -> Process:
    """Docker's rules: CMD given on the command line replaces the image's Cmd; Entrypoint stays. An
    ``entrypoint`` (``--entrypoint``) replaces the image's Entrypoint and drops its Cmd; ``""`` clears it."""
    if entrypoint is None:
        argv = tuple(config.entrypoint) + (tuple(cmd) if cmd else tuple(config.cmd))
    else:
        argv = ((entrypoint,) if entrypoint else ()) + tuple(cmd)
    if not argv:
        raise RunError("run", what, "no command given and the image has no Entrypoint or Cmd" if entrypoint is None
                       else "no command given and --entrypoint '' cleared the Entrypoint (and the image's Cmd)")
    merged = merge_env((DEFAULT_PATH,), config.env, env)
    return Process(argv=argv, env=merged, workdir=workdir or config.workdir or "/", user=user or config.user)


def resolve_user(spec: str, passwd: str, group: str) -> User:
    """``name``, ``uid``, ``name:group`` or ``uid:gid`` -> numeric ids, looked up in the image's files.

    A numeric uid without a passwd entry is allowed (gid defaults to 0, as Docker does)."""
    if not spec:
        spec = "0"
    uname, _, gname = spec.partition(":")
    users = [e for _, e in table(passwd) if len(e) >= 7]
    groups = [e for _, e in table(group) if len(e) >= 3]
    entry = next((e for e in users if e[0] == uname), None)
    if entry is None and uname.isdigit():
        entry = next((e for e in users if e[2] == uname), None)
    if entry is None and not uname.isdigit():
        raise RunError("resolve", f"user {uname!r}", "no such user in the image's /etc/passwd")
    uid = int(entry[2]) if entry else int(uname)
    gid = int(entry[3]) if entry and entry[3].isdigit() else 0
    home = entry[5] if entry and entry[5] else "/"
    if gname:
        if gname.isdigit():
            gid = int(gname)
        else:
            gentry = next((g for g in groups if g[0] == gname), None)
            if gentry is None:
                raise RunError("resolve", f"group {gname!r}", "no such group in the image's /etc/group")
            gid = int(gentry[2])
    name = entry[0] if entry else None
    extra = sorted({int(g[2]) for g in groups if name and name in g[3].split(",") and g[2].isdigit()} - {gid})
    return User(uid, gid, (gid, *extra), home)


class ContainerSetup:
    """Everything the container side needs, resolved by the launcher before it forks. Treated as immutable.

    ``lowers`` run top to bottom (overlay order). ``upper``/``work`` are None for a throw-away tmpfs upper.
    ``etc_files`` maps ``hostname``/``hosts``/``resolv.conf`` to their generated text; ``rt`` is the host dir
    the container's scratch tmpfs is mounted on (inside the container's mount namespace only)."""

    __slots__ = ("caps", "etc_files", "hostname", "init_fd", "interactive", "lowers", "network", "no_init",
                 "process", "read_only", "rootless", "rt", "seccomp", "storage", "tmp_size", "tty", "upper",
                 "upper_size", "volumes", "work")

    def __init__(self, *, rt: str, lowers: tuple[str, ...], process: Process, upper: str | None = None,
                 work: str | None = None, storage: str = "overlay", volumes: tuple[Volume, ...] = (),
                 read_only: bool = False, network: str = "none", hostname: str = "forge",
                 interactive: bool = False, tty: bool = False, rootless: bool = False,
                 etc_files: dict[str, str] | None = None, no_init: bool = False, tmp_size: int = 0,
                 upper_size: int = 0, init_fd: int = -1, caps: frozenset[int] | None = None,
                 seccomp: tuple[bytes, ...] = ()) -> None:
        self.rt = rt
        self.tmp_size = tmp_size  # bytes for the container's /tmp tmpfs; 0: the kernel default (half of RAM)
        self.upper_size = upper_size  # bytes for the writable layer's tmpfs (not a kept one); 0: kernel default
        self.lowers = lowers
        self.process = process
        self.upper = upper
        self.work = work
        self.storage = storage
        self.volumes = volumes
        self.read_only = read_only
        self.network = network
        self.hostname = hostname
        self.interactive = interactive
        self.tty = tty
        self.rootless = rootless
        self.etc_files = dict(etc_files or {})
        self.no_init = no_init
        self.init_fd = init_fd  # an open static init binary to exec as PID 1 (staticinit), or -1
        self.caps = caps  # the container's capability set; None: syscalls.DEFAULT_CAPS
        self.seccomp = seccomp  # BPF programs PID 1 installs last; empty: unconfined
