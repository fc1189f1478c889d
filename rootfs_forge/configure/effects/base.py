"""The values every effect takes and returns, and the :func:`effect` decorator that declares one.

No I/O here except :meth:`HostTools.detect`.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rootfs_forge.configure.effects.tree import Change, RootDir
from rootfs_forge.recipe import Account
from rootfs_forge.unpack.writer import TreeWriter

SCRIPT_NAMES = ("preinst", "postinst", "prerm", "postrm", "config")


@dataclass(frozen=True, slots=True)
class PackageInfo:
    """An extracted package: its control fields, maintainer scripts (name → text) and kept paths."""

    name: str
    control: Mapping[str, str] = field(default_factory=dict)
    scripts: Mapping[str, str] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    control_files: Mapping[str, bytes] = field(default_factory=dict)  # every file of control.tar, raw
    sha256: str = ""  # of the .deb: names what is cached of it (compiled bytecode)


@dataclass(frozen=True, slots=True)
class EffectOptions:
    """The recipe's say in the effects."""

    accounts: tuple[Account, ...] = ()
    alternatives: Mapping[str, str] = field(default_factory=dict)  # name -> chosen path
    sh: str | None = None  # "dash" | "bash" | None (dash when present)
    timezone: str = "UTC"
    hostname: str | None = None  # None: keep a shipped /etc/hostname, else write "localhost"
    locales: tuple[str, ...] = ()
    busybox_links: bool = False
    bytecode: bool = True
    suite: str = ""  # codename, for an os-release written when base-files is absent
    recipe_name: str = ""
    control_files: str = "auto"  # keep | drop | auto (keep when dpkg is in the image)
    literal_scripts: bool = True  # apply maintainer-script commands whose arguments are all literal
    release_version: str = ""  # the suite's Release "Version" (os-release VERSION_ID without base-files)

    @classmethod
    def from_recipe(cls, recipe: Any, suite: str = "", release_version: str = "") -> EffectOptions:
        """Options from a ``rootfs_forge.recipe.Recipe`` (read by attribute; "" means unset there)."""
        return cls(
            accounts=tuple(getattr(recipe, "accounts", ())),
            alternatives=dict(getattr(recipe, "alternatives", ())),
            sh=getattr(recipe, "sh", "") or None,
            timezone=getattr(recipe, "timezone", "") or "UTC",
            hostname=getattr(recipe, "hostname", "") or None,
            locales=tuple(getattr(recipe, "locales", ())),
            busybox_links=bool(getattr(recipe, "busybox_links", False)),
            bytecode=bool(getattr(recipe, "bytecode", True)),
            suite=suite,
            recipe_name=getattr(recipe, "name", ""),
            control_files=getattr(recipe, "control_files", "") or "auto",
            literal_scripts=bool(getattr(recipe, "literal_scripts", True)),
            release_version=release_version,
        )


@dataclass(frozen=True, slots=True)
class HostTools:
    """What the build host offers: its dpkg architecture and the tools effects may run."""

    architecture: str | None = None
    ldconfig: str | None = None
    openssl: str | None = None
    bwrap: str | None = None  # bubblewrap, to run an image's own binary sandboxed inside the image
    privileged: bool = False  # running as root (ldconfig -r chroots)

    @classmethod
    def detect(cls) -> HostTools:
        dpkg = shutil.which("dpkg")
        arch = _dpkg_architecture(dpkg) if dpkg else None
        ldconfig = next((p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if Path(p).is_file()), None)
        return cls(arch, ldconfig, shutil.which("openssl"), shutil.which("bwrap"), os.geteuid() == 0)


@functools.cache
def _dpkg_architecture(dpkg: str) -> str | None:
    """``dpkg --print-architecture``, asked once a process (a compose asks for every tree it builds)."""
    done = subprocess.run([dpkg, "--print-architecture"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or None if done.returncode == 0 else None


@dataclass(frozen=True, slots=True)
class EffectContext:
    """Everything an effect may look at. ``set_owners`` chowns on disk (only possible as root)."""

    root: Path
    packages: Mapping[str, PackageInfo]
    architecture: str
    host: HostTools = HostTools()
    epoch: int | None = None
    options: EffectOptions = EffectOptions()
    set_owners: bool = False
    fs: TreeWriter | None = None  # the writer of the tree (the one record of it); None: read from disk
    cache_dir: Path | None = None  # where effects keep what they derive from packages (bytecode)

    def tree(self) -> RootDir:
        return RootDir(self.fs if self.fs is not None else self.root, epoch=self.epoch, set_owners=self.set_owners)

    def has(self, name: str) -> bool:
        return name in self.packages


@dataclass(frozen=True, slots=True)
class EffectResult:
    """What an effect did. ``skipped`` non-empty: it did not do its work, and that is why."""

    changed: tuple[Change, ...] = ()
    messages: tuple[str, ...] = ()
    skipped: str = ""
    unhandled: tuple[str, ...] = ()  # "pkg/script" whose calls of the effect's commands it could not emulate


@dataclass(frozen=True, slots=True)
class Effect:
    """A named stand-in for what maintainer scripts would have done.

    ``packages``: the effect runs when any of them is installed (empty: always). ``scripts``: whole scripts it
    stands in for (``"dash/postinst"``). ``commands``: commands in any script it stands in for.
    """

    name: str
    summary: str
    apply: Callable[[EffectContext], EffectResult]
    packages: tuple[str, ...] = ()
    scripts: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()

    def applies(self, ctx: EffectContext) -> bool:
        return not self.packages or any(ctx.has(p) for p in self.packages)


Apply = Callable[[EffectContext], EffectResult]


class Registry:
    """The effects declared with :meth:`effect`, by name; :meth:`ordered` lists them in the order they run."""

    __slots__ = ("_by_name",)

    def __init__(self) -> None:
        self._by_name: dict[str, Effect] = {}

    def effect(
        self,
        name: str,
        summary: str,
        *,
        packages: tuple[str, ...] = (),
        scripts: tuple[str, ...] = (),
        commands: tuple[str, ...] = (),
    ) -> Callable[[Apply], Apply]:
        """Declare the decorated ``apply(ctx)`` as the effect ``name`` (see :class:`Effect` for the rest); the
        function itself is returned unchanged. A second effect of the same name, or a ``scripts`` entry that is
        not ``"package/<maintainer script>"``, is refused."""
        for key in scripts:
            if key.count("/") != 1 or key.partition("/")[2] not in SCRIPT_NAMES:
                raise ValueError(f"effect {name}: {key!r} is not package/<maintainer script>")

        def register(apply: Apply) -> Apply:
            old = self._by_name.get(name)
            if old is not None and (old.apply.__module__, old.apply.__qualname__) != (
                apply.__module__,
                apply.__qualname__,
            ):  # the same function again is a reload of its module
                raise ValueError(f"effect {name} is declared twice: {old.apply.__module__}, {apply.__module__}")
            self._by_name[name] = Effect(name, summary, apply, packages, scripts, commands)
            return apply

        return register

    def ordered(self, names: Sequence[str]) -> tuple[Effect, ...]:
        """The declared effects in the order ``names`` gives, which must name each of them exactly once."""
        if sorted(names) != sorted(self._by_name):
            unknown = sorted(set(names) - set(self._by_name))
            unordered = sorted(set(self._by_name) - set(names))
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(
                f"effect order does not match the declared effects: unknown {unknown}, not ordered {unordered},"
                f" named twice {twice}"
            )
        return tuple(self._by_name[n] for n in names)


REGISTRY = Registry()
effect = REGISTRY.effect
