"""The command line as a newcomer meets it (issue 16): recipe mistakes caught after resolution with a one-line
error naming the key, short compose output, --entrypoint, locks that say when they are behind, and paths that
mean the same from any working directory."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rootfs_forge import errors
from rootfs_forge.model import MemoryIndex, Package
from rootfs_forge.resolve.lockcheck import compare
from rootfs_forge.run.spec import ProcessDefaults, plan_process
from tests.conftest import source_block
from tests.support.forge import forge
from tests.support.repo import RepoServer, Signer
from tests.test_registry import registry  # noqa: F401 - fixture
from tests.test_run import world  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[1]


def recipe(tmp: Path, server: RepoServer, signer: Signer, body: str, name: str = "r.toml") -> Path:
    path = tmp / name
    path.write_text(body + "\n" + source_block(server, signer))
    return path


# every mistake: (recipe body, the key the one-line message must name, text it must contain)
MISTAKES = [
    ('packages = ["helo"]', "packages[0]", "did you mean hello?"),
    ('packages = ["hello"]\n[slice.libc]\ninclude = []', "slice.libc", "did you mean libc6?"),
    ('packages = ["hello"]\nprefer = ["mawkk"]', "prefer[0]", "did you mean mawk?"),
    ('packages = ["hello"]\nexclude = ["gawkk"]', "exclude[0]", "did you mean gawk?"),
    ('packages = ["hello"]\n[conflicts]\n"/usr/bin/hello" = "helo"', 'conflicts."/usr/bin/hello"',
     "did you mean hello?"),
    ('packages = ["hello"]\n[[layer]]\nname = "base"\npackages = ["libc"]', "layer[0].packages[0]",
     "did you mean libc6?"),
    ('packages = ["hello"]\n[config]\nentrypoint = ["/usr/bin/helo"]', "config.entrypoint",
     "/usr/bin/helo is not a file in the image"),
    ('packages = ["hello"]\n[config]\ncmd = ["helo", "x"]', "config.cmd", "helo is not in the image's PATH"),
    ('packages = ["hello"]\n[config]\nentrypoint = ["/usr/bin"]', "config.entrypoint", "is a directory"),
    ('packages = ["hello"]\n[config]\nentrypoint = ["/usr/bin/hello"]\nworking_dir = "/srv/app"',
     "config.working_dir", "/srv/app is not a directory in the image"),
    ('packages = ["hello"]\n[config]\nuser = "ghost"', "config.user", "no user 'ghost'"),
]


@pytest.mark.parametrize(("body", "key", "text"), MISTAKES, ids=[m[1] for m in MISTAKES])
def test_recipe_mistake_is_exit_2_naming_the_key(tmp_path: Path, repo_server: RepoServer, signer: Signer,
                                                 cache_dir: Path, body: str, key: str, text: str) -> None:
    r = recipe(tmp_path, repo_server, signer, body)
    out = tmp_path / "out"
    proc = forge("compose", str(r), "-o", str(out), cache=cache_dir)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, proc.stderr
    assert line.startswith(f"forge: cannot use recipe {r}: {key}: "), line
    assert text in line, line
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_slice_of_a_package_of_the_index_that_is_not_installed_is_accepted(
        tmp_path: Path, repo_server: RepoServer, signer: Signer, cache_dir: Path) -> None:
    """A gallery recipe may slice a package only some resolutions install (python3's [slice.perl-base])."""
    r = recipe(tmp_path, repo_server, signer, 'packages = ["hello"]\n[slice.gawk]\ninclude = []')
    assert forge("compose", str(r), "-o", str(tmp_path / "o"), cache=cache_dir).returncode == 0
    assert forge("lock", str(r), cache=cache_dir).returncode == 0
    assert forge("compose", str(r), "-o", str(tmp_path / "o2"), "--locked", cache=cache_dir).returncode == 0


def test_unknown_package_points_at_forge_search(tmp_path: Path, repo_server: RepoServer, signer: Signer,
                                               cache_dir: Path) -> None:
    proc = forge("resolve", str(recipe(tmp_path, repo_server, signer, 'packages = ["helo"]')), cache=cache_dir)
    assert proc.returncode == 2 and "forge search" in proc.stderr and "did you mean hello?" in proc.stderr


def test_slice_of_a_locked_recipe_is_checked_too(tmp_path: Path, repo_server: RepoServer, signer: Signer,
                                                 cache_dir: Path) -> None:
    r = recipe(tmp_path, repo_server, signer, 'packages = ["hello"]\n[slice.libc6]\ninclude = []')
    assert forge("lock", str(r), cache=cache_dir).returncode == 0
    # [slice] does not enter the lock's digest: the lock stays current, the check still runs
    r.write_text(r.read_text().replace("[slice.libc6]", "[slice.libc]"))
    proc = forge("compose", str(r), "-o", str(tmp_path / "o"), "--locked", cache=cache_dir)
    assert proc.returncode == 2 and "slice.libc: " in proc.stderr and "did you mean libc6?" in proc.stderr


def test_directory_as_recipe_is_one_line(tmp_path: Path) -> None:
    proc = forge("compose", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr == f"forge: cannot read recipe {tmp_path}: is a directory: name the recipe's .toml file\n"


def test_essential_with_no_packages_composes_the_essential_set(tmp_path: Path, repo_server: RepoServer,
                                                                 signer: Signer, cache_dir: Path) -> None:
    r = recipe(tmp_path, repo_server, signer, "essential = true\npackages = []")
    proc = forge("compose", str(r), "--format", "rootfs", "-o", str(tmp_path / "root"), cache=cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "root/etc/debian_version").read_text() == "12.4\n"


def test_default_output_is_out_name_tag(tmp_path: Path, repo_server: RepoServer, signer: Signer,
                                        cache_dir: Path) -> None:
    r = recipe(tmp_path, repo_server, signer, 'packages = ["hello"]\n[image]\nname = "forge/hello"\ntag = "t1"')
    proc = forge("compose", str(r), cache=cache_dir, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out/hello-t1/index.json").is_file()
    assert "out/hello-t1" in proc.stdout.splitlines()[-1]


def test_compose_output_is_short_and_v_lists_every_script(tmp_path: Path, repo_server: RepoServer,
                                                          signer: Signer, cache_dir: Path) -> None:
    r = recipe(tmp_path, repo_server, signer, 'packages = ["hello"]')
    short = forge("compose", str(r), "-o", str(tmp_path / "a"), cache=cache_dir)
    assert short.returncode == 0, short.stderr
    lines = short.stdout.splitlines()
    assert len(lines) <= 4, short.stdout
    assert re.match(r"^\w+: 3 packages \(\d+ downloaded\), .*; maintainer scripts: 1 emulated, 0 not needed, "
                    r"0 ignored$", lines[0]), lines
    assert re.match(rf"^wrote r:latest to {re.escape(str(tmp_path / 'a'))} \(oci\) sha256:[0-9a-f]{{64}} in ",
                    lines[-1]), lines
    assert "mawk/postinst" not in short.stdout
    verbose = forge("compose", str(r), "-o", str(tmp_path / "b"), "-v", cache=cache_dir)
    assert "  mawk/postinst: emulated" in verbose.stdout
    doc = json.loads(forge("compose", str(r), "-o", str(tmp_path / "c"), "--json", cache=cache_dir).stdout)
    scripts = next(iter(doc["architectures"].values()))["scripts"]
    assert [(s["package"], s["script"], s["status"]) for s in scripts] == [("mawk", "postinst", "emulated")]


# ------------------------------------------------------------------------------------------------ locks


def _pkg(name: str, version: str, sha: str = "a" * 64, suite: str = "s") -> Package:
    return Package(name=name, version=version, architecture="amd64", filename=f"pool/{name}_{version}.deb",
                   size=1, sha256=sha, suite=suite)


def test_compare_finds_newer_and_gone_packages() -> None:
    from rootfs_forge.model import Resolution

    locked = Resolution(packages=(_pkg("a", "1.0"), _pkg("b", "1.0"), _pkg("c", "2.0")), order=(), why={},
                        requested=(), notes=())
    index = MemoryIndex([_pkg("a", "1.0"), _pkg("a", "1.1"), _pkg("b", "1.0"), _pkg("c", "2.1"),
                         _pkg("a", "9.0", suite="backports")])
    assert compare(locked, index, {"backports": 100}) == [
        {"package": "a", "architecture": "amd64", "locked": "1.0", "available": "1.1"},
        {"package": "c", "architecture": "amd64", "locked": "2.0", "available": "2.1"},
    ]
    assert compare(locked, MemoryIndex([_pkg("a", "1.0"), _pkg("b", "1.0")]))[0]["available"] == ""


def test_lock_check_says_stale_and_behind(tmp_path: Path, repo_server: RepoServer, signer: Signer,
                                          cache_dir: Path) -> None:
    r = recipe(tmp_path, repo_server, signer, 'packages = ["hello=2.9-1"]')
    assert forge("lock", "--check", str(r), cache=cache_dir).returncode == 2  # no lock yet: a lock error
    assert forge("lock", str(r), cache=cache_dir).returncode == 0
    # hello 2.10-3 is in the archive too: the lock (pinned to 2.9-1) is behind it
    proc = forge("lock", "--check", str(r), cache=cache_dir)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "hello 2.9-1 -> 2.10-3" in proc.stderr, proc.stderr
    compose = forge("compose", str(r), "-o", str(tmp_path / "o"), cache=cache_dir)
    assert compose.returncode == 0, compose.stderr
    assert compose.stderr.count("is behind the archive") == 1 and "hello 2.9-1 -> 2.10-3" in compose.stderr
    r.write_text(r.read_text().replace("hello=2.9-1", "hello"))
    proc = forge("lock", "--check", str(r), cache=cache_dir)
    assert proc.returncode == 1 and "is stale" in proc.stderr
    assert forge("lock", str(r), cache=cache_dir).returncode == 0
    proc = forge("lock", "--check", str(r), cache=cache_dir)
    assert proc.returncode == 0 and "current" in proc.stdout, proc.stderr
    compose = forge("compose", str(r), "-o", str(tmp_path / "o2"), cache=cache_dir)
    assert compose.returncode == 0 and "behind" not in compose.stderr


def test_resolve_v_shows_the_reasons_a_lock_recorded(tmp_path: Path, repo_server: RepoServer, signer: Signer,
                                                     cache_dir: Path) -> None:
    r = recipe(tmp_path, repo_server, signer, 'packages = ["hello"]')
    assert forge("lock", str(r), cache=cache_dir).returncode == 0
    proc = forge("resolve", "-v", str(r), cache=cache_dir)
    assert proc.returncode == 0 and "(from lock)" in proc.stdout
    assert "resolver: from " in proc.stderr
    assert re.search(r"resolver: \w+: mawk 1\.3\.4: hello(:\w+)?: ", proc.stderr), proc.stderr


# ------------------------------------------------------------------------------------------- exit codes


def test_readme_exit_code_table_matches_the_code() -> None:
    text = " ".join((REPO / "README.md").read_text().split())
    table = re.search(r"a non-zero exit code: (.*?)\. ", text)
    assert table, "the README's exit-code sentence is gone"
    parts = re.split(r"(?:^|, )(\d) ", table.group(1))[1:]
    codes = {int(n): what for n, what in zip(parts[::2], parts[1::2], strict=True)}
    assert codes[errors.RecipeError.exit_code].startswith("recipe or lock")
    assert codes[errors.ArchiveError.exit_code].startswith("archive")
    assert codes[errors.ResolveError.exit_code] == "resolution"
    assert codes[errors.FetchError.exit_code] == "download"
    assert codes[errors.DebError.exit_code].startswith("unsafe or malformed package")
    assert codes[errors.ImageError.exit_code] == "image"
    assert codes[errors.RunError.exit_code] == "launcher"
    assert codes[errors.AuditError.exit_code].startswith("audit")
    assert "audit --fail-on" in codes[1] and "lock --check" in codes[1]


# ------------------------------------------------------------------------------------------- entrypoint


def test_entrypoint_replaces_the_images_and_drops_its_cmd() -> None:
    cfg = ProcessDefaults(entrypoint=("/bin/ep",), cmd=("default",))
    assert plan_process(cfg, [], (), None, None, "img", "/bin/other").argv == ("/bin/other",)
    assert plan_process(cfg, ["a", "b"], (), None, None, "img", "/bin/other").argv == ("/bin/other", "a", "b")
    assert plan_process(cfg, ["sh", "-c", "x"], (), None, None, "img", "").argv == ("sh", "-c", "x")
    with pytest.raises(errors.RunError, match="--entrypoint '' cleared"):
        plan_process(cfg, [], (), None, None, "img", "")
    assert plan_process(cfg, ["x"], (), None, None, "img").argv == ("/bin/ep", "x")  # arguments replace Cmd


@pytest.mark.root
def test_run_entrypoint_flag(world: dict[str, Path]) -> None:  # noqa: F811
    from tests.test_run import forge as run_forge

    image = f"{world['layout']}:base"  # Cmd: sh -c 'echo default cmd'
    assert run_forge(world, "run", "--entrypoint", "/bin/echo", image, "hi", check=0).stdout == "hi\n"
    assert run_forge(world, "run", "--entrypoint", "/bin/echo", image, check=0).stdout == "\n"  # Cmd dropped
    assert run_forge(world, "run", "--entrypoint", "", image, "echo", "x", check=0).stdout == "x\n"
    proc = run_forge(world, "run", "--entrypoint", "", image)
    assert proc.returncode == 8 and "--entrypoint '' cleared" in proc.stderr


# ------------------------------------------------------------------------------------------------ paths


@pytest.mark.root
def test_every_command_takes_relative_paths_from_another_directory(tmp_path: Path, repo_server: RepoServer,
                                                                   signer: Signer) -> None:
    """Recipe, [[file]] source, lock, output, cache and the targets of audit/sbom/diff/why/run/commit, all
    given relative to a working directory that is neither the project's nor the recipe's."""
    from tests.test_run import BUSYBOX

    if not os.path.exists(BUSYBOX):
        pytest.skip("needs busybox-static (a program the test image can run)")
    proj = tmp_path / "proj"
    (proj / "files").mkdir(parents=True)
    (proj / "files/motd").write_text("relative\n")
    shutil.copy(BUSYBOX, proj / "files/busybox")
    recipe(proj, repo_server, signer, 'packages = ["hello"]\n[image]\nname = "forge/rel"\ntag = "t"\n'
           '[[file]]\nsrc = "files/motd"\ndest = "/etc/motd"\n'
           '[[file]]\nsrc = "files/busybox"\ndest = "/bin/busybox"\nmode = "0755"\n')
    work = tmp_path / "elsewhere"
    work.mkdir()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO), "SOURCE_DATE_EPOCH": "1700000000"}
        env.pop("FORGE_CACHE", None)
        return subprocess.run([sys.executable, "-m", "rootfs_forge", *args], capture_output=True, text=True,
                              cwd=work, env=env, timeout=300)

    def ok(*args: str) -> str:
        proc = cli(*args)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout

    c = ["--cache-dir", "../cache"]
    ok("lock", "../proj/r.toml", *c)
    assert (proj / "r.lock").is_file()
    ok("lock", "--check", "../proj/r.toml", *c)
    ok("compose", "../proj/r.toml", "-o", "img", *c)
    ok("compose", "../proj/r.toml", "--format", "oci-archive", "-o", "sub/img.tar", *c)
    ok("compose", "../proj/r.toml", "--format", "rootfs", "-o", "root", *c)
    assert (work / "root/etc/motd").read_text() == "relative\n"
    assert (tmp_path / "cache").is_dir() and not (work / "cache").exists()
    ok("compose", "../proj/r.toml", *c)  # the default output: out/<name>-<tag> under the working directory
    assert (work / "out/rel-t/index.json").is_file()
    ok("resolve", "../proj/r.toml", *c)
    assert "hello" in ok("why", "libc6", "../proj/r.toml", *c)
    for target in ("img", "img:t", "sub/img.tar", "root"):
        assert "hello" in ok("audit", target)
        assert json.loads(ok("sbom", target))
        assert "libc6" in ok("why", "libc6", target)
    ok("diff", "img", "root")
    ok("diff", "../proj/r.lock", "img", "--html", "diff.html")
    ok("sbom", "img:t", "--format", "spdx", "-o", "sbom.json")
    ok("audit", "sub/img.tar", "--html", "report.html")
    assert json.loads((work / "sbom.json").read_text())["spdxVersion"] == "SPDX-2.3"
    assert (work / "report.html").stat().st_size > 0 and (work / "diff.html").stat().st_size > 0
    cat = ["busybox", "cat", "/etc/motd"]
    assert ok("run", "--cache-dir", "../runcache", "img:t", *cat) == "relative\n"
    assert ok("run", "--cache-dir", "../runcache", "sub/img.tar", *cat) == "relative\n"
    assert ok("run", "root", *cat) == "relative\n"
    ok("run", "--state-dir", "state", "--cache-dir", "../runcache", "--name", "kept", "img:t", "busybox", "sh",
       "-c", "echo changed > /etc/motd")
    ok("commit", "--state-dir", "state", "kept", "committed:t2")
    assert ok("run", "--cache-dir", "../runcache", "committed:t2", *cat) == "changed\n"


def test_push_and_pull_take_relative_paths(tmp_path: Path, repo_server: RepoServer, signer: Signer,
                                           registry: str) -> None:  # noqa: F811
    work = tmp_path / "w"
    work.mkdir()
    recipe(work, repo_server, signer, 'packages = ["hello"]\n[image]\ntag = "t"')
    cache = ["--cache-dir", "c"]
    assert forge("compose", "r.toml", "-o", "img", *cache, cwd=work).returncode == 0
    pushed = forge("push", "img:t", f"{registry}/rel/img:t", "--insecure", cwd=work)
    assert pushed.returncode == 0, pushed.stderr
    pulled = forge("pull", f"{registry}/rel/img:t", "-o", "sub/pulled", "--insecure", *cache, cwd=work)
    assert pulled.returncode == 0, pulled.stderr
    assert (work / "sub/pulled/index.json").is_file()
    assert "hello" in forge("audit", "sub/pulled", cwd=work).stdout


def test_default_cache_is_cache_at_the_project_root_for_every_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from rootfs_forge.archive.cache import default_cache_dir
    from rootfs_forge.run.paths import default_cache_dir as run_cache_dir

    monkeypatch.delenv("FORGE_CACHE", raising=False)
    assert default_cache_dir() == REPO / "cache" == Path(run_cache_dir())
    monkeypatch.chdir("/")
    monkeypatch.setenv("FORGE_CACHE", "rel/cache")  # relative: taken from the working directory, at once
    assert default_cache_dir() == Path("/rel/cache")
