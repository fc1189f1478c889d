"""Where packages come from: the recipe's ``[[source]]`` tables, or else the host's apt sources.

Reads deb822 ``*.sources`` files (Types, URIs, Suites, Components, Architectures, Signed-By, Check-Valid-Until,
Enabled) and one-line ``sources.list`` entries (``deb [arch=… signed-by=… check-valid-until=…] URI SUITE
COMPONENT…``). ``deb-src`` is ignored. For the host's sources, apt's own ``Acquire::Check-Valid-Until`` is
honoured as apt does (a per-source option wins over it).

A source may name a ``snapshot`` (a timestamp): its indexes are then read from a snapshot archive, at
``snapshot_url`` (a pattern with ``{archive}``, the last path component of the source's URL, and ``{snapshot}``;
Debian's snapshot service lays its archive out as ``https://HOST/archive/{archive}/{snapshot}``). The recipe
names the snapshot archive, as it names its mirror: no archive host is built into forge.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rootfs_forge.errors import SourceError
from rootfs_forge.recipe import Source
from rootfs_forge.util.deb822 import Deb822

DEFAULT_KEYRINGS = (
    "/usr/share/keyrings/debian-archive-keyring.gpg",
    "/usr/share/keyrings/debian-archive-removed-keys.gpg",
)


@dataclass(frozen=True, slots=True)
class SourceEntry:
    """One archive suite: the unit that has an InRelease."""

    url: str  # archive root, no trailing slash
    suite: str
    components: tuple[str, ...]
    architectures: tuple[str, ...] = ()  # empty: whatever the image needs
    keyring: str | None = None  # a path, or an inline armored key block (deb822 Signed-By)
    mirrors: tuple[str, ...] = ()
    priority: int = 500
    allow_insecure: bool = False
    snapshot: str = ""
    snapshot_url: str = ""
    check_valid_until: bool = True

    @property
    def id(self) -> str:
        return f"{self.url} {self.suite}"

    @property
    def snapshot_base(self) -> str:
        """The archive root of this source's snapshot ("" when it names none)."""
        if not self.snapshot:
            return ""
        archive = self.url.rstrip("/").rsplit("/", 1)[-1]
        return self.snapshot_url.format(archive=archive, snapshot=self.snapshot).rstrip("/")

    @property
    def index_bases(self) -> tuple[str, ...]:
        """Where the suite's InRelease and Packages are read: the snapshot only, when there is one."""
        return (self.snapshot_base,) if self.snapshot else (self.url, *self.mirrors)

    @property
    def relaxed_valid_until(self) -> bool:
        """Valid-Until is not checked: a snapshot (its Release expired long ago, by design) or an explicit
        ``check_valid_until = false`` / apt's ``Acquire::Check-Valid-Until``."""
        return bool(self.snapshot) or not self.check_valid_until

    @property
    def flat(self) -> bool:
        return self.suite.endswith("/")


def from_recipe(sources: Iterable[Source]) -> list[SourceEntry]:
    out = []
    for s in sources:
        for suite in s.suites:
            out.append(SourceEntry(
                url=s.url.rstrip("/"), suite=suite, components=s.components, architectures=s.architectures,
                keyring=s.keyring, mirrors=tuple(m.rstrip("/") for m in s.mirrors), priority=s.priority,
                allow_insecure=s.allow_insecure, snapshot=s.snapshot, snapshot_url=s.snapshot_url,
                check_valid_until=s.check_valid_until,
            ))
    return out


def host_sources(etc_apt: Path = Path("/etc/apt")) -> list[SourceEntry]:
    """The host's enabled ``deb`` sources, in apt's reading order (sources.list, then sources.list.d sorted)."""
    entries: list[SourceEntry] = []
    check = apt_check_valid_until(etc_apt)
    main = etc_apt / "sources.list"
    if main.is_file():
        entries += parse_one_line(main.read_text(encoding="utf-8", errors="replace"), str(main), check)
    d = etc_apt / "sources.list.d"
    if d.is_dir():
        for f in sorted(d.iterdir()):
            if f.suffix == ".list":
                entries += parse_one_line(f.read_text(encoding="utf-8", errors="replace"), str(f), check)
            elif f.suffix == ".sources":
                entries += parse_deb822(f.read_text(encoding="utf-8", errors="replace"), str(f), check)
    if not entries:
        raise SourceError("find", "apt sources", f"no enabled 'deb' entry in {etc_apt}; add a [[source]] to the recipe")
    return entries


_APT_BOOL = {"1": True, "yes": True, "true": True, "with": True, "on": True, "enable": True,
             "0": False, "no": False, "false": False, "without": False, "off": False, "disable": False}


def apt_bool(value: str | None) -> bool | None:
    """apt's reading of a boolean option (StringToBool), None when unset or not a boolean."""
    return _APT_BOOL.get(value.strip().strip('"').lower()) if value is not None else None


