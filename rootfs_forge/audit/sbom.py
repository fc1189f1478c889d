"""Software bills of materials of a tree: SPDX 2.3 JSON and CycloneDX 1.5 JSON.

Every installed package becomes a package/component with a purl
``pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=debian-VERSION_ID`` (the version percent-encoded per the purl
spec: ``1:2.3+b1`` → ``1%3A2.3%2Bb1``), its licences from the DEP-5 copyright file and, for SPDX, a file
element (SHA-1 and SHA-256: SPDX 2.3 requires SHA-1) for each regular file it keeps in the tree. Dependencies
are the Depends/Pre-Depends edges resolved inside the installed set.

Output is deterministic: everything is sorted; the creation time is ``SOURCE_DATE_EPOCH`` when given, else
the newest mtime in the tree. The SPDX ``documentNamespace`` and the CycloneDX ``serialNumber`` are UUIDv5
values derived from the document's own content (purls and file digests), so the same tree always yields the
same document and different trees different ones: ``https://spdx.org/spdxdocs/rootfs-forge/<name>-<uuid>``.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from rootfs_forge import __version__
from rootfs_forge.audit.licenses import PackageLicenses
from rootfs_forge.audit.why import depends_graph
from rootfs_forge.model import InstalledPackage
from rootfs_forge.util.canonical import canonical_json

TOOL = f"rootfs-forge-{__version__}"
NAMESPACE_BASE = "https://spdx.org/spdxdocs/rootfs-forge/"


@dataclass(frozen=True)
class SbomInput:
    """Everything an SBOM says, gathered from a tree (see :func:`rootfs_forge.audit.report.sbom_input`).."""

    name: str
    packages: Sequence[InstalledPackage]
    kept_files: dict[str, tuple[str, ...]]  # package key -> regular files it keeps
    hashes: dict[str, tuple[str, str]]  # path -> (sha1, sha256)
    licenses: dict[str, PackageLicenses]  # package key -> licences
    os_release: dict[str, str]
    created: int  # seconds since the epoch
    namespace: str = "debian"
    distro: str = ""
    # regular files no package owns but forge's manifest accounts for: path -> origin (a recipe [[file]]'s
    # source name, or "effect:NAME" for what an emulated maintainer-script effect wrote)
    extra_files: dict[str, str] = field(default_factory=dict)
    # packages the compose resolved but of which no file is in the image: (name, version, arch, why); recorded
    # as sliced away (an SPDX annotation, a CycloneDX property), never as installed components
    sliced_away: tuple[tuple[str, str, str, str], ...] = ()


def purl(name: str, version: str, arch: str, namespace: str = "debian", distro: str = "") -> str:
    """The package URL of a Debian binary package (purl spec: version and qualifier values percent-encoded)."""
    enc = lambda s: quote(s, safe=".-_~")  # noqa: E731 - only unreserved characters stay literal
    quals = [f"arch={enc(arch)}"] + ([f"distro={enc(distro)}"] if distro else [])
    return f"pkg:deb/{namespace}/{enc(name)}@{enc(version)}?{'&'.join(sorted(quals))}"


def _spdx_file(fid: str, path: str, digests: tuple[str, str]) -> dict[str, object]:
    sha1, sha256 = digests
    return {
        "SPDXID": fid,
        "fileName": "." + path,
        "checksums": [{"algorithm": "SHA1", "checksumValue": sha1}, {"algorithm": "SHA256", "checksumValue": sha256}],
        "licenseConcluded": "NOASSERTION",
        "copyrightText": "NOASSERTION",
    }


def _origin_text(origin: str) -> str:
    if origin.startswith("effect:"):
        return f"written by forge's {origin.split(':', 1)[1]} effect (emulated maintainer script)"
    return f"local file {origin} added by the recipe ([[file]])"


def _iso(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ident(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-") or "x"


def _spdx_pkg_id(key: str) -> str:
    return f"SPDXRef-Package-{_ident(key)}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def _spdx_file_id(path: str) -> str:
    return f"SPDXRef-File-{hashlib.sha256(path.encode()).hexdigest()[:16]}"


def _content_uuid(inp: SbomInput) -> uuid.UUID:
    """A UUIDv5 of the tree's package set and file digests: stable per tree, distinct between trees."""
    content = canonical_json({
        "name": inp.name,
        "packages": [purl(p.name, p.version, p.architecture, inp.namespace, inp.distro) for p in inp.packages],
        "files": sorted(inp.hashes.items()),
        "created": inp.created,
    }, ensure_ascii=True)
    return uuid.uuid5(uuid.NAMESPACE_URL, NAMESPACE_BASE + hashlib.sha256(content).hexdigest())


