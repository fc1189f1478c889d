"""The detached writer of a fresh index's database: a new interpreter started with the scan packed in a file
next to the database, that writes the database while the compose goes on (and outlives it).

Not a forked child: a fork shares the parent's heap page by page, and every page either process then changes
(the parent going on with the compose, the child walking the scan) is copied; for bookworm main the child
ended up holding 40 MB of copies. A fresh interpreter holds only what it reads: the packed scan (8 MB), the
rows it inserts, SQLite's cache.
"""

from __future__ import annotations

import marshal
import os
import sys
from pathlib import Path

from rootfs_forge.index.scan import Packed, write_db
from rootfs_forge.util.files import write_atomic
from rootfs_forge.util.forked import detach

_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)
# -I -S: nothing of the environment or site-packages (the writer needs the standard library and this package)
_MAIN = ("import sys; sys.path.insert(0, sys.argv[1]); from rootfs_forge.index.dbwriter import main; "
         "main(sys.argv[2:])")


def spawn(db_path: Path, packed: Packed, text_size: int) -> bool:
    """Start the writer of ``db_path``; False when it cannot start here (write the database in this process)."""
    pack = db_path.with_name(f"{db_path.name}.{os.getpid()}.pack")
    try:
        write_atomic(pack, marshal.dumps(packed.as_tuple()), mode=None)
    except OSError:
        return False
    forked = detach()
    if forked is None:
        pack.unlink(missing_ok=True)
        return False
    if forked:  # the detached grandchild
        try:
            os.execv(sys.executable, [sys.executable, "-I", "-S", "-c", _MAIN, _PACKAGE_ROOT, str(pack),
                                      str(db_path), str(text_size)])
        finally:
            pack.unlink(missing_ok=True)
            os._exit(127)
    return True


def main(args: list[str]) -> None:
    """The writer: ``PACK DB TEXT_SIZE``; the pack file is removed once read."""
    pack, db, size = Path(args[0]), Path(args[1]), int(args[2])
    try:
        packed = Packed.from_tuple(marshal.loads(pack.read_bytes()))
    finally:
        pack.unlink(missing_ok=True)
    write_db(db, packed, size)
