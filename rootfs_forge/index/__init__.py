"""The package index and its update protocol (the explicit inputs of a run)."""
