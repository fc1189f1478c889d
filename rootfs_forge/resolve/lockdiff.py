"""A lock against a fresh resolution (pure): what changed, and why, in words a reviewer reads.

:func:`diff_resolutions` compares two sets of per-architecture resolutions (the lock's and a new one) and returns
a :class:`LockDiff`: packages whose version changed (old → new, the suite the new one comes from, whether that
is a security suite), added (and the relation that pulls them in) and removed (and what needed them before).
``forge lock --update`` prints it. Whether a lock is behind the archive (``forge lock --check``, the compose
warning) is another question, answered without resolving again: :mod:`rootfs_forge.resolve.lockcheck` looks each
locked package up in the index. :func:`is_security_suite` is the one rule for what counts as a security update.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from debian.debian_support import Version

from rootfs_forge.model import Package, Resolution


def is_security_suite(suite: str) -> bool:
    """Debian's security archive: ``<codename>-security`` (and the older ``<codename>/updates``)."""
    return suite.endswith("-security") or suite.endswith("/updates")


@dataclass(frozen=True, slots=True)
class Change:
    name: str
    architecture: str  # the image architecture it is part of
    old: str  # "" when added
    new: str  # "" when removed
    suite: str  # the new package's suite (the old one's when removed)
    why: str

    @property
    def kind(self) -> str:
        if not self.old:
            return "added"
        if not self.new:
            return "removed"
        return "upgraded" if Version(self.new) > Version(self.old) else "downgraded"

    @property
    def security(self) -> bool:
        return bool(self.new) and is_security_suite(self.suite)

    def as_dict(self) -> dict[str, object]:
        return {"package": self.name, "architecture": self.architecture, "kind": self.kind, "old": self.old,
                "new": self.new, "suite": self.suite, "security": self.security, "why": self.why}


@dataclass(frozen=True)
class LockDiff:
    changes: tuple[Change, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return not self.changes

    def as_dict(self) -> dict[str, object]:
        return {"changes": [c.as_dict() for c in self.changes],
                "summary": {k: sum(1 for c in self.changes if c.kind == k)
                            for k in ("upgraded", "downgraded", "added", "removed")}}


def _reason(res: Resolution, p: Package) -> str:
    reasons = res.why.get(p.key, ())
    for r in reasons:
        if r.parent is None:
            return f"requested ({r.relation})" if r.relation else "requested"
    if reasons:
        r = reasons[0]
        return f"{r.parent.split(':', 1)[0]} {r.relation}".strip() if r.parent else r.relation
    return ""


def _by_name(res: Resolution) -> dict[tuple[str, str], Package]:
    return {(p.name, p.architecture if p.architecture != "all" else "*"): p for p in res.packages}


def diff_resolutions(old: Mapping[str, Resolution], new: Mapping[str, Resolution]) -> LockDiff:
    """Every difference between ``old`` and ``new``, per architecture, sorted by architecture then name."""
    changes: list[Change] = []
    for arch in sorted(set(old) | set(new)):
        a = _by_name(old[arch]) if arch in old else {}
        b = _by_name(new[arch]) if arch in new else {}
        for key in sorted(set(a) | set(b)):
            p, q = a.get(key), b.get(key)
            if p is not None and q is not None:
                if p.version == q.version and p.sha256 == q.sha256:
                    continue
                if p.version == q.version:
                    why = f"rebuilt in {q.suite} (same version, new SHA-256)"
                else:
                    why = f"newer in {q.suite}" if Version(q.version) > Version(p.version) else \
                        f"{p.version} is no longer the candidate in {q.suite}"
                changes.append(Change(q.name, arch, p.version, q.version, q.suite, why))
            elif q is not None:
                changes.append(Change(q.name, arch, "", q.version, q.suite,
                                      f"new dependency: {_reason(new[arch], q)}"))
            elif p is not None:
                before = _reason(old[arch], p)
                changes.append(Change(p.name, arch, p.version, "", p.suite,
                                      "no longer needed" + (f" (was: {before})" if before else "")))
    return LockDiff(tuple(changes))


def render(diff: LockDiff) -> str:
    """The diff as a reviewer reads it: one line per change, grouped by architecture."""
    if diff.empty:
        return "the lock is up to date\n"
    lines: list[str] = []
    arch = None
    for c in diff.changes:
        if c.architecture != arch:
            arch = c.architecture
            lines.append(f"{arch}:")
        mark = " [security]" if c.security else ""
        if c.kind in ("upgraded", "downgraded"):
            lines.append(f"  {c.name}: {c.old} → {c.new}{mark}  ({c.why})")
        elif c.kind == "added":
            lines.append(f"  + {c.name} {c.new}{mark}  ({c.why})")
        else:
            lines.append(f"  - {c.name} {c.old}  ({c.why})")
    s = diff.as_dict()["summary"]
    assert isinstance(s, dict)
    lines.append(", ".join(f"{n} {k}" for k, n in s.items() if n))
    return "\n".join(lines) + "\n"
