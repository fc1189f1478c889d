"""rootfs_forge: compose minimal Debian root filesystems and reproducible OCI images.

The library entry points are :func:`compose` (see :mod:`rootfs_forge.api`) and :func:`compose_many` for several
recipes in one process (see :mod:`rootfs_forge.gallery`); the console script ``forge`` is
``rootfs_forge.cli:entry``. Importing the package loads nothing else (not even ``typing``): ``forge run``
starts fast.
"""

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from rootfs_forge.api import compose as compose
    from rootfs_forge.gallery import compose_many as compose_many
else:

    def compose(*args, **kwargs):
        """Compose a recipe in-process; see :func:`rootfs_forge.api.compose`."""
        from rootfs_forge.api import compose as _compose

        return _compose(*args, **kwargs)

    def compose_many(*args, **kwargs):
        """Compose several recipes in one process; see :func:`rootfs_forge.gallery.compose_many`."""
        from rootfs_forge.gallery import compose_many as _compose_many

        return _compose_many(*args, **kwargs)


__version__ = "0.1.0"
__all__ = ["__version__", "compose", "compose_many"]
