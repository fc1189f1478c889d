"""Put the audit together for one opened target: inventory, sizes, ELF closure, why-chains, SBOM input.

This module reads the tree (through its view) but prints nothing; the command formats what it returns.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from rootfs_forge.audit.dpkgreader import read_dpkg_db
from rootfs_forge.audit.elf import ClosureReport, check_closure
from rootfs_forge.audit.forgemeta import ForgeManifest, read_manifest
from rootfs_forge.audit.inventory import Inventory, take_inventory
from rootfs_forge.audit.licenses import package_licenses
from rootfs_forge.audit.osinfo import purl_distro, read_os_release
from rootfs_forge.audit.privileges import Privileged, privileged_files
from rootfs_forge.audit.sbom import SbomInput
from rootfs_forge.audit.sizes import SizeReport, size_report
from rootfs_forge.audit.target import Target
from rootfs_forge.audit.view import FsView, Node
from rootfs_forge.audit.why import Link, chains_from_dependencies, chains_from_manifest
from rootfs_forge.model import InstalledPackage


@dataclass(frozen=True)
class AuditReport:
    target: Target
    os_release: dict[str, str]
    packages: tuple[InstalledPackage, ...]
    inventory: Inventory
    closure: ClosureReport
    sizes: SizeReport
    forge: bool  # the tree carries forge's manifest
    why: tuple[tuple[Link, ...], ...] | None = None
    why_package: str = ""
    privileged: tuple[Privileged, ...] = ()  # setuid/setgid files and file capabilities

    def as_dict(self) -> dict[str, object]:
        """The JSON form of ``forge audit --json`` (dump with sorted keys)."""
        out: dict[str, object] = {
            "target": {"spec": self.target.spec, "kind": self.target.kind, "ref": self.target.ref,
                       "layers": list(self.target.layers)},
            "os": {k: self.os_release[k] for k in ("ID", "VERSION_ID", "VERSION_CODENAME")
                   if k in self.os_release},
            "forge_manifest": self.forge,
            "packages": [u.as_dict() for u in self.inventory.packages],
            "unowned_files": list(self.inventory.unowned),
            "elf": {
                "checked": len(self.closure.checked),
                "missing": [m.as_dict() for m in self.closure.missing],
                "possibly_dlopened": list(self.closure.unused_libraries),
            },
            "sizes": self.sizes.as_dict(),
            "privileged_files": [{"path": p.path, "setuid": p.setuid, "setgid": p.setgid,
                                  "capabilities": p.capabilities} for p in self.privileged],
        }
        if self.why is not None:
            out["why"] = {"package": self.why_package,
                          "chains": [[link.as_dict() for link in chain] for chain in self.why]}
        return out


def explain(view: FsView, packages: list[InstalledPackage], manifest: ForgeManifest | None,
            pkg: str) -> tuple[tuple[Link, ...], ...]:
    """Why-chains for ``pkg``: forge's why-graph when the tree has one, else reverse dependencies."""
    if manifest is not None and manifest.why:
        chains = chains_from_manifest(manifest.why, pkg)
    else:
        chains = chains_from_dependencies(packages, pkg)
    return tuple(tuple(c) for c in chains)


def _survey(view: FsView) -> tuple[dict[str, Node], list[InstalledPackage], ForgeManifest | None, Inventory]:
    """What the audit and the SBOM both start from: every entry, the dpkg database, forge's manifest (if the
    tree has one) and who owns what."""
    nodes: dict[str, Node] = dict(view.walk())
    packages = read_dpkg_db(view)
    manifest = read_manifest(view)
    return nodes, packages, manifest, take_inventory(view, packages, manifest, nodes)


def audit_target(target: Target, *, top: int = 10, why: str | None = None) -> AuditReport:
    view = target.view
    nodes, packages, manifest, inventory = _survey(view)
    closure = check_closure(view, (p for p, n in nodes.items() if n.kind == "file"))
    sizes = size_report(nodes, inventory, manifest, top)
    chains = explain(view, packages, manifest, why) if why else None
    return AuditReport(target, read_os_release(view), tuple(packages), inventory, closure, sizes,
                       manifest is not None, chains, why or "", tuple(privileged_files(view, nodes)))


def sbom_input(target: Target, *, name: str, source_date_epoch: int | None) -> SbomInput:
    """Gather packages, kept files with their digests, licences and the creation time of an SBOM."""
    view = target.view
    nodes, packages, manifest, inventory = _survey(view)
    kept = {key: tuple(p for p in paths if nodes[p].kind == "file") for key, paths in inventory.kept_files.items()}
    owned = {p for paths in kept.values() for p in paths}
    extra = {path: origin for path, origin in (manifest.files if manifest else {}).items()
             if path not in owned and path in nodes and nodes[path].kind == "file"}
    hashes: dict[str, tuple[str, str]] = {}
    for path in sorted(owned | set(extra)):
        hashes[path] = _digests(view, path)
    os_release = read_os_release(view)
    namespace, distro = purl_distro(os_release)
    created = source_date_epoch if source_date_epoch is not None else max(
        (n.mtime for n in nodes.values()), default=0)
    licenses = {p.key: package_licenses(view, p.name) for p in packages}
    sliced = tuple((s.name, s.version, s.architecture, s.why) for s in (manifest.sliced_away if manifest else ()))
    return SbomInput(name, tuple(packages), kept, hashes, licenses, os_release, created, namespace, distro, extra,
                     sliced)


def _digests(view: FsView, path: str) -> tuple[str, str]:
    sha1, sha256 = hashlib.sha1(), hashlib.sha256()
    with view.open(path) as fh:
        while chunk := fh.read(1 << 20):
            sha1.update(chunk)
            sha256.update(chunk)
    return sha1.hexdigest(), sha256.hexdigest()
