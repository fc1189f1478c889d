"""The maintainer-script reader and the literal-script planner agree on what a shell function is."""

from __future__ import annotations

import pytest

from rootfs_forge.configure.effects.literal_plan import plan
from rootfs_forge.configure.effects.scripts import simple_commands

HEADERS = ["setup() {", "setup () {", "function setup() {", "function setup {", "function setup"]


@pytest.mark.parametrize("header", HEADERS)
def test_a_call_of_a_script_function_is_not_a_command(header: str) -> None:
    body = "{\n" if not header.endswith("{") else ""
    script = f"#!/bin/bash\n{header}\n{body}  touch /etc/x\n}}\nsetup\n"
    assert simple_commands(script) == [["touch", "/etc/x"]]


@pytest.mark.parametrize("header", HEADERS)
def test_the_planner_leaves_a_function_body_to_its_calls(header: str) -> None:
    """Every header form is a function: its body runs where the script calls it (without arguments), and
    stays ignored when nothing calls it."""
    body = "{\n" if not header.endswith("{") else ""
    script = f"#!/bin/bash\n{header}\n{body}  touch /etc/x\n}}\n"
    steps = [(s.words, s.reason) for s in plan(script + "setup\n", lambda test, path: False)]
    assert steps == [(("touch", "/etc/x"), "")]
    assert [(s.words, s.reason) for s in plan(script, lambda test, path: False)] == [
        (("touch", "/etc/x"), "in a shell function")
    ]
