"""forge sbom: purls, licences from DEP-5 copyright files, SPDX 2.3 and CycloneDX 1.5 validated by the
official libraries (spdx-tools, cyclonedx-python-lib)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from rootfs_forge.audit.licenses import parse_copyright, spdx_id, split_synopsis
from rootfs_forge.audit.osinfo import parse_os_release, purl_distro
from rootfs_forge.audit.report import sbom_input
from rootfs_forge.audit.sbom import cyclonedx_document, purl, spdx_document
from rootfs_forge.audit.target import open_target
from rootfs_forge.cli import main
from tests.test_audit import build_host_tree

DEP5 = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
EPOCH = 1_700_000_000


@pytest.mark.parametrize(("name", "version", "arch", "distro", "expected"), [
    ("libc6", "2.36-9+deb12u4", "amd64", "debian-12",
     "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"),
    ("bsdutils", "1:2.38.1-5", "amd64", "debian-12",
     "pkg:deb/debian/bsdutils@1%3A2.38.1-5?arch=amd64&distro=debian-12"),
    ("libstdc++6", "12.2.0-14~x", "arm64", "", "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14~x?arch=arm64"),
])
def test_purl_percent_encodes_version_and_name(name: str, version: str, arch: str, distro: str,
                                               expected: str) -> None:
    assert purl(name, version, arch, "debian", distro) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ('ID=debian\nVERSION_ID="12"\n', ("debian", "debian-12")),
    ("ID=debian\nVERSION_CODENAME=trixie\n", ("debian", "debian-trixie")),
    ("ID=ubuntu\nID_LIKE=debian\nVERSION_ID='24.04'\n", ("ubuntu", "ubuntu-24.04")),
    ("", ("debian", "")),
])
def test_purl_distro_from_os_release(text: str, expected: tuple[str, str]) -> None:
    assert purl_distro(parse_os_release(text)) == expected


@pytest.mark.parametrize(("debian", "spdx"), [
    ("GPL-2+", "GPL-2.0-or-later"), ("GPL-2", "GPL-2.0-only"), ("LGPL-2.1+", "LGPL-2.1-or-later"),
    ("GPL-3+", "GPL-3.0-or-later"), ("GFDL-NIV-1.3", "GFDL-1.3-no-invariants-only"), ("Expat", "MIT"),
    ("BSD-3-clause", "BSD-3-Clause"), ("CC0", "CC0-1.0"), ("zlib", "Zlib"), ("Apache-2.0", "Apache-2.0"),
    ("public-domain", None), ("permissive", None), ("GPL-2+ with OpenSSL exception", None), ("a~b", None),
])
def test_debian_short_names_map_to_spdx_ids(debian: str, spdx: str | None) -> None:
    assert spdx_id(debian) == spdx


def test_synopsis_alternatives_and_conjunctions_are_split() -> None:
    assert split_synopsis("GPL-2+ or Artistic, and BSD-3-clause\n text") == ["GPL-2+", "Artistic", "BSD-3-clause"]


def test_dep5_copyright_yields_ids_and_licenseref_texts() -> None:
    text = DEP5 + (
        "\nFiles: *\nCopyright: 2020 A\nLicense: GPL-2+ or Artistic\n"
        "\nFiles: tz/*\nCopyright: none\nLicense: public-domain\n"
        "\nLicense: public-domain\n This file is in the public domain.\n"
    )
    lic = parse_copyright(text)
    assert lic.ids == ("Artistic-1.0", "GPL-2.0-or-later", "LicenseRef-public-domain")
    assert lic.texts == {"LicenseRef-public-domain": "This file is in the public domain."}


def test_free_form_copyright_yields_no_licences() -> None:
    assert parse_copyright("This is the Debian prepackaged version of X.\n\nGPL-2 applies.\n").ids == ()


@pytest.fixture
def sbom_tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    build_host_tree(root)
    docs = root / "usr/share/doc"
    (docs / "libc6").mkdir(parents=True)
    (docs / "libc6/copyright").write_text(DEP5 + "\nFiles: *\nCopyright: FSF\nLicense: LGPL-2.1+ and GPL-2+\n")
    (docs / "zz-epoch/copyright").write_text(
        DEP5 + "\nFiles: *\nCopyright: x\nLicense: public-domain\n\nLicense: public-domain\n No rights reserved.\n")
    (docs / "coreutils").mkdir()
    (docs / "coreutils/copyright").write_text("Free-form text, not machine-readable.\n")
    return root


def _docs(root: Path, epoch: int | None = EPOCH) -> tuple[dict[str, object], dict[str, object]]:
    inp = sbom_input(open_target(str(root)), name="root", source_date_epoch=epoch)
    return spdx_document(inp), cyclonedx_document(inp)


def test_spdx_document_validates_with_spdx_tools(sbom_tree: Path, tmp_path: Path) -> None:
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    spdx, _ = _docs(sbom_tree)
    out = tmp_path / "doc.spdx.json"
    out.write_text(json.dumps(spdx))
    document = parse_file(str(out))
    messages = validate_full_spdx_document(document)
    assert [m.validation_message for m in messages] == []
    names = {p.name: p for p in document.packages}
    assert set(names) == {"coreutils", "libc6", "libpcre2-8-0", "libselinux1", "zz-epoch"}
    assert str(names["libc6"].license_declared) == "GPL-2.0-or-later AND LGPL-2.1-or-later"
    assert document.creation_info.created.timestamp() == EPOCH


def test_spdx_has_purls_files_and_depends_on(sbom_tree: Path) -> None:
    spdx, _ = _docs(sbom_tree)
    packages = {p["name"]: p for p in spdx["packages"]}  # type: ignore[attr-defined]
    ref = packages["zz-epoch"]["externalRefs"][0]
    assert ref["referenceLocator"] == "pkg:deb/debian/zz-epoch@1%3A2.0%2Bb1?arch=all&distro=debian-12"
    files = {f["fileName"]: f for f in spdx["files"]}  # type: ignore[attr-defined]
    ls_sha = hashlib.sha256((sbom_tree / "usr/bin/ls").read_bytes()).hexdigest()
    assert {"algorithm": "SHA256", "checksumValue": ls_sha} in files["./usr/bin/ls"]["checksums"]
    ids = {p["name"]: p["SPDXID"] for p in packages.values()}
    rels = {(r["spdxElementId"], r["relationshipType"], r["relatedSpdxElement"]) for r in spdx["relationships"]}  # type: ignore[attr-defined]
    assert (ids["coreutils"], "DEPENDS_ON", ids["libselinux1"]) in rels
    assert (ids["libselinux1"], "DEPENDS_ON", ids["libpcre2-8-0"]) in rels
    assert not any(r[1] == "DEPENDS_ON" and r[0] == ids["libc6"] for r in rels)  # libgcc-s1 is not installed
    extracted = spdx["hasExtractedLicensingInfos"]
    assert extracted == [{"licenseId": "LicenseRef-public-domain", "name": "public-domain",
                          "extractedText": "No rights reserved."}]


def test_cyclonedx_validates_against_the_1_5_schema(sbom_tree: Path) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    _, cdx = _docs(sbom_tree)
    error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(json.dumps(cdx))
    assert error is None, error
    comps = {c["name"]: c for c in cdx["components"]}  # type: ignore[attr-defined]
    assert comps["libc6"]["purl"] == "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"
    assert comps["libc6"]["licenses"] == [{"license": {"id": "GPL-2.0-or-later"}},
                                          {"license": {"id": "LGPL-2.1-or-later"}}]
    assert "licenses" not in comps["coreutils"]
    deps = {d["ref"]: d["dependsOn"] for d in cdx["dependencies"]}  # type: ignore[attr-defined]
    assert deps[comps["coreutils"]["purl"]] == sorted([comps["libc6"]["purl"], comps["libselinux1"]["purl"]])
    files = {f["name"] for f in comps["coreutils"]["components"]}
    assert files == {"/usr/bin/ls", "/usr/bin/true"}
    assert cdx["metadata"]["timestamp"] == "2023-11-14T22:13:20Z"  # type: ignore[index]


def test_sbom_is_deterministic_and_content_addressed(sbom_tree: Path) -> None:
    first = _docs(sbom_tree)
    assert _docs(sbom_tree) == first
    (sbom_tree / "usr/share/doc/zz-epoch/README").write_text("changed")
    second = _docs(sbom_tree)
    assert second[0]["documentNamespace"] != first[0]["documentNamespace"]
    assert second[1]["serialNumber"] != first[1]["serialNumber"]


def test_created_defaults_to_newest_mtime(sbom_tree: Path) -> None:
    newest = 1_600_000_000
    for dirpath, dirnames, filenames in os.walk(sbom_tree):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (1_500_000_000, 1_500_000_000), follow_symlinks=False)
    os.utime(sbom_tree / "etc/hostname", (newest, newest))
    spdx, _ = _docs(sbom_tree, epoch=None)
    assert spdx["creationInfo"] == {"created": "2020-09-13T12:26:40Z", "creators": ["Tool: rootfs-forge-0.1.0"]}


@pytest.mark.parametrize("fmt", ["spdx", "cyclonedx"])
def test_cli_writes_sbom_file(sbom_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    out = tmp_path / f"sbom.{fmt}.json"
    assert main(["sbom", str(sbom_tree), "--format", fmt, "-o", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data.get("spdxVersion") == "SPDX-2.3" or data.get("specVersion") == "1.5"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".forge-sbom-")] == []


def test_cli_rejects_bad_source_date_epoch(sbom_tree: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    assert main(["sbom", str(sbom_tree)]) == 9
    assert capsys.readouterr().err == ("forge: cannot use SOURCE_DATE_EPOCH: 'yesterday' is not a whole number of "
                                       "seconds\n")
