"""The key of the index state file (the last verified update of a set of sources) is canonical JSON's hash."""

from __future__ import annotations

import hashlib
import json

from rootfs_forge.archive.sources import SourceEntry
from rootfs_forge.index.context import state_key

MAIN = SourceEntry("http://archive.test/debian", "bookworm", ("main",), keyring="-----BEGIN PGP-----\nkéy\n")
SECURITY = SourceEntry("http://archive.test/debian-security", "bookworm-security", ("main", "contrib"), priority=600)


def test_state_key_is_the_hash_of_canonical_json() -> None:
    doc = {"architectures": ["amd64", "arm64"], "entries": [
        {"allow_insecure": False, "architectures": [], "check_valid_until": True, "components": ["main"],
         "keyring": "-----BEGIN PGP-----\nkéy\n", "mirrors": [], "priority": 500, "snapshot": "",
         "snapshot_url": "", "suite": "bookworm", "url": "http://archive.test/debian"}]}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert state_key([MAIN], ["arm64", "amd64"]) == hashlib.sha256(text).hexdigest()[:32]


def test_state_key_is_stable_and_says_what_it_names() -> None:
    key = state_key([MAIN, SECURITY], ["amd64"])
    assert key == state_key([MAIN, SECURITY], ["amd64"])
    assert key == state_key([SourceEntry(**{f: getattr(MAIN, f) for f in MAIN.__slots__}), SECURITY], ("amd64",))
    assert state_key([MAIN], ["amd64", "arm64"]) == state_key([MAIN], ["arm64", "amd64"])  # a set of archs
    assert key != state_key([SECURITY, MAIN], ["amd64"])  # sources are tried in order
    assert key != state_key([MAIN, SECURITY], ["arm64"])
    assert key != state_key([MAIN, SourceEntry(**{**{f: getattr(SECURITY, f) for f in SECURITY.__slots__},
                                                    "priority": 500})], ["amd64"])
