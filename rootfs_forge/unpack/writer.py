"""The one writer of a composed tree and its one record. Every path is resolved *inside* the root.

Safety model. :class:`TreeWriter` keeps an in-memory model of every node it has made (kind, mode, owner, link
target …) and resolves each path against that model, never against the host:

* member paths are normalised lexically; one whose ``..`` climbs above the root is refused (dpkg refuses too);
  absolute member paths land under the root;
* symlinks met on the way — absolute or relative, chained — are followed inside the model, with ``/`` meaning
  the root and ``..`` at the root staying at the root (``openat2(RESOLVE_IN_ROOT)`` semantics), at most 40 of
  them. The resolved path therefore only crosses real directories the writer made, so the kernel never follows
  a symlink: nothing can reach the host;
* the final component is never followed: writing a file over a symlink replaces the link, like dpkg — except a
  directory member over a symlink to a directory, which keeps the link (merged ``/usr``);
* hard links may only point at regular files already in the tree; device nodes, FIFOs and sockets are skipped
  and reported unless ``allow_devices``;
* a package whose tar stream (512-byte headers plus data, as the members arrive) grows past ``max_bytes`` fails
  before the member that crosses the limit is written — a bound on huge files and on floods of empty members.
  Debian's ``Installed-Size`` × 1024 is within 2 % of that figure for the essential set; the caller passes
  it with a margin (``compose.unpack_limit``: × 4 + 16 MiB).

The directory must be empty when the writer starts. On any error the writer stops and leaves the partial tree
as it is: the caller builds in a temporary directory, deletes it on failure and renames it on success.

Owners and modes: the intended values are kept in :meth:`TreeWriter.entries` (clamped mtimes, numeric owners),
so a layer can carry them even when the tree was written without root. ``chown`` happens only as root. Every
later writer goes through the same record: ``[[file]]`` entries (:meth:`TreeWriter.add_file`), the effects, the
dpkg database and the manifest (through :class:`rootfs_forge.configure.effects.tree.RootDir`), ``[slim]``
(:meth:`TreeWriter.remove`); a file a host tool wrote into the root is recorded by :meth:`TreeWriter.set_meta`.
Directories stay writable by the writer until :meth:`TreeWriter.finish` applies their final modes and mtimes.

Two phases. :meth:`TreeWriter.add_packages` first *scans* every package in install order, reading only tar
headers: each member is checked, resolved and decided against the model (conflicts by relations — Replaces,
the conflict policy, Multi-Arch: same — and a directory shipped by several packages keeps the metadata of the
lowest ``rank``). Directories, symlinks and removals happen during the scan; a regular file becomes a planned
write. Then the *write* phase puts every planned file's content at its final name exactly once, split over
forked worker processes by package (the GIL would serialise threads). The scan is serial, so the tree never
depends on timing; the write phase only fills in contents the scan already decided. Calls from several
threads are serialised by a lock.

Path filters. A member the filter drops is not written; a directory whose verdict is ``PARENT`` (dpkg keeps it
because an include rule may match below it) is made — and listed for the package — only when something the
package keeps lands below it, so ``/usr/share/doc/<pkg>`` survives a minimal profile only with its copyright.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import stat
import tempfile
import threading
from collections.abc import Generator, Iterable, Mapping, Sequence
from pathlib import Path

from rootfs_forge.errors import RootfsError
from rootfs_forge.unpack.conflicts import ConflictRules
from rootfs_forge.unpack.debfile import DataMember, extract_data_tar, iter_tar
from rootfs_forge.unpack.disk import current_umask, os_errors
from rootfs_forge.unpack.filters import PathFilter, Verdict
from rootfs_forge.unpack.record import (
    Entry,
    Node,
    PackageFiles,
    PackageJob,
    PackageRecord,
    PlannedWrite,
    parent_key,
    resolve_in_root,
    tree_dump,
)
from rootfs_forge.util.arch import MERGED_USR_LIBDIRS, debian_arch
from rootfs_forge.util.inroot import MAX_SYMLINKS, NodeLike

_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _md5_of(m: DataMember) -> str:
    """The md5 of a regular member's content (read while it is the current member)."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    for block in m.blocks():
        digest.update(block)
        size += len(block)
    if size != m.size:
        raise RootfsError("write", m.path, f"{size} bytes read, the archive declares {m.size}")
    return digest.hexdigest()



