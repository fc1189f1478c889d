"""What ``forge run`` loads before it runs a line of its own, installed as users install it: the README way (the
``pip install`` line of .ci/setup, editable) and with a plain ``pip install .``, each in a fresh venv. An editable
install's import hook (setuptools' default for this layout) costs every start pathlib, importlib.util and more;
the README way installs a plain path instead. Needs root (forge run), busybox-static and pip's index (the build
backend is fetched into pip's isolated build environment), hence ``slow``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.images import BUSYBOX, busybox_root

REPO = Path(__file__).resolve().parents[1]
# loaded by an import hook or by shutil, never by forge run itself (tests/test_run.py checks forge's own imports)
NOT_ON_START = {"pathlib", "importlib.util", "shutil", "fnmatch", "zipfile", "tempfile", "json", "typing"}


def readme_install_args() -> list[str]:
    """The arguments after ``python3 -m pip install`` in .ci/setup, which the README's quick start runs."""
    for line in (REPO / ".ci" / "setup").read_text().splitlines():
        m = re.match(r"\s*python3 -m pip install (.*)$", line)
        if m:
            return shlex.split(m.group(1))
    raise AssertionError("no 'python3 -m pip install' line in .ci/setup")


def test_readme_install_is_one_editable_pip_command() -> None:
    args = readme_install_args()
    assert "-e" in args and args[args.index("-e") + 1] == ".[test]"


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.parametrize("how", ["readme", "plain"])
def test_installed_forge_run_loads_no_import_hook(how: str, tmp_path: Path) -> None:
    if os.geteuid() != 0 or not os.path.exists(BUSYBOX):
        pytest.skip("needs root and busybox-static")
    src = tmp_path / "src"  # a copy: the editable install points at it, and the checkout gets no build files
    shutil.copytree(REPO / "rootfs_forge", src / "rootfs_forge", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # the README's own command, without the test extras' packages (none of which adds a start-up hook)
    args = ["." if a == ".[test]" else a for a in readme_install_args()] if how == "readme" else ["."]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", *args], cwd=src,
                         env=env, capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    rootfs = busybox_root(tmp_path / "rootfs")
    # what the console script does when started from its shebang, with the import log on
    proc = subprocess.run([str(venv / "bin" / "python"), "-X", "importtime", str(venv / "bin" / "forge"), "run",
                           "--cache-dir", str(tmp_path / "cache"), str(rootfs), "true"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "rootfs_forge.run.launcher" in loaded
    assert not {m for m in loaded if "editable" in m}
    assert NOT_ON_START & loaded == set()
