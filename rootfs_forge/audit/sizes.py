"""Where the bytes are: the largest packages and files, and what forge's path filters saved."""

from __future__ import annotations

from dataclasses import dataclass

from rootfs_forge.audit.forgemeta import ForgeManifest
from rootfs_forge.audit.inventory import Inventory
from rootfs_forge.audit.view import Node


@dataclass(frozen=True)
class SizeReport:
    total_bytes: int  # regular files in the tree (hard links counted once per path)
    total_files: int
    largest_packages: tuple[tuple[str, int], ...]  # (name:arch, bytes)
    largest_files: tuple[tuple[str, int], ...]  # (path, bytes)
    saved_files: int | None  # what forge's filters dropped; None when the tree has no forge manifest
    saved_bytes: int | None
    saved_by_package: tuple[tuple[str, int, int], ...]  # (package, files, bytes), largest first

    def as_dict(self) -> dict[str, object]:
        return {
            "total_bytes": self.total_bytes,
            "total_files": self.total_files,
            "largest_packages": [{"package": k, "bytes": b} for k, b in self.largest_packages],
            "largest_files": [{"path": p, "bytes": b} for p, b in self.largest_files],
            "saved": None if self.saved_bytes is None else {
                "files": self.saved_files, "bytes": self.saved_bytes,
                "by_package": [{"package": k, "files": f, "bytes": b} for k, f, b in self.saved_by_package],
            },
        }


def size_report(nodes: dict[str, Node], inventory: Inventory, manifest: ForgeManifest | None,
                top: int = 10) -> SizeReport:
    files = [(path, node.size) for path, node in nodes.items() if node.kind == "file"]
    largest_files = sorted(files, key=lambda pf: (-pf[1], pf[0]))[:top]
    pkgs = sorted(((f"{u.name}:{u.architecture}", u.bytes) for u in inventory.packages),
                  key=lambda kb: (-kb[1], kb[0]))[:top]
    saved_files = saved_bytes = None
    by_pkg: list[tuple[str, int, int]] = []
    if manifest is not None:
        by_pkg = sorted(((k, d.files, d.bytes) for k, d in manifest.dropped.items()),
                        key=lambda kfb: (-kfb[2], kfb[0]))
        saved_files = sum(f for _, f, _ in by_pkg)
        saved_bytes = sum(b for _, _, b in by_pkg)
    return SizeReport(sum(s for _, s in files), len(files), tuple(pkgs), tuple(largest_files),
                      saved_files, saved_bytes, tuple(by_pkg[:top]))
