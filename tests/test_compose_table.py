"""Recipes and the trees they give, as a table (in the style of chisel's slicer tests): each case composes a
recipe against the test repository into an OCI image and compares the part of its file system it names —
kind, mode, owner and content digest of every path, as the image's layers carry them.

To add a case: write the recipe body, name the paths it is about (``under``) and the dump you expect there.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import source_block
from tests.support.forge import forge
from tests.support.repo import RepoServer, Signer
from tests.support.treedump import dump_layers


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


HELLO = "file 0755 0:0 " + sha("#!/bin/sh\necho hello\n")  # the contents tests/conftest.py gives them
MAWK = "file 0755 0:0 " + sha("#!/bin/sh\necho mawk\n")
COPYRIGHT = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\n"
             "License: LGPL-2.1\n")


@dataclass(frozen=True)
class Case:
    name: str
    recipe: str
    under: tuple[str, ...]
    tree: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)  # local files next to the recipe


CASES = [
    Case("merged /usr and the awk alternative", 'packages = ["hello"]', ("/bin", "/usr/bin", "/etc/alternatives"), {
        "/bin": "symlink usr/bin",
        "/etc/alternatives": "dir 0755 0:0",
        "/etc/alternatives/awk": "symlink /usr/bin/mawk",
        "/usr/bin": "dir 0755 0:0",
        "/usr/bin/awk": "symlink /etc/alternatives/awk",
        "/usr/bin/hello": HELLO,
        "/usr/bin/hi": "symlink /usr/bin/hello",
        "/usr/bin/mawk": MAWK,
    }),
    Case("without merged /usr", 'packages = ["hello"]\nmerged_usr = false', ("/bin",), {}),
    Case("a local file with its owner and mode",
         'packages = ["data-all"]\n[[file]]\nsrc = "f"\ndest = "/srv/app/f"\nmode = "0640"\nowner = "7:8"',
         ("/srv",), {
             "/srv": "dir 0755 0:0",
             "/srv/app": "dir 0755 0:0",
             "/srv/app/f": "file 0640 7:8 " + sha("data\n"),
         }, {"f": "data\n"}),
    Case("an account's home", 'packages = ["data-all"]\n[[account]]\nname = "app"\nuid = 1234\n', ("/home",), {
        "/home": "dir 0755 0:0",
        "/home/app": "dir 0755 1234:1234",
    }),
    Case("the minimal profile keeps the copyright only", 'packages = ["libc6"]', ("/usr/share/doc",), {
        "/usr/share/doc": "dir 0755 0:0",
        "/usr/share/doc/libc6": "dir 0755 0:0",
        "/usr/share/doc/libc6/copyright": "file 0644 0:0 " + sha(COPYRIGHT),
    }),
    Case("a slice that keeps nothing of a package", 'packages = ["hello"]\n[slice.libc6]\ninclude = []',
         ("/usr/lib/libc.so.6", "/usr/share/doc/libc6"), {}),
    Case("[slim] keeps the closure of the entrypoint",
         'packages = ["hello", "data-all"]\n[config]\nentrypoint = ["/usr/bin/hello"]\n[slim]\ndata = []',
         ("/usr/bin/hello", "/usr/share/data-all/data.txt"), {"/usr/bin/hello": HELLO}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_recipe_gives_the_tree(case: Case, tmp_path: Path, repo_server: RepoServer, signer: Signer) -> None:
    for name, text in case.files.items():
        (tmp_path / name).write_text(text)
    recipe = tmp_path / "r.toml"
    recipe.write_text(case.recipe + "\n" + source_block(repo_server, signer))
    done = forge("compose", str(recipe), "-o", str(tmp_path / "img"), "-q", cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert dump_layers(tmp_path / "img", case.under) == case.tree
