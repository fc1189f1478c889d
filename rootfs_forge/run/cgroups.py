"""cgroup limits for one container: v2 (unified) or v1 (per-controller hierarchies), setup and teardown.

A container's cgroup is created *under the cgroup the caller is in* (read from /proc/self/cgroup), in each
hierarchy that carries a requested limit, so a launcher that itself lives in a limited cgroup nests properly.
"""

from __future__ import annotations

import os
import time

from rootfs_forge.errors import RunError
from rootfs_forge.run.spec import CFS_PERIOD_US, Limits
from rootfs_forge.util.pids import Owner, parse_owner

TYPE_CHECKING = False  # typing stays off the start path; mypy reads this as typing.TYPE_CHECKING
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable, Iterable

    Alive = Callable[[Owner], bool]
else:  # the C module under signal: the same calls and numbers, without its enums (enum, functools, collections)
    import _signal as signal

CGROUP_ROOT = "/sys/fs/cgroup"


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/self/cgroup`` -> {controller: path}; the v2 entry is keyed ``""``; named ones ``name=x``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, ctrls, path = parts
        for ctrl in ctrls.split(",") if ctrls else [""]:
            out[ctrl] = path
    return out


def is_pure_v2(root: str = CGROUP_ROOT) -> bool:
    return os.path.exists(os.path.join(root, "cgroup.controllers"))


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise RunError("write", path, exc.strerror or str(exc)) from None


