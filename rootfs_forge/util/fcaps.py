"""File capabilities: libcap's text form (``cap_net_raw+ep``, cap_from_text(3)) → the ``security.capability``
extended attribute (``struct vfs_cap_data``, revision 2), as ``setcap`` writes it. Pure: no I/O.

The grammar: whitespace-separated clauses ``[caps]op flags[op flags…]`` where ``caps`` is a comma list of
names (``cap_net_raw``, lower case as libcap wants it), numbers or ``all`` (an empty list means all, and only
with ``=``), ``op`` is ``=`` (clear the named capabilities in every set, then raise them in ``flags``), ``+``
or ``-``, and ``flags`` a subset of ``eip``. As in libcap, the effective set of a file is one bit: when any
capability is effective, every permitted or inheritable one must be too (else ``setcap`` fails with EINVAL).
"""

from __future__ import annotations

import re
import struct

from rootfs_forge.run.caps import NUMBERS

XATTR = "security.capability"
_REVISION_2 = 0x02000000
_EFFECTIVE = 0x000001
_ALL = (1 << (max(NUMBERS.values()) + 1)) - 1  # the kernel's and libcap's last capability: 40
_CLAUSE = re.compile(r"^([^=+-]*)((?:[=+-][eip]*)+)$")
_ACTION = re.compile(r"([=+-])([eip]*)")


class CapabilityTextError(ValueError):
    """The text is not a file capability ``setcap`` would accept."""


def _bits(names: str, op: str) -> int:
    if names == "":
        if op != "=":
            raise CapabilityTextError("a clause without capability names must start with '='")
        return _ALL
    bits = 0
    for name in names.split(","):
        if name == "all":
            bits |= _ALL
        elif name.isdigit() and int(name) <= max(NUMBERS.values()):
            bits |= 1 << int(name)
        elif name.startswith("cap_") and name[4:].upper() in NUMBERS and name == name.lower():
            bits |= 1 << NUMBERS[name[4:].upper()]
        else:
            raise CapabilityTextError(f"unknown capability {name!r}")
    return bits


def parse(text: str) -> tuple[int, int, int]:
    """(effective, permitted, inheritable) bit sets of the capability text ``text``."""
    sets = {"e": 0, "p": 0, "i": 0}
    clauses = text.split()
    if not clauses:
        raise CapabilityTextError("empty capability text")
    for clause in clauses:
        m = _CLAUSE.match(clause)
        if m is None:
            raise CapabilityTextError(f"cannot read {clause!r}")
        actions = _ACTION.findall(m.group(2))
        bits = _bits(m.group(1), actions[0][0])
        for op, flags in actions:
            if op == "=":
                for key in sets:
                    sets[key] &= ~bits
            for flag in flags:
                sets[flag] = sets[flag] & ~bits if op == "-" else sets[flag] | bits
    return sets["e"], sets["p"], sets["i"]


def encode(text: str) -> bytes:
    """The ``security.capability`` value (vfs_cap_data revision 2, 20 bytes) ``setcap TEXT`` writes."""
    effective, permitted, inheritable = parse(text)
    if effective and (permitted | inheritable) & ~effective:
        raise CapabilityTextError("effective file capabilities must be empty or cover every permitted and "
                                  "inheritable one")
    magic = _REVISION_2 | (_EFFECTIVE if effective else 0)
    return struct.pack("<IIIII", magic, permitted & 0xFFFFFFFF, inheritable & 0xFFFFFFFF,
                       permitted >> 32, inheritable >> 32)


__all__ = ["XATTR", "CapabilityTextError", "encode", "parse"]
