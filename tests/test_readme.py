"""The README's commands, run as a newcomer runs them: verbatim, from a fresh clone, one after another.

The shell blocks of the quick start and the examples under the command table are extracted from README.md and
each line is run with ``bash -c`` in a fresh ``git clone`` of this checkout (its working directory), with
``forge`` on the PATH meaning the clone's own code and ``FORGE_CACHE`` pointing at a shared cache (so the
downloads of one run serve the next). A command that fails, or a README that no longer has the blocks, fails
the test: the README and the tool cannot drift apart.

Only what this test cannot run is left out, each listed in ``NOT_RUN`` with its reason, and every left-out
command is reported (a warning in pytest's summary and a line on stdout); a ``NOT_RUN`` entry the README no
longer has fails the test, so nothing is skipped silently.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

pytestmark = [pytest.mark.network, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]

# command text (one README line, or one part of an `a && b` line) -> why this test does not run it
NOT_RUN: dict[str, str] = {
    "bash .ci/setup": "installs the machine's packages; CI ran it before this test",
    "bash .ci/run": "runs the whole test suite, this test included",
    'python3 -m pytest -n 2 -m "" tests': "runs the whole test suite, this test included",
}

# what some commands must print (a substring of stdout), beyond exiting 0
EXPECT: dict[str, str] = {
    "forge run out/python3-bookworm:bookworm -c 'import ssl; print(ssl.OPENSSL_VERSION)'": "OpenSSL 3.",
    "forge run out/python3-bookworm:bookworm -c 'print(6 * 7)'": "42",
    "forge lock recipes/static.toml && forge lock --check recipes/static.toml": "current",
    "forge run --entrypoint /usr/bin/python3.11 out/python3-bookworm:bookworm -V": "Python 3.11",
    "forge diff recipes/base.lock recipes/cc.lock": "packages: +2",
}


def section(text: str, heading: str) -> str:
    """The text of the ``## heading`` section (up to the next heading of level 2)."""
    m = re.search(rf"^## {re.escape(heading)}\b.*?$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"README.md has no section '## {heading}'"
    return m.group(1)


def sh_blocks(text: str) -> list[list[str]]:
    """The command lines of each ```sh block (continuations joined; blank lines and comments dropped)."""
    blocks = []
    for body in re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S):
        lines: list[str] = []
        for line in body.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                lines.append(line.strip())
        blocks.append(lines)
    return blocks


def readme_commands(readme: str) -> list[str]:
    """The quick start's blocks, then the examples block of the command table, in README order."""
    quick = [c for block in sh_blocks(section(readme, "Quick start")) for c in block]
    examples = [c for block in sh_blocks(section(readme, "Commands")) for c in block]
    assert quick and examples, "README.md lost the shell blocks of its quick start or command examples"
    return quick + examples


def split_not_run(command: str) -> tuple[str | None, list[str]]:
    """``command`` without the parts listed in NOT_RUN (``a && b``: only whole parts), and the parts left out."""
    parts = [p.strip() for p in command.split(" && ")]
    left_out = [p for p in parts if p in NOT_RUN]
    kept = [p for p in parts if p not in NOT_RUN]
    return (" && ".join(kept) if kept else None), left_out


def test_split_not_run_keeps_the_exact_text_of_what_it_runs() -> None:
    assert split_not_run("bash .ci/setup && forge compose recipes/python3.toml") == (
        "forge compose recipes/python3.toml", ["bash .ci/setup"])
    assert split_not_run("bash .ci/run") == (None, ["bash .ci/run"])
    assert split_not_run("forge lock r.toml && forge lock --check r.toml") == (
        "forge lock r.toml && forge lock --check r.toml", [])


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("readme") / "rootfs_forge"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(dest)], check=True)
    return dest


def test_readme_commands_run_verbatim_from_a_fresh_clone(clone: Path, tmp_path: Path) -> None:
    readme = (clone / "README.md").read_text(encoding="utf-8")
    commands = readme_commands(readme)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "forge"  # `forge` is the clone's code, whatever is installed on the machine
    shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m rootfs_forge \"$@\"\n")
    shim.chmod(0o755)
    cache = os.environ.get("FORGE_CACHE") or str(REPO / "cache")
    env = {**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '')}", "PYTHONPATH": str(clone),
           "FORGE_CACHE": cache}
    env.pop("SOURCE_DATE_EPOCH", None)
    seen_not_run: set[str] = set()
    for command in commands:
        run, left_out = split_not_run(command)
        for part in left_out:
            seen_not_run.add(part)
            note = f"README command not run by this test: {part!r}: {NOT_RUN[part]}"
            print(note)
            warnings.warn(note, stacklevel=1)
        if run is None:
            continue
        print(f"$ {run}")
        proc = subprocess.run(["bash", "-c", run], cwd=clone, env=env, capture_output=True, text=True,
                              timeout=1800)
        print(proc.stdout[-2000:], proc.stderr[-2000:], sep="")
        assert proc.returncode == 0, f"README command failed ({proc.returncode}): {run}\n{proc.stderr}"
        if run in EXPECT:
            assert EXPECT[run] in proc.stdout, f"{run}: expected {EXPECT[run]!r} in\n{proc.stdout}"
    assert set(NOT_RUN) <= seen_not_run, f"NOT_RUN names commands the README no longer has: " \
                                          f"{sorted(set(NOT_RUN) - seen_not_run)}"
    assert set(EXPECT) <= {split_not_run(c)[0] for c in commands}, "EXPECT names commands the README lost"
