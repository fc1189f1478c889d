"""Choosing packages: relations, the resolver (policy, search, explanations, install order), plans and locks.

``from rootfs_forge.resolve import resolve`` is the resolver's entry point (:mod:`rootfs_forge.resolve.search`).
"""

from rootfs_forge.resolve.search import MAX_STEPS, STRATEGIES, Reporter, ResolveEvent, install_order, resolve

__all__ = ["MAX_STEPS", "STRATEGIES", "Reporter", "ResolveEvent", "install_order", "resolve"]
