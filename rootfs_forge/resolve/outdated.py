"""Which installed or locked packages have a newer candidate in the sources (pure over an ``IndexView``).

The candidate is apt's: among the index's versions of the package for its architecture (or ``all``), the one
with the highest suite pin, then the highest version. A package is outdated when that candidate is newer than
what is installed; it is a security update when the candidate comes from a security suite
(:func:`rootfs_forge.resolve.lockdiff.is_security_suite`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from debian.debian_support import Version

from rootfs_forge.model import IndexView
from rootfs_forge.resolve.lockdiff import is_security_suite

DEFAULT_PIN = 500


@dataclass(frozen=True, slots=True)
class Outdated:
    name: str
    architecture: str
    current: str
    candidate: str
    suite: str

    @property
    def security(self) -> bool:
        return is_security_suite(self.suite)

    def as_dict(self) -> dict[str, object]:
        return {"package": self.name, "architecture": self.architecture, "current": self.current,
                "candidate": self.candidate, "suite": self.suite, "security": self.security}


def find_outdated(installed: Iterable[tuple[str, str, str]], index: IndexView,
                  pins: Mapping[str, int] | None = None) -> list[Outdated]:
    """``installed``: (name, architecture, version). Sorted by name, then architecture."""
    pins = pins or {}
    out = []
    for name, arch, version in sorted(set(installed)):
        pool = [p for p in index.packages(name) if p.architecture in (arch, "all")
                and pins.get(p.suite, DEFAULT_PIN) >= 0]
        if not pool:
            continue
        best = max(pool, key=lambda p: (pins.get(p.suite, DEFAULT_PIN), Version(p.version)))
        if Version(best.version) > Version(version):
            out.append(Outdated(name, arch, version, best.version, best.suite))
    return out