def read_text(path: str) -> str:
    """The text of a small kernel or config file; "" when it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _kv(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


class Cgroup:
    """The container's cgroup dirs: ``dirs`` maps a controller (v1) or ``""`` (v2) to its directory."""

    def __init__(self, version: int, dirs: dict[str, str], limits: Limits) -> None:
        self.version = version
        self.dirs = dirs
        self.limits = limits
        self._fds: list[int] = []

    @property
    def procs_files(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self.dirs.values()]

    def join(self, pid: int) -> None:
        for path in self.procs_files:
            _write(path, str(pid))

    def oom_kills(self) -> int | None:
        """How many processes the OOM killer took in this cgroup; None if the kernel does not count them."""
        if self.version == 2:
            return _kv(read_text(os.path.join(self.dirs[""], "memory.events"))).get("oom_kill")
        mem = self.dirs.get("memory")
        if not mem:
            return 0
        return _kv(read_text(os.path.join(mem, "memory.oom_control"))).get("oom_kill")

    def memory_failcnt(self) -> int:
        """v1: how often usage hit the limit (the fallback signal on kernels without ``oom_kill`` counts)."""
        mem = self.dirs.get("memory")
        text = read_text(os.path.join(mem, "memory.failcnt")).strip() if self.version == 1 and mem else ""
        return int(text) if text.isdigit() else 0

    def pids_refused(self) -> int:
        """How many forks the pids limit refused."""
        d = self.dirs.get("" if self.version == 2 else "pids")
        return _kv(read_text(os.path.join(d, "pids.events"))).get("max", 0) if d else 0

    def oom_eventfd(self) -> int | None:
        """v1: an eventfd that becomes readable when the memory cgroup hits OOM (None elsewhere)."""
        mem = self.dirs.get("memory")
        if self.version != 1 or not mem:
            return None
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        ofd = os.open(os.path.join(mem, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
        self._fds += [efd, ofd]
        _write(os.path.join(mem, "cgroup.event_control"), f"{efd} {ofd}")
        return efd

    def kill_all(self) -> None:
        if self.version == 2 and os.path.exists(os.path.join(self.dirs[""], "cgroup.kill")):
            try:
                _write(os.path.join(self.dirs[""], "cgroup.kill"), "1")
                return
            except RunError:
                pass
        for path in self.procs_files:
            for pid in read_text(path).split():
                send_signal(int(pid), signal.SIGKILL)

    def remove(self, timeout: float = 2.0) -> None:
        """Kill what is left and remove the dirs; retries while the kernel finishes reaping."""
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        deadline = time.monotonic() + timeout
        for d in self.dirs.values():
            while os.path.isdir(d):
                try:
                    os.rmdir(d)
                except OSError as exc:
                    if time.monotonic() > deadline:
                        raise RunError("remove cgroup", d, exc.strerror or str(exc)) from None
                    self.kill_all()
                    time.sleep(0.01)


def send_signal(pid: int, sig: int) -> bool:
    """``os.kill`` that reports a vanished process as False instead of raising."""
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _own_dir(controller_root: str, own: dict[str, str], key: str) -> str:
    rel = own.get(key, "/").lstrip("/")
    return os.path.join(controller_root, rel) if rel else controller_root


def run_name(owner: str, run_id: str) -> str:
    """The cgroup of one ``forge run``: it carries the owner tag (``PID-START-PIDNS``, see ``pids``) of the
    forge process that owns it."""
    return f"forge-{owner}-{run_id}"


def stale_runs(parent: str, alive: Alive) -> list[str]:
    """Cgroup dirs under ``parent`` left by ``forge run`` processes that are gone (SIGKILLed: no ``finally``)."""
    out: list[str] = []
    try:
        with os.scandir(parent) as entries:
            names = sorted(e.name for e in entries if e.name.startswith("forge-") and e.is_dir(follow_symlinks=False))
    except OSError:
        return out
    for name in names:
        parsed = parse_owner(name[len("forge-"):])
        if parsed is not None and not alive(parsed[0]):
            out.append(os.path.join(parent, name))
    return out


def hierarchies(proc_cgroup: str, root: str = CGROUP_ROOT) -> list[str]:
    """The caller's cgroup dir in every hierarchy it is in (each v1 controller or co-mounted group, named ones
    such as ``name=systemd``, and v2), from the text of /proc/self/cgroup. Not checked for existence."""
    lines = [line.split(":", 2) for line in proc_cgroup.splitlines()]
    hybrid = any(len(p) == 3 and p[1] for p in lines)
    out: list[str] = []
    for parts in lines:
        if len(parts) != 3:
            continue
        _, ctrls, path = parts
        if not ctrls:
            mount = os.path.join(root, "unified") if hybrid else root
        else:  # "cpu,cpuacct" is mounted as such (with symlinks per controller); "name=systemd" as systemd
            mount = os.path.join(root, ",".join(c.removeprefix("name=") for c in ctrls.split(",")))
        rel = path.lstrip("/")
        out.append(os.path.join(mount, rel) if rel else mount)
    return out


def sweep(parents: Iterable[str], alive: Alive) -> None:
    """Remove the empty run cgroups of dead forge processes under ``parents``. One that still holds processes
    is left alone: its pid may belong to another pid namespace, and nothing is killed on a guess."""
    for parent in parents:
        for d in stale_runs(parent, alive):
            try:  # noqa: SIM105 (contextlib, and collections with it, stay off forge run's start)
                os.rmdir(d)
            except OSError:  # EBUSY: not empty
                pass


def sweep_all(alive: Alive, root: str = CGROUP_ROOT, proc_cgroup: str | None = None) -> None:
    """``sweep`` in every hierarchy, whatever controllers the current run uses (a killed run may have used
    others)."""
    sweep(hierarchies(read_text("/proc/self/cgroup") if proc_cgroup is None else proc_cgroup, root), alive)


def create(limits: Limits, name: str, root: str = CGROUP_ROOT, proc_cgroup: str | None = None) -> Cgroup:
    """Create ``name`` under the caller's cgroup in every hierarchy a limit needs and write the limits.

    On any failure the dirs created so far are removed before raising. (Run cgroups of dead forge processes
    are swept by the caller beforehand, in every hierarchy: ``sweep_all``.)"""
    own = parse_proc_cgroup(read_text("/proc/self/cgroup") if proc_cgroup is None else proc_cgroup)
    if is_pure_v2(root):
        cg = Cgroup(2, {"": os.path.join(_own_dir(root, own, ""), name)}, limits)
    else:
        wanted = [c for c, on in (("memory", limits.memory), ("pids", limits.pids), ("cpu", limits.cpu_quota_us))
                  if on is not None]
        cg = Cgroup(1, {c: os.path.join(_own_dir(os.path.join(root, c), own, c), name) for c in wanted}, limits)
    made: dict[str, str] = {}
    try:
        for key, d in cg.dirs.items():
            if cg.version == 2:
                _enable_v2_controllers(os.path.dirname(d), limits)
            try:
                os.mkdir(d)
            except OSError as exc:
                raise RunError("create cgroup", d, exc.strerror or str(exc)) from None
            made[key] = d
        (_limit_v2 if cg.version == 2 else _limit_v1)(cg)
    except BaseException:
        Cgroup(cg.version, made, limits).remove()
        raise
    return cg


def _enable_v2_controllers(parent: str, limits: Limits) -> None:
    need = [c for c, on in (("memory", limits.memory), ("pids", limits.pids), ("cpu", limits.cpu_quota_us))
            if on is not None]
    enabled = read_text(os.path.join(parent, "cgroup.subtree_control")).split()
    missing = [c for c in need if c not in enabled]
    if missing:
        try:
            _write(os.path.join(parent, "cgroup.subtree_control"), " ".join(f"+{c}" for c in missing))
        except RunError as exc:
            raise RunError("enable cgroup controllers", " ".join(missing),
                           f"{parent} does not delegate them ({exc.reason})") from None


def _limit_v2(cg: Cgroup) -> None:
    d, lim = cg.dirs[""], cg.limits
    if lim.memory is not None:
        _write(os.path.join(d, "memory.max"), str(lim.memory))
        if os.path.exists(os.path.join(d, "memory.swap.max")):
            _write(os.path.join(d, "memory.swap.max"), "0")
        _write(os.path.join(d, "memory.oom.group"), "1")
    if lim.pids is not None:
        _write(os.path.join(d, "pids.max"), str(lim.pids))
    if lim.cpu_quota_us is not None:
        _write(os.path.join(d, "cpu.max"), f"{lim.cpu_quota_us} {CFS_PERIOD_US}")


def _limit_v1(cg: Cgroup) -> None:
    lim = cg.limits
    if lim.memory is not None:
        d = cg.dirs["memory"]
        _write(os.path.join(d, "memory.limit_in_bytes"), str(lim.memory))
        if os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes")):
            _write(os.path.join(d, "memory.memsw.limit_in_bytes"), str(lim.memory))
    if lim.pids is not None:
        _write(os.path.join(cg.dirs["pids"], "pids.max"), str(lim.pids))
    if lim.cpu_quota_us is not None:
        d = cg.dirs["cpu"]
        _write(os.path.join(d, "cpu.cfs_period_us"), str(CFS_PERIOD_US))
        _write(os.path.join(d, "cpu.cfs_quota_us"), str(lim.cpu_quota_us))
