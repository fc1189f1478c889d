"""Where the bytes are, as a zoomable treemap: the image by package, then by directory and file in a package.

Pure: :func:`byte_tree` builds the hierarchy from the inventory, :func:`layout` lays it out with ``squarify``
(the squarified treemap algorithm of Bruls, Huizing and van Wijk) and flattens it into rows the report's
script draws. Each rectangle is stored relative to its parent's rectangle (0..1), so zooming into any node
only rescales; the layout itself is done once, here.

To keep the report small on large images a node shows at most :data:`MAX_CHILDREN` children; the rest are
folded into one ``(N more)`` rectangle of their combined size.
"""

from __future__ import annotations

import posixpath
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import squarify

MAX_CHILDREN = 48
MAX_ROWS = 12_000  # about 1 MB of report; deeper levels of a huge image are left unexpanded
CANVAS = (1200.0, 640.0)

PACKAGE, DIRECTORY, FILE, OTHER = 0, 1, 2, 3


@dataclass
class TreeNode:
    name: str
    kind: int
    size: int = 0
    children: list[TreeNode] = field(default_factory=list)


def _insert(root: TreeNode, path: str, size: int) -> None:
    node = root
    parts = [p for p in path.split("/") if p]
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        child = next((c for c in node.children if c.name == part), None) if not last else None
        if child is None:
            child = TreeNode(part, FILE if last else DIRECTORY)
            node.children.append(child)
        node = child
    node.size += size


def _finish(node: TreeNode) -> int:
    """Sum sizes bottom-up, merge single-child directory chains (``usr/lib/python3.11``), sort largest first."""
    if node.kind != FILE:
        node.size = sum(_finish(c) for c in node.children)
        for i, child in enumerate(node.children):
            while child.kind == DIRECTORY and len(child.children) == 1 and child.children[0].kind == DIRECTORY:
                only = child.children[0]
                child = TreeNode(f"{child.name}/{only.name}", DIRECTORY, child.size, only.children)
            node.children[i] = child
        if node.kind == PACKAGE and len(node.children) == 1 and node.children[0].kind == DIRECTORY:
            only = node.children[0]  # a package under /usr only: show what is inside usr/… right away
            node.children = [TreeNode(f"{only.name}/{c.name}", c.kind, c.size, c.children) for c in only.children]
        node.children.sort(key=lambda c: (-c.size, c.name))
    return node.size


def byte_tree(packages: Mapping[str, Iterable[tuple[str, int]]], label: str = "image") -> TreeNode:
    """``packages``: group name (``python3.11:amd64``, ``(no package)``) -> (path, bytes) of its files."""
    root = TreeNode(label, OTHER)
    for name, files in packages.items():
        top = TreeNode(name, PACKAGE)
        for path, size in files:
            _insert(top, posixpath.normpath("/" + path), size)
        root.children.append(top)
    _finish(root)
    return root


@dataclass(frozen=True)
class Layout:
    """Flat rows ``[name, bytes, parent row, x, y, w, h, kind]``; row 0 is the root, x..h relative to the parent."""

    rows: list[list[Any]]

    def names(self) -> set[str]:
        return {str(r[0]) for r in self.rows}


def layout(root: TreeNode, canvas: tuple[float, float] = CANVAS, max_children: int = MAX_CHILDREN,
           max_rows: int = MAX_ROWS) -> Layout:
    """Breadth first, so that when ``max_rows`` is reached every upper level is complete."""
    rows: list[list[Any]] = [[root.name, root.size, -1, 0.0, 0.0, 1.0, 1.0, root.kind]]
    queue: deque[tuple[TreeNode, int, float, float]] = deque([(root, 0, canvas[0], canvas[1])])
    while queue and len(rows) < max_rows:
        node, index, width, height = queue.popleft()
        shown = [c for c in node.children if c.size > 0]
        if len(shown) > max_children:
            rest = shown[max_children - 1:]
            shown = [*shown[:max_children - 1],
                     TreeNode(f"({len(rest)} more)", OTHER, sum(c.size for c in rest))]
        if not shown or width <= 0 or height <= 0:
            continue
        rects = squarify.squarify(squarify.normalize_sizes([c.size for c in shown], width, height),
                                  0.0, 0.0, width, height)
        for child, rect in zip(shown, rects, strict=True):
            rows.append([child.name, child.size, index, round(rect["x"] / width, 5), round(rect["y"] / height, 5),
                         round(rect["dx"] / width, 5), round(rect["dy"] / height, 5), child.kind])
            if child.children:
                queue.append((child, len(rows) - 1, rect["dx"], rect["dy"]))
    return Layout(rows)