class TreeWriter(ConflictRules):
    """Writes packages and forge-made files into ``root``; see the module docstring for the rules."""

    def __init__(self, root: Path, *, merged_usr: bool, arch_multiarch: str | None, allow_devices: bool,
                 epoch: int | None, conflict_policy: Mapping[str, str] | None = None,
                 privileged: bool | None = None, _existing: bool = False) -> None:
        """``arch_multiarch`` is the Debian architecture (``amd64``) or its triplet (``x86_64-linux-gnu``);
        it picks the extra ``/lib*`` links of merged /usr. ``privileged`` (default: running as root) decides
        whether owners are applied on disk."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        if not _existing and any(self.root.iterdir()):
            raise RootfsError("write", str(root), "the target directory is not empty")
        self._root = os.path.realpath(self.root)
        self.merged_usr = merged_usr
        self.arch = debian_arch(arch_multiarch or "")
        self.allow_devices = allow_devices
        self.epoch = epoch
        self.conflict_policy = dict(sorted((conflict_policy or {}).items()))
        self.privileged = os.geteuid() == 0 if privileged is None else privileged
        self._lock = threading.RLock()
        self._umask = current_umask()
        self._creds = (os.geteuid(), os.getegid())
        self._nodes: dict[str, Node] = {"/": Node("dir", 0o755, mtime=self._clamp(None), implicit=True)}
        self._links_to: dict[str, set[str]] = {}
        self._records: dict[str, PackageRecord] = {}
        self._replaces: dict[str, frozenset[str]] = {}
        self._ma_same: dict[str, bool] = {}
        self._tmp = itertools.count()
        self._ranks = itertools.count()
        self._finished = False  # after finish(): a write records its directory as modified at the epoch
        if merged_usr:
            self._merged_usr_layout()

    @classmethod
    def from_disk(cls, root: Path, *, epoch: int | None = None, privileged: bool = False) -> TreeWriter:
        """A writer over a tree that already exists (made by something else): its record is read from disk
        (owners and modes as they are, mtimes clamped to ``epoch``). For tools and tests that work on a
        directory; a compose keeps the writer that made the tree."""
        writer = cls(root, merged_usr=False, arch_multiarch=None, allow_devices=True, epoch=epoch,
                     privileged=privileged, _existing=True)
        top = writer._root
        st = os.lstat(top)
        writer._nodes["/"] = Node("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                                   mtime=writer._clamp(int(st.st_mtime)),
                                   disk=(stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid))
        for dirpath, dirnames, filenames in os.walk(top):  # top-down: a parent is recorded before its children
            dirnames.sort()
            rel = dirpath[len(top):]
            for name in sorted(dirnames + filenames):
                key = f"{rel}/{name}"
                writer._set_node(key, writer._node_from_disk(key))
        writer._finished = True
        return writer

    # -- public API -------------------------------------------------------------------------------------

    def add_package(self, name: str, deb: Path, *, replaces: Sequence[str] = (),
                    path_filter: PathFilter | None = None, max_bytes: int | None = None,
                    multi_arch_same: bool = False, rank: int | None = None,
                    data_tar: Path | None = None, md5sums: Mapping[str, str] | None = None) -> PackageFiles:
        """Unpack the data members of ``deb`` as package ``name`` (see :meth:`add_packages`)."""
        job = PackageJob(name, Path(deb), data_tar, tuple(replaces), path_filter, max_bytes, multi_arch_same,
                         rank, md5sums)
        return self.add_packages([job])[0]

    def add_packages(self, jobs: Iterable[PackageJob], *, workers: int = 1) -> list[PackageFiles]:
        """Unpack several packages: decide every path in install order, then write the file contents.

        1. *Scan*, in the order of ``jobs``: each member's header is checked (size bound, filters, devices),
           resolved in the tree model and decided against what is there (conflicts, Replaces, ranks).
           Directories, symlinks and removals happen now; a regular file only becomes a planned write. Its
           md5 is the one the package's md5sums file gives (as dpkg records it), or hashed here when absent.
        2. *Write*: every planned file is written once, to its final name — no temporary name, no rename —
           by ``workers`` processes (forked; their packages split by size), so that extraction uses several
           cores despite the GIL. Every parent directory exists and is one the writer made, so the kernel
           follows no symlink on the way; ``O_EXCL|O_NOFOLLOW`` makes sure of it.

        ``data_tar`` of a job: the package's data.tar already decompressed (read instead of the .deb); without
        it the .deb is decompressed once into a scratch file. Not re-entrant; call it from one thread.

        ``rank`` is the package's position in the install order (default: the order of the calls). A directory
        shipped by several packages keeps the metadata of the lowest rank, as dpkg keeps the first package's.
        """
        with self._lock, contextlib.ExitStack() as stack:
            scratch: str | None = None
            plans: list[tuple[PackageJob, Path, PackageRecord]] = []
            for job in jobs:
                if job.data_tar is None:
                    scratch = scratch or stack.enter_context(tempfile.TemporaryDirectory(prefix="forge-unpack-"))
                    tar = Path(scratch) / f"{len(plans)}.tar"
                    extract_data_tar(job.deb, tar, job.max_bytes)  # bounded as it decompresses
                else:
                    tar = job.data_tar
                plans.append((job, tar, self._scan(job, tar)))
            self._write_planned([(job, tar, rec) for job, tar, rec in plans if rec.writes], workers)
            out = []
            for _, _, record in plans:
                for write in record.writes.values():
                    for key in write.keys:  # on disk now
                        self._nodes[key].planned = None
                record.writes.clear()
                out.append(record.snapshot())
            return out

    def _scan(self, job: PackageJob, tar: Path) -> PackageRecord:
        name = job.name
        if name in self._records:
            raise RootfsError("unpack", f"package {name}", "it was already unpacked into this tree")
        record = self._records[name] = PackageRecord(name, rank=next(self._ranks) if job.rank is None else job.rank)
        self._replaces[name] = frozenset(job.replaces)
        self._ma_same[name] = job.multi_arch_same
        unpacked = 0
        members = iter_tar(tar, job.deb) if job.members is None else iter(job.members)
        path_filter, max_bytes = job.path_filter, job.max_bytes
        table = job.table if job.members is None else None
        md5sums = job.md5sums or {}
        try:
            for index, m in enumerate(members):
                # the tar stream so far: a 512-byte header per member plus its data in 512-byte blocks. This
                # bounds huge files and floods of empty members alike, before anything of the member is written.
                unpacked += 512 + -(-m.size // 512) * 512
                if max_bytes is not None and unpacked > max_bytes:
                    raise RootfsError("unpack", f"package {name}",
                                      f"its contents exceed the limit of {max_bytes} bytes (decompression bomb?)")
                known = ""
                if table is not None:
                    if m.kind == "file" and m.path not in md5sums:  # the table is kept for any filter
                        known = _md5_of(m)
                    table.append([m.path, m.kind, m.mode, m.uid, m.gid, m.mtime, m.size, m.linkname, m.devmajor,
                                  m.devminor, known])
                if m.path == "/":
                    continue
                verdict = path_filter.verdict(name, m.path, m.kind) if path_filter else Verdict.KEEP
                if verdict is Verdict.DROP:
                    record.files_dropped += 1
                    record.bytes_dropped += m.size
                    continue
                if m.kind in ("char", "block", "fifo", "socket") and not (self.allow_devices and m.kind != "socket"):
                    record.skipped.append((m.path, m.kind))
                    continue
                with os_errors(m.path):
                    if m.kind == "file":
                        self._plan_regular(record, m, index, md5sums, listed=job.members is not None,
                                           known=known)
                    else:
                        self._add_member(record, m, verdict)
        finally:
            if isinstance(members, Generator):
                members.close()
        record.files_dropped += len(record.pending)  # PARENT directories nothing kept went into
        record.pending.clear()
        return record

    def package_files(self, name: str) -> PackageFiles:
        """The current file list of ``name``: paths a later package took over are gone from it."""
        with self._lock:
            return self._records[name].snapshot()

    def add_file(self, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0,
                 mtime: int | None = None) -> str:
        """Create or replace a regular file (a symlink at ``path`` is replaced, not followed). Returns its key.

        A new name is written in place; an existing file or link is replaced by a rename from a temporary
        name, never written through."""
        norm = self._norm(path)
        with self._lock, os_errors(norm):
            key = self._prepare(norm)
            self._check_effect_target(key)
            digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
            node = Node("file", mode & 0o7777, uid, gid, len(data), mtime=self._clamp(mtime), md5=digest)
            if key in self._nodes:
                tmp = self._write_temp(key, [data], node)
                self._remove_node(key)
                os.rename(tmp, self._abs(key))
            else:
                self._write_new(self._abs(key), [data], node)
            self._set_node(key, node)
            self._touched(key)
            return key

    def add_symlink(self, path: str, target: str, uid: int = 0, gid: int = 0, mtime: int | None = None) -> str:
        norm = self._norm(path)
        if not target:
            raise RootfsError("write", norm, "empty symlink target")
        with self._lock, os_errors(norm):
            key = self._prepare(norm)
            self._check_effect_target(key)
            self._remove_node(key)
            node = Node("symlink", 0o777, uid, gid, target=target, mtime=self._clamp(mtime))
            self._make_symlink(key, node)
            self._touched(key)
            return key

    def add_dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0, mtime: int | None = None) -> str:
        """Create a directory, or set the metadata of the directory ``path`` leads to."""
        norm = self._norm(path)
        with self._lock, os_errors(norm):
            key = resolve_in_root(self._nodes, norm, follow_last=True)
            self._prepare(key)
            node = self._nodes.get(key)
            if node is not None and node.kind != "dir":
                raise RootfsError("write", norm, f"a {node.kind} is in the way")
            new = Node("dir", mode & 0o7777, uid, gid, mtime=self._clamp(mtime))
            if node is None:
                self._make_dir(key, new)
                self._touched(key)
            else:
                node.mode, node.uid, node.gid, node.mtime, node.implicit = new.mode, uid, gid, new.mtime, False
                self._apply_dir_meta(key, node, final=False)
            return key

    def set_meta(self, path: str, mode: int, uid: int = 0, gid: int = 0, mtime: int | None = None) -> Entry:
        """Set the mode, owner and mtime of what ``path`` leads to. A file a host tool wrote into the root (the
        host's ``ldconfig -r``) is recorded now. Returns the new entry."""
        norm = self._norm(path)
        with self._lock, os_errors(norm):
            key = resolve_in_root(self._nodes, norm, follow_last=True)
            node = self._nodes.get(key)
            if node is None:
                if key == "/" or not os.path.lexists(self._abs(key)) or parent_key(key) not in self._nodes:
                    raise RootfsError("change mode of", norm, "no such file or directory")
                node = self._node_from_disk(key)
                self._set_node(key, node)
                self._touched(key)
            if node.kind == "symlink":
                raise RootfsError("change mode of", norm, "it is a dangling symbolic link")
            node.mode, node.uid, node.gid, node.mtime = mode & 0o7777, uid, gid, self._clamp(mtime)
            if node.kind == "dir":
                self._apply_dir_meta(key, node, final=False)
            else:
                target = self._abs(key)
                if self.privileged:
                    os.chown(target, uid, gid, follow_symlinks=False)  # clears security.capability
                os.chmod(target, node.mode, follow_symlinks=False)
                self._apply_xattrs(target, node)
                os.utime(target, ns=(node.mtime * 10**9, node.mtime * 10**9), follow_symlinks=False)
            return node.entry()

    def set_xattr(self, path: str, name: str, value: bytes) -> str:
        """Record the extended attribute ``name`` of the regular file ``path`` leads to (layers carry it as a
        PAX ``SCHILY.xattr.NAME`` record) and, when composing as root, set it on disk. Returns its key."""
        norm = self._norm(path)
        with self._lock, os_errors(norm):
            key = resolve_in_root(self._nodes, norm, follow_last=True)
            node = self._nodes.get(key)
            if node is None or node.kind != "file":
                raise RootfsError("set attribute of", norm, "no such regular file")
            node.xattrs = tuple(sorted({**dict(node.xattrs), name: bytes(value)}.items()))
            self._apply_xattrs(self._abs(key), node)
            return key

    def _apply_xattrs(self, target: str, node: Node) -> None:
        """``security.*`` needs root (CAP_SETFCAP); unprivileged, the record alone carries them to layers."""
        if self.privileged:
            for name, value in node.xattrs:
                os.setxattr(target, name, value, follow_symlinks=False)

    def remove(self, path: str) -> bool:
        """Remove ``path`` (a symlink itself, not its target; a directory with everything below it). A file a
        host tool wrote into the root (``ldconfig -r``'s aux-cache) is recorded first, then removed."""
        norm = self._norm(path)
        if norm == "/":
            raise RootfsError("remove", norm, "refusing to remove the root")
        with self._lock, os_errors(norm):
            key = resolve_in_root(self._nodes, norm, follow_last=False)
            if key not in self._nodes:
                if not os.path.lexists(self._abs(key)) or parent_key(key) not in self._nodes:
                    return False
                self._set_node(key, self._node_from_disk(key))
            self._remove_node(key, recursive=True)
            self._touched(key)
            return True

    # -- members ----------------------------------------------------------------------------------------

    def _add_member(self, record: PackageRecord, m: DataMember, verdict: Verdict) -> None:
        if m.kind == "dir":
            self._add_dir_member(record, m, verdict)
        elif m.kind == "symlink":
            node = Node("symlink", 0o777, m.uid, m.gid, target=m.linkname, mtime=self._clamp(m.mtime),
                         owner=record.name)
            key = self._prepare(m.path, record)
            if self._claim(record, m.path, key, node):
                self._remove_node(key)
                self._make_symlink(key, node)
        elif m.kind == "hardlink":
            self._add_hardlink(record, m)
        else:
            node = Node(m.kind, m.mode, m.uid, m.gid, mtime=self._clamp(m.mtime), devmajor=m.devmajor,
                         devminor=m.devminor, owner=record.name)
            key = self._prepare(m.path, record)
            if self._claim(record, m.path, key, node):
                self._remove_node(key)
                self._make_special(key, node)

    def _plan_regular(self, record: PackageRecord, m: DataMember, index: int, md5sums: Mapping[str, str], *,
                      listed: bool = False, known: str = "") -> None:
        """Decide a regular member now; its content is written later (see :meth:`add_packages`)."""
        key = self._prepare(m.path, record)
        md5 = known or md5sums.get(m.path)
        if md5 is None and listed:  # a member table gives every md5 the package's md5sums does not
            raise RootfsError("write", m.path, "the cached member list does not match the package "
                                               "(run 'forge cache verify')")
        if md5 is None:  # not in the package's md5sums (conffiles are not, and some packages ship none)
            md5 = _md5_of(m)
        node = Node("file", m.mode, m.uid, m.gid, m.size, mtime=self._clamp(m.mtime), owner=record.name, md5=md5)
        if self._claim(record, m.path, key, node):
            self._remove_node(key)
            write = PlannedWrite(index, m.path, node, [key])
            node.planned = write
            record.writes[index] = write
            self._set_node(key, node)
            record.bytes_kept += node.size

    def _add_dir_member(self, record: PackageRecord, m: DataMember, verdict: Verdict) -> None:
        key = self._prepare(m.path, record)
        node = self._nodes.get(key)
        new = Node("dir", m.mode, m.uid, m.gid, mtime=self._clamp(m.mtime), owner=record.name)
        if node is not None and node.kind == "symlink":
            followed = self._nodes.get(resolve_in_root(self._nodes, key, follow_last=True))
            if followed is not None and followed.kind == "dir":  # keep a symlink to a directory (dpkg)
                if verdict is Verdict.KEEP:
                    record.paths.append(m.path)
                    record.keys[m.path] = key
                return
        if verdict is Verdict.PARENT and (node is None or node.kind == "dir"):
            record.pending[key] = (m.path, new)
            return
        if node is not None and node.kind != "dir":
            if not self._claim(record, m.path, key, new):
                return
            self._remove_node(key)
            node = None
        if node is None:
            self._make_dir(key, new)
        else:
            self._merge_dir(record, key, node, new)
        record.paths.append(m.path)
        record.keys[m.path] = key

    def _merge_dir(self, record: PackageRecord, key: str, node: Node, new: Node) -> None:
        """A directory that exists already: it takes the metadata of the lowest-ranked package shipping it."""
        owner = self._records.get(node.owner) if node.owner else None
        if node.implicit or (owner is not None and owner.rank > record.rank):
            node.mode, node.uid, node.gid, node.mtime = new.mode, new.uid, new.gid, new.mtime
            node.owner, node.implicit = record.name, False
            self._apply_dir_meta(key, node, final=False)

    def _add_hardlink(self, record: PackageRecord, m: DataMember) -> None:
        target_key = resolve_in_root(self._nodes, m.linkname, follow_last=False)
        target = self._nodes.get(target_key)
        if target is None or target.kind != "file":
            what = "nothing" if target is None else f"a {target.kind}"
            raise RootfsError("write", m.path, f"hard link to {m.linkname}, which is {what} in the tree")
        key = self._prepare(m.path, record)
        if key == target_key:
            raise RootfsError("write", m.path, "hard link to itself")
        node = Node("file", target.mode, target.uid, target.gid, target.size, mtime=target.mtime,
                     md5=target.md5, hardlink=target_key, owner=record.name)
        if self._claim(record, m.path, key, node):
            self._remove_node(key)
            if target.planned is not None:  # its content is still to be written: the link comes with it
                target.planned.keys.append(key)
                node.planned = target.planned
            else:
                os.link(self._abs(target_key), self._abs(key), follow_symlinks=False)
            self._set_node(key, node)
            self._links_to.setdefault(target_key, set()).add(key)

    def _check_effect_target(self, key: str) -> None:
        node = self._nodes.get(key)
        if node is not None and node.kind == "dir":
            raise RootfsError("write", key, "a directory is in the way")

    def _prepare(self, path: str, record: PackageRecord | None = None) -> str:
        """Resolve the parent of ``path`` in the root, making missing directories; return the final key.

        The final component itself is not followed. A missing directory this package shipped as a PARENT
        (``record.pending``) is made with its metadata and listed now; any other is made 0755 root:root.
        """
        if path == "/":
            return "/"
        head, _, name = path.rpartition("/")
        parent = resolve_in_root(self._nodes, head or "/", follow_last=True)
        if parent != "/":
            parts = parent.split("/")
            for i in range(2, len(parts) + 1):
                sub = "/".join(parts[:i])
                node = self._nodes.get(sub)
                if record is None or sub not in record.pending:
                    if node is None:
                        self._make_dir(sub, Node("dir", 0o755, mtime=self._clamp(None), implicit=True))
                    elif node.kind != "dir":
                        raise RootfsError("write", path, f"{sub} is a {node.kind}, not a directory")
                    continue
                member, shipped = record.pending.pop(sub)
                if node is None:
                    self._make_dir(sub, shipped)
                elif node.kind == "dir":
                    self._merge_dir(record, sub, node, shipped)
                else:
                    raise RootfsError("write", path, f"{sub} is a {node.kind}, not a directory")
                record.paths.append(member)
                record.keys[member] = sub
        return (parent.rstrip("/") + "/" + name) if name else parent

    def drop_unowned_libdirs(self) -> list[str]:
        """Remove the extra ``/lib*`` links of merged /usr (and their empty ``/usr/lib*``) that no package owns,
        as usr-is-merged's postinst does after debootstrap or mmdebstrap laid them out: Debian's bookworm
        amd64 tree keeps /lib64 (libc6 ships the loader there) but not /lib32 or /libx32. Returns what went."""
        removed: list[str] = []
        if not self.merged_usr:
            return removed
        with self._lock:
            def owned(path: str) -> bool:
                return any(path in record.keys for record in self._records.values())

            for d in MERGED_USR_LIBDIRS.get(self.arch, ()):
                link, real = f"/{d}", f"/usr/{d}"
                node = self._nodes.get(link)
                if node is None or node.kind != "symlink" or node.owner is not None or owned(link):
                    continue
                self._remove_node(link)
                removed.append(link)
                under = self._nodes.get(real)
                if (under is not None and under.kind == "dir" and under.implicit and not under.children
                        and not owned(real)):
                    self._remove_node(real)
                    removed.append(real)
        return removed

    # -- layout -----------------------------------------------------------------------------------------

    def _merged_usr_layout(self) -> None:
        dirs = ("bin", "sbin", "lib", *MERGED_USR_LIBDIRS.get(self.arch, ()))
        with self._lock:
            self._make_dir("/usr", Node("dir", 0o755, mtime=self._clamp(None), implicit=True))
            for d in dirs:
                self._make_dir(f"/usr/{d}", Node("dir", 0o755, mtime=self._clamp(None), implicit=True))
                self._make_symlink(f"/{d}", Node("symlink", 0o777, target=f"usr/{d}", mtime=self._clamp(None)))



__all__ = ["MAX_SYMLINKS", "MERGED_USR_LIBDIRS", "Entry", "NodeLike", "PackageFiles", "PackageJob", "TreeWriter",
           "resolve_in_root", "tree_dump"]
