"""The paths a slimmed tree must keep so that the declared programs still run.

:func:`slim_keep_set` is pure over a :class:`~rootfs_forge.audit.view.FsView`: from each program to keep it
adds its ``#!`` interpreter (``/usr/bin/env NAME`` is looked up on the default ``PATH``), its ELF interpreter
and libraries recursively (the same search as ``forge audit``'s closure check), everything under the declared
data paths (directories or globs: ``*`` and ``?`` stay within one path component, ``**`` crosses them,
``[…]`` is a character class), every symlink passed on the way and its
target (resolved inside the tree), and every parent directory. ``forge compose`` removes the rest.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable

from rootfs_forge.audit.elf import ElfInfo, Loader
from rootfs_forge.audit.view import FsView, Node, read_bytes, resolve
from rootfs_forge.errors import AuditError

DEFAULT_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
MAX_SHEBANG_DEPTH = 4
_GLOB = set("*?[")


class _Keeper:
    def __init__(self, view: FsView) -> None:
        self.view = view
        self.loader = Loader(view)
        self.keep: set[str] = set()
        self._programs: set[str] = set()

    def path(self, path: str) -> str | None:
        """Keep ``path``, the symlinks on the way to it and what it names; return its real path."""
        chain: list[str] = []
        real = resolve(self.view, path, chain=chain)
        self.keep.update(chain)
        if real is None:
            return None
        self.keep.add(real)
        return real

    def subtree(self, top: str) -> None:
        stack = [top]
        while stack:
            here = stack.pop()
            for name in self.view.listdir(here):
                child = posixpath.join(here, name)
                node = self.view.lstat(child)
                if node is None:
                    continue
                self.keep.add(child)
                if node.kind == "dir":
                    stack.append(child)
                elif node.kind == "symlink":
                    self.path(child)
                elif node.kind == "file" and (info := self.loader.elf(child)) is not None:
                    # a shared object among the data (a Python extension module, a plugin) needs its libraries
                    self.elf(child, info)

    def program(self, path: str, depth: int = 0) -> None:
        real = self.path(path)
        if real is None or real in self._programs:
            return
        self._programs.add(real)
        node = self.view.lstat(real) or Node("missing")
        if node.kind == "dir":
            self.subtree(real)
            return
        if node.kind != "file":
            return
        info = self.loader.elf(real)
        if info is not None:
            self.elf(real, info)
        elif depth < MAX_SHEBANG_DEPTH:
            for interp in shebang(self.view, real):
                self.program(interp, depth + 1)

    def elf(self, root: str, top: ElfInfo) -> None:
        if top.interp:
            self.path(top.interp)
        queue: list[tuple[ElfInfo, str, list[tuple[ElfInfo, str]]]] = [(top, posixpath.dirname(root), [])]
        seen = {root}
        loaded: dict[str, tuple[str, str]] = {}
        while queue:
            obj, origin, loaders = queue.pop(0)
            for name in obj.needed:
                found = loaded.get(name) or self.loader.find(name, obj, origin, loaders)
                if found is None:
                    continue  # `forge audit` reports it; slimming keeps what exists
                real, where = found
                self.path(name if "/" in name else posixpath.join(where, name))
                info = self.loader.elf(real)
                loaded[name] = found
                if info is None or real in seen:
                    continue
                if info.soname:
                    loaded.setdefault(info.soname, found)
                seen.add(real)
                queue.append((info, where, [(obj, origin), *loaders]))


def shebang(view: FsView, path: str) -> list[str]:
    """The programs a ``#!`` script needs: its interpreter and, for ``env NAME``, NAME found on the PATH."""
    head = read_bytes(view, path, 256)
    if not head.startswith(b"#!"):
        return []
    words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
    if not words:
        return []
    out = [words[0]]
    if posixpath.basename(words[0]) == "env":
        args = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        if args:
            name = args[0]
            hit = next((posixpath.join(d, name) for d in DEFAULT_PATH
                        if resolve(view, posixpath.join(d, name)) is not None), None)
            if hit:
                out.append(hit)
    return out


def _is_glob(pattern: str) -> bool:
    return bool(_GLOB & set(pattern))


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A compiled regex for an absolute path glob (``**`` any depth, ``*``/``?`` within a component)."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1:end]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
            i = end + 1
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def slim_keep_set(view: FsView, keep: list[str], data_paths: list[str]) -> set[str]:
    """Every path of the tree to keep for ``keep`` programs and ``data_paths`` (see the module docstring).

    Raises :class:`AuditError` for a program that is not in the tree, so a typo in a recipe does not
    silently produce an empty image.
    """
    keeper = _Keeper(view)
    for program in keep:
        if resolve(view, program) is None:
            raise AuditError("keep", program, "no such file in the tree")
        keeper.program(program)
    all_paths: list[str] | None = None
    for pattern in data_paths:
        if _is_glob(pattern):
            if all_paths is None:
                all_paths = sorted(p for p, _ in view.walk())
            regex = glob_regex("/" + pattern.lstrip("/"))
            for path in all_paths:
                if regex.match(path):
                    _data(keeper, path)
        else:
            _data(keeper, pattern)
    return _with_parents(keeper.keep)


def _data(keeper: _Keeper, path: str) -> None:
    real = keeper.path(path)
    if real is not None and (keeper.view.lstat(real) or Node("missing")).kind == "dir":
        keeper.subtree(real)


def _with_parents(paths: Iterable[str]) -> set[str]:
    out = set()
    for path in paths:
        while path not in ("/", "") and path not in out:
            out.add(path)
            path = posixpath.dirname(path)
    return out
