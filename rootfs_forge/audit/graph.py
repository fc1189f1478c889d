"""The why-graph of a tree: requested packages -> dependencies, each edge labelled with its relation.

Pure parts: :func:`why_graph` (from forge's stored why-graph, else reverse ``Depends`` in the dpkg database),
:func:`savings` ("what would I save without X": the closure only X needs, i.e. what is no longer reachable from
the requested packages once X is gone) and :func:`to_dot` (Graphviz text). :func:`render_svg` lays the graph
out with Graphviz ``dot`` when it is installed and with a plain layered layout otherwise.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from rootfs_forge.audit.why import depends_graph
from rootfs_forge.model import InstalledPackage

DOT_TIMEOUT = 20


class Because(Protocol):
    """One reason a package is there: forge's stored ``WhyEdge`` and the resolver's ``Reason`` both fit."""

    @property
    def parent(self) -> str | None: ...

    @property
    def relation(self) -> str: ...


@dataclass(frozen=True)
class Edge:
    parent: str
    child: str
    relation: str


@dataclass(frozen=True)
class WhyGraph:
    nodes: dict[str, int]  # package key -> bytes in the tree
    requested: frozenset[str]  # the roots: what was asked for (or what nothing depends on)
    edges: tuple[Edge, ...]
    root_reason: dict[str, str] = field(default_factory=dict)  # root -> why it is a root

    def children(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {k: [] for k in self.nodes}
        for e in self.edges:
            out.setdefault(e.parent, []).append(e.child)
        return out


def graph_from_manifest(why: Mapping[str, Sequence[Because]], sizes: Mapping[str, int]) -> WhyGraph:
    nodes = {k: int(sizes.get(k, 0)) for k in why}
    edges: list[Edge] = []
    requested: set[str] = set()
    reasons: dict[str, str] = {}
    for key, links in sorted(why.items()):
        for link in links:
            if link.parent is None:
                requested.add(key)
                reasons[key] = link.relation
            else:
                nodes.setdefault(link.parent, int(sizes.get(link.parent, 0)))
                edges.append(Edge(link.parent, key, link.relation))
    return WhyGraph(nodes, frozenset(requested), tuple(sorted(set(edges), key=_edge_key)), reasons)


def graph_from_packages(packages: Sequence[InstalledPackage], sizes: Mapping[str, int]) -> WhyGraph:
    deps = depends_graph(packages)
    nodes = {k: int(sizes.get(k, 0)) for k in deps}
    edges = {Edge(key, dep, relation) for key, links in deps.items() for dep, relation in links}
    has_parent = {e.child for e in edges}
    essential = {p.key for p in packages if p.essential}
    reasons = {k: "Essential: yes" if k in essential else "nothing depends on it"
               for k in nodes if k not in has_parent or k in essential}
    return WhyGraph(nodes, frozenset(reasons), tuple(sorted(edges, key=_edge_key)), reasons)


def why_graph(why: Mapping[str, Sequence[Because]] | None, packages: Sequence[InstalledPackage],
              sizes: Mapping[str, int]) -> WhyGraph:
    """forge's why-graph when the tree carries one, else the reverse dependencies of its dpkg database."""
    if not why:
        return graph_from_packages(packages, sizes)
    graph = graph_from_manifest(why, sizes)
    stray = {p.key for p in packages} - set(graph.nodes)
    if not stray:
        return graph
    # installed, but not by the recipe (a later layer, a dpkg run in a container): shown as roots of their own
    reasons = {**graph.root_reason, **{k: "not in forge's why-graph" for k in stray}}
    return WhyGraph({**graph.nodes, **{k: int(sizes.get(k, 0)) for k in stray}},
                    graph.requested | stray, graph.edges, reasons)


def _edge_key(e: Edge) -> tuple[str, str, str]:
    return (e.parent, e.child, e.relation)


def _reachable(roots: Iterable[str], children: Mapping[str, list[str]], without: str | None) -> set[str]:
    seen: set[str] = set()
    stack = [r for r in roots if r != without]
    while stack:
        key = stack.pop()
        if key in seen:
            continue
        seen.add(key)
        stack.extend(c for c in children.get(key, ()) if c != without and c not in seen)
    return seen


@dataclass(frozen=True)
class Saving:
    package: str
    packages: tuple[str, ...]  # what goes with it (itself first)
    bytes: int


def savings_brute_force(graph: WhyGraph) -> dict[str, Saving]:
    """:func:`savings` by definition, one reachability walk per package (quadratic: the tests' oracle)."""
    children = graph.children()
    reachable = _reachable(graph.requested, children, None)
    out: dict[str, Saving] = {}
    for key in graph.nodes:
        gone = (reachable - _reachable(graph.requested, children, key)) if key in reachable else set()
        ordered = (key, *sorted(gone - {key}))
        out[key] = Saving(key, ordered, sum(graph.nodes.get(k, 0) for k in ordered))
    return out


