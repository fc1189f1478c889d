from __future__ import annotations

from pathlib import Path

import pytest

from rootfs_forge.errors import RecipeError
from rootfs_forge.recipe import load_recipe, parse_recipe

P = Path("r.toml")


def test_minimal_recipe_defaults_to_host_architecture() -> None:
    r = parse_recipe('packages = ["bash"]\n', P, "arm64")
    assert r.architectures == ("arm64",)
    assert r.packages == ("bash",)
    assert r.name == "r" and r.tag == "latest"
    assert r.profile == "minimal" and r.merged_usr and not r.recommends


def test_full_recipe_round_trips_every_table(tmp_path: Path) -> None:
    (tmp_path / "hello.bin").write_bytes(b"x")
    text = """
packages = ["bash", "python3=3.11.2-1+b1", "libc6:arm64"]
recommends = true
prefer = ["mawk"]
exclude = ["perl"]
strategy = "smallest"
[image]
name = "py"
tag = "bookworm"
architectures = ["amd64", "arm64"]
compression = "zstd"
[[source]]
url = "http://127.0.0.1:1/debian"
suites = ["bookworm", "bookworm-updates"]
keyring = "/k.gpg"
mirrors = ["file:///srv/mirror"]
[paths]
profile = "full"
exclude = ["/usr/share/zoneinfo/right/*"]
locales = ["de"]
[slice.tzdata]
include = ["/usr/share/zoneinfo/UTC"]
[[account]]
name = "nonroot"
uid = 65532
[effects]
sh = "bash"
alternatives = { awk = "/usr/bin/mawk" }
[config]
entrypoint = ["python3"]
user = "nonroot"
env = { LANG = "C.UTF-8" }
exposed_ports = ["8080/tcp"]
[[layer]]
name = "base"
packages = ["libc6"]
[[file]]
src = "hello.bin"
dest = "/usr/local/bin/hello"
mode = "0755"
owner = "65532:65532"
"""
    r = parse_recipe(text, tmp_path / "py.toml", "amd64")
    assert r.architectures == ("amd64", "arm64")
    assert [(s.url, s.suites, s.mirrors) for s in r.sources] == [
        ("http://127.0.0.1:1/debian", ("bookworm", "bookworm-updates"), ("file:///srv/mirror",))]
    assert r.slices == (("tzdata", ("/usr/share/zoneinfo/UTC",)),)
    assert r.accounts[0].uid == 65532 and r.accounts[0].gid == 65532 and r.accounts[0].home == "/home/nonroot"
    assert r.alternatives == (("awk", "/usr/bin/mawk"),)
    assert r.config.entrypoint == ("python3",) and r.config.env == (("LANG", "C.UTF-8"),)
    assert r.layering == "groups" and r.layers[0].packages == ("libc6",)
    assert r.files[0].mode == 0o755 and (r.files[0].uid, r.files[0].gid) == (65532, 65532)
    assert r.files[0].src == str(tmp_path / "hello.bin")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('pakages = ["x"]\n', "pakages: unknown key"),
        ('packages = []\n', "packages: is empty"),
        ('packages = "bash"\n', "packages: expected an array, got string"),
        ('packages = ["Bad Name"]\n', "packages[0]: not a valid package"),
        ('packages = ["a"]\n[image]\narchitecture = "amd65"\n', "image.architecture: unknown Debian architecture"),
        ('packages = ["a"]\n[image]\ntag = 3\n', "image.tag: expected a string, got integer"),
        ('packages = ["a"]\nrecommends = "yes"\n', "recommends: expected a boolean, got string"),
        ('packages = ["a"]\n[[source]]\nurl = "ftp://x"\nsuites = ["s"]\n', "source[0].url: must be an http"),
        ('packages = ["a"]\n[[source]]\nurl = "http://x"\n', "source[0].suites: missing"),
        ('packages = ["a"]\n[paths]\nprofile = "tiny"\n', "paths.profile: must be one of minimal, full"),
        ('packages = ["a"]\n[[account]]\nname = "x"\nuid = true\n', "account[0].uid: expected an integer"),
        ('packages = ["a"]\n[[file]]\nsrc = "nope"\ndest = "../x"\n', "file[0].dest: must be an absolute"),
        ('packages = ["a"]\n[image]\nlayer_budget = 0\n', "image.layer_budget: must be between 1 and 127"),
        ('packages = [\n', "invalid TOML"),
    ],
)
def test_bad_recipe_names_the_key(text: str, expected: str) -> None:
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, P, "amd64")
    assert expected in str(err.value)
    assert str(err.value).startswith("cannot read recipe r.toml: ")
    assert "\n" not in str(err.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(RecipeError) as err:
        parse_recipe('pakages = ["x"]\n[image]\ntag = 3\nfoo = 1\n', P, "amd64")
    assert err.value.problems == [
        "pakages: unknown key", "image.foo: unknown key", "image.tag: expected a string, got integer",
        "packages: missing: list the packages to install",
    ]


def test_missing_recipe_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"cannot read recipe .*nope.toml: no such file"):
        load_recipe(tmp_path / "nope.toml", "amd64")


def test_resolution_digest_ignores_cosmetic_keys_but_not_packages() -> None:
    a = parse_recipe('packages = ["bash"]\n[config]\ncmd = ["bash"]\n', P, "amd64")
    b = parse_recipe('packages = ["bash"]\n', P, "amd64")
    c = parse_recipe('packages = ["bash", "dash"]\n', P, "amd64")
    assert a.resolution_digest() == b.resolution_digest() != c.resolution_digest()


def test_a_local_file_name_with_a_newline_is_reported_on_one_line(tmp_path: Path) -> None:
    """Found by the hypothesis test of hostile recipes: the problem quoted the name as it was."""
    with pytest.raises(RecipeError) as info:
        parse_recipe('packages = ["a"]\n[[file]]\nsrc = "x\\ny"\ndest = "/x"\n', tmp_path / "r.toml", "amd64")
    assert "\n" not in str(info.value) and "no such file: 'x\\ny'" in str(info.value)
