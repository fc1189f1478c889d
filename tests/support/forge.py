"""Running forge from a test: in this process (fast: no interpreter start, no imports again) or, for the few
true end-to-end tests, as ``python -m rootfs_forge``. Both return a ``CompletedProcess`` with the exit code
and the text of stdout and stderr, so a test can switch between them by one argument.

Use::

    done = forge("compose", str(recipe), "-o", str(out), cache=cache)
    assert done.returncode == 0, done.stderr
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EPOCH = "1700000000"


@contextlib.contextmanager
def _environment(env: Mapping[str, str | None], cwd: Path | None) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    old_cwd = os.getcwd()
    try:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.chdir(old_cwd)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def forge(*args: str, cache: Path | None = None, cwd: Path | None = None, epoch: str | None = EPOCH,
          env: Mapping[str, str | None] | None = None, cli: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``forge ARGS`` (with ``--cache-dir CACHE`` appended when given) and ``SOURCE_DATE_EPOCH=epoch``.

    In this process by default (``rootfs_forge.cli.main``, stdout and stderr captured); ``cli=True`` starts
    ``python -m rootfs_forge`` instead, for tests of what only a real process shows.
    """
    argv = [*args, *(["--cache-dir", str(cache)] if cache is not None else [])]
    environment: dict[str, str | None] = {"SOURCE_DATE_EPOCH": epoch, **(env or {})}
    if cli:
        full = {**os.environ, "PYTHONPATH": str(REPO)}
        for k, v in environment.items():
            if v is None:
                full.pop(k, None)
            else:
                full[k] = v
        return subprocess.run([sys.executable, "-m", "rootfs_forge", *argv], capture_output=True, text=True,
                              env=full, cwd=cwd)
    from rootfs_forge.cli import main

    out, err = io.StringIO(), io.StringIO()
    with _environment(environment, cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: usage errors exit 2, --help and --version 0
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return subprocess.CompletedProcess(["forge", *argv], code, out.getvalue(), err.getvalue())
