"""The effects' view of the root filesystem: queries and writes by in-root path, each write returning a
:class:`Change` for the report.

There is one writer of the tree, :class:`rootfs_forge.unpack.writer.TreeWriter`, and one record of what every path
should be (kind, owner, mode, mtime): a :class:`RootDir` only forwards to it. Paths are resolved the way the
kernel resolves them inside the finished container — an absolute symlink target is read against the root and
``..`` at the root stays at the root — against the writer's record, so no link in the tree can send a read or
a write to the host. The final component is replaced, never written through. A layer takes every owner and
mode from the record, so it carries them even when forge runs unprivileged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rootfs_forge.errors import RootfsError
from rootfs_forge.unpack.writer import TreeWriter
from rootfs_forge.util.inroot import MAX_SYMLINKS

__all__ = ["MAX_SYMLINKS", "Change", "RootDir"]


@dataclass(frozen=True, slots=True)
class Change:
    """One path an effect created or changed, as the image will see it (``/usr/bin/sh``, not ``/bin/sh``)."""

    path: str
    kind: str  # file | dir | symlink
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    target: str = ""  # symlink target

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "kind": self.kind,
            "mode": f"{self.mode:04o}",
            "uid": self.uid,
            "gid": self.gid,
            "target": self.target,
        }


class RootDir:
    """The tree of ``fs`` (a :class:`TreeWriter`), or of the directory ``fs`` names (its record read from
    disk; ``set_owners`` chowns on disk, which needs root)."""

    def __init__(self, fs: TreeWriter | Path, *, epoch: int | None = None, set_owners: bool = False) -> None:
        self.fs = fs if isinstance(fs, TreeWriter) else TreeWriter.from_disk(Path(fs), epoch=epoch,
                                                                            privileged=set_owners)
        self.root = self.fs.root
        self.epoch = self.fs.epoch

    # -- resolution
    def resolve(self, path: str, *, follow_last: bool = True) -> str:
        """The in-root absolute path ``path`` names after following symlinks (``/bin/sh`` → ``/usr/bin/sh``)."""
        return self.fs.resolve(path, follow_last=follow_last)

    def host(self, path: str, *, follow_last: bool = True) -> Path:
        """The host path of ``path``, resolved inside the root."""
        return self.fs.host_path(path, follow_last=follow_last)

    # -- queries (answered from the record)
    def _kind(self, path: str, *, follow: bool) -> str:
        entry = self.fs.lookup(path, follow=follow)
        return entry.kind if entry is not None else ""

    def lexists(self, path: str) -> bool:
        return self._kind(path, follow=False) != ""

    def is_file(self, path: str) -> bool:
        return self._kind(path, follow=True) == "file"

    def is_dir(self, path: str) -> bool:
        return self._kind(path, follow=True) == "dir"

    def is_symlink(self, path: str) -> bool:
        return self._kind(path, follow=False) == "symlink"

    def readlink(self, path: str) -> str | None:
        entry = self.fs.lookup(path, follow=False)
        return entry.target if entry is not None and entry.kind == "symlink" else None

    def read_bytes(self, path: str) -> bytes:
        data = self.fs.read_file(path)
        if data is None:
            raise RootfsError("read", path, "No such file or directory" if not self.lexists(path)
                              else "not a regular file")
        return data

    def listdir(self, path: str) -> list[str]:
        return self.fs.listdir(path)

    def files_under(self, path: str) -> list[str]:
        """Every regular file below ``path`` (not following symlinks), as sorted in-root paths."""
        return self.fs.files_under(path)

    # -- writes (through the one writer)
    def mkdir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Change:
        """Create ``path`` (and missing parents, 0755 root) or fix the mode and owner of an existing one."""
        if self.resolve(path) == "/":
            raise RootfsError("create directory", path, "it is the root itself")
        return Change(self.fs.add_dir(path, mode, uid, gid), "dir", mode, uid, gid)

    def write_file(self, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Change:
        """Replace ``path`` with a regular file holding ``data`` (a symlink there is replaced, not followed)."""
        if self.resolve(path, follow_last=False) == "/":
            raise RootfsError("write", path, "it is the root itself")
        return Change(self.fs.add_file(path, data, mode, uid, gid), "file", mode, uid, gid)

    def symlink(self, path: str, target: str) -> Change:
        """Make ``path`` a symlink to ``target`` (text as given), replacing a file or link already there."""
        return Change(self.fs.add_symlink(path, target), "symlink", 0o777, 0, 0, target)

    def chmod(self, path: str, mode: int, uid: int = 0, gid: int = 0) -> Change:
        entry = self.fs.set_meta(path, mode, uid, gid)
        return Change(self.resolve(path), "dir" if entry.kind == "dir" else "file", mode, uid, gid)

    def set_xattr(self, path: str, name: str, value: bytes) -> Change:
        """Give the regular file ``path`` leads to the extended attribute ``name`` (recorded; on disk as root)."""
        key = self.fs.set_xattr(path, name, value)
        entry = self.fs.lookup(key, follow=False)
        assert entry is not None
        return Change(key, "file", entry.mode, entry.uid, entry.gid)

    def remove(self, path: str) -> bool:
        return self.fs.remove(path)

    def clamp_dir_mtimes(self) -> int:
        """Give every directory its recorded mode, owner and mtime (clamped to the epoch) on disk; return how
        many. Writing a file into a directory sets its mtime to now: once every writer is done, this makes the
        tree the same on every run (as ``tar --clamp-mtime`` would)."""
        return self.fs.finish()
