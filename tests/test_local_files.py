"""[[file]] entries: local files land in the image with their mode and owner, and are recorded with their
SHA256 as non-package content in forge's manifest and in both SBOM formats (which the official libraries
validate)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tests.conftest import source_block
from tests.support.forge import forge
from tests.support.repo import RepoServer, Signer

ENV = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}


def test_local_file_is_installed_and_recorded_with_provenance(tmp_path: Path, repo_server: RepoServer,
                                                              signer: Signer) -> None:
    payload = b"#!/bin/sh\necho from a local file\n"
    (tmp_path / "tool.sh").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    recipe = tmp_path / "r.toml"
    recipe.write_text('packages = ["hello"]\n[[file]]\nsrc = "tool.sh"\ndest = "/usr/local/bin/tool"\n'
                      'mode = "0750"\nowner = "65532:65532"\n' + source_block(repo_server, signer))
    root = tmp_path / "root"
    proc = forge("compose", str(recipe), "--format", "rootfs", "-o", str(root), "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode == 0, proc.stderr
    st = (root / "usr/local/bin/tool").stat()
    assert (root / "usr/local/bin/tool").read_bytes() == payload
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o750, 65532, 65532)
    manifest = json.loads((root / "var/lib/forge/manifest.json").read_text())
    assert manifest["files"] == [{"mode": "0750", "owner": "65532:65532", "path": "/usr/local/bin/tool",
                                  "sha256": digest, "size": len(payload), "src": "tool.sh"}]

    spdx_path = tmp_path / "sbom.spdx.json"
    assert forge("sbom", str(root), "--format", "spdx", "-o", str(spdx_path)).returncode == 0
    spdx = json.loads(spdx_path.read_text())
    (entry,) = [f for f in spdx["files"] if f["fileName"] == "./usr/local/bin/tool"]
    assert {"algorithm": "SHA256", "checksumValue": digest} in entry["checksums"]
    assert "recipe" in entry["comment"] and "tool.sh" in entry["comment"]
    assert not any(r["relatedSpdxElement"] == entry["SPDXID"] and r["relationshipType"] == "CONTAINS"
                   for r in spdx["relationships"])  # no package claims it
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    assert validate_full_spdx_document(parse_file(str(spdx_path))) == []

    cdx_proc = forge("sbom", str(root), "--format", "cyclonedx")
    assert cdx_proc.returncode == 0, cdx_proc.stderr
    cdx = json.loads(cdx_proc.stdout)
    (comp,) = [c for c in cdx["components"] if c.get("name") == "/usr/local/bin/tool"]
    assert comp["type"] == "file" and {"alg": "SHA-256", "content": digest} in comp["hashes"]
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(cdx_proc.stdout) is None
