"""Pure views of a ``Resolution`` for the CLI: why-chains and a table of what was chosen. No printing."""

from __future__ import annotations

from collections import deque

from rootfs_forge.model import Package, Resolution

MAX_CHAINS = 1000


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
    chains: list[list[str]] = []
    queue: deque[list[str]] = deque([[target]])  # breadth first: shortest chains first
    expansions = 0
    while queue and len(chains) < limit and expansions < limit * 100:
        path = queue.popleft()
        expansions += 1
        reasons = res.why.get(path[0], ())
        if any(r.parent is None for r in reasons):
            chains.append(path)
        for parent in sorted({r.parent for r in reasons if r.parent is not None}):
            if parent not in path:
                queue.append([parent, *path])
    return sorted(chains, key=lambda c: (len(c), c))


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
