"""The disk side of the tree writer: making each node the record describes, the write phase of planned
files (forked writers), and reading the record back (queries, an existing tree read from disk).

:class:`TreeStore` holds the record and is the base of :class:`rootfs_forge.unpack.writer.TreeWriter`, which decides
what goes into it (packages, conflicts, forge's own files). Every host path it touches is the root joined with a
key the record resolved, so the kernel never follows a symlink of the tree.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import stat
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rootfs_forge.errors import RootfsError
from rootfs_forge.unpack.debfile import DataMember, iter_tar, normalize_path
from rootfs_forge.unpack.record import Entry, Node, PackageJob, PackageRecord, PlannedWrite, parent_key, resolve_in_root
from rootfs_forge.util.forked import run_parallel

_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def current_umask() -> int:
    """The process umask, read without changing it (``os.umask`` can only swap, which races other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


@contextmanager
def os_errors(path: str) -> Iterator[None]:
    """A failing system call (disk full, permission denied …) becomes a one-line ``RootfsError``."""
    try:
        yield
    except OSError as exc:
        raise RootfsError("write", path, exc.strerror or str(exc)) from None



class TreeStore:
    """The tree's record (``_nodes``: key → :class:`Node`) and the calls that bring the disk in line with it."""

    root: Path
    _root: str
    epoch: int | None
    privileged: bool
    _lock: threading.RLock
    _umask: int
    _creds: tuple[int, int]
    _nodes: dict[str, Node]
    _links_to: dict[str, set[str]]
    _tmp: itertools.count[int]
    _finished: bool

    def _node_from_disk(self, key: str) -> Node:
        path = self._abs(key)
        st = os.lstat(path)
        mode, fmt = stat.S_IMODE(st.st_mode), stat.S_IFMT(st.st_mode)
        kind = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFCHR: "char",
                stat.S_IFBLK: "block", stat.S_IFIFO: "fifo"}.get(fmt, "socket")
        node = Node(kind, 0o777 if kind == "symlink" else mode, st.st_uid, st.st_gid,
                     st.st_size if kind == "file" else 0, target=os.readlink(path) if kind == "symlink" else "",
                     mtime=self._clamp(int(st.st_mtime)))
        if kind in ("char", "block"):
            node.devmajor, node.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        if kind == "dir":
            node.disk = (mode, st.st_uid, st.st_gid)
        return node

    def entries(self) -> dict[str, Entry]:
        """Every path of the tree (``/`` included), sorted, with its intended kind, mode, owner and mtime."""
        with self._lock:
            return {k: self._nodes[k].entry() for k in sorted(self._nodes)}

    def resolve(self, path: str, *, follow_last: bool = True) -> str:
        """The tree path ``path`` leads to, following every symlink inside the root (the last component only
        with ``follow_last``)."""
        with self._lock:
            return resolve_in_root(self._nodes, self._norm(path), follow_last=follow_last)

    def host_path(self, path: str, *, follow_last: bool = True) -> Path:
        """Where the tree path ``path`` leads to on the host (resolved inside the root)."""
        key = self.resolve(path, follow_last=follow_last)
        return Path(self._abs(key))

    def lookup(self, path: str, *, follow: bool = True) -> Entry | None:
        with self._lock:
            node = self._nodes.get(resolve_in_root(self._nodes, self._norm(path), follow_last=follow))
            return node.entry() if node else None

    def read_file(self, path: str) -> bytes | None:
        """The content of the regular file ``path`` leads to (inside the root), or None."""
        with self._lock:
            key = resolve_in_root(self._nodes, self._norm(path), follow_last=True)
            node = self._nodes.get(key)
            if node is None or node.kind != "file":
                return None
            fd = os.open(self._abs(key), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with open(fd, "rb") as f:
                return f.read()

    def listdir(self, path: str) -> list[str]:
        """The sorted names in the directory ``path`` leads to (empty when it is no directory)."""
        with self._lock:
            key = resolve_in_root(self._nodes, self._norm(path), follow_last=True)
            node = self._nodes.get(key)
            if node is None or node.kind != "dir" or not node.children:
                return []
            prefix = key.rstrip("/") + "/"
            return sorted(k[len(prefix):] for k in self._nodes if k.startswith(prefix) and "/" not in k[len(prefix):])

    def files_under(self, path: str) -> list[str]:
        """Every regular file below the directory ``path`` leads to (links not followed), as sorted keys."""
        with self._lock:
            key = resolve_in_root(self._nodes, self._norm(path), follow_last=True)
            prefix = key.rstrip("/") + "/"
            return sorted(k for k, n in self._nodes.items() if k.startswith(prefix) and n.kind == "file")

    def finish(self) -> int:
        """Apply final directory modes, owners and mtimes on disk (deepest first); return how many directories.
        Call after the last write of a phase: the unpack, and again once every writer is done."""
        with self._lock:
            done = 0
            for key in sorted(self._nodes, reverse=True):
                node = self._nodes[key]
                if node.kind == "dir":
                    self._apply_dir_meta(key, node, final=True)
                    done += 1
            self._finished = True
            return done

    def _touched(self, key: str) -> None:
        """After the unpack, a write into a directory records it as modified at the image epoch (what
        ``tar --clamp-mtime`` would make of it): the tree is the same on every run."""
        if self._finished and self.epoch is not None and key != "/":
            self._nodes[parent_key(key)].mtime = self.epoch

    # -- model + disk -----------------------------------------------------------------------------------

    def _norm(self, path: str) -> str:
        try:
            return normalize_path(path)
        except ValueError:
            raise RootfsError("write", path, "the path escapes the root") from None

    def _abs(self, key: str) -> str:
        return self._root if key == "/" else self._root + key

    def _clamp(self, mtime: int | None) -> int:
        if mtime is None:
            return self.epoch or 0
        return min(mtime, self.epoch) if self.epoch is not None else mtime

    def _set_node(self, key: str, node: Node) -> None:
        if key not in self._nodes:
            self._nodes[parent_key(key)].children += 1
        self._nodes[key] = node

    def _remove_node(self, key: str, recursive: bool = False) -> None:
        """Forget ``key`` and remove it from disk (not following a symlink)."""
        node = self._nodes.get(key)
        if node is None:
            return
        if node.kind == "dir":
            if node.children and not recursive:
                raise RootfsError("write", key, "a non-empty directory is in the way")
            prefix = key + "/"
            for sub in sorted((k for k in self._nodes if k.startswith(prefix)), reverse=True):
                self._forget(sub)
            self._rmtree(key)
        elif node.planned is None:  # a planned file is not on disk yet: _forget drops it from its write
            os.unlink(self._abs(key))
        self._forget(key)

    def _forget(self, key: str) -> None:
        node = self._nodes.pop(key)
        if node.planned is not None:
            node.planned.keys.remove(key)
            node.planned = None
        self._nodes[parent_key(key)].children -= 1
        for dependent in self._links_to.pop(key, ()):
            if dependent in self._nodes:
                self._nodes[dependent].hardlink = ""
        if node.hardlink:
            self._links_to.get(node.hardlink, set()).discard(key)

    def _rmtree(self, key: str) -> None:
        top = self._abs(key)
        for dirpath, dirnames, filenames in os.walk(top, topdown=False):
            for f in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                os.unlink(os.path.join(dirpath, f))
            for d in dirnames:
                if not os.path.islink(os.path.join(dirpath, d)):
                    os.rmdir(os.path.join(dirpath, d))
        os.rmdir(top)

    def _make_dir(self, key: str, node: Node) -> None:
        mode = (node.mode | 0o700) & 0o777
        try:
            os.mkdir(self._abs(key), mode)
        except FileExistsError:
            raise RootfsError("write", key, "exists on disk but not in the tree model") from None
        parent = self._nodes[parent_key(key)] if key != "/" else None
        if parent is not None and parent.mode & stat.S_ISGID:
            node.disk = (-1, -1, -1)  # group and setgid bit inherited from the parent: set both explicitly
        else:
            node.disk = (mode & ~self._umask, *self._creds)
        self._set_node(key, node)
        self._apply_dir_meta(key, node, final=False)

    def _apply_dir_meta(self, key: str, node: Node, *, final: bool) -> None:
        """Bring a directory's owner and mode (and, when ``final``, mtime) on disk in line with ``node``,
        skipping the calls that would change nothing."""
        path = self._abs(key)
        mode, uid, gid = node.disk
        if self.privileged and (uid, gid) != (node.uid, node.gid):
            os.chown(path, node.uid, node.gid, follow_symlinks=False)
            mode = -1  # chown may clear setuid/setgid bits: set the mode again
        # until finish(), directories stay writable for the writer (an unprivileged build needs that)
        want = node.mode if final else node.mode | 0o700
        if mode != want:
            os.chmod(path, want, follow_symlinks=False)
        node.disk = (want, node.uid, node.gid) if self.privileged else (want, uid, gid)
        if final:
            os.utime(path, ns=(node.mtime * 10**9, node.mtime * 10**9), follow_symlinks=False)

    def _make_symlink(self, key: str, node: Node) -> None:
        path = self._abs(key)
        os.symlink(node.target, path)
        if self.privileged and (node.uid, node.gid) != self._creds:
            os.chown(path, node.uid, node.gid, follow_symlinks=False)
        os.utime(path, ns=(node.mtime * 10**9, node.mtime * 10**9), follow_symlinks=False)
        self._set_node(key, node)

    def _make_special(self, key: str, node: Node) -> None:
        path = self._abs(key)
        try:
            if node.kind == "fifo":
                os.mkfifo(path, 0o600)
            else:
                fmt = stat.S_IFCHR if node.kind == "char" else stat.S_IFBLK
                os.mknod(path, fmt | 0o600, os.makedev(node.devmajor, node.devminor))
        except PermissionError:
            raise RootfsError("write", key, f"cannot create a {node.kind} node without privileges") from None
        if self.privileged:
            os.chown(path, node.uid, node.gid, follow_symlinks=False)
        os.chmod(path, node.mode, follow_symlinks=False)
        os.utime(path, ns=(node.mtime * 10**9, node.mtime * 10**9), follow_symlinks=False)
        self._set_node(key, node)

    def _write_temp(self, key: str, blocks: Iterable[bytes], node: Node) -> str:
        """Write ``blocks`` to a fresh temporary file next to ``key``; fill in size and md5 of ``node``."""
        folder = self._abs(parent_key(key))
        while True:
            tmp = f"{folder}/.forge-tmp-{threading.get_ident()}-{next(self._tmp)}"
            if not os.path.lexists(tmp):
                break
        self._write_new(tmp, blocks, node)
        return tmp

    def _write_new(self, path: str, blocks: Iterable[bytes], node: Node) -> None:
        """Create ``path`` (it must not exist; never through a link) holding ``blocks``, with ``node``'s owner,
        mode and mtime; fill in its size and md5."""
        fd = os.open(path, _O_NEW, 0o600)
        try:
            digest = hashlib.md5(usedforsecurity=False)
            size = 0
            for block in blocks:
                digest.update(block)
                _write_all(fd, block)
                size += len(block)
            node.size = size
            node.md5 = digest.hexdigest()
            self._set_meta(fd, node, 0o600, True)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)

    def _set_meta(self, fd: int, node: Node, created: int, inherits_group: bool) -> None:
        """Owner, mode and mtime of a file just created with mode ``created``; calls that would change
        nothing are skipped (as root, a new file is already root's; the umask may have kept the mode)."""
        chowned = self.privileged and ((node.uid, node.gid) != self._creds or inherits_group)
        if chowned:
            os.fchown(fd, node.uid, node.gid)
        if chowned or node.mode != created & ~self._umask:
            os.fchmod(fd, node.mode)  # after chown, which clears setuid/setgid
        os.utime(fd, ns=(node.mtime * 10**9, node.mtime * 10**9))

    # -- the write phase --------------------------------------------------------------------------------

    def _write_planned(self, tasks: Sequence[tuple[PackageJob, Path, PackageRecord]], workers: int) -> None:
        """Write the content of every planned file; ``workers`` > 1 forks helpers that take a share each."""
        # The children only read tars and write files: they take no lock another thread of this process may
        # hold at the fork (everything they call was imported before), so forking from a threaded process is safe.
        if workers > 1 and len(tasks) > 1:
            shares: list[list[tuple[PackageJob, Path, PackageRecord]]] = [[] for _ in range(min(workers, len(tasks)))]
            loads = [0] * len(shares)
            for task in sorted(tasks, key=lambda t: -sum(w.node.size + 4096 for w in t[2].writes.values())):
                i = loads.index(min(loads))
                shares[i].append(task)
                loads[i] += sum(w.node.size + 4096 for w in task[2].writes.values())
            run_parallel([functools.partial(self._write_share, share) for share in shares])
        else:
            self._write_share(tasks)

    def _write_share(self, tasks: Sequence[tuple[PackageJob, Path, PackageRecord]]) -> None:
        for job, tar, record in tasks:
            last = max(record.writes)
            members = iter_tar(tar, job.deb)
            try:
                for index, m in enumerate(members):
                    write = record.writes.get(index)
                    if write is not None and write.keys:
                        with os_errors(m.path):
                            self._write_member(write, m)
                    if index >= last:
                        break
            finally:
                members.close()

    def _write_member(self, write: PlannedWrite, m: DataMember) -> None:
        node, first = write.node, write.keys[0]
        if (m.kind, m.path, m.size, m.mode) != ("file", write.path, node.size, node.mode):
            raise RootfsError("write", write.path, f"member {write.index} of the data.tar is {m.kind} {m.path} "
                              "now: the cached member list does not match it (run 'forge cache verify')")
        created = node.mode & 0o777
        fd = os.open(self._abs(first), _O_NEW, created)
        try:
            size = 0
            for block in m.blocks():
                _write_all(fd, block)
                size += len(block)
            if size != node.size:
                raise RootfsError("write", m.path, f"{size} bytes read, the archive declares {node.size}")
            parent = self._nodes[parent_key(first)]
            self._set_meta(fd, node, created, parent.disk[0] == -1 or bool(parent.disk[0] & stat.S_ISGID))
        except BaseException:
            os.close(fd)
            os.unlink(self._abs(first))
            raise
        os.close(fd)
        for key in write.keys[1:]:
            os.link(self._abs(first), self._abs(key), follow_symlinks=False)

