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

from collections.abc import Sequence
from dataclasses import dataclass, replace

from debian.debian_support import Version

from rootfs_forge.errors import ResolveError
from rootfs_forge.model import IndexView, Package, Reason, Resolution, ResolveRequest
from rootfs_forge.resolve.explain import Explainer
from rootfs_forge.resolve.order import install_order
from rootfs_forge.resolve.policy import (
    NEGATIVE,
    POSITIVE,
    PRIORITY_RANK,
    VERB,
    Agenda,
    Failure,
    Obligation,
    Reporter,
    ResolveEvent,
    State,
    label,
)
from rootfs_forge.resolve.relations import (
    group_text,
    provide_satisfies,
    provides,
    relations,
    version_satisfies,
)

MAX_STEPS = 200_000
STRATEGIES = ("apt", "smallest")


@dataclass(slots=True)
class _Choice:
    state: State
    agenda: Agenda
    ob: Obligation
    remaining: list[Package | None]  # None = drop a soft obligation


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


class _Resolver(Explainer):
    def __init__(self, index: IndexView, request: ResolveRequest, reporter: Reporter | None, max_steps: int):
        self.index = index
        self.req = request
        self.native = request.architecture
        self.archs = (request.architecture, *[a for a in request.foreign_architectures if a != request.architecture])
        self.pins = dict(request.suite_priority)
        self.held = {(name, arch): version for name, arch, version in request.hold}
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

    def install(self, st: State, x: Package, parent: str | None, relation: str, depth: int) -> None:
        st.chosen[x.key] = x
        st.by_name[x.name] = (*st.by_name.get(x.name, ()), x)
        for pr in provides(x):
            st.by_provided[pr.name] = (*st.by_provided.get(pr.name, ()), (x, pr))
        for field in NEGATIVE:
            for group in relations(x, field):
                for atom in group:
                    st.negs[atom.name] = (*st.negs.get(atom.name, ()), (x, field, atom))
        st.parent.setdefault(x.key, (parent, relation))
        st.depth[x.key] = depth

    def obligations(self, x: Package, agenda: Agenda) -> Agenda:
        fields = [*POSITIVE, "Recommends"] if self.req.recommends else list(POSITIVE)
        obs = [Obligation(x.key, f, g) for f in fields for g in relations(x, f)]
        for ob in reversed(obs):
            agenda = (ob, agenda)
        return agenda

    # ---- options at a choice point ---------------------------------------------------------------
    def options(self, st: State, ob: Obligation) -> tuple[list[Package], list[str], int]:
        """Usable options in preference order, the reasons for unusable ones and their culprit depth."""
        parent = st.chosen[ob.parent]
        pa = self._own_arch(parent)
        ranked: list[tuple[tuple[int, ...], Package, int]] = []
        why: list[str] = []
        depth = st.depth[ob.parent]
        seen: set[str] = set()
        # last tie-breaker among providers: one the same parent also depends on by name (apt ends up with it,
        # e.g. hashbrown: "librust-ahash-0.7+compile-time-rng-dev, librust-ahash-0.7-dev")
        named = {a.name for f in POSITIVE for g in relations(parent, f) for a in g}
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
                    why.append(f"{p.name} conflicts with {label(q, self.native)} ({phrase})")
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
            tied = sorted({label(p, self.native) for k, p, _ in ranked if k == ranked[0][0]})
            raise Failure(
                f"{self.chain_text(st, ob)} {VERB[ob.field]} {group_text(ob.group)}, which "
                f"{', '.join(tied)} provide equally; name one in prefer", depth, self.chain(st, ob.parent)[0])
        return [p for _, p, _ in ranked], why, depth

    # ---- the search -------------------------------------------------------------------------------
    def run(self) -> Resolution:
        st = State({}, {}, {}, {}, {}, {}, ())
        roots = self.roots()
        unique = list({p.key: p for p, _ in roots}.values())
        agenda: Agenda = None
        for p in reversed(unique):
            agenda = self.obligations(p, agenda)
        for p, relation in roots:
            if p.key in st.chosen:
                continue
            bad = self.conflicts(st, p)
            if bad:
                phrase, q = bad[0]
                what = label(p, self.native)
                self.problems[f"{what} conflicts with {label(q, self.native)} ({phrase})"] = what
                continue
            self.install(st, p, None, relation, 0)
            self.report(ResolveEvent("mark", f"{label(p, self.native)} {p.version}", relation))
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
            except Failure as f:
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
                    self.report(ResolveEvent("skip", f"essential {name}", "excluded by the recipe"))
                    continue
                out.append((c, "essential"))
        return out

    def requested_package(self, spec: str) -> Package:
        name, _, version = spec.partition("=")
        name, _, arch = name.partition(":")
        arch = arch or self.native
        if arch not in self.archs and arch != "all":
            raise Failure(f"architecture {arch} is neither the image's nor a foreign architecture", 0)
        if name in self.exclude:
            raise Failure(f"{name} is requested but excluded by the recipe", 0)
        every = self.index.packages(name)
        if version:
            match = [p for p in every if p.version == version and p.architecture in (arch, "all")]
            if not match:
                have = sorted({p.version for p in every}, key=self._version)
                raise Failure(
                    f"no version {version} of {name} (available: {', '.join(have) or 'none'})", 0)
            chosen = max(match, key=self._pin)
            self._forced[(name, arch)] = chosen
            self._cand.pop((name, arch), None)
            return chosen
        c = self.candidate(name, arch)
        if c is not None:
            return c
        if any(p.architecture in (arch, "all") for p in every):
            raise Failure(f"{name} is only available from suites with a negative priority", 0)
        if every:
            raise Failure(f"{name} is not available for {arch}", 0)
        provs = [
            t for t in self.index.providers(name)
            if t.architecture in (arch, "all") and self.is_candidate(t) and t.name not in self.exclude
        ]
        if not provs:
            raise Failure(f"no package named {name} in any source", 0)
        provs.sort(key=lambda p: (self.prefer.get(p.name, len(self.prefer)), 0 if p.essential else 1,
                                  PRIORITY_RANK.get(p.priority, len(PRIORITY_RANK)), p.name))
        if len(provs) > 1 and not self.prefer.keys() & {p.name for p in provs}:
            top = provs[0]
            tied = [p.name for p in provs if (p.essential, p.priority) == (top.essential, top.priority)]
            if len(tied) > 1:
                raise Failure(
                    f"{name} is a virtual package provided by {', '.join(sorted(tied))}; name one in prefer", 0)
        self.report(ResolveEvent("choose", f"{provs[0].name} for requested {name}", "provider"))
        return provs[0]

    def search(self, st: State, agenda: Agenda) -> State:
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
                except Failure as ambiguous:
                    if not soft:
                        raise
                    opts, why, depth = [], [ambiguous.problem], ambiguous.depth
                if not opts:
                    if soft:
                        self.report(ResolveEvent("skip", f"{ob.field} {group_text(ob.group)} of {ob.parent}",
                                                 "; ".join(why)))
                        continue
                    raise Failure(self.unsatisfiable(st, ob, why), depth, self.chain(st, ob.parent)[0])
                choices: list[Package | None] = [*opts, None] if soft else list(opts)
                first, rest = choices[0], choices[1:]
                if rest:
                    stack.append(_Choice(st.copy(), agenda, ob, rest))
                agenda = self.take(st, ob, first, opts, agenda, len(stack))
            except Failure as fail:
                self.problems[fail.problem] = fail.root
                del stack[fail.depth:]
                while stack:
                    cp = stack.pop()
                    nxt = cp.remaining.pop(0)
                    st = cp.state.copy() if cp.remaining else cp.state
                    if cp.remaining:
                        stack.append(cp)
                    trying = label(nxt, self.native) if nxt else "without it"
                    self.report(ResolveEvent("backtrack", "", f"{fail.problem}; trying {trying} for "
                                                              f"{group_text(cp.ob.group)}"))
                    try:
                        agenda = self.take(st, cp.ob, nxt, None, cp.agenda, len(stack))
                        break
                    except Failure as again:
                        self.problems[again.problem] = again.root
                        del stack[again.depth:]
                else:
                    broken = True
                    self.report(ResolveEvent("unsatisfiable", "", fail.problem))

    def take(
        self, st: State, ob: Obligation, x: Package | None, opts: Sequence[Package] | None, agenda: Agenda, depth: int
    ) -> Agenda:
        """Install option ``x`` for ``ob`` (``None`` drops a soft obligation) and queue its relations."""
        if x is None:
            return agenda
        bad = self.conflicts(st, x)
        if bad:
            phrase, q = bad[0]
            raise Failure(
                f"{self.chain_text(st, ob)} {VERB[ob.field]} {group_text(ob.group)}, but "
                f"{x.name} conflicts with {label(q, self.native)} ({phrase})",
                max(st.depth[ob.parent], *(st.depth[c.key] for _, c in bad)), self.chain(st, ob.parent)[0])
        relation = f"{ob.field}: {group_text(ob.group)}"
        self.install(st, x, ob.parent, relation, depth)
        note = self.choice_note(st, ob, x, opts)
        if note:
            st.notes = (*st.notes, note)
        return self.obligations(x, agenda)

    # ---- the result -------------------------------------------------------------------------------
    def result(self, st: State, roots: list[tuple[Package, str]], requested: tuple[str, ...]) -> Resolution:
        pkgs = sorted(st.chosen.values(), key=lambda p: (p.name, p.architecture))
        why: dict[str, set[Reason]] = {p.key: set() for p in pkgs}
        for p, relation in roots:
            why[p.key].add(Reason(None, relation))
        deps: dict[str, set[str]] = {p.key: set() for p in pkgs}
        pre: set[tuple[str, str]] = set()
        fields = [*POSITIVE, "Recommends"] if self.req.recommends else list(POSITIVE)
        for p in pkgs:
            pa = self._own_arch(p)
            for field in fields:
                for group in relations(p, field):
                    sat = {q.key for a in group for q in self._all_satisfying(st, a, pa)} - {p.key}
                    for k in sat:
                        why[k].add(Reason(p.key, f"{field}: {group_text(group)}"))
                        if field in POSITIVE:
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


__all__ = ["MAX_STEPS", "STRATEGIES", "Reporter", "ResolveEvent", "install_order", "resolve"]
