"""rootfs_forge: compose minimal Debian root filesystems and reproducible OCI images."""

__version__ = "0.1.0"
