"""Command-line entry point: parse arguments, dispatch, print, map errors to exit codes.

Each subcommand lives in ``rootfs_forge.commands.<name>`` and exposes ``register(subparsers)``, which adds its
parser and sets ``func``; ``func(args) -> int`` returns the exit code. Only the module of the command being run
is imported, so ``forge run`` starts fast.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing itself stays off the start path; mypy reads this as typing.TYPE_CHECKING
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

# command name -> module under rootfs_forge.commands (several names may share a module)
COMMANDS: dict[str, str] = {
    "update": "archive_cmds",
    "show": "archive_cmds",
    "search": "archive_cmds",
    "resolve": "resolve_cmds",
    "why": "resolve_cmds",
    "lock": "resolve_cmds",
    "compose": "compose",
    "push": "push",
    "pull": "pull",
    "run": "run",
    "ps": "run",
    "rm": "run",
    "commit": "run",
    "audit": "audit",
    "sbom": "audit",
    "diff": "audit",
    "cache": "cache",
    "vendor": "vendor",
    "outdated": "outdated",
}


_columns: list[int] = []  # the terminal's width, looked up once


def _help_width() -> int:
    """What ``shutil.get_terminal_size().columns - 2`` gives argparse's help formatter ($COLUMNS, else the size of
    the terminal on stdout, else 80), without importing shutil (and bz2, lzma, zlib with it)."""
    if not _columns:
        try:
            columns = int(os.environ.get("COLUMNS", "0"))
        except ValueError:
            columns = 0
        if columns <= 0:
            try:
                columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
            except (AttributeError, ValueError, OSError):
                columns = 0
        _columns.append((columns or 80) - 2)
    return _columns[0]


def _sized(formatter_class: type[argparse.HelpFormatter]) -> Callable[[str], argparse.HelpFormatter]:
    def make(prog: str) -> argparse.HelpFormatter:
        return formatter_class(prog, width=_help_width())

    return make


def _parser_class() -> type[argparse.ArgumentParser]:
    """argparse makes a help formatter for every ``add_argument`` (to check the metavar), and each asks for the
    terminal's size through shutil: here the size is looked up once, and shutil stays unloaded. Subparsers are
    made of this class too (argparse passes the parser's own type on). Defined on first use: argparse itself
    loads only when a command line needs it (not for the common forms of ``forge run``)."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def __init__(self, **kwargs: Any) -> None:
            kwargs["formatter_class"] = _sized(kwargs.get("formatter_class", argparse.HelpFormatter))
            super().__init__(**kwargs)

    return _Parser


def _build_parser(only: str | None) -> argparse.ArgumentParser:
    import importlib

    parser = _parser_class()(
        prog="forge",
        description="Compose minimal Debian root filesystems and reproducible OCI images.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [COMMANDS[only]] if only in COMMANDS else sorted(set(COMMANDS.values()))
    for mod in modules:
        importlib.import_module(f"rootfs_forge.commands.{mod}").register(sub)
    return parser


def _version() -> str:
    from rootfs_forge import __version__

    return f"forge {__version__}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args: Any = None
    if argv[:1] == ["run"]:  # its common forms, without argparse (None: let argparse decide)
        from rootfs_forge.commands.run_argv import parse_run

        args = parse_run(argv[1:])
    if args is None:
        first = next((a for a in argv if not a.startswith("-")), None)
        parser = _build_parser(first if first in COMMANDS else None)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
    from rootfs_forge.errors import ForgeError

    try:
        return int(args.func(args) or 0)
    except ForgeError as exc:
        print(f"forge: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # output piped into `head` and friends: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        # The machine refused something no check foresaw (a full disk, a read-only or vanished directory):
        # still one line naming the path, never a traceback.
        where = f" {exc.filename}" if exc.filename else ""
        print(f"forge: cannot {args.command}{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("forge: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The console script (and ``python -m rootfs_forge``): :func:`main`, then a quick exit.

    Once the command has returned, all its work is done and its files closed (every temporary directory is a
    context manager); what the interpreter's own shutdown would still do — free every object, run the
    finalizers — cost a warm compose 0.07-0.1 s. So, when no other thread is left, the standard streams are
    flushed and the process ends at once; otherwise, or when a flush fails, it exits the usual way.
    """
    code = main()
    threading = sys.modules.get("threading")  # never imported: no Python thread was started either
    if threading is None or threading.active_count() == 1:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            raise SystemExit(code) from None
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    entry()
