"""Licences of installed packages from their machine-readable copyright files (DEP-5), as SPDX ids.

``/usr/share/doc/<pkg>/copyright`` is parsed with python-debian's ``debian.copyright`` when its ``Format:``
line says it is machine-readable; the ``License:`` short names of its ``Files`` paragraphs are collected.
Debian short names (``GPL-2+``, ``Expat``, ``BSD-3-clause`` …) are mapped to SPDX ids; the mapped id is
checked against the SPDX licence list shipped by ``license-expression``. Names that are no SPDX licence
become ``LicenseRef-<name>`` and keep the text of the file's matching stand-alone ``License`` paragraph.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from rootfs_forge.audit.view import FsView, Node, read_bytes, resolve
from rootfs_forge.util import deb822 as _deb822  # noqa: F401  # before debian.copyright, which imports deb822

# Debian short names that are not spelled as SPDX ids (DEP-5 "Short name" table), lower-cased
_DEBIAN_NAMES = {
    "expat": "MIT",
    "artistic": "Artistic-1.0",
    "artistic-1": "Artistic-1.0",
    "artistic-2": "Artistic-2.0",
    "apache-2": "Apache-2.0",
    "apache-1.1": "Apache-1.1",
    "bsd-2-clause": "BSD-2-Clause",
    "bsd-3-clause": "BSD-3-Clause",
    "bsd-4-clause": "BSD-4-Clause",
    "bsd-4-clause-uc": "BSD-4-Clause-UC",
    "cc0": "CC0-1.0",
    "mpl-1.1": "MPL-1.1",
    "mpl-2": "MPL-2.0",
    "zlib": "Zlib",
    "python": "Python-2.0",
    "psf-2": "PSF-2.0",
    "zope-2.1": "ZPL-2.1",
    "w3c": "W3C",
    "isc": "ISC",
    "lppl-1.3c": "LPPL-1.3c",
}
_GNU = re.compile(r"^(?P<base>a?gpl|lgpl|gfdl(?:-niv)?)(?:-(?P<ver>\d+(?:\.\d+)?))?(?P<plus>\+)?$", re.I)
_SPLIT = re.compile(r"\s*(?:,\s*)?\b(?:or|and)\b\s*|\s*,\s*", re.I)


@lru_cache(maxsize=1)
def _spdx() -> Any:
    from license_expression import get_spdx_licensing

    return get_spdx_licensing()


def spdx_id(name: str) -> str | None:
    """The SPDX licence id for a Debian short licence name, or None when there is none."""
    name = name.strip()
    if not name or " " in name:
        return None
    candidate = _DEBIAN_NAMES.get(name.lower())
    m = _GNU.match(name)
    if candidate is None and m:
        base = m["base"].upper().replace("GFDL-NIV", "GFDL")
        ver = m["ver"] or "1"
        ver = ver if "." in ver else f"{ver}.0"
        niv = "-no-invariants" if m["base"].lower().startswith("gfdl-niv") else ""
        candidate = f"{base}-{ver}{niv}-{'or-later' if m['plus'] or not m['ver'] else 'only'}"
    candidate = candidate or name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+-]*", candidate):
        return None
    result = _spdx().validate(candidate)
    if result.errors or not result.normalized_expression or " " in result.normalized_expression:
        return None
    normalized = str(result.normalized_expression)
    return normalized if not normalized.lower().startswith("licenseref-") else None


def license_ref(name: str) -> str:
    return "LicenseRef-" + (re.sub(r"[^A-Za-z0-9.-]+", "-", name.strip()).strip("-") or "unknown")


@dataclass(frozen=True)
class PackageLicenses:
    """Licences named by one package's copyright file."""

    ids: tuple[str, ...] = ()  # SPDX ids and LicenseRef-… ids, sorted, distinct
    texts: dict[str, str] = field(default_factory=dict)  # LicenseRef id -> licence text (or its short name)
    names: dict[str, str] = field(default_factory=dict)  # id -> the Debian short name it came from


def split_synopsis(synopsis: str) -> list[str]:
    """The short names in a DEP-5 ``License:`` first line (``GPL-2+ or Artistic`` → both)."""
    first = synopsis.splitlines()[0] if synopsis else ""
    return [part.strip() for part in _SPLIT.split(first) if part and part.strip()]


def parse_copyright(text: str) -> PackageLicenses:
    """Licences of a machine-readable copyright file; empty for any other copyright file."""
    if not text.lstrip().lower().startswith("format:"):
        return PackageLicenses()
    from debian.copyright import Copyright, NotMachineReadableError  # loads debian.deb822: see util/deb822.py

    try:
        doc = Copyright(text.splitlines(keepends=True), strict=False)
        files = [str(lic.synopsis) for p in doc.all_files_paragraphs() if (lic := _license(p)) is not None]
        standalone = {str(lic.synopsis).strip(): str(lic.text) for p in doc.all_license_paragraphs()
                      if (lic := _license(p)) is not None}
    except (NotMachineReadableError, ValueError, KeyError, AttributeError, TypeError):
        return PackageLicenses()
    ids: set[str] = set()
    texts: dict[str, str] = {}
    names: dict[str, str] = {}
    for synopsis in files:
        for short in split_synopsis(synopsis):
            ident = spdx_id(short) or license_ref(short)  # "X with Y exception" has spaces: a LicenseRef
            ids.add(ident)
            names.setdefault(ident, short)
            if ident.startswith("LicenseRef-"):
                texts[ident] = (standalone.get(short) or "").strip() or short
    return PackageLicenses(tuple(sorted(ids)), texts, names)


def _license(paragraph: Any) -> Any:
    return paragraph.license  # a debian.copyright.License, or None


def package_licenses(view: FsView, name: str) -> PackageLicenses:
    """Licences from ``/usr/share/doc/<name>/copyright`` in the tree (symlinked doc dirs followed inside it)."""
    real = resolve(view, f"/usr/share/doc/{name}/copyright")
    if real is None or (view.lstat(real) or Node("missing")).kind != "file":
        return PackageLicenses()
    return parse_copyright(read_bytes(view, real).decode("utf-8", "replace"))