def _apt_conf_state(etc_apt: Path) -> tuple[object, ...]:
    """What apt-config's answer depends on: the configuration files under ``etc_apt`` (names, sizes, mtimes,
    inodes) and where ``apt-config`` is found."""
    state: list[object] = [str(etc_apt.absolute()), os.environ.get("PATH", "")]
    for path in (etc_apt / "apt.conf", etc_apt / "apt.conf.d"):
        try:
            st = path.stat()
            state.append((path.name, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            state.append((path.name,))
    with contextlib.suppress(OSError):
        for part in sorted(os.scandir(etc_apt / "apt.conf.d"), key=lambda e: e.name):
            st = part.stat()
            state.append((part.name, st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(state)


_CHECK_VALID_UNTIL: dict[tuple[object, ...], bool] = {}


def apt_check_valid_until(etc_apt: Path = Path("/etc/apt")) -> bool:
    """apt's ``Acquire::Check-Valid-Until`` as apt itself reads it from ``etc_apt`` (apt.conf, apt.conf.d):
    asked of ``apt-config`` with ``Dir::Etc`` pointed there. True (apt's default) when apt-config is missing.
    Asked once while the configuration stays the same (every recipe of a gallery compose reads the host's
    sources; apt-config costs a process and a dpkg of its own)."""
    state = _apt_conf_state(etc_apt)
    if state not in _CHECK_VALID_UNTIL:
        _CHECK_VALID_UNTIL[state] = _ask_apt_config(etc_apt)
    return _CHECK_VALID_UNTIL[state]


def _ask_apt_config(etc_apt: Path) -> bool:
    with tempfile.NamedTemporaryFile("w", prefix="forge-apt-", suffix=".conf") as conf:
        conf.write(f'Dir::Etc "{etc_apt.absolute()}/";\n')
        conf.flush()
        try:
            out = subprocess.run(["apt-config", "dump", "Acquire::Check-Valid-Until"], capture_output=True,
                                 text=True, timeout=30, env={**os.environ, "APT_CONFIG": conf.name}).stdout
        except (OSError, subprocess.SubprocessError):
            return True
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        if key == "Acquire::Check-Valid-Until":
            parsed = apt_bool(value.rstrip(";"))
            return True if parsed is None else parsed
    return True


def _words(value: str | None) -> list[str]:
    return value.split() if value else []


def parse_deb822(text: str, origin: str, check_valid_until: bool = True) -> list[SourceEntry]:
    """``check_valid_until``: apt's global setting, which a stanza's Check-Valid-Until overrides."""
    out = []
    for n, para in enumerate(Deb822.iter_paragraphs(text.splitlines(keepends=True)), 1):
        if not para:
            continue
        if str(para.get("Enabled", "yes")).strip().lower() == "no":
            continue
        if "deb" not in _words(para.get("Types")):
            continue
        uris = _words(para.get("URIs"))
        suites = _words(para.get("Suites"))
        if not uris or not suites:
            raise SourceError("read", f"{origin} stanza {n}", "a deb stanza needs URIs and Suites")
        comps = tuple(_words(para.get("Components")))
        signed_by = para.get("Signed-By")
        keyring = None
        if signed_by:
            keyring = signed_by.strip() if "BEGIN PGP" in signed_by else signed_by.split()[0]
        archs = tuple(_words(para.get("Architectures")))
        own = apt_bool(para.get("Check-Valid-Until"))
        check = check_valid_until if own is None else own
        for uri in uris:
            for suite in suites:
                out.append(SourceEntry(uri.rstrip("/"), suite, comps if not suite.endswith("/") else (),
                                       archs, keyring, check_valid_until=check))
    return out


_OPTIONS = re.compile(r"^\[([^\]]*)\]\s*")


def parse_one_line(text: str, origin: str, check_valid_until: bool = True) -> list[SourceEntry]:
    """``check_valid_until``: apt's global setting, which a line's check-valid-until= overrides."""
    out = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, rest = line.partition(" ")
        if kind != "deb":
            continue
        rest = rest.strip()
        opts: dict[str, str] = {}
        m = _OPTIONS.match(rest)
        if m:
            for opt in m.group(1).split():
                k, _, v = opt.partition("=")
                opts[k] = v
            rest = rest[m.end():]
        parts = rest.split()
        if len(parts) < 2:
            raise SourceError("read", f"{origin}:{lineno}", "a deb line needs a URI and a suite")
        uri, suite, comps = parts[0], parts[1], tuple(parts[2:])
        archs = tuple(a for a in opts.get("arch", "").split(",") if a)
        own = apt_bool(opts.get("check-valid-until"))
        check = check_valid_until if own is None else own
        out.append(SourceEntry(uri.rstrip("/"), suite, comps, archs, opts.get("signed-by") or None,
                               check_valid_until=check))
    return out


def resolve_sources(recipe_sources: Sequence[Source], etc_apt: Path = Path("/etc/apt")) -> list[SourceEntry]:
    """The recipe's sources when it names any, else the host's."""
    return from_recipe(recipe_sources) if recipe_sources else host_sources(etc_apt)
