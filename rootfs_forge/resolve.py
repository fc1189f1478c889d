"""The resolver: a recipe's package list + an ``IndexView`` → a ``Resolution``. Pure, no I/O.

Policy (what apt's ``MarkInstall`` does for a fresh install, plus the recipe's knobs):

* **Candidates.** For a name and an architecture the candidate is the stanza of that name whose
  ``Architecture`` is that architecture or ``all`` with the highest suite priority
  (``request.suite_priority``, default 500; a negative priority never installs, like an apt pin), then
  the highest version (an exact tie keeps the first stanza in index order, i.e. the first source). Like
  apt, only the candidate is considered: an older version is never chosen to satisfy a versioned dependency
  (``name=version`` in the request makes that version the candidate).
* **Order of work.** Requested packages (then Essential ones with ``request.essential``) are marked first,
  so they count as "already chosen"; then their relations are processed depth first in field order
  (Pre-Depends, Depends, Recommends), exactly like apt's recursive ``MarkInstall``.
* **Or-groups and virtual names.** A group already satisfied by a chosen package is skipped. Otherwise the
  options are listed alternative by alternative (first alternative first, as apt does); within one
  alternative the real package of that name comes first, then its providers ordered by Essential,
  architecture (native first, then the foreign ones in the recipe's order) and ``Priority`` (required >
  important > standard > optional > extra) — apt's ``CompareProviders``. Where apt would fall back to
  its internal cache order among providers tied on all of that, forge refuses to guess and fails listing the
  tied providers (name one in ``prefer``).
  ``request.prefer`` moves the named packages in front of everything else; with ``merged_usr`` the
  ``usrmerge`` package goes behind every other option (forge lays out merged /usr, like mmdebstrap's hook,
  so ``usrmerge | usr-is-merged`` picks ``usr-is-merged``).
* **Requested virtual names** are chosen like a dependency on them (a single provider is taken; several are
  ordered by ``prefer``, Essential, Priority, and a tie is an error); apt instead refuses any virtual name
  with more than one provider.
* **Strategy "smallest".** At every choice point the options are ordered by the Installed-Size of their
  greedy closure over what is not installed yet (one level of lookahead: the option plus the packages apt's
  policy would add for it), then by the order above. The notes compare the total with apt's policy.
* **Architectures.** ``all`` packages serve every architecture. An unqualified relation of a package of
  architecture A is satisfied by packages of A, ``all``, or any enabled architecture if ``Multi-Arch:
  foreign`` (same architecture tried first); ``:any`` only by ``Multi-Arch: allowed`` packages of any enabled
  architecture; ``:native`` by the image's architecture. Two architectures of one name coexist only if both
  are ``Multi-Arch: same`` and of the same version. The host's architecture is never consulted.
* **Conflicts and Breaks** (versioned or not, also against provided names, never against the package itself
  or another architecture of the same name) rule options out; when an option turns out to conflict later
  the search backtracks. The search is a depth-first walk over choice points with conflict-directed
  backjumping (a failure only revisits choices made before the packages involved were added) and a step
  limit that ends in an error, never a hang.
* **Recommends** (only with ``request.recommends``) are installed when possible and dropped otherwise
  (also when forge cannot decide between tied providers), as apt does. Suggests are never followed.

Failures raise ``ResolveError`` listing every problem met during the search, sorted, one line each.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from debian.debian_support import Version

from rootfs_forge.errors import ResolveError
from rootfs_forge.model import IndexView, Package, Reason, Resolution, ResolveRequest
from rootfs_forge.relations import (
    Atom,
    Group,
    group_text,
    provide_satisfies,
    provides,
    relations,
    version_satisfies,
)

Reporter = Callable[[str], None]

PRIORITY_RANK = {"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}
DEFAULT_PIN = 500
MAX_STEPS = 200_000
STRATEGIES = ("apt", "smallest")
_POSITIVE = ("Pre-Depends", "Depends")
_NEGATIVE = ("Conflicts", "Breaks")
_VERB = {"Pre-Depends": "pre-depends on", "Depends": "depends on", "Recommends": "recommends"}


@dataclass(frozen=True, slots=True)
class _Ob:
    """An obligation: a relation group of ``parent`` that must (or, if soft, should) be satisfied."""

    parent: str
    field: str
    group: Group


_Agenda = tuple[_Ob, "_Agenda"] | None  # a persistent stack: cheap to keep in choice points


@dataclass(slots=True)
class _State:
    chosen: dict[str, Package]
    by_name: dict[str, tuple[Package, ...]]
    by_provided: dict[str, tuple[tuple[Package, Atom], ...]]
    negs: dict[str, tuple[tuple[Package, str, Atom], ...]]  # target name -> (owner, field, atom)
    parent: dict[str, tuple[str | None, str]]  # key -> first reason (parent key, relation text)
    depth: dict[str, int]  # key -> number of choice points open when it was added
    notes: tuple[str, ...]

    def copy(self) -> _State:
        return _State(
            dict(self.chosen), dict(self.by_name), dict(self.by_provided), dict(self.negs),
            dict(self.parent), dict(self.depth), self.notes,
        )


@dataclass(slots=True)
class _Choice:
    state: _State
    agenda: _Agenda
    ob: _Ob
    remaining: list[Package | None]  # None = drop a soft obligation


class _Failure(Exception):
    """A dead end: ``problem`` explains it, ``depth`` is the newest choice point that may have caused it."""

    def __init__(self, problem: str, depth: int, root: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.depth = depth
        self.root = root


def resolve(
    index: IndexView,
    request: ResolveRequest,
    reporter: Reporter | None = None,
    *,
    max_steps: int = MAX_STEPS,
) -> Resolution:
    """Choose the packages ``request`` needs from ``index`` (see the module docstring for the policy)."""
    if request.strategy not in STRATEGIES:
        raise ResolveError(", ".join(request.packages) or "the recipe's packages",
                           [f"unknown strategy {request.strategy!r} (expected {' or '.join(STRATEGIES)})"])
    res = _Resolver(index, request, reporter, max_steps).run()
    if request.strategy == "smallest":
        baseline = _Resolver(index, replace(request, strategy="apt"), None, max_steps)
        try:
            apt_res = baseline.run()
        except ResolveError:
            note = "strategy smallest: apt's policy finds no solution for this request"
        else:
            ours = sum(p.installed_size for p in res.packages)
            theirs = sum(p.installed_size for p in apt_res.packages)
            note = (
                f"strategy smallest: {ours} KiB installed in {len(res.packages)} packages vs {theirs} KiB in "
                f"{len(apt_res.packages)} with apt's policy (saved {theirs - ours} KiB)"
            )
        res = replace(res, notes=(*res.notes, note))
    return res


class _Resolver:
    def __init__(self, index: IndexView, request: ResolveRequest, reporter: Reporter | None, max_steps: int):
        self.index = index
        self.req = request
        self.native = request.architecture
        self.archs = (request.architecture, *[a for a in request.foreign_architectures if a != request.architecture])
        self.pins = dict(request.suite_priority)
        self.prefer = {name: i for i, name in enumerate(request.prefer)}
        self.exclude = set(request.exclude)
        self.report = reporter or (lambda _msg: None)
        self.max_steps = max_steps
        self._cand: dict[tuple[str, str], Package | None] = {}
        self._forced: dict[tuple[str, str], Package] = {}
        self._vers: dict[str, Version] = {}
        self.problems: dict[str, str] = {}  # problem -> the requested (or essential) package it concerns
        self.steps = 0
        self.root_notes: list[str] = []

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
            if pool:
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
    def _satisfied_by(self, st: _State, atom: Atom, pa: str) -> Package | None:
        for q in st.by_name.get(atom.name, ()):
            if self._accepts(atom, pa, q) and version_satisfies(q.version, atom.op, atom.version):
                return q
        for q, pr in st.by_provided.get(atom.name, ()):
            if self._accepts(atom, pa, q) and provide_satisfies(pr, atom):
                return q
        return None

    def conflicts(self, st: _State, x: Package) -> list[tuple[str, Package]]:
        """Every chosen package ``x`` cannot be installed with, each with a phrase saying why."""
        out: list[tuple[str, Package]] = []
        for q in st.by_name.get(x.name, ()):
            if q.key == x.key and q != x:
                out.append((f"{q.name} {q.version} is to be installed instead of {x.version}", q))
            elif q.key != x.key and not (q.multi_arch == "same" and x.multi_arch == "same"):
                out.append((f"{_label(q, self.native)} and {_label(x, self.native)} are not both Multi-Arch: same", q))
            elif q.key != x.key and q.version != x.version:
                out.append((f"Multi-Arch: same {_label(q, self.native)} is at {q.version}, not {x.version}", q))
        provided = provides(x)
        for name, match in [(x.name, None), *[(pr.name, pr) for pr in provided]]:
            for owner, field, atom in st.negs.get(name, ()):
                if owner.name == x.name:
                    continue
                ok = version_satisfies(x.version, atom.op, atom.version) if match is None else (
                    provide_satisfies(match, atom))
                if ok:
                    out.append((f"{_label(owner, self.native)} {field}: {atom}", owner))
        for field in _NEGATIVE:
            for group in relations(x, field):
                for atom in group:
                    for q in st.by_name.get(atom.name, ()):
                        if q.name != x.name and version_satisfies(q.version, atom.op, atom.version):
                            out.append((f"{_label(x, self.native)} {field}: {atom}", q))
                    for q, pr in st.by_provided.get(atom.name, ()):
                        if q.name != x.name and provide_satisfies(pr, atom):
                            out.append((f"{_label(x, self.native)} {field}: {atom}, which {q.name} provides", q))
        return out

    def install(self, st: _State, x: Package, parent: str | None, relation: str, depth: int) -> None:
        st.chosen[x.key] = x
        st.by_name[x.name] = (*st.by_name.get(x.name, ()), x)
        for pr in provides(x):
            st.by_provided[pr.name] = (*st.by_provided.get(pr.name, ()), (x, pr))
        for field in _NEGATIVE:
            for group in relations(x, field):
                for atom in group:
                    st.negs[atom.name] = (*st.negs.get(atom.name, ()), (x, field, atom))
        st.parent.setdefault(x.key, (parent, relation))
        st.depth[x.key] = depth

    def obligations(self, x: Package, agenda: _Agenda) -> _Agenda:
        fields = [*_POSITIVE, "Recommends"] if self.req.recommends else list(_POSITIVE)
        obs = [_Ob(x.key, f, g) for f in fields for g in relations(x, f)]
        for ob in reversed(obs):
            agenda = (ob, agenda)
        return agenda

    # ---- explaining -------------------------------------------------------------------------------
    def chain(self, st: _State, key: str) -> list[str]:
        names: list[str] = []
        seen: set[str] = set()
        cur: str | None = key
        while cur is not None and cur not in seen:
            seen.add(cur)
            names.append(_label(st.chosen[cur], self.native))
            cur = st.parent[cur][0]
        return names[::-1]

    def _why_not(self, st: _State, atom: Atom, pa: str) -> str:
        """Why no option for ``atom`` is usable (state-independent reasons only)."""
        every = list(self.index.packages(atom.name))
        if atom.name in self.exclude:
            return f"{atom.name} is excluded by the recipe"
        if not every and not self.index.providers(atom.name):
            return f"{atom.name} is not available in any source"
        reals = self._real_options(atom, pa)
        if every and not reals:
            if any(self._accepts(atom, pa, p) for p in every):
                return f"{atom.name} is only available from suites with a negative priority"
            if atom.archqual == "any":
                return f"{atom.name} is not Multi-Arch: allowed"
            return f"{atom.name} is not available for {pa}"
        if reals:
            vers = sorted({p.version for p in reals}, key=self._version)
            return f"only {', '.join(vers)} is available"
        provs = [t for t in self.index.providers(atom.name) if t.name != atom.name and self._accepts(atom, pa, t)]
        if provs and not any(self.is_candidate(t) for t in provs):
            olds = sorted({f"{t.name} {t.version}" for t in provs})
            return f"{atom.name} is only provided by {', '.join(olds)}, which is not the candidate version"
        if atom.op is not None:
            return f"no provider of {atom.name} satisfies ({atom.op} {atom.version})"
        return f"no provider of {atom.name} is available for {pa}"

    # ---- options at a choice point ---------------------------------------------------------------
    def options(self, st: _State, ob: _Ob) -> tuple[list[Package], list[str], int]:
        """Usable options in preference order, the reasons for unusable ones and their culprit depth."""
        parent = st.chosen[ob.parent]
        pa = self._own_arch(parent)
        ranked: list[tuple[tuple[int, ...], Package, int]] = []
        why: list[str] = []
        depth = st.depth[ob.parent]
        seen: set[str] = set()
        # last tie-breaker among providers: one the same parent also depends on by name (apt ends up with it,
        # e.g. hashbrown: "librust-ahash-0.7+compile-time-rng-dev, librust-ahash-0.7-dev")
        named = {a.name for f in _POSITIVE for g in relations(parent, f) for a in g}
        for alt, atom in enumerate(ob.group):
            found: list[tuple[Package, bool]] = [
                (p, True) for p in self._real_options(atom, pa)
                if version_satisfies(p.version, atom.op, atom.version)
            ]
            found += [(p, False) for p, pr in self._providers(atom, pa) if provide_satisfies(pr, atom)]
            usable = 0
            for p, real in found:
                if p.key in seen:
                    continue
                seen.add(p.key)
                if p.name in self.exclude:
                    why.append(f"{p.name} is excluded by the recipe")
                    continue
                bad = self.conflicts(st, p)
                if bad:
                    phrase, q = bad[0]
                    why.append(f"{p.name} conflicts with {_label(q, self.native)} ({phrase})")
                    depth = max(depth, *(st.depth[c.key] for _, c in bad))
                    continue
                usable += 1
                key = (
                    self.prefer.get(p.name, len(self.prefer)),
                    1 if (self.req.merged_usr and p.name == "usrmerge") else 0,
                    alt,
                    0 if real else 1,
                    0 if p.essential else 1,
                    self.archs.index(p.architecture) if p.architecture in self.archs else 0,
                    PRIORITY_RANK.get(p.priority, len(PRIORITY_RANK)),
                    0 if p.name in named else 1,
                )
                ranked.append((key, p, alt))
            if not usable and not found:
                why.append(self._why_not(st, atom, pa))
        if self.req.strategy == "smallest" and len(ranked) > 1:
            ranked = [((self.closure_size(st, p), *k), p, a) for k, p, a in ranked]
        ranked.sort(key=lambda r: (r[0], r[1].name, r[1].architecture))
        if len(ranked) > 1 and ranked[0][0] == ranked[1][0]:
            tied = sorted({_label(p, self.native) for k, p, _ in ranked if k == ranked[0][0]})
            raise _Failure(
                f"{self.chain_text(st, ob)} {_VERB[ob.field]} {group_text(ob.group)}, which "
                f"{', '.join(tied)} provide equally; name one in prefer", depth, self.chain(st, ob.parent)[0])
        return [p for _, p, _ in ranked], why, depth

    def closure_size(self, st: _State, p: Package) -> int:
        """Installed-Size of ``p`` plus what apt's policy would add for it on top of ``st`` (no conflicts)."""
        if p.key in st.chosen:
            return 0
        added: dict[str, Package] = {p.key: p}
        todo = [p]
        fields = [*_POSITIVE, "Recommends"] if self.req.recommends else list(_POSITIVE)
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

    def chain_text(self, st: _State, ob: _Ob) -> str:
        return " -> ".join(self.chain(st, ob.parent))

    # ---- the search -------------------------------------------------------------------------------
    def run(self) -> Resolution:
        st = _State({}, {}, {}, {}, {}, {}, ())
        roots = self.roots()
        unique = list({p.key: p for p, _ in roots}.values())
        agenda: _Agenda = None
        for p in reversed(unique):
            agenda = self.obligations(p, agenda)
        for p, relation in roots:
            if p.key in st.chosen:
                continue
            bad = self.conflicts(st, p)
            if bad:
                phrase, q = bad[0]
                label = _label(p, self.native)
                self.problems[f"{label} conflicts with {_label(q, self.native)} ({phrase})"] = label
                continue
            self.install(st, p, None, relation, 0)
            self.report(f"mark {_label(p, self.native)} {p.version}: {relation}")
        if self.problems:
            raise ResolveError(", ".join(sorted(set(self.problems.values()))), sorted(self.problems))
        requested = tuple(dict.fromkeys(p.key for p, r in roots if r == "requested"))
        return self.result(self.search(st, agenda), roots, requested)

    def roots(self) -> list[tuple[Package, str]]:
        out: list[tuple[Package, str]] = []
        errors: list[tuple[str, str]] = []
        for spec in self.req.packages:
            try:
                out.append((self.requested_package(spec), "requested"))
            except _Failure as f:
                errors.append((spec, f.problem))
        if errors:
            raise ResolveError(", ".join(s for s, _ in errors), [m for _, m in errors])
        if self.req.essential:
            names = sorted({p.name for p in self.index.essential()})
            for name in names:
                c = self.candidate(name, self.native)
                if c is None or not c.essential:
                    continue
                if name in self.exclude:
                    self.root_notes.append(f"essential package {name} left out: excluded by the recipe")
                    self.report(f"skip essential {name}: excluded by the recipe")
                    continue
                out.append((c, "essential"))
        return out

    def requested_package(self, spec: str) -> Package:
        name, _, version = spec.partition("=")
        name, _, arch = name.partition(":")
        arch = arch or self.native
        if arch not in self.archs and arch != "all":
            raise _Failure(f"architecture {arch} is neither the image's nor a foreign architecture", 0)
        if name in self.exclude:
            raise _Failure(f"{name} is requested but excluded by the recipe", 0)
        every = self.index.packages(name)
        if version:
            match = [p for p in every if p.version == version and p.architecture in (arch, "all")]
            if not match:
                have = sorted({p.version for p in every}, key=self._version)
                raise _Failure(
                    f"no version {version} of {name} (available: {', '.join(have) or 'none'})", 0)
            chosen = max(match, key=self._pin)
            self._forced[(name, arch)] = chosen
            self._cand.pop((name, arch), None)
            return chosen
        c = self.candidate(name, arch)
        if c is not None:
            return c
        if any(p.architecture in (arch, "all") for p in every):
            raise _Failure(f"{name} is only available from suites with a negative priority", 0)
        if every:
            raise _Failure(f"{name} is not available for {arch}", 0)
        provs = [
            t for t in self.index.providers(name)
            if t.architecture in (arch, "all") and self.is_candidate(t) and t.name not in self.exclude
        ]
        if not provs:
            raise _Failure(f"no package named {name} in any source", 0)
        provs.sort(key=lambda p: (self.prefer.get(p.name, len(self.prefer)), 0 if p.essential else 1,
                                  PRIORITY_RANK.get(p.priority, len(PRIORITY_RANK)), p.name))
        if len(provs) > 1 and not self.prefer.keys() & {p.name for p in provs}:
            top = provs[0]
            tied = [p.name for p in provs if (p.essential, p.priority) == (top.essential, top.priority)]
            if len(tied) > 1:
                raise _Failure(
                    f"{name} is a virtual package provided by {', '.join(sorted(tied))}; name one in prefer", 0)
        self.report(f"choose {provs[0].name} for requested {name}: provider")
        return provs[0]

    def search(self, st: _State, agenda: _Agenda) -> _State:
        stack: list[_Choice] = []
        broken = False
        while True:
            self.steps += 1
            if self.steps > self.max_steps:
                raise ResolveError(
                    ", ".join(self.requested_labels(st)) or "the requested packages",
                    [f"gave up after {self.max_steps} search steps"
                     + (f" (first problem: {min(self.problems)})" if self.problems else "")])
            if agenda is None:
                if broken:
                    raise ResolveError(", ".join(sorted(set(self.problems.values()))), sorted(self.problems))
                return st
            ob, agenda = agenda
            try:
                pa = self._own_arch(st.chosen[ob.parent])
                if any(self._satisfied_by(st, a, pa) for a in ob.group):
                    continue
                soft = ob.field == "Recommends"
                try:
                    opts, why, depth = self.options(st, ob)
                except _Failure as ambiguous:
                    if not soft:
                        raise
                    opts, why, depth = [], [ambiguous.problem], ambiguous.depth
                if not opts:
                    if soft:
                        self.report(f"skip {ob.field} {group_text(ob.group)} of {ob.parent}: {'; '.join(why)}")
                        continue
                    raise _Failure(self.unsatisfiable(st, ob, why), depth, self.chain(st, ob.parent)[0])
                choices: list[Package | None] = [*opts, None] if soft else list(opts)
                first, rest = choices[0], choices[1:]
                if rest:
                    stack.append(_Choice(st.copy(), agenda, ob, rest))
                agenda = self.take(st, ob, first, opts, agenda, len(stack))
            except _Failure as fail:
                self.problems[fail.problem] = fail.root
                del stack[fail.depth:]
                while stack:
                    cp = stack.pop()
                    nxt = cp.remaining.pop(0)
                    st = cp.state.copy() if cp.remaining else cp.state
                    if cp.remaining:
                        stack.append(cp)
                    self.report(f"backtrack: {fail.problem}; trying {_label(nxt, self.native) if nxt else 'without it'}"
                                f" for {group_text(cp.ob.group)}")
                    try:
                        agenda = self.take(st, cp.ob, nxt, None, cp.agenda, len(stack))
                        break
                    except _Failure as again:
                        self.problems[again.problem] = again.root
                        del stack[again.depth:]
                else:
                    broken = True
                    self.report(f"unsatisfiable: {fail.problem}")

    def take(
        self, st: _State, ob: _Ob, x: Package | None, opts: Sequence[Package] | None, agenda: _Agenda, depth: int
    ) -> _Agenda:
        """Install option ``x`` for ``ob`` (``None`` drops a soft obligation) and queue its relations."""
        if x is None:
            return agenda
        bad = self.conflicts(st, x)
        if bad:
            phrase, q = bad[0]
            raise _Failure(
                f"{self.chain_text(st, ob)} {_VERB[ob.field]} {group_text(ob.group)}, but "
                f"{x.name} conflicts with {_label(q, self.native)} ({phrase})",
                max(st.depth[ob.parent], *(st.depth[c.key] for _, c in bad)), self.chain(st, ob.parent)[0])
        relation = f"{ob.field}: {group_text(ob.group)}"
        self.install(st, x, ob.parent, relation, depth)
        note = self.choice_note(st, ob, x, opts)
        if note:
            st.notes = (*st.notes, note)
        return self.obligations(x, agenda)

    def choice_note(self, st: _State, ob: _Ob, x: Package, opts: Sequence[Package] | None) -> str:
        real_first = len(ob.group) == 1 and x.name == ob.group[0].name
        if opts is not None and len(opts) <= 1 and real_first:
            return ""
        if opts is None:
            how = "after backtracking"
        elif self.prefer.get(x.name) is not None:
            how = "preferred by the recipe"
        elif self.req.merged_usr and x.name != "usrmerge" and any(o.name == "usrmerge" for o in opts):
            how = "merged /usr is laid out by forge, so usrmerge is not needed"
        elif self.req.strategy == "smallest" and len(opts) > 1:
            how = "smallest closure"
        elif x.name == ob.group[0].name:
            how = "first alternative"
        elif any(x.name == a.name for a in ob.group):
            how = "first installable alternative"
        else:
            how = "provider"
        others = [o.name for o in (opts or ()) if o != x]
        msg = f"{group_text(ob.group)} (for {_label(st.chosen[ob.parent], self.native)}): chose {x.name}, {how}"
        if others:
            msg += f"; other options: {', '.join(others)}"
        self.report(f"choose {x.name} for {group_text(ob.group)}: {how}")
        return msg

    def unsatisfiable(self, st: _State, ob: _Ob, why: list[str]) -> str:
        return (f"{self.chain_text(st, ob)} {_VERB[ob.field]} {group_text(ob.group)}, but "
                f"{' and '.join(dict.fromkeys(why))}")

    def requested_labels(self, st: _State) -> list[str]:
        return sorted(_label(st.chosen[k], self.native) for k, (par, _) in st.parent.items() if par is None)

    # ---- the result -------------------------------------------------------------------------------
    def result(self, st: _State, roots: list[tuple[Package, str]], requested: tuple[str, ...]) -> Resolution:
        pkgs = sorted(st.chosen.values(), key=lambda p: (p.name, p.architecture))
        why: dict[str, set[Reason]] = {p.key: set() for p in pkgs}
        for p, relation in roots:
            why[p.key].add(Reason(None, relation))
        deps: dict[str, set[str]] = {p.key: set() for p in pkgs}
        pre: set[tuple[str, str]] = set()
        fields = [*_POSITIVE, "Recommends"] if self.req.recommends else list(_POSITIVE)
        for p in pkgs:
            pa = self._own_arch(p)
            for field in fields:
                for group in relations(p, field):
                    sat = {q.key for a in group for q in self._all_satisfying(st, a, pa)} - {p.key}
                    for k in sat:
                        why[k].add(Reason(p.key, f"{field}: {group_text(group)}"))
                        if field in _POSITIVE:
                            deps[p.key].add(k)
                            if field == "Pre-Depends":
                                pre.add((p.key, k))
        notes = [*self.root_notes, *st.notes]
        return Resolution(
            packages=tuple(pkgs),
            order=tuple(install_order(deps, pre)),
            why={k: tuple(sorted(v, key=lambda r: (r.parent is not None, r.parent or "", r.relation)))
                 for k, v in why.items()},
            requested=requested,
            notes=tuple(notes),
        )

    def _all_satisfying(self, st: _State, atom: Atom, pa: str) -> list[Package]:
        out = [q for q in st.by_name.get(atom.name, ())
               if self._accepts(atom, pa, q) and version_satisfies(q.version, atom.op, atom.version)]
        out += [q for q, pr in st.by_provided.get(atom.name, ())
                if self._accepts(atom, pa, q) and provide_satisfies(pr, atom)]
        return out


