"""The one atomic writer: a file appears complete under its name, or not at all.

The content goes to a temporary name in the destination's directory (or in ``tmp_dir``, on the same
filesystem) and is renamed over the destination when complete; on any failure the temporary file is removed.
Also the one reader of derived cache entries (:func:`open_cache_entry`), which can be anything someone put there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO


@contextlib.contextmanager
def atomic_file(dest: Path, *, mode: int | None = 0o644, fsync: bool = False,
                tmp_dir: Path | None = None) -> Iterator[IO[bytes]]:
    """A binary file to write; renamed to ``dest`` when the block ends without error. ``mode`` None keeps the
    temporary file's 0600; ``fsync`` makes the content durable before the rename."""
    dest = Path(dest)
    folder = tmp_dir if tmp_dir is not None else dest.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.tmp-", dir=folder)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_atomic(dest: Path, data: bytes, *, mode: int | None = 0o644, fsync: bool = False,
                 tmp_dir: Path | None = None) -> None:
    """Write ``data`` to ``dest`` through :func:`atomic_file`."""
    with atomic_file(dest, mode=mode, fsync=fsync, tmp_dir=tmp_dir) as fh:
        fh.write(data)


class NotARegularFile(OSError):
    """A cache entry's name holds a FIFO, a device, a directory: something planted, never an entry."""


def open_cache_entry(path: Path) -> BinaryIO:
    """``path`` opened for reading, never through a symlink (ELOOP, like a missing entry) and never waiting on a
    FIFO; :class:`NotARegularFile` when it is not a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotARegularFile(errno.EINVAL, "not a regular file", str(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
