"""Who wins a path two packages ship: the same symlink or an identical file is shared; otherwise the
``[conflicts]`` policy of the recipe, then ``Replaces`` (one-sided) decide, and anything else is an error
naming both packages. A package may never replace a directory that still has contents, nor what forge laid out
itself (merged /usr) with something else.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from rootfs_forge.errors import RootfsError
from rootfs_forge.unpack.disk import TreeStore
from rootfs_forge.unpack.record import (
    Node,
    PackageRecord,
    parent_key,
    resolve_in_root,
)


class ConflictRules(TreeStore):
    """The conflict decisions of :class:`rootfs_forge.unpack.writer.TreeWriter` over its record."""

    merged_usr: bool
    conflict_policy: dict[str, str]
    _records: dict[str, PackageRecord]
    _replaces: dict[str, frozenset[str]]
    _ma_same: dict[str, bool]

    def _claim(self, record: PackageRecord, path: str, key: str, new: Node) -> bool:
        """May ``record`` put ``new`` at ``key``? True: write it; False: the existing entry stays. Lists the path.

        Raises ``RootfsError`` on an unresolved conflict between two packages.
        """
        old = self._nodes.get(key)
        write = self._decide(path, key, old, record.name, new)
        if write or (old is not None and old.owner != record.name and self._shared(old, new, record.name, key)):
            record.paths.append(path)
            record.keys[path] = key
            if new.kind == "file":
                record.md5sums[path] = new.md5
            if write and old is not None and old.owner not in (None, record.name) and old.kind != "dir":
                self._records[old.owner].lost.add(key)
        else:
            record.overridden.append(path)
        return write

    def _shared(self, old: Node, new: Node, pkg: str, key: str = "") -> bool:
        if old.kind == "symlink" and new.kind == "symlink":
            if old.target == new.target:
                return True
            # a package shipping forge's own layout link in another spelling (/bin -> /usr/bin)
            return old.owner is None and bool(key) and self._link_dest(key, old) == self._link_dest(key, new)
        if old.kind == "file" and new.kind == "file" and old.owner is not None:
            return (old.md5 == new.md5 and old.size == new.size and self._ma_same.get(old.owner, False)
                    and self._ma_same.get(pkg, False))
        return False

    def _link_dest(self, key: str, link: Node) -> str:
        base = "" if link.target.startswith("/") else parent_key(key)
        return resolve_in_root(self._nodes, f"{base}/{link.target}", follow_last=True)

    def _decide(self, path: str, key: str, old: Node | None, pkg: str, new: Node) -> bool:
        if old is None:
            return True
        if old.kind == "dir" and new.kind == "dir":
            return False
        if old.owner == pkg:
            if old.kind == "dir":
                raise RootfsError("write", path, f"package {pkg} ships it both as a directory and a {new.kind}")
            return True
        if self._shared(old, new, pkg, key):
            return False
        if old.owner is None:
            raise RootfsError("write", path, f"package {pkg} ships a {new.kind} where forge made a {old.kind}"
                              + (" (merged /usr layout)" if self.merged_usr else ""))
        winner = self._winner(path, key, old.owner, pkg)
        if winner == pkg and old.kind == "dir" and old.children:
            raise RootfsError("write", path, f"package {pkg} replaces a non-empty directory of {old.owner}")
        if winner is None:
            a, b = sorted((old.owner, pkg))
            raise RootfsError("write", path, f"packages {a} and {b} both ship it "
                              f"({old.kind} and {new.kind}); add a Replaces or a conflict policy")
        return winner == pkg

    def _winner(self, path: str, key: str, old: str, new: str) -> str | None:
        for glob, winner in self.conflict_policy.items():
            if winner in (old, new) and (fnmatchcase(path, glob) or fnmatchcase(key, glob)):
                return winner
        new_replaces = old in self._replaces.get(new, ())
        old_replaces = new in self._replaces.get(old, ())
        if new_replaces != old_replaces:
            return new if new_replaces else old
        return None