def _sorted_packages(inp: SbomInput) -> list[InstalledPackage]:
    return sorted(inp.packages, key=lambda p: (p.name, p.architecture))


def spdx_document(inp: SbomInput) -> dict[str, object]:
    """An SPDX 2.3 document (JSON-ready dict)."""
    packages = []
    files: dict[str, dict[str, object]] = {}
    relationships: list[dict[str, str]] = []
    extracted: dict[str, dict[str, object]] = {}
    keys = {p.key for p in inp.packages}
    for pkg in _sorted_packages(inp):
        pid = _spdx_pkg_id(pkg.key)
        lic = inp.licenses.get(pkg.key, PackageLicenses())
        declared = " AND ".join(lic.ids) if lic.ids else "NOASSERTION"
        own = [p for p in inp.kept_files.get(pkg.key, ()) if p in inp.hashes]
        entry: dict[str, object] = {
            "SPDXID": pid,
            "name": pkg.name,
            "versionInfo": pkg.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": bool(own),
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": declared,
            "copyrightText": "NOASSERTION",
            "sourceInfo": f"built package from: {pkg.source} {pkg.source_version}",
            "primaryPackagePurpose": "LIBRARY",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl(pkg.name, pkg.version, pkg.architecture, inp.namespace, inp.distro),
            }],
        }
        if own:
            # SPDX 2.3 §7.9: SHA-1 over the sorted, concatenated SHA-1s of the package's files
            entry["packageVerificationCode"] = {"packageVerificationCodeValue": hashlib.sha1(
                "".join(sorted(inp.hashes[p][0] for p in own)).encode()).hexdigest()}
        packages.append(entry)
        for ref in lic.ids:
            if ref.startswith("LicenseRef-"):
                extracted[ref] = {"licenseId": ref, "name": lic.names.get(ref, ref),
                                  "extractedText": lic.texts.get(ref) or lic.names.get(ref, ref)}
        relationships.append({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                              "relatedSpdxElement": pid})
        for path in own:
            fid = _spdx_file_id(path)
            files[fid] = _spdx_file(fid, path, inp.hashes[path])
            relationships.append({"spdxElementId": pid, "relationshipType": "CONTAINS", "relatedSpdxElement": fid})
    for path, origin in sorted(inp.extra_files.items()):
        if path not in inp.hashes:
            continue
        fid = _spdx_file_id(path)
        files[fid] = {**_spdx_file(fid, path, inp.hashes[path]),
                      "comment": f"not from a package: {_origin_text(origin)}"}
        relationships.append({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                              "relatedSpdxElement": fid})
    for key, deps in sorted(depends_graph(list(inp.packages)).items()):
        for dep in sorted({d for d, _ in deps if d in keys}):
            relationships.append({"spdxElementId": _spdx_pkg_id(key), "relationshipType": "DEPENDS_ON",
                                  "relatedSpdxElement": _spdx_pkg_id(dep)})
    doc: dict[str, object] = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": inp.name,
        "documentNamespace": f"{NAMESPACE_BASE}{_ident(inp.name)}-{_content_uuid(inp)}",
        "creationInfo": {"created": _iso(inp.created), "creators": [f"Tool: {TOOL}"]},
        "packages": packages,
        "files": [files[k] for k in sorted(files, key=lambda k: str(files[k]["fileName"]))],
        "relationships": sorted(relationships, key=lambda r: (r["spdxElementId"], r["relationshipType"],
                                                              r["relatedSpdxElement"])),
    }
    if extracted:
        doc["hasExtractedLicensingInfos"] = [extracted[k] for k in sorted(extracted)]
    if inp.sliced_away:
        doc["annotations"] = [{"annotationType": "OTHER", "annotator": f"Tool: {TOOL}",
                               "annotationDate": _iso(inp.created), "comment": _sliced_text(s)}
                              for s in sorted(inp.sliced_away)]
    return doc


