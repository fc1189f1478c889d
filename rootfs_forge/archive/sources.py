"""Where packages come from: the recipe's ``[[source]]`` tables, or else the host's apt sources.

Reads deb822 ``*.sources`` files (Types, URIs, Suites, Components, Architectures, Signed-By, Enabled) and
one-line ``sources.list`` entries (``deb [arch=… signed-by=…] URI SUITE COMPONENT…``). ``deb-src`` is ignored.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from debian.deb822 import Deb822

from rootfs_forge.errors import SourceError
from rootfs_forge.recipe import Source

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

    @property
    def id(self) -> str:
        return f"{self.url} {self.suite}"

    @property
    def flat(self) -> bool:
        return self.suite.endswith("/")

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:32]


def from_recipe(sources: Iterable[Source]) -> list[SourceEntry]:
    out = []
    for s in sources:
        for suite in s.suites:
            out.append(SourceEntry(
                url=s.url.rstrip("/"), suite=suite, components=s.components, architectures=s.architectures,
                keyring=s.keyring, mirrors=tuple(m.rstrip("/") for m in s.mirrors), priority=s.priority,
                allow_insecure=s.allow_insecure,
            ))
    return out


def host_sources(etc_apt: Path = Path("/etc/apt")) -> list[SourceEntry]:
    """The host's enabled ``deb`` sources, in apt's reading order (sources.list, then sources.list.d sorted)."""
    entries: list[SourceEntry] = []
    main = etc_apt / "sources.list"
    if main.is_file():
        entries += parse_one_line(main.read_text(encoding="utf-8", errors="replace"), str(main))
    d = etc_apt / "sources.list.d"
    if d.is_dir():
        for f in sorted(d.iterdir()):
            if f.suffix == ".list":
                entries += parse_one_line(f.read_text(encoding="utf-8", errors="replace"), str(f))
            elif f.suffix == ".sources":
                entries += parse_deb822(f.read_text(encoding="utf-8", errors="replace"), str(f))
    if not entries:
        raise SourceError("find", "apt sources", f"no enabled 'deb' entry in {etc_apt}; add a [[source]] to the recipe")
    return entries


def _words(value: str | None) -> list[str]:
    return value.split() if value else []


def parse_deb822(text: str, origin: str) -> list[SourceEntry]:
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
        for uri in uris:
            for suite in suites:
                out.append(SourceEntry(uri.rstrip("/"), suite, comps if not suite.endswith("/") else (),
                                       archs, keyring))
    return out


_OPTIONS = re.compile(r"^\[([^\]]*)\]\s*")


def parse_one_line(text: str, origin: str) -> list[SourceEntry]:
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
        out.append(SourceEntry(uri.rstrip("/"), suite, comps, archs, opts.get("signed-by") or None))
    return out


def resolve_sources(recipe_sources: Sequence[Source], etc_apt: Path = Path("/etc/apt")) -> list[SourceEntry]:
    """The recipe's sources when it names any, else the host's."""
    return from_recipe(recipe_sources) if recipe_sources else host_sources(etc_apt)
