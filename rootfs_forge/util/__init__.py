"""Shared primitives every stage may use: in-root path resolution, canonical JSON, the image epoch."""
