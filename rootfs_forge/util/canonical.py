"""The one canonical JSON: sorted keys, compact separators, UTF-8 (what forge hashes and prints)."""

from __future__ import annotations

import json


def canonical_json(doc: object, *, ensure_ascii: bool = False) -> bytes:
    """``doc`` as canonical JSON bytes. ``ensure_ascii`` escapes non-ASCII text (digests that were defined
    that way, e.g. a lock's recipe digest, keep it)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=ensure_ascii).encode()
