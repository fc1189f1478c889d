"""Debian relation fields and version comparison, on top of python-debian.

``Package`` keeps each relation field as raw text; this module parses it on demand with
``debian.deb822.PkgRelation.parse_relations`` and compares versions with
``debian.debian_support.version_compare``. Parsing and comparing are pure functions of their string
arguments, so they are memoised with ``functools.lru_cache``: nothing about a particular index or resolve is
kept, and the caches are bounded.

A field that python-debian cannot parse (it logs a warning and hands the raw text back) becomes
``IndexError_("parse", "<Field> of <name> <version>", reason)``; the warning is swallowed so nothing is
printed below the CLI.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

from debian.debian_support import Version, version_compare

from rootfs_forge.errors import IndexError_
from rootfs_forge.model import Package
from rootfs_forge.util.deb822 import PkgRelation

# relation field name (as written in a stanza) -> Package attribute
FIELDS: dict[str, str] = {
    "Pre-Depends": "pre_depends",
    "Depends": "depends",
    "Recommends": "recommends",
    "Conflicts": "conflicts",
    "Breaks": "breaks",
    "Provides": "provides",
    "Replaces": "replaces",
}

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]*$", re.IGNORECASE)
# apt and dpkg still accept the obsolete "<" and ">" and read them as "<=" and ">=".
_OPS = {"<<": "<<", "<=": "<=", "=": "=", ">=": ">=", ">>": ">>", "<": "<=", ">": ">="}


class RelationSyntaxError(ValueError):
    """A relation field that does not parse; carries the offending text."""


@dataclass(frozen=True, slots=True)
class Atom:
    """One alternative of a relation: ``name[:archqual] [(op version)]``."""

    name: str
    archqual: str | None = None
    op: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        text = self.name if self.archqual is None else f"{self.name}:{self.archqual}"
        if self.op is not None:
            text += f" ({self.op} {self.version})"
        return text


Group = tuple[Atom, ...]  # alternatives, "a | b"


def group_text(group: Group) -> str:
    return " | ".join(str(a) for a in group)


class _RawCatcher(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.messages.append(record.getMessage())
        return False


@contextmanager
def _catch_raw_fallback() -> Iterator[_RawCatcher]:
    logger = logging.getLogger("debian.deb822")
    catcher = _RawCatcher()
    logger.addFilter(catcher)
    try:
        yield catcher
    finally:
        logger.removeFilter(catcher)


@lru_cache(maxsize=16384)
def parse_field(text: str) -> tuple[Group, ...]:
    """Parse a relation field (``a (>= 1) | b, c:any``) into groups of alternatives.

    Raises ``RelationSyntaxError`` for text python-debian cannot parse, an unknown operator or an invalid
    version. Architecture restrictions (``[amd64]``) and build profiles, which only occur in source
    relations, are ignored.
    """
    if not text.strip():
        return ()
    with _catch_raw_fallback() as catcher:
        parsed = PkgRelation.parse_relations(text)
    if catcher.messages:
        raise RelationSyntaxError(catcher.messages[0].replace(", returning it raw", ""))
    groups: list[Group] = []
    for alternatives in parsed:
        atoms: list[Atom] = []
        for rel in alternatives:
            name = rel["name"]
            if not _NAME_RE.match(name):
                raise RelationSyntaxError(f'cannot parse package relationship "{name}"')
            op: str | None = None
            version: str | None = None
            if rel["version"] is not None:
                raw_op, version = rel["version"]
                if raw_op not in _OPS:
                    raise RelationSyntaxError(f'unknown relation operator "{raw_op}" in "{name}"')
                op = _OPS[raw_op]
                try:
                    Version(version)
                except ValueError as exc:
                    raise RelationSyntaxError(str(exc)) from None
            atoms.append(Atom(name, rel["archqual"], op, version))
        groups.append(tuple(atoms))
    return tuple(groups)


def relations(pkg: Package, field: str) -> tuple[Group, ...]:
    """The parsed relation ``field`` ("Depends", "Pre-Depends", …) of ``pkg``."""
    try:
        return parse_field(getattr(pkg, FIELDS[field]))
    except RelationSyntaxError as exc:
        raise IndexError_("parse", f"{field} of {pkg.name} {pkg.version}", " ".join(str(exc).split())) from None


def provides(pkg: Package) -> tuple[Atom, ...]:
    """The names ``pkg`` provides; a versioned Provides may only use ``=``."""
    atoms = tuple(a for g in relations(pkg, "Provides") for a in g)
    for a in atoms:
        if a.op not in (None, "="):
            raise IndexError_(
                "parse", f"Provides of {pkg.name} {pkg.version}", f'"{a}" uses "{a.op}"; Provides allows only "="'
            )
    return atoms


@lru_cache(maxsize=65536)
def compare_versions(a: str, b: str) -> int:
    """Debian ordering (epochs, ``~``, …): negative, zero or positive like ``cmp``."""
    return version_compare(a, b)


def version_satisfies(version: str, op: str | None, wanted: str | None) -> bool:
    """Whether ``version`` satisfies ``(op wanted)``; an unversioned relation is satisfied by any."""
    if op is None or wanted is None:
        return True
    c = compare_versions(version, wanted)
    if op == "<<":
        return c < 0
    if op == "<=":
        return c <= 0
    if op == "=":
        return c == 0
    if op == ">=":
        return c >= 0
    return c > 0  # ">>"


def provide_satisfies(provided: Atom, wanted: Atom) -> bool:
    """Whether a Provides entry satisfies a relation atom on the provided name.

    An unversioned Provides satisfies only unversioned relations; ``Provides: foo (= 1.2)`` satisfies
    ``foo (>= 1)``.
    """
    if wanted.op is None:
        return True
    if provided.version is None:
        return False
    return version_satisfies(provided.version, wanted.op, wanted.version)
