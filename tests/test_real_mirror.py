"""Foundation against the real mirror named by the host's apt sources (marked: network)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.aptsim import ScratchApt

pytestmark = [pytest.mark.network]


def forge(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rootfs_forge", *args, "--cache-dir", str(cache)],
                          capture_output=True, text=True)


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