def _label(p: Package, native: str) -> str:
    return p.name if p.architecture in (native, "all") else p.key


# ---- install order -----------------------------------------------------------------------------------
def _tarjan(nodes: Iterable[str], deps: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components, dependencies before dependents (iterative, deterministic)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(nodes):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(deps[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop(0)
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(deps[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp: list[str] = []
                while True:
                    k = stack.pop()
                    on_stack.discard(k)
                    comp.append(k)
                    if k == node:
                        break
                out.append(sorted(comp))
    return out


def install_order(deps: dict[str, set[str]], pre: set[tuple[str, str]]) -> list[str]:
    """Dependencies first; cycles (strongly connected components) stay together, ordered by their
    Pre-Depends edges; packages something pre-depends on go before others; ties by key."""
    comps = _tarjan(deps, deps)
    comp_of = {k: i for i, comp in enumerate(comps) for k in comp}
    pre_targets = {t for _, t in pre}
    waiting = [len({comp_of[d] for k in comp for d in deps[k]} - {i}) for i, comp in enumerate(comps)]
    users: dict[int, set[int]] = {i: set() for i in range(len(comps))}
    for i, comp in enumerate(comps):
        for k in comp:
            for d in deps[k]:
                if comp_of[d] != i:
                    users[comp_of[d]].add(i)
    heap = [(_comp_rank(c, pre_targets), i) for i, c in enumerate(comps) if waiting[i] == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        _, i = heapq.heappop(heap)
        order.extend(_order_within(comps[i], pre))
        for u in sorted(users[i]):
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(heap, (_comp_rank(comps[u], pre_targets), u))
    return order


def _comp_rank(comp: list[str], pre_targets: set[str]) -> tuple[int, str]:
    return (0 if pre_targets.intersection(comp) else 1, comp[0])


def _order_within(comp: list[str], pre: set[tuple[str, str]]) -> list[str]:
    if len(comp) == 1:
        return comp
    members = set(comp)
    need = {k: {t for s, t in pre if s == k and t in members and t != k} for k in comp}
    out: list[str] = []
    left = sorted(comp)
    while left:
        ready = [k for k in left if not need[k] - set(out)] or left  # a Pre-Depends cycle: fall back to names
        out.append(ready[0])
        left.remove(ready[0])
    return out
