"""Capability names and ``--cap-add``/``--cap-drop`` with Docker's rules. Pure logic, no I/O.

Names are accepted with or without ``CAP_``, in any case; ``ALL`` means every capability. As in Docker
(moby ``oci/caps.TweakCapabilities``): ``--cap-add ALL`` gives every capability except the dropped ones;
otherwise ``--cap-drop ALL`` gives exactly the added ones; otherwise the defaults minus the dropped plus the
added (an added capability wins over the same one dropped).
"""

from __future__ import annotations

from rootfs_forge.errors import RunError

# linux/capability.h
NUMBERS = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6,
    "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9, "NET_BIND_SERVICE": 10, "NET_BROADCAST": 11,
    "NET_ADMIN": 12, "NET_RAW": 13, "IPC_LOCK": 14, "IPC_OWNER": 15, "SYS_MODULE": 16, "SYS_RAWIO": 17,
    "SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_PACCT": 20, "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23,
    "SYS_RESOURCE": 24, "SYS_TIME": 25, "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29,
    "AUDIT_CONTROL": 30, "SETFCAP": 31, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35,
    "BLOCK_SUSPEND": 36, "AUDIT_READ": 37, "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}
ALL = frozenset(NUMBERS.values())
ERROR_CODE = 125  # like `docker run`: the launcher refused before the container ran


def number(name: str, what: str = "capability") -> int:
    """``sys_admin``, ``CAP_SYS_ADMIN`` -> 21. Unknown names raise a one-line RunError."""
    key = name.strip().upper()
    key = key[4:] if key.startswith("CAP_") else key
    if key not in NUMBERS:
        err = RunError("use", f"{what} {name!r}", "unknown capability (e.g. NET_ADMIN, SYS_PTRACE, ALL)")
        err.exit_code = ERROR_CODE
        raise err
    return NUMBERS[key]


def _names(items: list[str], what: str) -> tuple[bool, frozenset[int]]:
    """(ALL given, the named capabilities)."""
    every = False
    nums = set()
    for item in items:
        for name in item.split(","):
            if name.strip().upper() in ("ALL", "CAP_ALL"):
                every = True
            elif name.strip():
                nums.add(number(name, what))
    return every, frozenset(nums)


def effective(defaults: frozenset[int], add: list[str], drop: list[str]) -> frozenset[int]:
    """The container's capability set after ``--cap-add``/``--cap-drop`` (Docker's precedence, see above)."""
    add_all, adds = _names(add, "--cap-add")
    drop_all, drops = _names(drop, "--cap-drop")
    if add_all:
        return ALL - drops
    if drop_all:
        return adds
    return (defaults - drops) | adds


def mask(caps: frozenset[int]) -> int:
    return sum(1 << c for c in caps)


def names(caps: frozenset[int]) -> frozenset[str]:
    """``CAP_``-prefixed names, as seccomp profiles spell them."""
    return frozenset("CAP_" + n for n, c in NUMBERS.items() if c in caps)
