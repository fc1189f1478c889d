"""Property-based: whatever a recipe holds, forge answers with a one-line RecipeError or a Recipe, never a crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rootfs_forge.errors import RecipeError
from rootfs_forge.recipe import TOP_KEYS, parse_recipe

KEYS = [*sorted(TOP_KEYS), "pakages", "imagee", ""]
SUBKEYS = ["name", "tag", "architecture", "architectures", "url", "suites", "include", "exclude", "profile",
           "uid", "gid", "src", "dest", "mode", "owner", "keep", "entrypoint", "env", "user", "x"]

scalars = st.one_of(st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(max_size=20),
                    st.floats(allow_nan=False), st.sampled_from(["amd64", "bash", "0755", "/etc/x", "../x"]))
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(SUBKEYS), inner, max_size=4)),
    max_leaves=12,
)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=8)


def check(text: str) -> None:
    try:
        parse_recipe(text, Path("fuzz.toml"), "amd64")
    except RecipeError as exc:
        message = str(exc)
        assert message.startswith("cannot read recipe fuzz.toml: ")
        assert "\n" not in message and "Traceback" not in message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_recipe_documents_never_crash(doc: dict[str, Any]) -> None:
    check(tomli_w.dumps(doc))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_random_recipe_text_never_crashes(text: str) -> None:
    check(text)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(SUBKEYS), values, max_size=5), st.sampled_from(
    ["image", "paths", "effects", "config", "slim"]))
def test_random_tables_never_crash(table: dict[str, Any], key: str) -> None:
    check(tomli_w.dumps({"packages": ["bash"], key: table}))
