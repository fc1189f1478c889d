"""The resolver's explanations: the chain from a requested package to a choice, why no option of a relation
is usable, the note recorded for each choice, and the one-line problems of an unsatisfiable request."""

from __future__ import annotations

from collections.abc import Sequence

from rootfs_forge.model import Package
from rootfs_forge.resolve.policy import VERB, Obligation, Policy, ResolveEvent, State, label
from rootfs_forge.resolve.relations import (
    Atom,
    group_text,
)


class Explainer(Policy):
    """Texts about a resolver's state, for notes, reports and errors."""

    # ---- explaining -------------------------------------------------------------------------------
    def chain(self, st: State, key: str) -> list[str]:
        names: list[str] = []
        seen: set[str] = set()
        cur: str | None = key
        while cur is not None and cur not in seen:
            seen.add(cur)
            names.append(label(st.chosen[cur], self.native))
            cur = st.parent[cur][0]
        return names[::-1]

    def _why_not(self, st: State, atom: Atom, pa: str) -> str:
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

    def chain_text(self, st: State, ob: Obligation) -> str:
        return " -> ".join(self.chain(st, ob.parent))

    def choice_note(self, st: State, ob: Obligation, x: Package, opts: Sequence[Package] | None) -> str:
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
        msg = f"{group_text(ob.group)} (for {label(st.chosen[ob.parent], self.native)}): chose {x.name}, {how}"
        if others:
            msg += f"; other options: {', '.join(others)}"
        self.report(ResolveEvent("choose", f"{x.name} for {group_text(ob.group)}", how))
        return msg

    def unsatisfiable(self, st: State, ob: Obligation, why: list[str]) -> str:
        return (f"{self.chain_text(st, ob)} {VERB[ob.field]} {group_text(ob.group)}, but "
                f"{' and '.join(dict.fromkeys(why))}")

    def requested_labels(self, st: State) -> list[str]:
        return sorted(label(st.chosen[k], self.native) for k, (par, _) in st.parent.items() if par is None)

