"""Moved to :mod:`rootfs_forge.image.layer`; this name stays until the launcher's imports switch to it."""

from rootfs_forge.image.layer import (
    CHUNK_SIZE,
    DEFAULT_COMPRESSION,
    DEFAULT_LEVELS,
    MEDIA_TYPES,
    LayerBlob,
    headers,
    sort_key,
    tar_header,
    with_parents,
    write_layer,
    write_tar,
)

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_COMPRESSION",
    "DEFAULT_LEVELS",
    "MEDIA_TYPES",
    "LayerBlob",
    "headers",
    "sort_key",
    "tar_header",
    "with_parents",
    "write_layer",
    "write_tar",
]
