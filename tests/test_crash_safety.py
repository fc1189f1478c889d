"""SIGKILL at random points of forge compose, and four composes sharing one cache at once."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import source_block
from tests.support.forge import forge, forge_command, forge_env
from tests.support.repo import RepoServer, Signer

pytestmark = [pytest.mark.slow]


def digest(layout: Path) -> str:
    return str(json.loads((layout / "index.json").read_text())["manifests"][0]["digest"])


def write(tmp: Path, server: RepoServer, signer: Signer, packages: list[str], name: str) -> Path:
    p = tmp / f"{name}.toml"
    p.write_text(f"packages = {json.dumps(packages)}\n" + source_block(server, signer))
    return p


def test_sigkill_at_random_points_leaves_absent_or_complete_output(tmp_path: Path, repo_server: RepoServer,
                                                                   signer: Signer) -> None:
    recipe = write(tmp_path, repo_server, signer, ["hello", "gawk", "data-all"], "r")
    cache = tmp_path / "cache"
    ref = tmp_path / "ref"
    done = forge("compose", str(recipe), "-o", str(ref), "-q", cache=tmp_path / "refcache")
    assert done.returncode == 0, done.stderr
    expected = digest(ref)
    t0 = time.perf_counter()
    subprocess.run(forge_command("compose", str(recipe), "-o", str(tmp_path / "timing"), "-q", cache=tmp_path / "c2"),
                   check=True, env=forge_env(), capture_output=True)  # a real process: the time the kills fall in
    full = time.perf_counter() - t0
    rng = random.Random(20261129)
    work = tmp_path / "work"  # where the scratch trees of the image builds go (else /dev/shm, shared)
    work.mkdir()
    env = {"FORGE_WORK_DIR": str(work)}
    for trial in range(20):
        out = tmp_path / "out"
        proc = subprocess.Popen(forge_command("compose", str(recipe), "-o", str(out), "-q", cache=cache),
                                env=forge_env(env=env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, full))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists():  # the rename happened: it must be the complete image
            assert digest(out) == expected, f"trial {trial}: partial output"
        verify = forge("cache", "verify", "--json", cache=cache)
        assert verify.returncode == 0 and json.loads(verify.stdout)["removed"] == [], f"trial {trial}"
    final = forge("compose", str(recipe), "-o", str(tmp_path / "out"), "-q", cache=cache, env=env)
    assert final.returncode == 0, final.stderr
    assert digest(tmp_path / "out") == expected
    # temp siblings and build directories of killed runs are cleaned by the next run (forked writers die with
    # their compose, so nothing writes into them any more)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert list(work.iterdir()) == []


def test_four_concurrent_composes_share_one_cache(tmp_path: Path, repo_server: RepoServer, signer: Signer) -> None:
    sets = [["hello"], ["gawk"], ["mawk", "data-all"], ["hello", "data-all"]]
    recipes = [write(tmp_path, repo_server, signer, s, f"r{i}") for i, s in enumerate(sets)]
    serial = {}
    for r in recipes:
        done = forge("compose", str(r), "-o", str(tmp_path / f"serial-{r.stem}"), "-q",
                     cache=tmp_path / f"cache-{r.stem}")
        assert done.returncode == 0, done.stderr
        serial[r.stem] = digest(tmp_path / f"serial-{r.stem}")
    shared = tmp_path / "shared-cache"
    procs = [subprocess.Popen(forge_command("compose", str(r), "-o", str(tmp_path / f"par-{r.stem}"), "-q",
                                            cache=shared), env=forge_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in recipes]  # four real processes at once
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert {r.stem: digest(tmp_path / f"par-{r.stem}") for r in recipes} == serial
    verify = forge("cache", "verify", "--json", cache=shared)
    assert json.loads(verify.stdout)["removed"] == []
