"""Reading and writing paths of a root directory without ever leaving it.

Paths are resolved the way the kernel resolves them inside the finished container: an absolute symlink target
is read against the root and ``..`` at the root stays at the root, so no link in the tree can send a read or a
write to the host. Every write goes to a temporary name in the same directory and is renamed into place; the
final component is replaced, never written through. Each write returns a :class:`Change` so the caller can
record the intended mode and owner (the layer tar carries them even when forge runs unprivileged).
"""

from __future__ import annotations

import os
import stat
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from rootfs_forge.errors import RootfsError

MAX_SYMLINKS = 40  # the kernel's limit (ELOOP)


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
    """A root directory whose paths are resolved inside it. ``set_owners`` chowns on disk (needs root)."""

    def __init__(self, root: Path, *, epoch: int | None = None, set_owners: bool = False) -> None:
        self.root = Path(root)
        self.epoch = epoch
        self.set_owners = set_owners

    # -- resolution
    def resolve(self, path: str, *, follow_last: bool = True) -> str:
        """The in-root absolute path ``path`` names after following symlinks (``/bin/sh`` →
        ``/usr/bin/sh``)."""
        pending = deque(p for p in path.split("/") if p not in ("", "."))
        stack: list[str] = []
        hops = 0
        while pending:
            name = pending.popleft()
            if name == "..":
                if stack:
                    stack.pop()
                continue
            host = self.root.joinpath(*stack, name)
            try:
                st = os.lstat(host)
            except (FileNotFoundError, NotADirectoryError):
                stack.append(name)
                continue
            if stat.S_ISLNK(st.st_mode) and (pending or follow_last):
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise RootfsError("resolve", path, "too many levels of symbolic links")
                target = os.readlink(host)
                if target.startswith("/"):
                    stack = []
                pending.extendleft(reversed([p for p in target.split("/") if p not in ("", ".")]))
                continue
            stack.append(name)
        return "/" + "/".join(stack)

    def host(self, path: str, *, follow_last: bool = True) -> Path:
        """The host path of ``path``, resolved inside the root."""
        return self.root / self.resolve(path, follow_last=follow_last).lstrip("/")

    # -- queries
    def lexists(self, path: str) -> bool:
        return os.path.lexists(self.host(path, follow_last=False))

    def is_file(self, path: str) -> bool:
        return self.host(path).is_file() and not self.host(path).is_symlink()

    def is_dir(self, path: str) -> bool:
        h = self.host(path)
        return h.is_dir() and not h.is_symlink()

    def is_symlink(self, path: str) -> bool:
        return self.host(path, follow_last=False).is_symlink()

    def readlink(self, path: str) -> str | None:
        h = self.host(path, follow_last=False)
        return os.readlink(h) if h.is_symlink() else None

    def read_bytes(self, path: str) -> bytes:
        h = self.host(path)
        try:
            fd = os.open(h, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as e:
            raise RootfsError("read", path, e.strerror or str(e)) from None
        with os.fdopen(fd, "rb") as f:
            return f.read()

    def listdir(self, path: str) -> list[str]:
        h = self.host(path)
        return sorted(os.listdir(h)) if h.is_dir() else []

    def files_under(self, path: str) -> list[str]:
        """Every regular file below ``path`` (not following symlinks), as sorted in-root paths."""
        base = self.resolve(path)
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root / base.lstrip("/")):
            dirnames.sort()
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            prefix = "" if rel == "." else "/" + rel
            for name in filenames:
                if stat.S_ISREG(os.lstat(os.path.join(dirpath, name)).st_mode):
                    found.append(f"{prefix}/{name}")
        return sorted(found)

    # -- writes
    def mkdir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Change:
        """Create ``path`` (and missing parents, 0755 root) or fix the mode and owner of an existing one."""
        real = self.resolve(path)
        if real == "/":
            raise RootfsError("create directory", path, "it is the root itself")
        parent, _, _ = real.rpartition("/")
        self._ensure_dir(parent or "/")
        h = self.root / real.lstrip("/")
        if not h.exists():
            os.mkdir(h, 0o700)
        elif not h.is_dir():
            raise RootfsError("create directory", path, "a non-directory is in the way")
        self._finish(h, mode, uid, gid)
        return Change(real, "dir", mode, uid, gid)

    def write_file(self, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Change:
        """Replace ``path`` with a regular file holding ``data`` (a symlink there is replaced, not
        followed)."""
        dirpath, name = self._parent(path)
        return self.write_in(dirpath, name, data, mode, uid, gid, what=path)

    def directory(self, path: str) -> Path:
        """The host path of the in-root directory ``path`` (made if missing), for :meth:`write_in`."""
        return self._ensure_dir(self.resolve(path))

    def write_in(self, dirpath: Path, name: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0,
                 *, what: str = "") -> Change:
        """Write the file ``name`` in ``dirpath``, a host path :meth:`directory` (or a resolution) gave: many
        files into one directory resolve it once. A new name is written in place; an existing file or symlink
        is replaced by a rename from a temporary name, never written through."""
        final = dirpath / name
        try:
            existing = os.lstat(final)
        except FileNotFoundError:
            existing = None
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise RootfsError("write", what or self._inroot(final), "a directory is in the way")
        target = final if existing is None else dirpath / f".{name}.forge-tmp"
        if existing is not None and os.path.lexists(target):
            os.unlink(target)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode & 0o777)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                self._finish_fd(f.fileno(), mode, uid, gid)
            if existing is not None:
                os.replace(target, final)
        except BaseException:
            if os.path.lexists(target):
                os.unlink(target)
            raise
        return Change(self._inroot(final), "file", mode, uid, gid)

    def symlink(self, path: str, target: str) -> Change:
        """Make ``path`` a symlink to ``target`` (text as given), replacing a file or link already there."""
        dirpath, name = self._parent(path)
        tmp = dirpath / f".{name}.forge-tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        try:
            if self.set_owners:
                os.chown(tmp, 0, 0, follow_symlinks=False)
            if self.epoch is not None:
                os.utime(tmp, (self.epoch, self.epoch), follow_symlinks=False)
            self._replace(tmp, dirpath / name, path)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise
        return Change(self._inroot(dirpath / name), "symlink", 0o777, 0, 0, target)

    def chmod(self, path: str, mode: int, uid: int = 0, gid: int = 0) -> Change:
        h = self.host(path)
        if not h.exists():
            raise RootfsError("change mode of", path, "no such file or directory")
        self._finish(h, mode, uid, gid)
        return Change(self._inroot(h), "dir" if h.is_dir() else "file", mode, uid, gid)

    # -- helpers
    def _parent(self, path: str) -> tuple[Path, str]:
        real = self.resolve(path, follow_last=False)
        parent, _, name = real.rpartition("/")
        if not name:
            raise RootfsError("write", path, "it is the root itself")
        return self._ensure_dir(parent or "/"), name

    def clamp_dir_mtimes(self) -> int:
        """Set every directory whose mtime is later than the epoch back to the epoch; return how many.

        Writing a file into a directory sets its mtime to now: after the effects, the dpkg database and the
        manifest have written into directories the unpack had finished, this makes the tree the same on
        every run (as ``tar --clamp-mtime`` would). Symlinks are not followed.
        """
        if self.epoch is None:
            return 0
        clamped = 0
        for dirpath, _, _ in os.walk(self.root):  # os.walk does not descend into symlinked directories
            if os.lstat(dirpath).st_mtime > self.epoch:
                os.utime(dirpath, (self.epoch, self.epoch), follow_symlinks=False)
                clamped += 1
        return clamped

    def _ensure_dir(self, real: str) -> Path:
        """Create the already-resolved in-root directory ``real`` and its parents; return its host path."""
        h = self.root / real.lstrip("/")
        if h.is_dir() and not h.is_symlink():
            return h
        if os.path.lexists(h):
            raise RootfsError("create directory", real, "a non-directory is in the way")
        parent = real.rpartition("/")[0] or "/"
        self._ensure_dir(self.resolve(parent))
        os.mkdir(h, 0o755)
        return h

    def _replace(self, tmp: Path, final: Path, path: str) -> None:
        if final.is_dir() and not final.is_symlink():
            raise RootfsError("write", path, "a directory is in the way")
        os.replace(tmp, final)

    def _finish_fd(self, fd: int, mode: int, uid: int, gid: int) -> None:
        """Like :meth:`_finish` for a file just created with ``mode`` (umask permitting) by this process:
        the calls that would change nothing are skipped."""
        chowned = self.set_owners and (uid, gid) != (os.geteuid(), os.getegid())
        if chowned:
            os.fchown(fd, uid, gid)
        if chowned or stat.S_IMODE(os.fstat(fd).st_mode) != mode:
            os.fchmod(fd, mode)
        if self.epoch is not None:
            os.utime(fd, (self.epoch, self.epoch))

    def _finish(self, h: Path, mode: int, uid: int, gid: int) -> None:
        if self.set_owners:
            os.chown(h, uid, gid, follow_symlinks=False)
        os.chmod(h, mode)
        if self.epoch is not None:
            os.utime(h, (self.epoch, self.epoch), follow_symlinks=False)

    def _inroot(self, h: Path) -> str:
        return "/" + h.relative_to(self.root).as_posix()