def dominator_tree(graph: WhyGraph) -> dict[str, str | None]:
    """Immediate dominators from the requested packages (a virtual root above them): ``None`` for a root's parent.

    The iterative algorithm of Cooper, Harvey and Kennedy ("A Simple, Fast Dominance Algorithm"). A package
    dominates another when every chain from a requested package to the other passes through it; what X dominates
    is exactly what would go without X. Packages no requested one reaches are left out.
    """
    root = "\0root"
    succ = graph.children()
    succ[root] = sorted(graph.requested)
    order: list[str] = []  # postorder
    seen = {root}
    stack: list[tuple[str, int]] = [(root, 0)]
    while stack:
        node, i = stack.pop()
        kids = succ.get(node, [])
        if i < len(kids):
            stack.append((node, i + 1))
            child = kids[i]
            if child not in seen and child in graph.nodes:
                seen.add(child)
                stack.append((child, 0))
        else:
            order.append(node)
    post = {n: i for i, n in enumerate(order)}
    preds: dict[str, list[str]] = {n: [] for n in order}
    for parent in order:
        for child in succ.get(parent, []):
            if child in preds:
                preds[child].append(parent)
    idom: dict[str, str] = {root: root}

    def intersect(a: str, b: str) -> str:
        while a != b:
            while post[a] < post[b]:
                a = idom[a]
            while post[b] < post[a]:
                b = idom[b]
        return a

    changed = True
    while changed:
        changed = False
        for node in reversed(order):
            if node == root:
                continue
            done = [p for p in preds[node] if p in idom]
            new = done[0]
            for p in done[1:]:
                new = intersect(p, new)
            if idom.get(node) != new:
                idom[node] = new
                changed = True
    return {n: (None if d == root else d) for n, d in idom.items() if n != root}


def savings(graph: WhyGraph) -> dict[str, Saving]:
    """For each package X: the packages only X needs (unreachable from the roots once X is gone), and their bytes.

    Computed as X's subtree in the dominator tree (near-linear), not by one reachability walk per package."""
    idom = dominator_tree(graph)
    below: dict[str, list[str]] = {}
    for node, dom in idom.items():
        if dom is not None:
            below.setdefault(dom, []).append(node)
    out: dict[str, Saving] = {}
    for key in graph.nodes:
        gone: list[str] = []
        stack = list(below.get(key, ()))
        while stack:
            node = stack.pop()
            gone.append(node)
            stack.extend(below.get(node, ()))
        ordered = (key, *sorted(gone))
        out[key] = Saving(key, ordered, sum(graph.nodes.get(k, 0) for k in ordered))
    return out


def subgraph(graph: WhyGraph, chains: Iterable[Sequence[tuple[str, str | None, str]]]) -> WhyGraph:
    """Only the packages and edges on ``chains`` (steps of (package, parent or None, relation))."""
    nodes: dict[str, int] = {}
    edges: set[Edge] = set()
    roots: dict[str, str] = {}
    for chain in chains:
        for package, parent, relation in chain:
            nodes[package] = graph.nodes.get(package, 0)
            if parent is None:
                roots[package] = relation
            else:
                nodes[parent] = graph.nodes.get(parent, 0)
                edges.add(Edge(parent, package, relation))
    return WhyGraph(nodes, frozenset(roots), tuple(sorted(edges, key=_edge_key)), roots)


