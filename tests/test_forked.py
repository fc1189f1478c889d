"""rootfs_forge.util.forked: a call in a child process, its result or its ForgeError back in the parent."""

from __future__ import annotations

import os

import pytest

from rootfs_forge.errors import ArchiveError, RecipeError
from rootfs_forge.util.forked import Forked


def test_result_comes_back_from_the_child() -> None:
    parent = os.getpid()
    child = Forked(lambda: {"pid": os.getpid(), "items": [1, "two"]})
    doc = child.result()
    assert doc["items"] == [1, "two"] and doc["pid"] != parent
    assert child.result() is doc  # asked again: the same answer, no second wait


def test_forge_error_in_the_child_is_raised_in_the_parent_with_its_class() -> None:
    def fail() -> None:
        raise ArchiveError("verify", "bookworm/InRelease", "bad signature")

    child = Forked(fail)
    with pytest.raises(ArchiveError) as err:
        child.result()
    assert str(err.value) == "cannot verify bookworm/InRelease: bad signature"
    assert err.value.exit_code == 3


def test_error_class_with_its_own_constructor_survives_the_trip() -> None:
    def fail() -> None:
        raise RecipeError("r.toml", ["packages: is empty"])

    with pytest.raises(RecipeError) as err:
        Forked(fail).result()
    assert str(err.value) == "cannot read recipe r.toml: packages: is empty"
    assert err.value.exit_code == 2


@pytest.mark.parametrize("how", ["exception", "exit", "unencodable"])
def test_child_that_fails_otherwise_gives_none_for_the_caller_to_redo(how: str) -> None:
    def fail() -> object:
        if how == "exception":
            raise RuntimeError("boom")
        if how == "exit":
            os._exit(9)
        return {"x": object()}  # not plain data: marshal refuses it

    assert Forked(fail).result() is None
