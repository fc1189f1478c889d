"""Why is a package in the tree? Chains from what was asked for down to the package.

For a forge image the resolver's why-graph is stored in ``/var/lib/forge/manifest.json`` and the chains
follow it up to a requested package (``parent: null``). For any other tree the chains follow reverse
``Depends``/``Pre-Depends`` inside the installed set up to a package nothing depends on (a top-level package,
or an ``Essential: yes`` one). Both walk the graph with ``resolve.why.shortest_chains``, the search
``forge why`` uses for a resolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rootfs_forge.audit.forgemeta import WhyEdge
from rootfs_forge.errors import AuditError
from rootfs_forge.model import InstalledPackage
from rootfs_forge.resolve.why import Link, shortest_chains
from rootfs_forge.util.deb822 import PkgRelation

MAX_CHAINS = 5  # chains, and routes through one package


def _relation_text(group: Sequence[Mapping[str, Any]]) -> str:
    alts = []
    for alt in group:
        text = str(alt["name"])
        if alt.get("archqual"):
            text += f":{alt['archqual']}"
        version = alt.get("version")
        if isinstance(version, tuple):
            text += f" ({version[0]} {version[1]})"
        alts.append(text)
    return " | ".join(alts)


def depends_graph(packages: Sequence[InstalledPackage]) -> dict[str, list[tuple[str, str]]]:
    """key -> [(dependency key, "Depends: text")], each Depends/Pre-Depends group resolved inside the set.

    A group is satisfied by the first alternative installed under its own name, else by a package that
    Provides it. Version constraints are not re-checked: dpkg already did when it installed the set.
    """
    by_name: dict[str, list[InstalledPackage]] = {}
    providers: dict[str, list[InstalledPackage]] = {}
    for pkg in packages:
        by_name.setdefault(pkg.name, []).append(pkg)
        for group in _relations(pkg.provides):
            for alt in group:
                providers.setdefault(str(alt["name"]), []).append(pkg)
    graph: dict[str, list[tuple[str, str]]] = {}
    for pkg in packages:
        edges: list[tuple[str, str]] = []
        for field_name, text in (("Pre-Depends", pkg.pre_depends), ("Depends", pkg.depends)):
            for group in _relations(text):
                target = _satisfy(group, pkg, by_name, providers)
                if target is not None and target.key != pkg.key:
                    edges.append((target.key, f"{field_name}: {_relation_text(group)}"))
        graph[pkg.key] = sorted(set(edges))
    return graph


def _relations(text: str) -> list[Any]:
    return PkgRelation.parse_relations(text) if text.strip() else []


def _satisfy(group: Sequence[Mapping[str, Any]], pkg: InstalledPackage, by_name: dict[str, list[InstalledPackage]],
             providers: dict[str, list[InstalledPackage]]) -> InstalledPackage | None:
    for pool in (by_name, providers):
        for alt in group:
            cands = pool.get(str(alt["name"]), [])
            if not cands:
                continue
            same = [c for c in cands if c.architecture in (pkg.architecture, "all")]
            return sorted(same or cands, key=lambda c: c.key)[0]
    return None


def _find_key(keys: Sequence[str], pkg: str) -> str:
    if pkg in keys:
        return pkg
    hits = sorted(k for k in keys if k.split(":", 1)[0] == pkg)
    if not hits:
        raise AuditError("explain", pkg, "no such package in the target")
    return hits[0]


def chains_from_manifest(why: dict[str, tuple[WhyEdge, ...]], pkg: str) -> list[list[Link]]:
    """Chains from ``pkg`` up to a requested package, through forge's stored why-graph (shortest first)."""
    start = _find_key(sorted(why), pkg)
    parents = {k: [(e.parent, e.relation) for e in edges] for k, edges in why.items()}
    return shortest_chains(start, parents, limit=MAX_CHAINS, per_parent=MAX_CHAINS)


def chains_from_dependencies(packages: Sequence[InstalledPackage], pkg: str) -> list[list[Link]]:
    """Chains from ``pkg`` up to a package nothing depends on, through reverse dependencies in the set."""
    graph = depends_graph(packages)
    start = _find_key(sorted(graph), pkg)
    parents: dict[str, list[tuple[str | None, str]]] = {k: [] for k in graph}
    for key, deps in graph.items():
        for dep, relation in deps:
            parents[dep].append((key, relation))
    essential = {p.key for p in packages if p.essential}
    for key in graph:
        if not parents[key]:
            parents[key] = [(None, "top-level: nothing depends on it")]
        elif key in essential:
            parents[key].insert(0, (None, "Essential: yes"))
    return shortest_chains(start, parents, limit=MAX_CHAINS, per_parent=MAX_CHAINS)
