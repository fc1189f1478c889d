"""Graphviz text for ``forge resolve RECIPE --dot`` and ``forge why PKG (RECIPE|TARGET) --dot``. Pure."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from rootfs_forge.audit.graph import Edge, WhyGraph, graph_from_manifest, subgraph, to_dot
from rootfs_forge.model import Resolution


def _merge(graphs: Sequence[WhyGraph]) -> WhyGraph:
    nodes: dict[str, int] = {}
    roots: dict[str, str] = {}
    edges: list[Edge] = []
    for g in graphs:
        nodes.update(g.nodes)
        roots.update(g.root_reason)
        edges.extend(g.edges)
    return WhyGraph(nodes, frozenset(roots), tuple(sorted(set(edges), key=lambda e: (e.parent, e.child,
                                                                                       e.relation))), roots)


def _resolution_graph(res: Resolution) -> WhyGraph:
    sizes = {p.key: p.installed_size * 1024 for p in res.packages}
    return graph_from_manifest(res.why, sizes)


def resolution_dot(name: str, resolutions: Mapping[str, Resolution]) -> str:
    """The whole why-graph of every architecture's resolution (package keys carry the architecture)."""
    return to_dot(_merge([_resolution_graph(r) for _, r in sorted(resolutions.items())]), name=name)


def resolution_chains_dot(package: str, resolutions: Mapping[str, Resolution],
                          chains: Mapping[str, list[list[str]]]) -> str:
    """The chains ``forge why PKG RECIPE`` found (each a list of keys from a requested package down to PKG)."""
    graphs = []
    for arch, arch_chains in sorted(chains.items()):
        res = resolutions[arch]
        full = _resolution_graph(res)
        steps = []
        for chain in arch_chains:
            links: list[tuple[str, str | None, str]] = []
            root_reason = next((r.relation for r in res.why.get(chain[0], ()) if r.parent is None), "requested")
            links.append((chain[0], None, root_reason))
            for parent, child in itertools.pairwise(chain):
                rel = next((r.relation for r in res.why.get(child, ()) if r.parent == parent), "")
                links.append((child, parent, rel))
            steps.append(links)
        graphs.append(subgraph(full, steps))
    return to_dot(_merge(graphs), name=f"why {package}")


def target_chains_dot(package: str, report: Any) -> str:
    """The chains ``forge why PKG TARGET`` found in an image or rootfs (an :class:`AuditReport` with ``why``)."""
    sizes = {f"{u.name}:{u.architecture}": u.bytes for u in report.inventory.packages}
    base = WhyGraph(sizes, frozenset(), ())
    steps = [[(link.package, link.parent, link.relation) for link in chain] for chain in report.why or ()]
    return to_dot(subgraph(base, steps), name=f"why {package}")
