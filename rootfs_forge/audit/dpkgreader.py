"""Read the dpkg database of a tree: ``var/lib/dpkg/status`` or the distroless ``status.d/*`` layout.

Only installed packages count (``Status: … installed``, or no Status field at all in ``status.d``, which
distroless and rules_distroless write without one). Their file lists come from ``info/<pkg>[:<arch>].list``;
``*.md5sums`` and ``*.conffiles`` are read when present. In ``status.d`` the ``<pkg>.md5sums`` next to the entry
is also the file list, as syft reads it.
"""

from __future__ import annotations

from rootfs_forge.audit.view import FsView, read_bytes
from rootfs_forge.errors import AuditError
from rootfs_forge.model import InstalledPackage
from rootfs_forge.util.deb822 import Deb822

ADMINDIR = "/var/lib/dpkg"


def _text(view: FsView, path: str) -> str | None:
    node = view.lstat(path)
    if node is None or node.kind != "file":
        return None
    return read_bytes(view, path).decode("utf-8", "replace")


def _info_file(view: FsView, infodir: str, name: str, arch: str, suffix: str) -> str | None:
    for base in (f"{name}:{arch}", name):
        text = _text(view, f"{infodir}/{base}.{suffix}")
        if text is not None:
            return text
    return None


def _md5sums(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (text or "").splitlines():
        digest, _, path = line.strip().partition(" ")
        path = path.strip()
        if digest and path:
            out["/" + path.lstrip("/")] = digest
    return out


def _lines(text: str | None) -> tuple[str, ...]:
    return tuple(line.strip() for line in (text or "").splitlines() if line.strip())


def _installed(stanza: Deb822, *, status_d: bool) -> bool:
    status = stanza.get("Status", "")
    if not status:
        return status_d
    words = status.split()
    return len(words) == 3 and words[2] in ("installed", "half-configured", "unpacked", "triggers-awaited",
                                            "triggers-pending") and words[0] != "purge"


def _package(stanza: Deb822, files: tuple[str, ...], md5: dict[str, str],
             conffiles: tuple[str, ...]) -> InstalledPackage:
    pairs = tuple((words[0], words[1] if len(words) > 1 else "") for words in map(str.split, conffiles) if words)
    return InstalledPackage(control=dict(stanza), files=files, md5sums=md5, conffiles=pairs)


def read_dpkg_db(view: FsView, admindir: str = ADMINDIR) -> list[InstalledPackage]:
    """Every installed package in the tree, sorted by (name, architecture). Empty when there is no database."""
    packages: dict[str, InstalledPackage] = {}
    status = _text(view, f"{admindir}/status")
    infodir = f"{admindir}/info"
    if status is not None:
        for stanza in _stanzas(status, f"{admindir}/status"):
            if not _installed(stanza, status_d=False):
                continue
            name, arch = stanza["Package"].strip(), stanza.get("Architecture", "").strip()
            md5 = _md5sums(_info_file(view, infodir, name, arch, "md5sums"))
            files = _lines(_info_file(view, infodir, name, arch, "list")) or tuple(sorted(md5))
            pkg = _package(stanza, files, md5, _lines(_info_file(view, infodir, name, arch, "conffiles")))
            packages[pkg.key] = pkg
    status_d = f"{admindir}/status.d"
    for entry in view.listdir(status_d):
        if entry.endswith((".md5sums", ".list", ".conffiles")):
            continue
        text = _text(view, f"{status_d}/{entry}")
        if text is None:
            continue
        for stanza in _stanzas(text, f"{status_d}/{entry}"):
            if not _installed(stanza, status_d=True):
                continue
            name, arch = stanza["Package"].strip(), stanza.get("Architecture", "").strip()
            md5 = _md5sums(_text(view, f"{status_d}/{entry}.md5sums")
                           or _info_file(view, status_d, name, arch, "md5sums"))
            files = _lines(_info_file(view, infodir, name, arch, "list")) or tuple(sorted(md5))
            pkg = _package(stanza, files, md5, ())
            packages.setdefault(pkg.key, pkg)
    return [packages[k] for k in sorted(packages, key=lambda k: (packages[k].name, packages[k].architecture))]


def _stanzas(text: str, where: str) -> list[Deb822]:
    out = []
    for stanza in Deb822.iter_paragraphs(text.splitlines(keepends=True)):
        if not stanza:
            continue
        if "Package" not in stanza:
            raise AuditError("read", where, f"a stanza has no Package field: {next(iter(stanza.keys()), '?')}")
        out.append(stanza)
    return out

