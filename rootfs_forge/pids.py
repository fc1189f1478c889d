"""Moved to :mod:`rootfs_forge.util.pids`; this name stays until the launcher's imports switch to it."""

from rootfs_forge.util.pids import process_alive

__all__ = ["process_alive"]
