"""The dynamic-linking closure of a tree, checked the way ``ld.so`` would search it.

For every ELF executable and shared object, ``PT_INTERP`` and each ``DT_NEEDED`` must resolve inside the tree
to an ELF of the same class, byte order and machine. The search follows glibc's order:

1. a name with a ``/`` is a path;
2. ``DT_RPATH`` of the object, then of each object that loaded it up to the executable — only while the
   requesting object has no ``DT_RUNPATH`` (and an object's own ``DT_RPATH`` is ignored if it has one);
3. ``LD_LIBRARY_PATH`` is ignored: an image does not know the environment it will run in;
4. ``DT_RUNPATH`` of the requesting object;
5. the directories of ``/etc/ld.so.conf`` and the files it includes (what ``ldconfig`` would cache);
6. the multiarch directories ``/lib/<triplet>``, ``/usr/lib/<triplet>``, then ``/lib64``, ``/usr/lib64`` for
   64-bit objects, then ``/lib`` and ``/usr/lib``.

``$ORIGIN``, ``$LIB`` and ``$PLATFORM`` are expanded; symlinks are resolved inside the tree. A library that
was already loaded for the same executable satisfies a later ``DT_NEEDED`` of the same name, as in glibc.
Shared libraries that nothing links to are reported as "possibly dlopen()ed", not as errors.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from rootfs_forge.audit.elfread import ElfInfo, Read, read_elf
from rootfs_forge.audit.view import FsView, Node, read_bytes, resolve

# (e_machine, class, little-endian) -> (multiarch triplet, $PLATFORM)
_TRIPLETS: dict[tuple[str, int, bool], tuple[tuple[str, ...], str]] = {
    ("EM_X86_64", 64, True): (("x86_64-linux-gnu",), "x86_64"),
    ("EM_X86_64", 32, True): (("x86_64-linux-gnux32",), "x86_64"),
    ("EM_386", 32, True): (("i386-linux-gnu",), "i686"),
    ("EM_AARCH64", 64, True): (("aarch64-linux-gnu",), "aarch64"),
    ("EM_ARM", 32, True): (("arm-linux-gnueabihf", "arm-linux-gnueabi"), "v7l"),
    ("EM_PPC64", 64, True): (("powerpc64le-linux-gnu",), "ppc64le"),
    ("EM_PPC64", 64, False): (("powerpc64-linux-gnu",), "ppc64"),
    ("EM_S390", 64, False): (("s390x-linux-gnu",), "s390x"),
    ("EM_RISCV", 64, True): (("riscv64-linux-gnu",), "riscv64"),
    ("EM_MIPS", 64, True): (("mips64el-linux-gnuabi64",), "mips64"),
    ("EM_MIPS", 32, True): (("mipsel-linux-gnu",), "mips"),
    ("EM_LOONGARCH", 64, True): (("loongarch64-linux-gnu",), "loongarch64"),
}


def parse_elf(view: FsView, path: str) -> ElfInfo | None:
    """The loader-relevant facts of the ELF executable or shared object at ``path``; None for anything else.

    Read with :mod:`rootfs_forge.audit.elfread` (program headers and the dynamic array only, with
    ``struct``); truncated or odd files are not something the loader would map either, and are None.
    """
    node = view.lstat(path)
    if node is None or node.kind != "file" or node.size < 52:
        return None
    try:
        with view.open(path) as fh:
            facts = read_elf(_reader(fh), node.size, path)
    except OSError:
        return None
    return facts


def _reader(fh: BinaryIO) -> Read:
    def read(offset: int, size: int) -> bytes:
        fh.seek(offset)
        return fh.read(size)

    return read


def ld_so_conf_dirs(view: FsView, conf: str = "/etc/ld.so.conf") -> list[str]:
    """Directories named by ``ld.so.conf`` and its ``include`` lines (globs, relative to the including file)."""
    out: list[str] = []
    seen: set[str] = set()

    def read(path: str) -> None:
        real = resolve(view, path)
        if real is None or real in seen or (view.lstat(real) or Node("missing")).kind != "file":
            return
        seen.add(real)
        text = read_bytes(view, real).decode("utf-8", "replace")
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line or line.startswith("hwcap "):
                continue
            if line.startswith("include") and line[7:8] in (" ", "\t"):
                for pattern in line[8:].split():
                    if not pattern.startswith("/"):
                        pattern = posixpath.join(posixpath.dirname(path), pattern)
                    for match in _glob(view, pattern):
                        read(match)
                continue
            for word in line.replace(",", " ").replace(":", " ").split():
                if word.startswith("/") and word not in out:
                    out.append(word.rstrip("/") or "/")

    read(conf)
    return out


def _glob(view: FsView, pattern: str) -> list[str]:
    directory, base = posixpath.split(pattern)
    real = resolve(view, directory)
    if real is None:
        return []
    return [posixpath.join(directory, n) for n in view.listdir(real) if fnmatch.fnmatchcase(n, base)]


@dataclass(frozen=True)
class Missing:
    """A library (or interpreter) that does not resolve, and the objects that need it."""

    name: str
    kind: str  # library | interpreter
    needed_by: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "needed_by": list(self.needed_by)}


@dataclass(frozen=True)
class ClosureReport:
    checked: tuple[str, ...]  # every ELF executable and shared object looked at
    missing: tuple[Missing, ...]
    unused_libraries: tuple[str, ...]  # shared objects nothing links to: possibly dlopen()ed
    edges: dict[str, dict[str, str]] = field(default_factory=dict)  # object -> needed/interp -> resolved path

    @property
    def ok(self) -> bool:
        return not self.missing


class Loader:
    """Resolves names for one tree. Pure over the view; caches ELF headers and lookups."""

    def __init__(self, view: FsView) -> None:
        self.view = view
        self.conf_dirs = ld_so_conf_dirs(view)
        self._elf: dict[str, ElfInfo | None] = {}
        self._found: dict[tuple[str, tuple[int, bool, str], tuple[str, ...]], tuple[str, str] | None] = {}
        self._real: dict[str, str | None] = {}

    def elf(self, path: str) -> ElfInfo | None:
        if path not in self._elf:
            self._elf[path] = parse_elf(self.view, path)
        return self._elf[path]

    def _system_dirs(self, abi: tuple[int, bool, str]) -> list[str]:
        elfclass, little, machine = abi
        triplets, _ = _TRIPLETS.get((machine, elfclass, little), ((), ""))
        dirs = [*self.conf_dirs]
        for t in triplets:
            dirs += [f"/lib/{t}", f"/usr/lib/{t}"]
        if elfclass == 64:
            dirs += ["/lib64", "/usr/lib64"]
        return [*dirs, "/lib", "/usr/lib"]

    def expand(self, entry: str, obj: ElfInfo, origin: str) -> list[str]:
        """A DT_RPATH/DT_RUNPATH entry with its dynamic string tokens expanded (possibly several paths)."""
        triplets, platform = _TRIPLETS.get((obj.machine, obj.elfclass, obj.little), ((), ""))
        libs = [f"lib/{t}" for t in triplets] + (["lib64"] if obj.elfclass == 64 else []) + ["lib"]
        out = [entry.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)
                    .replace("${PLATFORM}", platform).replace("$PLATFORM", platform)]
        if "$LIB" in entry or "${LIB}" in entry:
            out = [o.replace("${LIB}", lib).replace("$LIB", lib) for o in out for lib in libs]
        # a relative entry is relative to the process's working directory, unknown here: it finds nothing
        return [posixpath.normpath(o) for o in out if o.startswith("/")]

    def candidate(self, path: str, abi: tuple[int, bool, str]) -> str | None:
        """The in-tree real path of ``path`` if it is an ELF the loader would accept for ``abi``."""
        if path not in self._real:
            self._real[path] = resolve(self.view, path)
        real = self._real[path]
        if real is None:
            return None
        info = self.elf(real)
        return real if info is not None and info.abi == abi else None

    def search_dirs(self, obj: ElfInfo, origin: str, loaders: list[tuple[ElfInfo, str]]) -> tuple[str, ...]:
        dirs: list[str] = []
        if not obj.runpath:
            for o, o_origin in [(obj, origin), *loaders]:
                if not o.runpath:
                    for entry in o.rpath:
                        dirs += self.expand(entry, o, o_origin)
        for entry in obj.runpath:
            dirs += self.expand(entry, obj, origin)
        return tuple(dirs) + tuple(self._system_dirs(obj.abi))

    def find(self, name: str, obj: ElfInfo, origin: str,
             loaders: list[tuple[ElfInfo, str]]) -> tuple[str, str] | None:
        """Where ``obj`` (loaded from directory ``origin`` by ``loaders``) finds DT_NEEDED ``name``.

        Returns the library's real path in the tree and the directory it was found in (its ``$ORIGIN``).
        """
        if "/" in name:
            path = posixpath.normpath(name if name.startswith("/") else posixpath.join(origin, name))
            hit = self.candidate(path, obj.abi)
            return (hit, posixpath.dirname(path)) if hit else None
        dirs = self.search_dirs(obj, origin, loaders)
        key = (name, obj.abi, dirs)
        if key not in self._found:
            self._found[key] = next(
                ((hit, d) for d in dirs if (hit := self.candidate(posixpath.join(d, name), obj.abi))), None)
        return self._found[key]


def check_closure(view: FsView, paths: Iterable[str] | None = None) -> ClosureReport:
    """Check every ELF executable and shared object in ``paths`` (default: every regular file of the tree)."""
    loader = Loader(view)
    if paths is None:
        paths = (p for p, node in view.walk() if node.kind == "file")
    infos = {p: info for p in sorted(set(paths)) if (info := loader.elf(p)) is not None}
    objects = list(infos)
    missing: dict[tuple[str, str], set[str]] = {}
    edges: dict[str, dict[str, str]] = {}
    used: set[str] = set()
    reached: set[str] = set()
    roots = [p for p in objects if not infos[p].is_library] + [p for p in objects if infos[p].is_library]
    for root in roots:
        if root in reached and infos[root].is_library:
            continue  # already checked in the context of a program that loads it
        _walk(loader, root, missing, edges, used, reached)
    unused = tuple(p for p in objects if infos[p].is_library and p not in used)
    return ClosureReport(
        tuple(objects),
        tuple(Missing(name, kind, tuple(sorted(by))) for (kind, name), by in sorted(missing.items(),
                                                                                  key=lambda kv: kv[0][::-1])),
        unused,
        edges,
    )


def _walk(loader: Loader, root: str, missing: dict[tuple[str, str], set[str]],
          edges: dict[str, dict[str, str]], used: set[str], reached: set[str]) -> None:
    """Load ``root`` and its DT_NEEDED breadth-first, as ld.so does for one process."""
    top = loader.elf(root)
    assert top is not None
    reached.add(root)
    if top.interp:
        interp = loader.candidate(top.interp, top.abi)
        if interp is None:
            missing.setdefault(("interpreter", top.interp), set()).add(root)
        else:
            used.add(interp)
            edges.setdefault(root, {})[top.interp] = interp
    loaded: dict[str, tuple[str, str]] = {}  # DT_NEEDED name or soname -> (path, origin), for this process
    queue: list[tuple[str, ElfInfo, str, list[tuple[ElfInfo, str]]]] = [
        (root, top, posixpath.dirname(root), [])]
    done = {root}
    while queue:
        path, obj, origin, loaders = queue.pop(0)
        for name in obj.needed:
            found = loaded.get(name) or loader.find(name, obj, origin, loaders)
            if found is None:
                missing.setdefault(("library", name), set()).add(path)
                continue
            hit, hit_origin = found
            edges.setdefault(path, {})[name] = hit
            used.add(hit)
            info = loader.elf(hit)
            assert info is not None
            loaded[name] = found
            if info.soname:
                loaded.setdefault(info.soname, found)
            if hit in done:
                continue
            done.add(hit)
            reached.add(hit)
            queue.append((hit, info, hit_origin, [(obj, origin), *loaders]))