def largest(graph: WhyGraph, limit: int) -> WhyGraph:
    """At most ``limit`` packages: the largest ones, with the edges between them (a readable drawing of a huge set)."""
    if len(graph.nodes) <= limit:
        return graph
    keep = set(sorted(graph.nodes, key=lambda k: (-graph.nodes[k], k))[:limit])
    return WhyGraph({k: v for k, v in graph.nodes.items() if k in keep}, graph.requested & keep,
                    tuple(e for e in graph.edges if e.parent in keep and e.child in keep),
                    {k: v for k, v in graph.root_reason.items() if k in keep})


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def to_dot(graph: WhyGraph, *, highlight: Iterable[str] = (), name: str = "why",
           tooltips: Mapping[str, str] | None = None, sizes: bool = True, xlabels: bool = False,
           colors: Mapping[str, str] | None = None) -> str:
    """Graphviz text: requested packages as double boxes, ``highlight`` filled, edges labelled with the relation.

    ``xlabels`` places edge labels beside the edges (a much more compact drawing of a dense graph); ``colors``
    gives some packages their own fill (``forge diff --html``: added, changed)."""
    marked = set(highlight)
    tips = tooltips or {}
    lines = [f"digraph {_q(name)} {{", "  rankdir=TB; ranksep=0.35; nodesep=0.12;",
             '  node [shape=box, style="rounded,filled", '
             'fillcolor="#f4f6f8", fontname="Helvetica", fontsize=11];',
             '  edge [fontname="Helvetica", fontsize=9, color="#7a8691", fontcolor="#55606b"];']
    for key in sorted(graph.nodes):
        attrs = {"id": f"pkg-{key}"}
        label = key.split(":", 1)[0]
        if sizes:
            label += f"\n{human(graph.nodes[key])}"
        attrs["label"] = label
        if key in graph.requested:
            attrs["peripheries"] = "2"
            attrs["color"] = "#1f5fa8"
        if key in marked:
            attrs["fillcolor"] = "#ffb347"
        if colors and key in colors:
            attrs["fillcolor"] = colors[key]
        if key in tips:
            attrs["tooltip"] = tips[key]
        lines.append(f"  {_q(key)} [" + ", ".join(f"{k}={_q(v)}" for k, v in attrs.items()) + "];")
    for e in graph.edges:
        label = _q(short_relation(e.relation, e.child))
        lines.append(f"  {_q(e.parent)} -> {_q(e.child)} [{'xlabel' if xlabels else 'label'}={label}, "
                     f"tooltip={_q(e.relation)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def short_relation(relation: str, child: str, limit: int = 32) -> str:
    """``Depends: libc6 (>= 2.34)`` on the edge to libc6 → ``Depends (>= 2.34)``; long ones cut with ``…``."""
    field_name, sep, rest = relation.partition(": ")
    name = child.split(":", 1)[0]
    if sep and "|" not in rest and (rest == name or rest.startswith(name + " ")):
        relation = field_name + rest[len(name):]
    return relation if len(relation) <= limit else relation[:limit - 1] + "…"


def render_svg(graph: WhyGraph, *, highlight: Iterable[str] = (), tooltips: Mapping[str, str] | None = None,
               prefer_dot: bool = True, colors: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(svg markup, engine): Graphviz ``dot`` when installed, else the plain layered layout."""
    dot = shutil.which("dot") if prefer_dot else None
    if dot and graph.nodes:
        text = to_dot(graph, highlight=highlight, tooltips=tooltips, xlabels=True, colors=colors)
        try:
            done = subprocess.run([dot, "-Tsvg"], input=text.encode(), capture_output=True, timeout=DOT_TIMEOUT,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired):
            done = None
        if done is not None and done.returncode == 0:
            svg = done.stdout.decode("utf-8", "replace")
            start = svg.find("<svg")
            if start >= 0:
                return svg[start:], "graphviz"
    return plain_svg(graph, highlight=highlight, tooltips=tooltips, colors=colors), "plain"


def layers(graph: WhyGraph) -> list[list[str]]:
    """Longest-path layering from the roots (cycles broken by first visit); unreachable nodes go last."""
    children = graph.children()
    depth: dict[str, int] = {r: 0 for r in graph.requested}
    order = sorted(graph.requested)
    for _ in range(len(graph.nodes) + 1):  # relax; bounded so that cycles cannot loop forever
        changed = False
        for key in order:
            for child in children.get(key, ()):
                want = depth[key] + 1
                if child not in depth or (depth[child] < want <= len(graph.nodes)):
                    if child not in depth:
                        order.append(child)
                    depth[child] = want
                    changed = True
        if not changed:
            break
    rest = max(depth.values(), default=-1) + 1
    for key in graph.nodes:
        depth.setdefault(key, rest)
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for key in sorted(depth):
        out[depth[key]].append(key)
    return out


def plain_svg(graph: WhyGraph, *, highlight: Iterable[str] = (),
              tooltips: Mapping[str, str] | None = None, colors: Mapping[str, str] | None = None) -> str:
    """A layered left-to-right drawing without Graphviz: columns by depth, straight edges."""
    marked = set(highlight)
    tips = tooltips or {}
    cols = layers(graph)
    box_w, box_h, gap_x, gap_y = 170, 34, 90, 14
    pos: dict[str, tuple[float, float]] = {}
    for i, col in enumerate(cols):
        for j, key in enumerate(col):
            pos[key] = (10 + i * (box_w + gap_x), 10 + j * (box_h + gap_y))
    width = 20 + max(1, len(cols)) * (box_w + gap_x)
    height = 20 + max((len(c) for c in cols), default=1) * (box_h + gap_y)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" class="plain">']
    for e in graph.edges:
        (x1, y1), (x2, y2) = pos[e.parent], pos[e.child]
        out.append(f'<g class="edge"><title>{html.escape(e.parent)} → {html.escape(e.child)}: '
                   f'{html.escape(e.relation)}</title><line x1="{x1 + box_w}" y1="{y1 + box_h / 2}" x2="{x2}" '
                   f'y2="{y2 + box_h / 2}" stroke="#7a8691"/></g>')
    for key, (x, y) in sorted(pos.items()):
        fill = (colors or {}).get(key) or ("#ffb347" if key in marked else "#f4f6f8")
        stroke = "#1f5fa8" if key in graph.requested else "#7a8691"
        tip = html.escape(tips.get(key, key))
        out.append(f'<g class="node" id="pkg-{html.escape(key)}"><title>{tip}</title>'
                   f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="5" fill="{fill}" stroke="{stroke}"/>'
                   f'<text x="{x + 6}" y="{y + 14}" font-size="11">{html.escape(key.split(":", 1)[0])}</text>'
                   f'<text x="{x + 6}" y="{y + 28}" font-size="10" fill="#55606b">'
                   f'{human(graph.nodes.get(key, 0))}</text></g>')
    out.append("</svg>")
    return "\n".join(out)
