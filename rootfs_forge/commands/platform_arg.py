"""The one ``--platform`` option (``--arch`` stays as an alias): Docker's ``OS/ARCH[/VARIANT]`` spelling.

Light (no imports at module level): ``forge run`` registers it on its start path.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing stays off the start path; mypy reads this as typing.TYPE_CHECKING
if TYPE_CHECKING:
    import argparse


def add_platform_arg(parser: argparse.ArgumentParser, help_text: str, *, several: bool = False) -> None:
    """``--platform linux/arm64`` (and ``--arch``); with ``several``, repeatable and comma-separated."""
    parser.add_argument("--platform", "--arch", dest="platform", action="append" if several else "store",
                        default=[] if several else "", metavar="OS/ARCH[/VARIANT]", help=help_text)


def add_target_args(parser: argparse.ArgumentParser, platform_help: str) -> None:
    """``--platform`` and ``--insecure``: the options of a command that reads an image, a rootfs or a registry
    reference (audit, sbom, diff, why)."""
    add_platform_arg(parser, platform_help)
    parser.add_argument("--insecure", action="store_true",
                        help="read a registry reference over plain HTTP (implied for loopback registries)")


def platform_of(args: argparse.Namespace, verb: str, obj: str) -> tuple[str, str, str] | None:
    """The parsed ``--platform`` of ``args`` (None when not given); a bad value is a one-line error."""
    text = str(getattr(args, "platform", "") or "")
    if not text:
        return None
    return _parse(text, verb, obj)


def platforms_of(args: argparse.Namespace) -> list[str]:
    """The ``--platform`` values of a repeatable option, commas split (``linux/amd64,linux/arm64``)."""
    return [p for text in getattr(args, "platform", None) or [] for p in str(text).split(",") if p]


def _parse(text: str, verb: str, obj: str) -> tuple[str, str, str]:
    from rootfs_forge.errors import ForgeError
    from rootfs_forge.util.platform import PlatformError, parse_platform

    try:
        return parse_platform(text)
    except PlatformError as exc:
        raise ForgeError(verb, f"{obj} with --platform {text}", str(exc)) from None
