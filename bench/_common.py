"""What the benches that compare forge with mmdebstrap share: preflight, the host's sources, byte-code, tables.

Both tools read the same apt sources, the host's, read at run time (no host name is written anywhere).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from rootfs_forge.archive.sources import SourceEntry, host_sources

ROOT = Path(__file__).resolve().parent.parent


def preflight(script: str) -> int | None:
    """None when this process can run mmdebstrap in root mode; else prints why not and returns the exit status."""
    if os.geteuid() != 0:
        print(f"{script}: mmdebstrap's root mode needs root", file=sys.stderr)
        return 2
    if shutil.which("mmdebstrap") is None:
        print(f"{script}: mmdebstrap is not installed", file=sys.stderr)
        return 2
    return None


def mirror_lines(entries: Sequence[SourceEntry]) -> list[str]:
    """The host's sources as one-line entries for mmdebstrap (the same archives forge reads)."""
    return [f"deb {e.url} {e.suite} {' '.join(e.components)}" for e in entries if not e.flat]


def host_suite_and_mirrors() -> tuple[str, list[str]]:
    """The host's release suite (not -updates or -security) and its sources as mmdebstrap's mirror arguments."""
    entries = host_sources()
    suite = next(e.suite for e in entries if not e.flat and "-" not in e.suite)
    return suite, mirror_lines(entries)


def compile_forge() -> None:
    """Byte-compile the checkout once, as an install would: an installed forge runs from .pyc files (pip compiles
    them), while a checkout run with PYTHONDONTWRITEBYTECODE would compile every module at every start."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "rootfs_forge")], check=True,
                   capture_output=True)


def load_average() -> str:
    """The machine's 1-minute load average and CPU count, for a table's header (the machine is shared)."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns, as wide as their widest cell."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    for r in (headers, *rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)).rstrip())
