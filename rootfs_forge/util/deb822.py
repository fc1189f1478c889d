"""python-debian's ``deb822``, imported without the encoding detector it loads at import time.

``debian.deb822`` imports ``charset_normalizer`` (else ``chardet``) as it loads: ~30 ms of every forge start that
parses a stanza, a tenth of a warm compose's start-up. The detector is only consulted when Deb822 is handed
*bytes* that are not UTF-8; forge never does that: every caller decodes its bytes first (UTF-8, undecodable
bytes replaced, as apt shows them), so the detector can never run. The module is therefore imported with the two
detector names held unimportable for the duration of that one import (deb822 then records that it has no
detector), and released right after, so that requests and everything else import them as usual.

Every module of forge imports deb822's names from here (a test holds them to it): an earlier direct import of
``debian.deb822`` (or of ``debian.copyright``, which imports it) would load the detector again.
"""

from __future__ import annotations

import sys

_DETECTORS = ("charset_normalizer", "chardet")


def _import_without_detectors() -> None:
    if "debian.deb822" in sys.modules:
        return
    held = [name for name in _DETECTORS if name not in sys.modules]
    for name in held:
        sys.modules[name] = None  # type: ignore[assignment]  # None: "import name" raises ImportError
    try:
        import debian.deb822  # noqa: F401
    finally:
        for name in held:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


_import_without_detectors()

from debian.deb822 import Deb822, PkgRelation, Release  # noqa: E402

__all__ = ["Deb822", "PkgRelation", "Release"]
