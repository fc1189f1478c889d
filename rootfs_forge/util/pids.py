"""Whether a process still exists: temp directories and cgroups carry the pid of the forge process that made
them, so a later run can tell what a killed one left behind."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists (also when it belongs to another user: never remove on doubt)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
