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
from typing import Any

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


def forge_argv(*args: str, cache: Path | None = None) -> list[str]:
    """``ARGS`` with ``--cache-dir CACHE`` when given: right after the command's name, so that it never lands
    in a command line ``forge run IMAGE CMD...`` passes on (``cache SUBCOMMAND`` takes it at the end)."""
    if cache is None or not args:
        return list(args)
    where = len(args) if args[0] == "cache" else 1
    return [*args[:where], "--cache-dir", str(cache), *args[where:]]


def forge_command(*args: str, cache: Path | None = None) -> list[str]:
    """The command line of a real ``python -m rootfs_forge`` process (for tests that start it themselves, to
    kill it or read it while it runs); run it with :func:`forge_env`."""
    return [sys.executable, "-m", "rootfs_forge", *forge_argv(*args, cache=cache)]


def forge_env(epoch: str | None = EPOCH, env: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The environment of a real forge process: this one's, this checkout on PYTHONPATH, the epoch, ``env``."""
    full = {**os.environ, "PYTHONPATH": str(REPO)}
    for k, v in {"SOURCE_DATE_EPOCH": epoch, **(env or {})}.items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    return full


def forge(*args: str, cache: Path | None = None, cwd: Path | None = None, epoch: str | None = EPOCH,
          env: Mapping[str, str | None] | None = None, cli: bool = False,
          timeout: float | None = None, **popen: Any) -> subprocess.CompletedProcess[str]:
    """Run ``forge ARGS`` (with ``--cache-dir CACHE`` when given, see :func:`forge_argv`) and
    ``SOURCE_DATE_EPOCH=epoch`` (None: unset), ``env`` added to the environment (a None value unsets).

    In this process by default (``rootfs_forge.cli.main``, stdout and stderr captured); ``cli=True`` starts
    ``python -m rootfs_forge`` instead (killed after ``timeout`` seconds), for what only a real process shows:
    ``forge run`` (forks, namespaces, signals), exit codes of a crash, the start path's imports. ``popen``
    (``pass_fds``, ``preexec_fn``, ``input`` ...) goes to ``subprocess.run`` and needs ``cli=True``.
    """
    argv = forge_argv(*args, cache=cache)
    if cli:
        return subprocess.run(forge_command(*argv), capture_output=True, text=True, env=forge_env(epoch, env),
                              cwd=cwd, timeout=timeout, **popen)
    assert not popen, f"{sorted(popen)} need a real process: cli=True"
    environment: dict[str, str | None] = {"SOURCE_DATE_EPOCH": epoch, **(env or {})}
    from rootfs_forge.cli import main

    out, err = io.StringIO(), io.StringIO()
    with _environment(environment, cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: usage errors exit 2, --help and --version 0
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return subprocess.CompletedProcess(["forge", *argv], code, out.getvalue(), err.getvalue())
