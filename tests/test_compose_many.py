"""forge compose with several recipes, a directory or a glob: one process, one summary, the same images.

Each recipe must come out exactly as a separate ``forge compose`` of it makes it (same manifest digest), a
failing recipe must fail alone (the others complete, nothing of it is written, the exit says it), and a single
recipe keeps today's behaviour (tests/test_cli_ux.py). The recipes are composed in forked children in a real
process (``cli=True``); in this process (the test repository's server thread runs) one after another.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import rootfs_forge
from rootfs_forge.errors import ForgeError
from tests.conftest import source_block
from tests.support.forge import EPOCH, forge
from tests.support.repo import RepoServer, Signer

RECIPES = {
    "hello": 'packages = ["hello"]\n[config]\ncmd = ["/usr/bin/hello"]\n',
    "gawk": 'packages = ["gawk"]\n',
    "data": 'packages = ["base-files", "data-all"]\n',
}
BAD = 'packages = ["hello", "no-such-thing"]\n'


def write_recipes(where: Path, server: RepoServer, signer: Signer, bodies: dict[str, str]) -> list[Path]:
    where.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, body in bodies.items():
        path = where / f"{name}.toml"
        path.write_text(body + "\n" + source_block(server, signer))
        paths.append(path)
    return paths


def index_digest(layout: Path) -> str:
    return str(json.loads((layout / "index.json").read_text())["manifests"][0]["digest"])


def leftovers(where: Path) -> list[str]:
    """Staged outputs and work directories a compose left behind (named ``.<dest>.forge-<pid>-…``)."""
    return sorted(p.name for p in where.iterdir() if ".forge-" in p.name)


def test_several_recipes_give_the_digests_of_separate_composes(tmp_path: Path, repo_server: RepoServer,
                                                               signer: Signer) -> None:
    recipes = write_recipes(tmp_path / "r", repo_server, signer, RECIPES)
    cache = tmp_path / "cache"
    # a real process: the recipes are composed in its forked children, two at a time
    done = forge("compose", *map(str, recipes), "-o", str(tmp_path / "many"), "--json", "--parallel", "2",
                 cache=cache, cli=True, timeout=300)
    assert done.returncode == 0, done.stderr
    # one download pool: every .deb once, libc6 too (hello and gawk both need it)
    debs = [r for r in repo_server.requests if r.endswith(".deb")]
    assert len(debs) == len(set(debs)) and sum("/libc6_" in d for d in debs) == 1, debs
    reports = json.loads(done.stdout)
    assert [Path(r["recipe"]).name for r in reports] == ["hello.toml", "gawk.toml", "data.toml"]
    assert all(a["downloaded"] == 0 for r in reports for a in r["architectures"].values())  # all in the pool
    for recipe, report in zip(recipes, reports, strict=True):
        alone = tmp_path / "alone" / recipe.stem
        single = forge("compose", str(recipe), "-o", str(alone), "-q", cache=tmp_path / "other-cache")
        assert single.returncode == 0, single.stderr
        out = tmp_path / "many" / f"{recipe.stem}-latest"
        assert report["output"] == str(out)
        assert report["manifest_digest"] == index_digest(out) == index_digest(alone)
        assert {"plan", "unpack", "output"} <= set(report["timings"])
    assert len({r["manifest_digest"] for r in reports}) == 3


def test_a_directory_and_a_quoted_glob_name_their_recipes_sorted(tmp_path: Path, repo_server: RepoServer,
                                                                 signer: Signer, cache_dir: Path) -> None:
    write_recipes(tmp_path / "gallery", repo_server, signer, RECIPES)
    (tmp_path / "gallery" / "notes.txt").write_text("not a recipe\n")
    done = forge("compose", str(tmp_path / "gallery"), "-o", str(tmp_path / "out"), cache=cache_dir)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["recipe", "image", "architectures", "packages", "digest", "or", "error", "seconds"]
    assert [Path(line.split()[0]).name for line in lines[1:4]] == ["data.toml", "gawk.toml", "hello.toml"]
    assert all("sha256:" in line for line in lines[1:4])
    assert lines[4].startswith("composed 3 of 3 recipes in ")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["data-latest", "gawk-latest", "hello-latest"]

    # the glob as the shell would pass it quoted: forge expands it (only the recipes it matches)
    glob = forge("compose", str(tmp_path / "gallery" / "[gh]*.toml"), "-o", str(tmp_path / "globbed"), "--json",
                 cache=cache_dir)
    assert glob.returncode == 0, glob.stderr
    assert [Path(r["recipe"]).name for r in json.loads(glob.stdout)] == ["gawk.toml", "hello.toml"]
    assert sorted(p.name for p in (tmp_path / "globbed").iterdir()) == ["gawk-latest", "hello-latest"]

    nothing = forge("compose", str(tmp_path / "gallery" / "z*.toml"), cache=cache_dir)
    assert nothing.returncode == 1 and nothing.stdout == ""
    assert nothing.stderr == f"forge: cannot compose {tmp_path / 'gallery' / 'z*.toml'}: no recipe matches this " \
                             "pattern\n"


def test_without_o_each_recipe_goes_to_its_default_output(tmp_path: Path, repo_server: RepoServer, signer: Signer,
                                                          cache_dir: Path) -> None:
    recipes = write_recipes(tmp_path / "r", repo_server, signer, {"hello": RECIPES["hello"]})
    tagged = tmp_path / "r" / "tagged.toml"
    tagged.write_text('packages = ["gawk"]\n[image]\nname = "forge/awk"\ntag = "v1"\n'
                      '[config]\ncmd = ["/usr/bin/gawk"]\n' + source_block(repo_server, signer))
    done = forge("compose", *map(str, recipes), str(tagged), "--format", "oci-archive", cache=cache_dir,
                 cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["awk-v1.tar", "hello-latest.tar"]
    assert "forge/awk:v1" in done.stdout


def test_one_failing_recipe_fails_alone_and_writes_nothing(tmp_path: Path, repo_server: RepoServer,
                                                          signer: Signer) -> None:
    good = write_recipes(tmp_path / "r", repo_server, signer, RECIPES)
    (bad,) = write_recipes(tmp_path / "r", repo_server, signer, {"broken": BAD})
    out = tmp_path / "out"
    done = forge("compose", str(good[0]), str(bad), *map(str, good[1:]), "-o", str(out), cache=tmp_path / "cache",
                 cli=True, timeout=300)
    assert done.returncode == 1, done.stderr
    # the failure on one line of its own, naming the recipe and the package
    failures = [line for line in done.stderr.splitlines() if line.startswith("forge: cannot")]
    assert len(failures) == 1 and str(bad) in failures[0] and "no-such-thing" in failures[0], done.stderr
    rows = {Path(line.split()[0]).name: line for line in done.stdout.splitlines()[1:5]}
    assert "error: cannot" in rows["broken.toml"] and "no-such-thing" in rows["broken.toml"]
    assert all("sha256:" in rows[f"{n}.toml"] for n in RECIPES)
    assert "composed 3 of 4 recipes (1 failed)" in done.stdout
    # the others complete; nothing of the failed one, nor anything half-written
    assert sorted(p.name for p in out.iterdir()) == ["data-latest", "gawk-latest", "hello-latest"]
    assert leftovers(out) == []


def test_a_failure_is_an_error_report_in_the_json_list(tmp_path: Path, repo_server: RepoServer, signer: Signer,
                                                       cache_dir: Path) -> None:
    (good,) = write_recipes(tmp_path / "r", repo_server, signer, {"hello": RECIPES["hello"]})
    (bad,) = write_recipes(tmp_path / "r", repo_server, signer, {"broken": BAD})
    done = forge("compose", str(bad), str(good), "-o", str(tmp_path / "out"), "--json", cache=cache_dir)
    assert done.returncode == 1
    failed, ok = json.loads(done.stdout)
    assert failed["recipe"] == str(bad) and "no-such-thing" in failed["error"] and "manifest_digest" not in failed
    assert ok["manifest_digest"] == index_digest(tmp_path / "out" / "hello-latest")
    assert done.stderr.count("forge: cannot") == 1


def test_options_for_one_output_are_refused_with_several_recipes(tmp_path: Path, repo_server: RepoServer,
                                                                 signer: Signer, cache_dir: Path) -> None:
    recipes = write_recipes(tmp_path / "r", repo_server, signer, RECIPES)
    a_file = tmp_path / "image.tar"
    a_file.write_bytes(b"")
    done = forge("compose", *map(str, recipes), "--format", "oci-archive", "-o", str(a_file), cache=cache_dir)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (f"forge: cannot compose several recipes to {a_file}: -o names a file; with several "
                           "recipes it names a directory of outputs\n")
    # two recipes with one output: refused before any work
    twin = tmp_path / "twin"
    (copy,) = write_recipes(twin, repo_server, signer, {"hello": RECIPES["gawk"]})
    same = forge("compose", str(recipes[0]), str(copy), "-o", str(tmp_path / "o"), cache=cache_dir)
    assert same.returncode == 1 and "both would write" in same.stderr and not (tmp_path / "o").exists()


def test_library_compose_many_matches_compose(tmp_path: Path, repo_server: RepoServer, signer: Signer) -> None:
    recipes = write_recipes(tmp_path / "r", repo_server, signer, RECIPES)
    reports = rootfs_forge.compose_many([tmp_path / "r"], tmp_path / "many", cache_dir=tmp_path / "cache",
                                        epoch=1_700_000_000)
    assert [Path(r["recipe"]).stem for r in reports] == ["data", "gawk", "hello"]
    for recipe in recipes:
        (report,) = [r for r in reports if Path(r["recipe"]) == recipe]
        alone = rootfs_forge.compose(recipe, tmp_path / "alone" / recipe.stem, cache_dir=tmp_path / "cache2",
                                     epoch=1_700_000_000)
        assert report["manifest_digest"] == alone["manifest_digest"]
    with pytest.raises(ForgeError, match="unknown format"):
        rootfs_forge.compose_many(recipes, tmp_path / "x", format="zip")


HELLO = 'packages = ["hello"]\n'
TWINS = {  # one package layer, another top layer (an account): the gallery's base and base-nonroot in small
    "twin": f'{HELLO}[[layer]]\nname = "hello"\npackages = ["hello", "libc6"]\n',
    "twin-nonroot": f'{HELLO}[[account]]\nname = "nonroot"\nuid = 65532\n'
                    '[[layer]]\nname = "hello"\npackages = ["hello", "libc6"]\n',
}


def compose_gallery(tmp_path: Path, server: RepoServer, signer: Signer, bodies: dict[str, str],
                    parallel: str) -> tuple[list[Path], list[dict[str, Any]]]:
    """``bodies`` as recipes composed by one ``forge compose`` process into tmp_path/many: (recipes, reports)."""
    recipes = write_recipes(tmp_path / "r", server, signer, bodies)
    done = forge("compose", *map(str, recipes), "-o", str(tmp_path / "many"), "--json", "--parallel", parallel,
                 cache=tmp_path / "cache", cli=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return recipes, json.loads(done.stdout)


@pytest.mark.parametrize("parallel", ["1", "2"])
def test_twin_recipes_write_their_shared_layer_once_and_give_separate_digests(
        tmp_path: Path, repo_server: RepoServer, signer: Signer, parallel: str) -> None:
    recipes, reports = compose_gallery(tmp_path, repo_server, signer, TWINS, parallel)
    shared = [r["layer_share"] for r in reports]
    # (one package layer, one top layer) each: the package layer is written once, then copied
    assert sum(s["written"] for s in shared) == 3 and sum(s["reused"] for s in shared) == 1, shared
    for recipe, report in zip(recipes, reports, strict=True):
        alone = tmp_path / "alone" / recipe.stem
        single = forge("compose", str(recipe), "-o", str(alone), "-q",
                       cache=tmp_path / "other-cache")
        assert single.returncode == 0, single.stderr
        assert report["manifest_digest"] == index_digest(tmp_path / "many" / f"{recipe.stem}-latest") \
            == index_digest(alone)
    assert leftovers(tmp_path / "many") == []  # the share went with the call


def test_each_recipe_is_planned_once_not_again_by_its_compose(tmp_path: Path, repo_server: RepoServer,
                                                              signer: Signer, monkeypatch: pytest.MonkeyPatch) -> None:
    import rootfs_forge.api
    import rootfs_forge.resolve.plan

    planned: list[str] = []
    real = rootfs_forge.resolve.plan.plan

    def counting(recipe, ctx, **kw):  # type: ignore[no-untyped-def]
        planned.append(recipe.path.name)
        return real(recipe, ctx, **kw)

    monkeypatch.setattr(rootfs_forge.resolve.plan, "plan", counting)
    monkeypatch.setattr(rootfs_forge.api, "plan", counting)
    recipes = write_recipes(tmp_path / "r", repo_server, signer, {"hello": RECIPES["hello"], "gawk": RECIPES["gawk"]})
    reports = rootfs_forge.compose_many(recipes, tmp_path / "many", cache_dir=tmp_path / "cache",
                                        epoch=1_700_000_000)
    assert sorted(planned) == ["gawk.toml", "hello.toml"]
    for recipe, report in zip(recipes, reports, strict=True):
        alone = rootfs_forge.compose(recipe, tmp_path / "alone" / recipe.stem, cache_dir=tmp_path / "cache2",
                                     epoch=1_700_000_000)
        assert report["manifest_digest"] == alone["manifest_digest"]


# the gallery's base and base-nonroot in small: one image name, two tags, the second running as nonroot
TAGGED = 'packages = ["hello"]\n[[account]]\nname = "nonroot"\nuid = 65532\nhome = "/home/nonroot"\n'
TREE_TWINS = {
    "img": f'{TAGGED}[image]\nname = "forge/img"\ntag = "root"\n',
    "img-nonroot": f'{TAGGED}[image]\nname = "forge/img"\ntag = "nonroot"\n'
                   '[config]\nuser = "nonroot"\nworking_dir = "/home/nonroot"\n',
}


def _separate_digest(recipe: Path, where: Path) -> str:
    done = forge("compose", str(recipe), "-o", str(where), "-q", cache=where.parent / "separate-cache")
    assert done.returncode == 0, done.stderr
    return index_digest(where)


@pytest.mark.parametrize("parallel", ["1", "2"])
def test_recipes_differing_only_in_tag_and_config_are_built_once_and_give_separate_digests(
        tmp_path: Path, repo_server: RepoServer, signer: Signer, parallel: str) -> None:
    recipes, listed = compose_gallery(tmp_path, repo_server, signer, TREE_TWINS, parallel)
    reports = {Path(r["recipe"]).stem: r for r in listed}
    # the second recipe's image comes from the first one's trees: no unpack, no effects of its own
    assert "trees_of" not in reports["img"] and reports["img-nonroot"]["trees_of"] == str(recipes[0])
    assert set(reports["img-nonroot"]["timings"]) == {"output"}
    for recipe in recipes:
        report = reports[recipe.stem]
        out = Path(report["output"])
        assert report["manifest_digest"] == index_digest(out) == _separate_digest(recipe, tmp_path / "alone" /
                                                                                    recipe.stem)
    assert reports["img"]["manifest_digest"] != reports["img-nonroot"]["manifest_digest"]
    assert leftovers(tmp_path / "many") == []


def test_twins_are_built_once_in_process_and_each_keeps_its_own_manifest(
        tmp_path: Path, repo_server: RepoServer, signer: Signer, monkeypatch: pytest.MonkeyPatch) -> None:
    import rootfs_forge.api

    built: list[str] = []
    real = rootfs_forge.api.build_tree

    def counting(root, recipe, arch, *a, **kw):  # type: ignore[no-untyped-def]
        built.append(recipe.tag)
        return real(root, recipe, arch, *a, **kw)

    monkeypatch.setattr(rootfs_forge.api, "build_tree", counting)
    recipes = write_recipes(tmp_path / "r", repo_server, signer, TREE_TWINS)
    reports = rootfs_forge.compose_many(recipes, tmp_path / "many", cache_dir=tmp_path / "cache",
                                        epoch=1_700_000_000)
    assert built == ["root"]
    monkeypatch.setattr(rootfs_forge.api, "build_tree", real)
    for recipe, report in zip(recipes, reports, strict=True):
        alone = rootfs_forge.compose(recipe, tmp_path / "alone" / recipe.stem, cache_dir=tmp_path / "cache2",
                                     epoch=1_700_000_000)
        assert report["manifest_digest"] == alone["manifest_digest"]
    # forge's manifest inside each image names its own tag (the one file a twin's tree differs in)
    from rootfs_forge.audit.target import open_target
    from rootfs_forge.audit.view import read_bytes

    tags = [json.loads(read_bytes(open_target(r["output"]).view, "/var/lib/forge/manifest.json"))["image"]["tag"]
            for r in reports]
    assert tags == ["root", "nonroot"]


def test_a_twin_whose_config_is_wrong_fails_alone_with_its_own_message(
        tmp_path: Path, repo_server: RepoServer, signer: Signer) -> None:
    bodies = {"img": TREE_TWINS["img"],
              "img-bad": f'{TAGGED}[image]\nname = "forge/img"\ntag = "bad"\n[config]\nuser = "nobody-here"\n'}
    recipes = write_recipes(tmp_path / "r", repo_server, signer, bodies)
    out = tmp_path / "many"
    done = forge("compose", *map(str, recipes), "-o", str(out), "--json", cache=tmp_path / "cache", cli=True,
                 timeout=300)
    assert done.returncode == 1
    good, bad = json.loads(done.stdout)
    alone = forge("compose", str(recipes[1]), "-o", str(tmp_path / "alone"), cache=tmp_path / "cache")
    assert alone.returncode != 0
    assert bad["error"] in alone.stderr and "nobody-here" in bad["error"]
    assert good["manifest_digest"] == index_digest(out / "img-root")
    assert sorted(p.name for p in out.iterdir()) == ["img-root"] and leftovers(out) == []


def test_the_first_twin_failing_its_config_does_not_fail_the_others(
        tmp_path: Path, repo_server: RepoServer, signer: Signer) -> None:
    bodies = {"a-bad": f'{TAGGED}[image]\nname = "forge/img"\ntag = "bad"\n[config]\nuser = "nobody-here"\n',
              "img": TREE_TWINS["img"]}
    recipes = write_recipes(tmp_path / "r", repo_server, signer, bodies)
    reports = rootfs_forge.compose_many(recipes, tmp_path / "many", cache_dir=tmp_path / "cache", epoch=int(EPOCH))
    assert "nobody-here" in reports[0]["error"] and "trees_of" not in reports[0]
    assert reports[1]["trees_of"] == str(recipes[0])
    assert reports[1]["manifest_digest"] == _separate_digest(recipes[1], tmp_path / "alone")


@pytest.mark.parametrize("change", ['[paths]\nexclude = ["/usr/share/doc/*"]\n', '[effects]\ntimezone = "Etc/UTC"\n'])
def test_recipes_whose_trees_differ_are_not_twins(tmp_path: Path, repo_server: RepoServer, signer: Signer,
                                                 change: str) -> None:
    bodies = {"img": TREE_TWINS["img"],
              "img-other": f'{TAGGED}{change}[image]\nname = "forge/img"\ntag = "other"\n'}
    recipes = write_recipes(tmp_path / "r", repo_server, signer, bodies)
    reports = rootfs_forge.compose_many(recipes, tmp_path / "many", cache_dir=tmp_path / "cache", epoch=int(EPOCH))
    assert not any("trees_of" in r for r in reports), reports
    assert reports[1]["manifest_digest"] == _separate_digest(recipes[1], tmp_path / "alone")