def _sliced_text(s: tuple[str, str, str, str]) -> str:
    name, version, arch, why = s
    return f"sliced away: {name} {version} ({arch}) is not in the image: {why}"


def cyclonedx_document(inp: SbomInput, *, with_files: bool = True) -> dict[str, object]:
    """A CycloneDX 1.5 BOM (JSON-ready dict). Kept files are nested under their package as ``file`` components."""
    components = []
    refs = {p.key: purl(p.name, p.version, p.architecture, inp.namespace, inp.distro) for p in inp.packages}
    for pkg in _sorted_packages(inp):
        lic = inp.licenses.get(pkg.key, PackageLicenses())
        comp: dict[str, object] = {
            "type": "library",
            "bom-ref": refs[pkg.key],
            "name": pkg.name,
            "version": pkg.version,
            "purl": refs[pkg.key],
            "properties": sorted([
                {"name": "deb:architecture", "value": pkg.architecture},
                {"name": "deb:source", "value": f"{pkg.source} {pkg.source_version}".strip()},
            ], key=lambda p: p["name"]),
        }
        if lic.ids:
            comp["licenses"] = [
                {"license": {"name": lic.names.get(i, i)} if i.startswith("LicenseRef-") else {"id": i}}
                for i in lic.ids
            ]
        if with_files:
            nested = [
                {"type": "file", "name": path,
                 "hashes": [{"alg": "SHA-1", "content": inp.hashes[path][0]},
                            {"alg": "SHA-256", "content": inp.hashes[path][1]}]}
                for path in inp.kept_files.get(pkg.key, ()) if path in inp.hashes
            ]
            if nested:
                comp["components"] = nested
        components.append(comp)
    for path, origin in sorted(inp.extra_files.items()):
        if path in inp.hashes:
            components.append({
                "type": "file", "bom-ref": f"file:{path}", "name": path,
                "hashes": [{"alg": "SHA-1", "content": inp.hashes[path][0]},
                           {"alg": "SHA-256", "content": inp.hashes[path][1]}],
                "properties": [{"name": "forge:origin", "value": _origin_text(origin)}],
            })
    dependencies = [
        {"ref": refs[key], "dependsOn": sorted({refs[d] for d, _ in deps if d in refs})}
        for key, deps in sorted(depends_graph(list(inp.packages)).items(), key=lambda kv: refs[kv[0]])
    ]
    metadata: dict[str, object] = {
        "timestamp": _iso(inp.created),
        "tools": {"components": [{"type": "application", "name": "rootfs-forge", "version": __version__}]},
        "component": {"type": "container", "bom-ref": f"image:{_ident(inp.name)}", "name": inp.name},
    }
    properties = [{"name": f"os-release:{k}", "value": inp.os_release[k]}
                  for k in ("ID", "VERSION_ID", "VERSION_CODENAME") if inp.os_release.get(k)]
    properties += [{"name": "forge:sliced-away", "value": _sliced_text(s)} for s in sorted(inp.sliced_away)]
    if properties:
        metadata["properties"] = properties
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{_content_uuid(inp)}",
        "version": 1,
        "metadata": metadata,
        "components": components,
        "dependencies": dependencies,
    }
