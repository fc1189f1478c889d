"""The resolver's policy: which package is the candidate for a name, which packages satisfy a relation, what
conflicts, and the Installed-Size closure the "smallest" strategy ranks by — apt's rules, as described in
:mod:`rootfs_forge.resolve.search`. Pure; the search (:mod:`rootfs_forge.resolve.search`) and the explanations
(:mod:`rootfs_forge.resolve.explain`) build on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from debian.debian_support import Version

from rootfs_forge.model import IndexView, Package, ResolveRequest
from rootfs_forge.resolve.relations import (
    Atom,
    Group,
    provide_satisfies,
    provides,
    relations,
    version_satisfies,
)


@dataclass(frozen=True, slots=True)
class ResolveEvent:
    """One step of the search, as it happens: ``kind`` is mark, choose, skip, backtrack or unsatisfiable;
    ``subject`` what it concerns (a package, a relation), ``detail`` why. ``str()`` gives the line
    ``forge resolve -v`` prints."""

    kind: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} {self.subject}: {self.detail}" if self.subject else f"{self.kind}: {self.detail}"


Reporter = Callable[[ResolveEvent], None]

PRIORITY_RANK = {"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}
DEFAULT_PIN = 500
POSITIVE = ("Pre-Depends", "Depends")
NEGATIVE = ("Conflicts", "Breaks")
VERB = {"Pre-Depends": "pre-depends on", "Depends": "depends on", "Recommends": "recommends"}


@dataclass(frozen=True, slots=True)
class Obligation:
    """An obligation: a relation group of ``parent`` that must (or, if soft, should) be satisfied."""

    parent: str
    field: str
    group: Group


Agenda = tuple[Obligation, "Agenda"] | None  # a persistent stack: cheap to keep in choice points


@dataclass(slots=True)
class State:
    chosen: dict[str, Package]
    by_name: dict[str, tuple[Package, ...]]
    by_provided: dict[str, tuple[tuple[Package, Atom], ...]]
    negs: dict[str, tuple[tuple[Package, str, Atom], ...]]  # target name -> (owner, field, atom)
    parent: dict[str, tuple[str | None, str]]  # key -> first reason (parent key, relation text)
    depth: dict[str, int]  # key -> number of choice points open when it was added
    notes: tuple[str, ...]

    def copy(self) -> State:
        return State(
            dict(self.chosen), dict(self.by_name), dict(self.by_provided), dict(self.negs),
            dict(self.parent), dict(self.depth), self.notes,
        )


class Failure(Exception):
    """A dead end: ``problem`` explains it, ``depth`` is the newest choice point that may have caused it."""

    def __init__(self, problem: str, depth: int, root: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.depth = depth
        self.root = root


def label(p: Package, native: str) -> str:
    return p.name if p.architecture in (native, "all") else p.key



class Policy:
    """Candidates, satisfaction and conflicts for one request (caches per resolver)."""

    index: IndexView
    req: ResolveRequest
    native: str
    archs: tuple[str, ...]
    pins: dict[str, int]
    held: dict[tuple[str, str], str]
    prefer: dict[str, int]
    exclude: set[str]
    report: Reporter
    _cand: dict[tuple[str, str], Package | None]
    _forced: dict[tuple[str, str], Package]
    _vers: dict[str, Version]

    # ---- candidates -------------------------------------------------------------------------------
    def _version(self, v: str) -> Version:
        ver = self._vers.get(v)
        if ver is None:
            ver = self._vers[v] = Version(v)
        return ver

    def _pin(self, p: Package) -> int:
        return self.pins.get(p.suite, DEFAULT_PIN)

    def candidate(self, name: str, arch: str) -> Package | None:
        key = (name, arch)
        if key in self._cand:
            return self._cand[key]
        best = self._forced.get(key)
        if best is None:
            pool = [
                p for p in self.index.packages(name)
                if p.architecture in (arch, "all") and self._pin(p) >= 0
            ]
            held = self.held.get(key)
            kept = [p for p in pool if p.version == held] if held is not None else []
            if kept:
                best = kept[0]
            elif pool:
                best = max(pool, key=lambda p: (self._pin(p), self._version(p.version)))
        self._cand[key] = best
        return best

    def _own_arch(self, p: Package) -> str:
        return self.native if p.architecture == "all" else p.architecture

    def is_candidate(self, p: Package) -> bool:
        return self.candidate(p.name, self._own_arch(p)) == p

    def _accepts(self, atom: Atom, pa: str, t: Package) -> bool:
        """Whether ``t`` (or what it provides) is of an architecture ``atom`` of a package of arch ``pa`` takes."""
        qual = atom.archqual
        if qual == "any":
            return t.multi_arch == "allowed" and (t.architecture == "all" or t.architecture in self.archs)
        if qual == "native":
            return t.architecture in (self.native, "all")
        if qual is not None:
            return t.architecture in (qual, "all")
        return t.architecture in (pa, "all") or (t.multi_arch == "foreign" and t.architecture in self.archs)

    def _arch_order(self, pa: str) -> list[str]:
        return list(dict.fromkeys((pa, *self.archs)))

    def _real_options(self, atom: Atom, pa: str) -> list[Package]:
        out: list[Package] = []
        for arch in self._arch_order(pa):
            c = self.candidate(atom.name, arch)
            if c is not None and c not in out and self._accepts(atom, pa, c):
                out.append(c)
        return out

    def _providers(self, atom: Atom, pa: str) -> list[tuple[Package, Atom]]:
        out: list[tuple[Package, Atom]] = []
        for t in self.index.providers(atom.name):
            if t.name == atom.name or not self._accepts(atom, pa, t) or not self.is_candidate(t):
                continue
            for pr in provides(t):
                if pr.name == atom.name:
                    out.append((t, pr))
                    break
        return out

    # ---- satisfaction and conflicts ---------------------------------------------------------------
    def _satisfied_by(self, st: State, atom: Atom, pa: str) -> Package | None:
        for q in st.by_name.get(atom.name, ()):
            if self._accepts(atom, pa, q) and version_satisfies(q.version, atom.op, atom.version):
                return q
        for q, pr in st.by_provided.get(atom.name, ()):
            if self._accepts(atom, pa, q) and provide_satisfies(pr, atom):
                return q
        return None

    def conflicts(self, st: State, x: Package) -> list[tuple[str, Package]]:
        """Every chosen package ``x`` cannot be installed with, each with a phrase saying why."""
        out: list[tuple[str, Package]] = []
        for q in st.by_name.get(x.name, ()):
            if q.key == x.key and q != x:
                out.append((f"{q.name} {q.version} is to be installed instead of {x.version}", q))
            elif q.key != x.key and not (q.multi_arch == "same" and x.multi_arch == "same"):
                out.append((f"{label(q, self.native)} and {label(x, self.native)} are not both Multi-Arch: same", q))
            elif q.key != x.key and q.version != x.version:
                out.append((f"Multi-Arch: same {label(q, self.native)} is at {q.version}, not {x.version}", q))
        provided = provides(x)
        for name, match in [(x.name, None), *[(pr.name, pr) for pr in provided]]:
            for owner, field, atom in st.negs.get(name, ()):
                if owner.name == x.name:
                    continue
                ok = version_satisfies(x.version, atom.op, atom.version) if match is None else (
                    provide_satisfies(match, atom))
                if ok:
                    out.append((f"{label(owner, self.native)} {field}: {atom}", owner))
        for field in NEGATIVE:
            for group in relations(x, field):
                for atom in group:
                    for q in st.by_name.get(atom.name, ()):
                        if q.name != x.name and version_satisfies(q.version, atom.op, atom.version):
                            out.append((f"{label(x, self.native)} {field}: {atom}", q))
                    for q, pr in st.by_provided.get(atom.name, ()):
                        if q.name != x.name and provide_satisfies(pr, atom):
                            out.append((f"{label(x, self.native)} {field}: {atom}, which {q.name} provides", q))
        return out

    def closure_size(self, st: State, p: Package) -> int:
        """Installed-Size of ``p`` plus what apt's policy would add for it on top of ``st`` (no conflicts)."""
        if p.key in st.chosen:
            return 0
        added: dict[str, Package] = {p.key: p}
        todo = [p]
        fields = [*POSITIVE, "Recommends"] if self.req.recommends else list(POSITIVE)
        while todo:
            x = todo.pop()
            pa = self._own_arch(x)
            for field in fields:
                for group in relations(x, field):
                    if any(self._satisfied_by(st, a, pa) for a in group):
                        continue
                    if any(q.name == a.name for a in group for q in added.values()):
                        continue
                    for atom in group:
                        opts = [c for c in self._real_options(atom, pa)
                                if version_satisfies(c.version, atom.op, atom.version)]
                        opts += [c for c, pr in self._providers(atom, pa) if provide_satisfies(pr, atom)]
                        opts = [c for c in opts if c.name not in self.exclude]
                        if opts:
                            if opts[0].key not in added:
                                added[opts[0].key] = opts[0]
                                todo.append(opts[0])
                            break
        return sum(x.installed_size for x in added.values())

    def _all_satisfying(self, st: State, atom: Atom, pa: str) -> list[Package]:
        out = [q for q in st.by_name.get(atom.name, ())
               if self._accepts(atom, pa, q) and version_satisfies(q.version, atom.op, atom.version)]
        out += [q for q, pr in st.by_provided.get(atom.name, ())
                if self._accepts(atom, pa, q) and provide_satisfies(pr, atom)]
        return out


