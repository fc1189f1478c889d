"""Why-chains (the one search, for the resolver's why-graph and for the audit's) and a table of what a
``Resolution`` chose, for the CLI. Pure; no printing."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rootfs_forge.model import Package, Resolution

MAX_CHAINS = 1000


@dataclass(frozen=True)
class Link:
    """One step of a chain: ``package`` is there because of ``relation`` of ``parent`` (None: asked for)."""

    package: str
    parent: str | None
    relation: str

    def as_dict(self) -> dict[str, object]:
        return {"package": self.package, "parent": self.parent, "relation": self.relation}


Parents = Mapping[str, Sequence[tuple[str | None, str]]]  # key -> (parent key or None for a root, relation)


def shortest_chains(start: str, parents: Parents, *, limit: int, per_parent: int | None = None,
                    max_expansions: int | None = None) -> list[list[Link]]:
    """The one why-chain search: breadth first from ``start`` up to a root (parent None), shortest first.

    A chain never passes a package twice; at most ``limit`` chains; with ``per_parent``, at most that many
    routes through one package; with ``max_expansions``, at most that many partial chains looked at. Each
    chain runs from ``start`` upwards: ``[Link(start, parent, relation), Link(parent, ...), ...]``.
    """
    out: list[list[Link]] = []
    queue: deque[tuple[str, list[Link]]] = deque([(start, [])])
    visits: dict[str, int] = {}
    expansions = 0
    while queue and len(out) < limit and (max_expansions is None or expansions < max_expansions):
        key, path = queue.popleft()
        expansions += 1
        for parent, relation in sorted(parents.get(key, ()), key=lambda pr: (pr[0] is not None, pr[0] or "", pr[1])):
            link = Link(key, parent, relation)
            if parent is None:
                out.append([*path, link])
                continue
            if parent == key or any(step.package == parent for step in path):
                continue  # no cycles
            if per_parent is not None and visits.get(parent, 0) >= per_parent:
                continue  # a few routes through one package are enough
            visits[parent] = visits.get(parent, 0) + 1
            queue.append((parent, [*path, link]))
    return out[:limit]


def _find_key(res: Resolution, key_or_name: str) -> str | None:
    keys = {p.key for p in res.packages}
    if key_or_name in keys:
        return key_or_name
    named = sorted(p.key for p in res.packages if p.name == key_or_name)
    return named[0] if named else None


def why_chains(res: Resolution, key_or_name: str, *, limit: int = MAX_CHAINS) -> list[list[str]]:
    """Every chain of package keys from a requested (or Essential) package down to ``key_or_name``.

    Chains follow the why-graph without revisiting a package, are sorted (shortest first, then by keys) and
    capped at ``limit``. A requested package's own chain is ``[key]``. Unknown names give ``[]``.
    """
    target = _find_key(res, key_or_name)
    if target is None:
        return []
    parents = {key: sorted({(r.parent, "") for r in reasons}, key=lambda pr: (pr[0] is not None, pr[0] or ""))
               for key, reasons in res.why.items()}
    found = shortest_chains(target, parents, limit=limit, max_expansions=limit * 100)
    return sorted(([link.package for link in reversed(chain)] for chain in found), key=lambda c: (len(c), c))


def _reason_text(res: Resolution, p: Package) -> str:
    reasons = res.why.get(p.key, ())
    if not reasons:
        return ""
    first = reasons[0]
    if first.parent is None:
        return first.relation
    more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
    return f"{first.parent} {first.relation}{more}"


def resolution_table(res: Resolution) -> list[dict[str, str | int]]:
    """One row per chosen package, in the resolution's (name, arch) order."""
    return [
        {
            "package": p.name,
            "version": p.version,
            "arch": p.architecture,
            "size": p.size,
            "installed_size": p.installed_size,
            "reason": _reason_text(res, p),
        }
        for p in res.packages
    ]
