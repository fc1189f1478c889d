"""forge compose end to end against the signed test repository served on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import source_block
from tests.support.debs import DebSpec, Dir, Reg
from tests.support.forge import forge as run_forge
from tests.support.repo import Repo, RepoServer, Signer, build_repo, serve


def forge(*args: str, cache: Path, cwd: Path | None = None, cli: bool = False) -> subprocess.CompletedProcess[str]:
    """forge in this process (``cli=True``: as ``python -m rootfs_forge``, for the end-to-end tests)."""
    return run_forge(*args, cache=cache, cwd=cwd, cli=cli)


def recipe(tmp: Path, server: RepoServer, signer: Signer, body: str, name: str = "r.toml") -> Path:
    path = tmp / name
    path.write_text(body + "\n" + source_block(server, signer))
    return path


def dpkg_query(root: Path) -> list[str]:
    out = subprocess.run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f",
                          "${Package} ${Version} ${db:Status-Abbrev}\n"], capture_output=True, text=True, check=True)
    return sorted(out.stdout.splitlines())


def test_compose_rootfs_installs_closure_filters_and_effects(tmp_path: Path, repo_server: RepoServer,
                                                              signer: Signer, cache_dir: Path) -> None:
    r = recipe(tmp_path, repo_server, signer, 'packages = ["hello"]\n')
    out = tmp_path / "root"
    proc = forge("compose", str(r), "--format", "rootfs", "-o", str(out), cache=cache_dir, cli=True)  # end to end
    assert proc.returncode == 0, proc.stderr
    assert (out / "usr/bin/hello").read_text() == "#!/bin/sh\necho hello\n"
    assert os.readlink(out / "usr/bin/hi") == "/usr/bin/hello"
    assert os.readlink(out / "bin") == "usr/bin"  # merged /usr
    # the minimal profile drops docs but keeps copyright files
    assert (out / "usr/share/doc/libc6/copyright").is_file()
    assert not (out / "usr/share/doc/libc6/changelog.gz").exists()
    # mawk's postinst update-alternatives call, emulated
    assert os.readlink(out / "usr/bin/awk") == "/etc/alternatives/awk"
    assert os.readlink(out / "etc/alternatives/awk") == "/usr/bin/mawk"
    assert dpkg_query(out) == ["hello 2.10-3 ii ", "libc6 2.36-9 ii ", "mawk 1.3.4 ii "]
    verify = subprocess.run(["dpkg", f"--root={out}", "--verify"], capture_output=True, text=True)
    assert verify.returncode == 0 and verify.stdout == ""
    manifest = json.loads((out / "var/lib/forge/manifest.json").read_text())
    assert manifest["requested"] == ["hello:amd64"] or manifest["requested"] == ["hello"]
    assert manifest["packages"]["libc6"]["dropped_files"] == 1
    assert "maintainer scripts: 1 emulated, 0 not needed, 0 ignored" in proc.stdout
    # SOURCE_DATE_EPOCH clamps every mtime of the directory output, those of the directories the effects, the
    # dpkg database and the manifest wrote into after the unpack included
    later = [str(p.relative_to(out)) for p in [out, *out.rglob("*")] if os.lstat(p).st_mtime > 1700000000]
    assert later == []


def test_compose_tar_is_a_plain_rootfs_tarball(tmp_path: Path, repo_server: RepoServer, signer: Signer,
                                                cache_dir: Path) -> None:
    r = recipe(tmp_path, repo_server, signer, 'packages = ["hello"]\n')
    out = tmp_path / "root.tar"
    proc = forge("compose", str(r), "--format", "tar", "-o", str(out), cache=cache_dir)
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(out) as tar:
        names = tar.getnames()
        info = tar.getmember("usr/bin/hello")
    assert "usr/bin/hello" in names and "var/lib/dpkg/status" in names
    assert (info.uid, info.gid, info.uname, info.mode, info.mtime) == (0, 0, "", 0o755, 1700000000)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_warm_cache_composes_without_fetching_debs(tmp_path: Path, repo_server: RepoServer, signer: Signer,
                                                   cache_dir: Path) -> None:
    r = recipe(tmp_path, repo_server, signer, 'packages = ["hello"]\n')
    assert forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / "a"), cache=cache_dir).returncode == 0
    assert sum(q.endswith(".deb") for q in repo_server.requests) == 3
    repo_server.requests.clear()
    assert forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / "b"), cache=cache_dir).returncode == 0
    assert not any(q.endswith(".deb") for q in repo_server.requests)


def test_unknown_package_fails_cleanly(tmp_path: Path, repo_server: RepoServer, signer: Signer,
                                       cache_dir: Path) -> None:
    r = recipe(tmp_path, repo_server, signer, 'packages = ["no-such-thing"]\n')
    out = tmp_path / "root"
    proc = forge("compose", str(r), "--format", "rootfs", "-o", str(out), cache=cache_dir, cli=True)  # end to end
    assert proc.returncode == 2  # a recipe mistake: the name is in no source (tests/test_cli_ux.py)
    assert proc.stderr.startswith(f"forge: cannot use recipe {r}: packages[0]: ") and "no-such-thing" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "r.toml"]


def test_unsatisfiable_version_names_the_chain(tmp_path: Path, repo_server: RepoServer, signer: Signer,
                                               cache_dir: Path) -> None:
    r = recipe(tmp_path, repo_server, signer, 'packages = ["needs-new-libc"]\n')
    proc = forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / "x"), cache=cache_dir)
    assert proc.returncode != 0
    assert "needs-new-libc" in proc.stderr and "libc6 (>= 2.40)" in proc.stderr and "2.36-9" in proc.stderr


def test_lock_then_locked_compose_and_stale_lock(tmp_path: Path, repo_server: RepoServer, signer: Signer,
                                                 cache_dir: Path) -> None:
    r = recipe(tmp_path, repo_server, signer, 'packages = ["hello"]\n')
    proc = forge("lock", str(r), cache=cache_dir)
    assert proc.returncode == 0, proc.stderr
    lock = (tmp_path / "r.lock").read_text()
    assert 'name = "hello"' in lock and 'version = "2.10-3"' in lock
    assert "127.0.0.1" not in lock  # locks name suites and archive paths, never a mirror host
    assert forge("compose", str(r), "--locked", "--format", "rootfs", "-o", str(tmp_path / "a"),
                 cache=cache_dir).returncode == 0
    r.write_text(r.read_text().replace('"hello"', '"hello", "gawk"'))
    proc = forge("compose", str(r), "--locked", "--format", "rootfs", "-o", str(tmp_path / "b"), cache=cache_dir)
    assert proc.returncode != 0 and "the lock is stale" in proc.stderr
    assert not (tmp_path / "b").exists()


def test_locked_compose_with_warm_cache_needs_no_network(tmp_path: Path, signer: Signer, cache_dir: Path) -> None:
    from tests.conftest import base_specs

    repo: Repo = build_repo(tmp_path / "repo", base_specs(), signer=signer)
    with serve(repo.root) as server:
        r = recipe(tmp_path, server, signer, 'packages = ["hello"]\n')
        assert forge("lock", str(r), cache=cache_dir).returncode == 0
        first = forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / "a"), cache=cache_dir)
        assert first.returncode == 0
    # the server is gone now
    proc = forge("compose", str(r), "--locked", "--format", "rootfs", "-o", str(tmp_path / "b"), cache=cache_dir)
    assert proc.returncode == 0, proc.stderr


def test_hostile_deb_leaves_no_output(tmp_path: Path, signer: Signer, cache_dir: Path) -> None:
    from tests.conftest import base_specs

    evil = DebSpec("evil", "1", "amd64", members=[Dir("etc"), Reg("../../../../tmp/forge-escape-proof", "x")])
    repo = build_repo(tmp_path / "repo", [*base_specs(), evil], signer=signer)
    with serve(repo.root) as server:
        r = recipe(tmp_path, server, signer, 'packages = ["evil"]\n')
        out = tmp_path / "root"
        proc = forge("compose", str(r), "--format", "rootfs", "-o", str(out), cache=cache_dir)
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert not out.exists() and not Path("/tmp/forge-escape-proof").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "r.toml", "repo"]


@pytest.mark.parametrize("bad", ['packages = ["hello"]\n[image]\narchitecture = "amd65"\n',
                                 'packages = ["hello"]\nfoo = 1\n'])
def test_broken_recipe_is_one_line(tmp_path: Path, bad: str, cache_dir: Path) -> None:
    r = tmp_path / "bad.toml"
    r.write_text(bad)
    proc = forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / "x"), cache=cache_dir)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"forge: cannot read recipe {r}: ") and proc.stderr.count("\n") == 1


def test_why_reads_the_graph_stored_in_an_image(tmp_path: Path, repo_server: RepoServer, signer: Signer,
                                                cache_dir: Path) -> None:
    r = recipe(tmp_path, repo_server, signer, 'packages = ["hello"]\n')
    assert forge("compose", str(r), "-o", str(tmp_path / "img"), cache=cache_dir).returncode == 0
    proc = run_forge("why", "libc6", f"{tmp_path / 'img'}:latest")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "libc6:amd64 <-[Depends: libc6 (>= 2.34)]- hello:amd64 (requested)",
        "libc6:amd64 <-[Depends: libc6 (>= 2.34)]- mawk:amd64 <-[Depends: awk]- hello:amd64 (requested)",
    ]
    from_recipe = forge("why", "libc6", str(r), cache=cache_dir)
    assert from_recipe.returncode == 0 and "hello:amd64" in from_recipe.stdout


def test_diff_of_two_recipes_shows_the_package_and_its_new_dependencies(tmp_path: Path, repo_server: RepoServer,
                                                                         signer: Signer, cache_dir: Path) -> None:
    a = recipe(tmp_path, repo_server, signer, 'packages = ["data-all"]\n', "a.toml")
    b = recipe(tmp_path, repo_server, signer, 'packages = ["data-all", "hello"]\n', "b.toml")
    for r in (a, b):
        assert forge("lock", str(r), cache=cache_dir).returncode == 0
        out = forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / r.stem), cache=cache_dir)
        assert out.returncode == 0
    for left, right in ((tmp_path / "a.lock", tmp_path / "b.lock"), (tmp_path / "a", tmp_path / "b")):
        proc = run_forge("diff", str(left), str(right), "--json")
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        added = sorted(p["package"].split(":")[0] for p in doc["packages"]["added"])
        assert added == ["hello", "libc6", "mawk"], doc["packages"]
        assert doc["packages"]["removed"] == [] and doc["packages"]["changed"] == []


@pytest.mark.parametrize(("fmt", "existing"), [("oci", "file"), ("rootfs", "file"), ("tar", "dir"),
                                               ("oci-archive", "dir")])
def test_output_of_the_wrong_kind_in_the_way_is_refused_up_front(tmp_path: Path, fmt: str, existing: str,
                                                                  cache_dir: Path) -> None:
    r = tmp_path / "r.toml"
    r.write_text('packages = ["hello"]\n[[source]]\nurl = "http://127.0.0.1:9/nothing"\nsuites = ["x"]\n')
    out = tmp_path / "out"
    if existing == "file":
        out.write_text("keep me")
    else:
        out.mkdir()
        (out / "keep").write_text("keep me")
    proc = forge("compose", str(r), "--format", fmt, "-o", str(out), cache=cache_dir)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"forge: cannot write {out}: a ") and proc.stderr.count("\n") == 1
    assert (out.read_text() if existing == "file" else (out / "keep").read_text()) == "keep me"


def test_cache_verify_drops_a_tampered_decompressed_data_tar(tmp_path: Path, repo_server: RepoServer,
                                                             signer: Signer, cache_dir: Path) -> None:
    r = recipe(tmp_path, repo_server, signer, 'packages = ["hello"]\n')
    assert forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / "a"), cache=cache_dir).returncode == 0
    tars = sorted((cache_dir / "unpacked").glob("*.tar"))
    assert len(tars) == 3 and all(t.with_name(t.name + ".sha256").is_file() for t in tars)
    with open(tars[0], "r+b") as f:
        f.seek(600)
        f.write(b"tampered")
    verify = run_forge("cache", "verify", "--json", cache=cache_dir)
    assert json.loads(verify.stdout)["removed"] == [f"unpacked/{tars[0].name}"]
    assert not tars[0].exists()
    # the next compose derives it again from the verified .deb and gives the same tree
    assert forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / "b"), cache=cache_dir).returncode == 0
    assert tars[0].exists()
    assert (tmp_path / "a/usr/bin/hello").read_bytes() == (tmp_path / "b/usr/bin/hello").read_bytes()


def test_cache_verify_drops_a_tampered_saved_control_part(tmp_path: Path, repo_server: RepoServer,
                                                          signer: Signer, cache_dir: Path) -> None:
    import base64

    r = recipe(tmp_path, repo_server, signer, 'packages = ["hello"]\n')
    assert forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / "a"), cache=cache_dir).returncode == 0
    saved = sorted((cache_dir / "unpacked").glob("*.control.json"))
    assert len(saved) == 3
    doc = json.loads(saved[0].read_text())
    control = base64.b64decode(doc["files"]["control"]).decode()
    doc["files"]["postinst"] = base64.b64encode(b"#!/bin/sh\nupdate-alternatives --install /x x /y 99\n").decode()
    saved[0].write_text(json.dumps(doc))
    verify = run_forge("cache", "verify", "--json", cache=cache_dir)
    assert json.loads(verify.stdout)["removed"] == [f"unpacked/{saved[0].name}"]
    assert not saved[0].exists()
    # the next compose reads the control part from the verified .deb again and saves it as it is there
    assert forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / "b"), cache=cache_dir).returncode == 0
    again = json.loads(saved[0].read_text())
    assert "postinst" not in again["files"] or again["files"]["postinst"] != doc["files"]["postinst"]
    assert base64.b64decode(again["files"]["control"]).decode() == control
    assert not (tmp_path / "b/x").exists()


def test_cache_dir_that_is_a_file_is_one_line_error(tmp_path: Path, repo_server: RepoServer, signer: Signer) -> None:
    r = recipe(tmp_path, repo_server, signer, 'packages = ["hello"]')
    blocker = tmp_path / "cache"
    blocker.write_text("not a directory\n")
    proc = forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / "out"), cache=blocker)
    assert proc.returncode == 5
    assert proc.stderr.strip() == f"forge: cannot create cache directory {blocker}/blobs/sha256: Not a directory"
    assert not (tmp_path / "out").exists()


def test_timings_report_every_phase(tmp_path: Path, repo_server: RepoServer, signer: Signer,
                                   cache_dir: Path) -> None:
    r = recipe(tmp_path, repo_server, signer, 'packages = ["hello"]')
    proc = forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / "out"), "--json", cache=cache_dir)
    assert proc.returncode == 0, proc.stderr
    timings = json.loads(proc.stdout.splitlines()[-1])["timings"]
    assert {k for k in timings if ":" not in k} == {"plan", "fetch", "unpack", "effects", "dpkg-db", "manifest",
                                                     "output"}
    # parts of a phase are named "<phase>:<part>" and fit in it
    assert {"plan:update", "plan:index", "unpack:wait", "unpack:tree"} <= set(timings)
    assert timings["plan:update"] + timings["plan:index"] <= timings["plan"] + 0.002
    # the scan of the tree waits for packages as they are prepared: that wait is a part of it
    assert timings["unpack:wait"] <= timings["unpack:tree"] <= timings["unpack"] + 0.002
    assert all(v >= 0 for v in timings.values())


def test_scratch_tree_in_memory_is_removed_and_a_killed_ones_swept(tmp_path: Path, repo_server: RepoServer,
                                                                   signer: Signer, cache_dir: Path) -> None:
    r = recipe(tmp_path, repo_server, signer, 'packages = ["hello"]')
    work = tmp_path / "work"
    work.mkdir()
    stale = work / "forge-work-4000001-xyz"  # left by a compose that was SIGKILLed (no such pid)
    (stale / "rootfs-amd64/usr").mkdir(parents=True)
    os.chmod(stale / "rootfs-amd64", 0o555)
    proc = run_forge("compose", str(r), "--format", "oci", "-o", str(tmp_path / "img"), cache=cache_dir,
                     env={"FORGE_WORK_DIR": str(work)})
    assert proc.returncode == 0, proc.stderr
    assert list(work.iterdir()) == []  # its own build directory is gone, and so is the stale one
    assert (tmp_path / "img" / "index.json").is_file()


@pytest.mark.parametrize("field", [0, 2])  # a file's path (caught by the plan), its mode (caught by the writer)
def test_tampered_member_table_is_refused_and_verify_drops_it(tmp_path: Path, repo_server: RepoServer,
                                                              signer: Signer, cache_dir: Path, field: int) -> None:
    r = recipe(tmp_path, repo_server, signer, 'packages = ["hello"]')
    assert forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / "a"), cache=cache_dir).returncode == 0
    tables = sorted((cache_dir / "unpacked").glob("*.members.json"))
    assert tables, "a compose leaves the member table of every unpacked package"
    # a table that no longer matches its data.tar (here: a file's path changed) is caught when the content is
    # written, and `forge cache verify` drops it
    victim = next(t for t in tables if '"file"' in t.read_text())
    doc = json.loads(victim.read_text())
    row = next(row for row in doc["members"] if row[1] == "file")
    row[field] = row[0] + "-moved" if field == 0 else row[2] | 0o4000  # setuid, as an attacker would like
    victim.write_text(json.dumps(doc))
    proc = forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / "b"), cache=cache_dir)
    assert proc.returncode == 6 and "the cached member list does not match" in proc.stderr
    assert not (tmp_path / "b").exists()
    verify = forge("cache", "verify", "--json", cache=cache_dir)
    assert json.loads(verify.stdout)["removed"] == [f"unpacked/{victim.name}"]
    assert forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / "c"), cache=cache_dir).returncode == 0
    assert victim.exists()  # made again from the data.tar


def _installed_version(root: Path, name: str) -> str:
    status = (root / "var/lib/dpkg/status").read_text()
    stanza = next(s for s in status.split("\n\n") if s.startswith(f"Package: {name}\n"))
    return next(line.split(": ", 1)[1] for line in stanza.splitlines() if line.startswith("Version: "))


@pytest.mark.parametrize("old_deb", ["cached", "gone"])  # gone: the optimistic attempt fails to fetch it
def test_optimistic_plan_is_redone_when_the_mirror_changed(tmp_path: Path, signer: Signer, cache_dir: Path,
                                                           old_deb: str) -> None:
    """A warm compose plans against the last verified index while it verifies the suites again; when the archive
    moved on meanwhile (a new hello, the old .deb gone), it composes again from the new index."""
    from tests.conftest import base_specs

    specs = base_specs()
    repo = build_repo(tmp_path / "repo", specs, signer=signer)
    with serve(repo.root) as server:
        r = recipe(tmp_path, server, signer, 'packages = ["hello"]\n')
        first = forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / "a"), cache=cache_dir)
        assert first.returncode == 0, first.stderr
        assert _installed_version(tmp_path / "a", "hello") == "2.10-3"
        newer = DebSpec("hello", "2.11-1", specs[0].architecture, {"Depends": "libc6"},
                        members=[Dir("usr"), Dir("usr/bin"), Reg("usr/bin/hello", "#!/bin/sh\necho new\n", 0o755)])
        shutil.rmtree(repo.root)
        build_repo(tmp_path / "repo", [s for s in specs if s.name != "hello"] + [newer], signer=signer)
        if old_deb == "gone":
            sha = json.loads((tmp_path / "a/var/lib/forge/manifest.json").read_text())["packages"]["hello"]["sha256"]
            for p in [cache_dir / "blobs/sha256" / sha, *(cache_dir / "unpacked").glob(f"{sha}*")]:
                p.unlink()
        second = forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / "b"), "--json",
                       cache=cache_dir)
    assert second.returncode == 0, second.stderr
    assert _installed_version(tmp_path / "b", "hello") == "2.11-1"
    assert "plan:confirm" in json.loads(second.stdout.splitlines()[-1])["timings"]


def test_optimistic_plan_outputs_nothing_when_the_suite_no_longer_verifies(tmp_path: Path, signer: Signer,
                                                                           cache_dir: Path) -> None:
    from tests.conftest import base_specs

    repo = build_repo(tmp_path / "repo", base_specs(), signer=signer)
    with serve(repo.root) as server:
        r = recipe(tmp_path, server, signer, 'packages = ["hello"]\n')
        first = forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / "a"), cache=cache_dir)
        assert first.returncode == 0, first.stderr
        inrelease = repo.root / "dists" / "testing" / "InRelease"
        inrelease.write_bytes(inrelease.read_bytes().replace(b"Suite: testing", b"Suite: testinG"))  # tampered
        proc = forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / "b"), cache=cache_dir)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith("forge: cannot verify InRelease of ") and proc.stderr.count("\n") == 1
    assert not (tmp_path / "b").exists()
