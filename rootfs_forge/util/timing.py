"""Wall-clock time per phase of a command, for ``--json`` reports and the benchmarks (never for decisions)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


class Timings:
    """Accumulates seconds per named phase; a phase entered twice (one per architecture) adds up."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._seconds[name] = self._seconds.get(name, 0.0) + time.perf_counter() - start

    def report(self) -> dict[str, float]:
        """Milliseconds-rounded seconds per phase, in the order the phases first ran."""
        return {k: round(v, 3) for k, v in self._seconds.items()}
