"""Plain values handed between pipeline stages. No I/O here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Package:
    """One binary package stanza from a verified ``Packages`` index.

    Relation fields keep the raw text of the stanza; ``rootfs_forge.resolve.relations`` parses them on demand, so an
    index of 60,000 stanzas costs nothing until a resolve touches a package.
    """

    name: str
    version: str
    architecture: str
    filename: str
    size: int
    sha256: str
    multi_arch: str = "no"  # no | same | foreign | allowed
    essential: bool = False
    priority: str = "optional"
    depends: str = ""
    pre_depends: str = ""
    recommends: str = ""
    conflicts: str = ""
    breaks: str = ""
    provides: str = ""
    replaces: str = ""
    installed_size: int = 0  # KiB, as the index declares it
    source: str = ""  # source package name (without version); empty means the same as ``name``
    section: str = ""
    description: str = ""
    origin: str = ""  # the SourceEntry id (url + suite + component) the stanza came from
    base_url: str = ""  # archive root URL the Filename is relative to
    suite: str = ""

    @property
    def key(self) -> str:
        """``name:arch``, unique within a resolution."""
        return f"{self.name}:{self.architecture}"

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/" + self.filename

    @property
    def source_name(self) -> str:
        return (self.source.split(" ", 1)[0] if self.source else self.name) or self.name


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a package is in a resolution: the parent that pulled it in and the relation that did."""

    parent: str | None  # package name:arch, None for a package the recipe requested
    relation: str  # e.g. "Depends: libc6 (>= 2.34)" or "requested"


@dataclass(frozen=True, slots=True)
class Resolution:
    """The resolver's result: the chosen set, an install order and the why-graph."""

    packages: tuple[Package, ...]  # sorted by (name, architecture)
    order: tuple[str, ...]  # package keys, Pre-Depends first
    why: dict[str, tuple[Reason, ...]] = field(default_factory=dict)  # key -> reasons
    requested: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # human-readable explanations of choices (alternatives, providers, overrides)

    def by_name(self) -> dict[str, Package]:
        return {p.name: p for p in self.packages}


class IndexView(Protocol):
    """What the resolver needs from a package index. ``rootfs_forge.index.packages`` implements it over the cache."""

    def packages(self, name: str) -> Sequence[Package]:
        """Every real stanza named ``name``: all versions, architectures and sources."""
        ...

    def providers(self, name: str) -> Sequence[Package]:
        """Every stanza whose ``Provides`` names ``name`` (versioned or not)."""
        ...

    def essential(self) -> Sequence[Package]:
        """Every stanza with ``Essential: yes``."""
        ...


class MemoryIndex:
    """An ``IndexView`` over packages held in memory (tests, small local repositories)."""

    def __init__(self, packages: Iterable[Package]) -> None:
        import re

        self._by_name: dict[str, list[Package]] = {}
        self._by_provided: dict[str, list[Package]] = {}
        self._essential: list[Package] = []
        for p in packages:
            self._by_name.setdefault(p.name, []).append(p)
            for item in filter(None, (s.strip() for s in p.provides.split(","))):
                provided = re.split(r"[\s(:]", item, maxsplit=1)[0]
                self._by_provided.setdefault(provided, []).append(p)
            if p.essential:
                self._essential.append(p)

    def packages(self, name: str) -> Sequence[Package]:
        return self._by_name.get(name, ())

    def providers(self, name: str) -> Sequence[Package]:
        return self._by_provided.get(name, ())

    def essential(self) -> Sequence[Package]:
        return self._essential

    def names(self) -> list[str]:
        return sorted(self._by_name)


@dataclass(frozen=True, slots=True)
class ResolveRequest:
    """What a recipe asks the resolver for."""

    packages: tuple[str, ...]  # "name", "name=version", "name:arch", "name:arch=version"
    architecture: str  # the image's (native) architecture
    foreign_architectures: tuple[str, ...] = ()
    recommends: bool = False
    essential: bool = False
    prefer: tuple[str, ...] = ()  # steer alternatives and virtual providers
    exclude: tuple[str, ...] = ()  # never install these
    strategy: str = "apt"  # apt | smallest
    merged_usr: bool = True  # forge lays out merged /usr itself: prefer usr-is-merged over usrmerge
    suite_priority: tuple[tuple[str, int], ...] = ()  # apt-style pins by suite (higher wins before version)
    # (name, arch, version): that version is the candidate while the index has it (forge lock --update PKG…
    # holds every other locked package at its locked version)
    hold: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class InstalledPackage:
    """A package as the dpkg database of a tree records it: what ``configure.dpkgwriter`` writes for a
    composed tree and what ``audit.dpkgreader`` reads back from any tree.

    ``control``: the control fields (the .deb's own, or the ``status`` stanza's). ``files``: paths in dpkg
    ``.list`` form (absolute, ``/.`` first, directories included, in archive order). ``md5sums``: path → md5
    hex (paths with or without a leading slash; the writer hashes kept regular files missing from it).
    ``conffiles``: (path, md5). The named fields are read from ``control``.
    """

    control: Mapping[str, str]
    files: tuple[str, ...] = ()
    md5sums: Mapping[str, str] = field(default_factory=dict)
    conffiles: tuple[tuple[str, str], ...] = ()
    # read from ``control`` once: sorting and graph building ask for them thousands of times
    name: str = field(init=False, compare=False, repr=False)
    version: str = field(init=False, compare=False, repr=False)
    architecture: str = field(init=False, compare=False, repr=False)
    key: str = field(init=False, compare=False, repr=False)
    depends: str = field(init=False, compare=False, repr=False)  # relation fields with white space folded
    pre_depends: str = field(init=False, compare=False, repr=False)
    provides: str = field(init=False, compare=False, repr=False)
    essential: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        name, arch = self.get("Package"), self.get("Architecture")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "version", self.get("Version"))
        object.__setattr__(self, "architecture", arch)
        object.__setattr__(self, "key", f"{name}:{arch}")
        for attr, name_ in (("depends", "Depends"), ("pre_depends", "Pre-Depends"), ("provides", "Provides")):
            object.__setattr__(self, attr, " ".join(self.get(name_).split()))
        object.__setattr__(self, "essential", self.get("Essential").lower() == "yes")

    def get(self, name: str) -> str:
        """The control field ``name`` (case-insensitive, as in deb822), stripped; "" when absent."""
        value = self.control.get(name)
        if value is None:
            lower = name.lower()
            value = next((v for k, v in self.control.items() if k.lower() == lower), "")
        return str(value).strip()

    @property
    def db_name(self) -> str:
        """The name dpkg gives the package's info files: ``name:arch`` for ``Multi-Arch: same``."""
        return f"{self.name}:{self.architecture}" if self.multi_arch.lower() == "same" else self.name

    @property
    def source(self) -> str:
        """The source package's name (``name`` when the stanza has no Source)."""
        return self.get("Source").partition(" ")[0] or self.name

    @property
    def source_version(self) -> str:
        """The source package's version (``Source: name (version)``, else the binary's version)."""
        return self.get("Source").partition(" ")[2].strip("() ") or self.version

    @property
    def priority(self) -> str:
        return self.get("Priority")

    @property
    def multi_arch(self) -> str:
        return self.get("Multi-Arch")

    @property
    def installed_size_kib(self) -> int:
        size = self.get("Installed-Size")
        return int(size) if size.isdigit() else 0
