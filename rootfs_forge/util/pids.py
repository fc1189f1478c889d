"""Whether a process still exists: temp directories and cgroups carry the pid of the forge process that made
them, so a later run can tell what a killed one left behind.

Names made by ``forge run`` carry an *owner tag* ``PID-START-PIDNS`` (START: the process's start time in clock
ticks since boot, from /proc/PID/stat; PIDNS: the inode of its PID namespace), so that neither a reused pid nor
a pid of another namespace (a cache shared with a container) is mistaken for the process that made them. Names
from older versions carry only the pid; they are judged by the pid alone.
"""

import os


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists (also when it belongs to another user: never remove on doubt)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_time(pid: int) -> int | None:
    """When ``pid`` started (field 22 of /proc/PID/stat, clock ticks since boot); None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()  # after "pid (comm) ": comm may hold spaces and parens
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def pid_namespace() -> int:
    """The inode of this process's PID namespace (0 if unknown): a pid means something only inside it."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


Owner = tuple[int, int | None, int | None]  # pid, start time, PID namespace (None: not recorded)
_OWN: list[tuple[int, str, int]] = []  # (pid, tag, pid namespace) of this process, computed once


def _own() -> tuple[int, str, int]:
    pid = os.getpid()
    if not _OWN or _OWN[0][0] != pid:  # a forked child has its own
        ns = pid_namespace()
        _OWN[:] = [(pid, f"{pid}-{start_time(pid) or 0}-{ns}", ns)]
    return _OWN[0]


def owner_tag() -> str:
    """``PID-START-PIDNS`` of this process, for the names of what it creates outside its containers."""
    return _own()[1]


def parse_owner(text: str) -> tuple[Owner, str] | None:
    """``PID-START-PIDNS-REST`` -> ((pid, start, pidns), rest); the older ``PID-REST`` -> ((pid, None, None),
    rest); anything else None."""
    parts = text.split("-", 3)
    if not parts[0].isdigit() or len(parts) < 2:
        return None
    if len(parts) == 4 and parts[1].isdigit() and parts[2].isdigit():
        return (int(parts[0]), int(parts[1]), int(parts[2])), parts[3]
    return (int(parts[0]), None, None), text.partition("-")[2]


def owner_alive(owner: Owner) -> bool:
    """True while the process that wrote an owner tag may still run: it was in another PID namespace (its pid
    means nothing here), or ``pid`` exists and, when the tag has a start time, started then. Anything
    unreadable counts as alive: nothing is removed on a guess."""
    pid, start, ns = owner
    if pid <= 0 or (ns and ns != _own()[2]):
        return True
    if not process_alive(pid):
        return False
    if not start:
        return True
    now = start_time(pid)
    return now is None or now == start
