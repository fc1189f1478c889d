"""Getting packages: sources, the transport, the cache, Release verification, downloads."""
