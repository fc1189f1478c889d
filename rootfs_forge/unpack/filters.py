"""Which package paths go into the tree: profiles, dpkg-style exclude/include rules, kept locales, slices. Pure.

Rules follow dpkg's ``--path-exclude``/``--path-include``: patterns are ``fnmatch`` globs against the absolute
path (``*`` also matches ``/``), they apply in order and the last matching rule wins. A directory that a rule
excludes is still kept as a *parent* when an include rule could match something below it — dpkg does the same
so that ``/usr/share/doc/*/copyright`` survives an exclude of ``/usr/share/doc/*``. Such a directory has the
verdict :attr:`Verdict.PARENT`: the tree writer creates it, and removes it again if nothing of the package ends
up below it.

Order of rules: the profile's (``minimal``), then the kept locales (they only matter for ``minimal``; ``full``
keeps every locale), then the recipe's ``exclude`` globs, then its ``include`` globs — so a recipe include always
beats an exclude. A glob without a leading ``/`` is anchored at the root; a trailing ``/`` is dropped.

A package listed in ``slices`` keeps only the paths matching one of its globs (plus the directories leading to
them); the profile and recipe rules do not apply to it — a slice is an explicit, complete choice.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import translate

PROFILES = ("minimal", "full")

# (exclude, include) rules of the ``minimal`` profile, in order
_MINIMAL_EXCLUDED = ("/usr/share/doc", "/usr/share/man", "/usr/share/info", "/usr/share/locale",
                     "/usr/share/lintian", "/usr/share/bug", "/usr/share/groff", "/usr/share/linda")
_MINIMAL_INCLUDED = ("/usr/share/doc/*/copyright", "/usr/share/locale/locale.alias")
_WILDCARDS = re.compile(r"[*?\[\\]")


class Verdict(enum.Enum):
    KEEP = "keep"
    DROP = "drop"
    PARENT = "parent"  # a directory kept only if something kept ends up below it


@dataclass(frozen=True, slots=True)
class Rule:
    include: bool
    pattern: str

    def matches(self, path: str) -> bool:
        return _compile(self.pattern).match(path) is not None

    def may_match_below(self, directory: str) -> bool:
        """Could this pattern match a path inside ``directory``? Judged on the pattern's literal prefix."""
        return _may_match_below(self.pattern, directory)


def _literal_prefix(pattern: str) -> str:
    m = _WILDCARDS.search(pattern)
    return pattern[: m.start()] if m else pattern


def _may_match_below(pattern: str, directory: str) -> bool:
    m = _WILDCARDS.search(pattern)
    prefix = pattern[: m.start()] if m else pattern
    below = directory.rstrip("/") + "/"
    return prefix.startswith(below) or (m is not None and below.startswith(prefix))


_CACHE: dict[str, re.Pattern[str]] = {}


def _compile(pattern: str) -> re.Pattern[str]:
    compiled = _CACHE.get(pattern)
    if compiled is None:
        compiled = _CACHE[pattern] = re.compile(translate(pattern), re.DOTALL)
    return compiled


def _clean(glob: str) -> str:
    glob = glob.strip()
    if not glob.startswith("/"):
        glob = "/" + glob
    return glob.rstrip("/") or "/"


def locale_rules(locales: Iterable[str]) -> list[Rule]:
    """Include rules keeping ``/usr/share/locale/<l>`` and its variants (``<l>_*``, ``<l>.*``, ``<l>@*``)."""
    rules = []
    for loc in sorted(set(locales)):
        base = f"/usr/share/locale/{loc}"
        rules += [Rule(True, base), Rule(True, base + "/*"), Rule(True, base + "_*"), Rule(True, base + ".*"),
                  Rule(True, base + "@*")]
    return rules


def profile_rules(profile: str) -> list[Rule]:
    if profile == "full":
        return []
    if profile != "minimal":
        raise ValueError(f"unknown profile {profile!r} (want one of {', '.join(PROFILES)})")
    rules = []
    for d in _MINIMAL_EXCLUDED:
        rules += [Rule(False, d), Rule(False, d + "/*")]
    return rules + [Rule(True, p) for p in _MINIMAL_INCLUDED]


class PathFilter:
    """Decides, per package and path, whether a data member is written to the tree."""

    def __init__(self, profile: str = "full", *, exclude: Sequence[str] = (), include: Sequence[str] = (),
                 keep_locales: Sequence[str] = (), slices: Mapping[str, Sequence[str]] | None = None) -> None:
        self.profile = profile
        self.rules: tuple[Rule, ...] = tuple(
            profile_rules(profile)
            + (locale_rules(keep_locales) if profile != "full" else [])
            + [Rule(False, _clean(g)) for g in exclude]
            + [Rule(True, _clean(g)) for g in include]
        )
        self._prefixes = tuple(_literal_prefix(r.pattern) for r in self.rules)
        self.slices: dict[str, tuple[str, ...]] = {
            pkg: tuple(_clean(g) for g in globs) for pkg, globs in sorted((slices or {}).items())
        }

    def verdict(self, pkg: str, path: str, kind: str) -> Verdict:
        """``path`` is absolute and normalised; ``kind`` as in ``DataMember.kind``."""
        if path == "/":
            return Verdict.KEEP
        globs = self.slices.get(pkg)
        if globs is not None:
            return _slice_verdict(globs, path, kind)
        last: Rule | None = None
        index = -1
        for i, (rule, prefix) in enumerate(zip(self.rules, self._prefixes, strict=True)):
            # a rule's literal prefix rules most paths out with one C call, before its regex runs
            if path.startswith(prefix) and rule.matches(path):
                last, index = rule, i
        if last is None or last.include:
            return Verdict.KEEP
        if kind in ("dir", "symlink") and any(
            r.include and r.may_match_below(path) for r in self.rules[index + 1:]
        ):
            # like dpkg; a symlink (``/usr/share/doc/libfoo -> foo``) cannot be pruned later, so it stays
            return Verdict.PARENT if kind == "dir" else Verdict.KEEP
        return Verdict.DROP

    def decide(self, pkg: str, path: str, kind: str) -> bool:
        """True when the member is written (a ``PARENT`` directory counts as written)."""
        return self.verdict(pkg, path, kind) is not Verdict.DROP


def _slice_verdict(globs: Sequence[str], path: str, kind: str) -> Verdict:
    for g in globs:
        if _compile(g).match(path) is not None:
            return Verdict.KEEP
    if kind == "dir" and any(_may_match_below(g, path) for g in globs):
        return Verdict.PARENT
    return Verdict.DROP
