"""Foundation against the real mirror named by the host's apt sources (marked: network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.aptsim import ScratchApt
from tests.support.forge import forge

pytestmark = [pytest.mark.network]


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("real-cache")
    proc = forge("update", "--arch", "amd64", cache=cache)
    assert proc.returncode == 0, proc.stderr
    return cache


@pytest.fixture(scope="module")
def scratch_apt(tmp_path_factory: pytest.TempPathFactory) -> ScratchApt:
    apt = ScratchApt.create(tmp_path_factory.mktemp("apt"), "amd64")
    apt.update()
    return apt


def test_update_verifies_bookworm_main_amd64(real_cache: Path) -> None:
    proc = forge("update", "--arch", "amd64", "--json", cache=real_cache)
    assert proc.returncode == 0, proc.stderr
    assert '"file":"bookworm/main/binary-amd64/Packages.' in proc.stdout
    assert '"stanzas":' in proc.stdout


def test_show_bash_prints_the_version_apt_would_install(real_cache: Path, scratch_apt: ScratchApt) -> None:
    proc = forge("show", "bash", "--arch", "amd64", "--offline", cache=real_cache)
    assert proc.returncode == 0, proc.stderr
    version = next(ln.split(": ", 1)[1] for ln in proc.stdout.splitlines() if ln.startswith("Version: "))
    assert version == scratch_apt.candidate("bash")


def test_show_unknown_package_is_one_line(real_cache: Path) -> None:
    proc = forge("show", "no-such-package-xyz", "--arch", "amd64", "--offline", cache=real_cache)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "no package named no-such-package-xyz" in proc.stderr
