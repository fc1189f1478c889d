"""The dpkg database of a composed tree, for dpkg, dpkg-query, syft and trivy.

Writes ``var/lib/dpkg/status`` (``Status: install ok installed``, dpkg's field order, sorted by package then
architecture), ``info/PKG[:ARCH].list``, ``.md5sums`` and ``.conffiles`` describing exactly the kept files,
and the empty or small files dpkg expects (``arch``, ``available``, ``diversions``, ``triggers/``,
``updates/``; no ``statoverride``: dpkg reads a missing one as empty and dpkg-statoverride makes it for the
first override). Every file goes to a temporary name and is renamed; output depends only on the input.

Rendering is pure (:func:`status_stanza`, :func:`list_file`, :func:`md5sums_file`); :func:`write_dpkg_db` is
the only function that touches the disk.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rootfs_forge.configure.effects.tree import Change, RootDir
from rootfs_forge.errors import RootfsError
from rootfs_forge.model import InstalledPackage
from rootfs_forge.unpack.writer import TreeWriter

ADMINDIR = "/var/lib/dpkg"
# dpkg's own order of known fields (lib/dpkg/parse.c); other fields follow in the order the control file has.
FIELD_ORDER = (
    "Package",
    "Essential",
    "Protected",
    "Status",
    "Priority",
    "Section",
    "Installed-Size",
    "Origin",
    "Maintainer",
    "Bugs",
    "Architecture",
    "Multi-Arch",
    "Source",
    "Version",
    "Config-Version",
    "Replaces",
    "Provides",
    "Depends",
    "Pre-Depends",
    "Recommends",
    "Suggests",
    "Breaks",
    "Conflicts",
    "Enhances",
    "Conffiles",
    "Filename",
    "Size",
    "MD5sum",
    "MSDOS-Filename",
    "Description",
    "Triggers-Pending",
    "Triggers-Awaited",
)
_KNOWN = {f.lower(): f for f in FIELD_ORDER}
_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_ARCH = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_INFO_SUFFIXES = (".list", ".md5sums", ".conffiles")


@dataclass(frozen=True, slots=True)
class DbResult:
    """Paths written and notes (conffiles or files the tree no longer has, files changed since unpacking)."""

    changed: tuple[Change, ...]
    notes: tuple[str, ...] = ()


def _field(name: str, value: str) -> str:
    lines = value.rstrip("\n").split("\n")
    head = lines[0].strip()
    rest = [ln if ln.startswith((" ", "\t")) else " " + ln for ln in lines[1:]]
    rest = [" ." if not ln.strip() else ln for ln in rest]
    return "\n".join([f"{name}: {head}" if head else f"{name}:", *rest])


def status_stanza(pkg: InstalledPackage) -> str:
    """The package's ``status`` stanza (pure): control fields in dpkg's order, Status and Conffiles added."""
    known: dict[str, str] = {}
    other: list[tuple[str, str]] = []
    for k, v in pkg.control.items():
        canon = _KNOWN.get(k.lower())
        if canon in ("Status", "Conffiles", "Config-Version", "Triggers-Pending", "Triggers-Awaited"):
            continue
        if not str(v).strip():
            continue
        if canon:
            known[canon] = str(v)
        else:
            other.append((k, str(v)))
    known["Status"] = "install ok installed"
    if pkg.conffiles:
        known["Conffiles"] = "\n" + "\n".join(f" {p} {md5}" for p, md5 in pkg.conffiles)
    out = [_field(f, known[f]) for f in FIELD_ORDER if f in known]
    out += [_field(k, v) for k, v in other]
    return "\n".join(out) + "\n"


def list_file(files: Iterable[str]) -> str:
    """``info/PKG.list`` (pure): ``/.`` first, then each path once, in the order given."""
    seen: dict[str, None] = {"/.": None}
    for f in files:
        p = posixpath.normpath("/" + f.lstrip("/"))
        seen.setdefault("/." if p == "/" else p, None)
    return "".join(f"{p}\n" for p in seen)


def md5sums_file(entries: Mapping[str, str]) -> str:
    """``info/PKG.md5sums`` (pure): ``md5  relative/path`` lines, in path order."""
    return "".join(f"{entries[p]}  {p.lstrip('/')}\n" for p in sorted(entries, key=lambda p: p.lstrip("/")))


def _validate(packages: Sequence[InstalledPackage], arch: str, foreign: Sequence[str]) -> None:
    problems = []
    for a in (arch, *foreign):
        if not _ARCH.match(a):
            problems.append(f"architecture {a!r} is not valid")
    seen: dict[str, str] = {}
    for p in packages:
        if not _NAME.match(p.name):
            problems.append(f"package name {p.name!r} is not valid")
            continue
        for f in ("Version", "Architecture"):
            if not p.get(f):
                problems.append(f"{p.name} has no {f}")
        if p.architecture and not _ARCH.match(p.architecture):
            problems.append(f"{p.name} has a bad architecture {p.architecture!r}")
        if p.architecture not in ("all", arch, *foreign):
            problems.append(f"{p.name} is {p.architecture}, not a configured architecture")
        key = f"{p.name}:{p.architecture}"
        if key in seen:
            problems.append(f"{p.name} is listed twice")
        elif p.name in seen and (p.db_name == p.name or seen[p.name] == p.name):
            problems.append(f"{p.name} is installed for two architectures but is not Multi-Arch: same")
        seen[key] = p.db_name
        seen.setdefault(p.name, p.db_name)
        for path, md5 in [*p.conffiles, *p.md5sums.items()]:
            if not _MD5.match(md5):
                problems.append(f"{p.name}: md5 {md5!r} of {path} is not valid")
    if problems:
        raise RootfsError("write", "the dpkg database", "; ".join(problems))


def _md5(h: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(h, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _regular(tree: RootDir, path: str) -> Path | None:
    h = tree.host(path, follow_last=False)
    try:
        return h if stat.S_ISREG(os.lstat(h).st_mode) else None
    except (FileNotFoundError, NotADirectoryError):
        return None


def kept_md5sums(tree: RootDir, pkg: InstalledPackage, check_disk: bool) -> tuple[dict[str, str], list[str]]:
    """md5 of every kept regular file that is not a conffile, and notes on files that differ from the
    package."""
    given = {"/" + p.lstrip("/"): m for p, m in pkg.md5sums.items()}
    conffiles = {p for p, _ in pkg.conffiles}
    out: dict[str, str] = {}
    notes: list[str] = []
    for f in pkg.files:
        path = "/" + f.strip("/")
        if path in conffiles or path == "/":
            continue
        if not check_disk:
            # the caller vouches that ``md5sums`` covers every kept regular file (TreeWriter records each one)
            if path in given:
                out[path] = given[path]
            continue
        h = _regular(tree, path)
        if h is None:
            continue
        if path in given:
            out[path] = given[path]
            if check_disk and _md5(h) != given[path]:
                notes.append(f"{pkg.name}: {path} differs from the package's md5sum")
        else:
            out[path] = _md5(h)
    return out, notes


def write_dpkg_db(
    root: Path | TreeWriter,
    packages: Sequence[InstalledPackage],
    arch: str,
    foreign_archs: Sequence[str] = (),
    *,
    epoch: int | None = None,
    set_owners: bool = False,
    check_disk: bool = True,
) -> DbResult:
    """Write the dpkg database into ``root`` (the tree's writer, or a directory). ``check_disk`` re-hashes files
    the package has md5sums for."""
    foreign = [a for a in dict.fromkeys(foreign_archs) if a != arch]
    _validate(packages, arch, foreign)
    tree = RootDir(root, epoch=epoch, set_owners=set_owners)
    changed: list[Change] = []
    notes: list[str] = []
    ordered = sorted(packages, key=lambda p: (p.name, p.architecture))
    info = f"{ADMINDIR}/info"
    dirs = (ADMINDIR, info, f"{ADMINDIR}/triggers", f"{ADMINDIR}/updates", f"{ADMINDIR}/alternatives")
    for d in dirs:
        tree.mkdir(d, 0o755)
    # dpkg names the info files of Multi-Arch: same packages PKG:ARCH.* only in info format 1
    changed.append(tree.write_file(f"{info}/format", b"1\n"))
    stanzas = []
    wanted: set[str] = set()
    for pkg in ordered:
        kept = {"/" + f.strip("/") for f in pkg.files}
        conffiles = tuple((p, m) for p, m in pkg.conffiles if p in kept)
        notes += [
            f"{pkg.name}: conffile {p} is not kept: left out of Conffiles"
            for p, _ in pkg.conffiles
            if p not in kept
        ]
        pkg = InstalledPackage(pkg.control, pkg.files, pkg.md5sums, conffiles)
        sums, differ = kept_md5sums(tree, pkg, check_disk)
        notes += differ
        stanzas.append(status_stanza(pkg))
        base = pkg.db_name
        changed.append(tree.write_file(f"{info}/{base}.list", list_file(pkg.files).encode()))
        changed.append(tree.write_file(f"{info}/{base}.md5sums", md5sums_file(sums).encode()))
        wanted |= {f"{base}.list", f"{base}.md5sums"}
        if conffiles:
            changed.append(
                tree.write_file(f"{info}/{base}.conffiles", "".join(f"{p}\n" for p, _ in conffiles).encode())
            )
            wanted.add(f"{base}.conffiles")
    for stale in tree.listdir(info):
        if stale.endswith(_INFO_SUFFIXES) and stale not in wanted:  # left by an earlier write
            tree.remove(f"{info}/{stale}")
            notes.append(f"removed stale {info}/{stale}")
    changed.append(tree.write_file(f"{ADMINDIR}/status", "".join(s + "\n" for s in stanzas).encode()))
    changed.append(tree.write_file(f"{ADMINDIR}/arch", "".join(f"{a}\n" for a in (arch, *foreign)).encode()))
    for empty in ("available", "diversions", "triggers/File", "triggers/Unincorp"):
        if not tree.lexists(f"{ADMINDIR}/{empty}"):  # the dpkg-info and triggers effects may have filled it
            changed.append(tree.write_file(f"{ADMINDIR}/{empty}", b""))
    changed += [tree.mkdir(d, 0o755) for d in dirs]  # last, so that their mtimes are clamped too
    if not isinstance(root, TreeWriter):  # a writer of our own: its directories get their recorded metadata
        tree.clamp_dir_mtimes()
    return DbResult(tuple(changed), tuple(notes))
