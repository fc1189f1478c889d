"""rootfs_forge: compose minimal Debian root filesystems and reproducible OCI images.

The library entry point is :func:`compose` (see :mod:`rootfs_forge.api`); the console script ``forge`` is
``rootfs_forge.cli:entry``. Importing the package loads nothing else (not even ``typing``): ``forge run``
starts fast.
"""

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from rootfs_forge.api import compose as compose
else:

    def compose(*args, **kwargs):
        """Compose a recipe in-process; see :func:`rootfs_forge.api.compose`."""
        from rootfs_forge.api import compose as _compose

        return _compose(*args, **kwargs)


__version__ = "0.1.0"
__all__ = ["__version__", "compose"]
