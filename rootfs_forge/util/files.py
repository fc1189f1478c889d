"""The one atomic writer: a file appears complete under its name, or not at all.

The content goes to a temporary name in the destination's directory (or in ``tmp_dir``, on the same
filesystem) and is renamed over the destination when complete; on any failure the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


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
