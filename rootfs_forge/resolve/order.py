"""Install order: dependencies first, cycles kept together and ordered by their Pre-Depends edges."""

from __future__ import annotations

import heapq
from collections.abc import Iterable


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

