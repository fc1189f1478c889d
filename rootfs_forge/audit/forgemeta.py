"""forge's own record of an image: ``/var/lib/forge/manifest.json``, written by ``forge compose``.

Schema (every key optional; unknown keys are ignored)::

    {
      "packages": {"<name> or <name>:<arch>": {"dropped_files": int, "dropped_bytes": int}},
      "why": {"<name>:<arch>": [{"parent": "<name>:<arch>" | null, "relation": str}]},
      "files": [{"path": "/etc/app.conf", "sha256": "<hex>", "src": "<where it came from>"}],
      "effects": [{"effect": "<name>", "changed": ["/etc/passwd", ...]}],
      "sliced_away": [{"name": str, "version": str, "architecture": str, "why": str}]
    }

``packages`` says what the path filters removed from each package, ``why`` is the resolver's why-graph
(``parent: null`` marks a package the recipe asked for); ``files`` (the recipe's local files) and the
``changed`` paths of ``effects`` (emulated maintainer-script effects) are paths forge wrote itself, which no
package owns and which therefore do not count as unowned. ``sliced_away`` lists the packages of the resolution
that kept no file in the image (by default absent from the dpkg database), with why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rootfs_forge.audit.view import FsView, norm, read_bytes
from rootfs_forge.errors import AuditError

MANIFEST = "/var/lib/forge/manifest.json"


@dataclass(frozen=True)
class Dropped:
    files: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class WhyEdge:
    parent: str | None
    relation: str


@dataclass(frozen=True)
class SlicedAway:
    name: str
    version: str
    architecture: str
    why: str


@dataclass(frozen=True)
class ForgeManifest:
    dropped: dict[str, Dropped] = field(default_factory=dict)
    why: dict[str, tuple[WhyEdge, ...]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # path -> src
    sliced_away: tuple[SlicedAway, ...] = ()

    def dropped_for(self, name: str, arch: str) -> Dropped | None:
        return self.dropped.get(f"{name}:{arch}") or self.dropped.get(name)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def parse_manifest(data: Any, where: str = MANIFEST) -> ForgeManifest:
    """The manifest from its decoded JSON; a wrong shape is an :class:`AuditError`."""
    if not isinstance(data, dict):
        raise AuditError("read", where, "not a JSON object")
    dropped: dict[str, Dropped] = {}
    for name, entry in sorted((data.get("packages") or {}).items()):
        if isinstance(entry, dict):
            dropped[str(name)] = Dropped(_int(entry.get("dropped_files")), _int(entry.get("dropped_bytes")))
    why: dict[str, tuple[WhyEdge, ...]] = {}
    for key, edges in sorted((data.get("why") or {}).items()):
        if not isinstance(edges, list):
            raise AuditError("read", where, f"why[{key!r}] is not a list")
        why[str(key)] = tuple(
            WhyEdge(None if e.get("parent") is None else str(e["parent"]), str(e.get("relation", "")))
            for e in edges
            if isinstance(e, dict)
        )
    files = {
        norm(f["path"]): str(f.get("src", ""))
        for f in (data.get("files") or [])
        if isinstance(f, dict) and isinstance(f.get("path"), str)
    }
    for effect in data.get("effects") or []:
        if isinstance(effect, dict):
            for path in effect.get("changed") or []:
                if isinstance(path, str):
                    files.setdefault(norm(path), f"effect:{effect.get('effect', '')}")
    sliced = tuple(
        SlicedAway(str(e.get("name", "")), str(e.get("version", "")), str(e.get("architecture", "")),
                   str(e.get("why", "")))
        for e in (data.get("sliced_away") or []) if isinstance(e, dict) and e.get("name")
    )
    return ForgeManifest(dropped, why, files, sliced)


def read_manifest(view: FsView) -> ForgeManifest | None:
    """forge's manifest of the tree, or None when the tree was not made by forge."""
    node = view.lstat(MANIFEST)
    if node is None or node.kind != "file":
        return None
    try:
        data = json.loads(read_bytes(view, MANIFEST))
    except ValueError as exc:
        raise AuditError("read", MANIFEST, f"invalid JSON ({exc})") from None
    return parse_manifest(data)
