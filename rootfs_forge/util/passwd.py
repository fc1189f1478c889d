"""The one reader of passwd-style files (/etc/passwd, /etc/group and base-passwd's master files)."""

from __future__ import annotations


def table(text: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every line that is neither blank nor a ``#`` comment, split on ``:``."""
    return [(n, line.split(":")) for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.startswith("#")]


def ids(text: str, width: int) -> dict[str, int]:
    """Name → numeric id (third field) of the well-formed lines of a file with ``width`` fields per line."""
    return {f[0]: int(f[2]) for _, f in table(text) if len(f) == width and f[2].isdigit()}
