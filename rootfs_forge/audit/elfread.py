"""A small, bounds-checked reader of the few ELF facts the dynamic loader needs.

Reads the ELF header, the program headers, the ``PT_INTERP`` string and each ``PT_DYNAMIC`` array with
:mod:`struct`, and resolves ``DT_NEEDED``, ``DT_RPATH``, ``DT_RUNPATH`` and ``DT_SONAME`` through the string
table that ``DT_STRTAB`` names — a virtual address, mapped to a file offset through the first ``PT_LOAD``
segment whose file image holds it, as ``ld.so`` does. Section headers are never read.

The answers are those pyelftools gives for every well-formed file (tests/test_elfread.py compares both on
the host's binaries), including its quirks: the interpreter string runs to the first NUL of the file, not
of the segment; the dynamic array runs to ``DT_NULL`` whatever ``p_filesz`` says; every ``PT_INTERP`` and
``PT_DYNAMIC`` counts, in order (the last interpreter and ``DT_SONAME`` win); a dynamic string whose offset is
past the end of the file, or that has no NUL before it, is ``""`` and decodes as UTF-8 with replacement; the
interpreter must be NUL-terminated, valid UTF-8. pyelftools prefers the string table that section headers
name; on real files it is the one ``DT_STRTAB`` names, and a file whose ``DT_STRTAB`` maps into no
``PT_LOAD`` is None here, as the loader would refuse it.

Pure: the caller supplies ``read(offset, size) -> bytes`` and the file size. Nothing is read outside
``[0, size)``, and the work is bounded (see the ``MAX_*`` limits): a file beyond them is None, like a file
too short or inconsistent to parse.
"""

from __future__ import annotations

import posixpath
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

Read = Callable[[int, int], bytes]

ELF_MAGIC = b"\x7fELF"
ET_EXEC, ET_DYN = 2, 3
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_STRTAB, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 5, 14, 15, 29
PN_XNUM = 0xFFFF

MAX_PHDR_BYTES = 1 << 16  # the kernel's own limit on a program header table (fs/binfmt_elf.c)
MAX_DYN_ENTRIES = 1 << 16  # real objects have tens; without DT_NULL by then the array is garbage
MAX_STRING = 1 << 16  # longer than any path the loader accepts (PATH_MAX is 4096)
HEAD = 4096  # read at once: the ELF header, the program headers and PT_INTERP nearly always lie here

# e_machine -> the name pyelftools gives it, for the machines rootfs_forge knows (elf._TRIPLETS)
MACHINES: dict[int, str] = {
    3: "EM_386",
    8: "EM_MIPS",
    20: "EM_PPC",
    21: "EM_PPC64",
    22: "EM_S390",
    40: "EM_ARM",
    62: "EM_X86_64",
    183: "EM_AARCH64",
    243: "EM_RISCV",
    258: "EM_LOONGARCH",
}

# (class, little-endian) -> (ELF header, program header, dynamic entry)
_LAYOUTS: dict[tuple[int, bool], tuple[struct.Struct, struct.Struct, struct.Struct]] = {
    (32, True): (struct.Struct("<16xHHIIIIIHHHHHH"), struct.Struct("<IIIIIIII"), struct.Struct("<iI")),
    (32, False): (struct.Struct(">16xHHIIIIIHHHHHH"), struct.Struct(">IIIIIIII"), struct.Struct(">iI")),
    (64, True): (struct.Struct("<16xHHIQQQIHHHHHH"), struct.Struct("<IIQQQQQQ"), struct.Struct("<qQ")),
    (64, False): (struct.Struct(">16xHHIQQQIHHHHHH"), struct.Struct(">IIQQQQQQ"), struct.Struct(">qQ")),
}


@dataclass(frozen=True)
class ElfInfo:
    """What the dynamic loader reads from one ELF file."""

    path: str
    elfclass: int
    little: bool
    machine: str
    etype: str  # ET_EXEC | ET_DYN
    interp: str = ""
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()
    soname: str = ""

    @property
    def abi(self) -> tuple[int, bool, str]:
        return (self.elfclass, self.little, self.machine)

    @property
    def is_library(self) -> bool:
        """A shared object meant to be linked against rather than run (libc.so.6 is both, and counts here)."""
        base = posixpath.basename(self.path)
        return self.etype == "ET_DYN" and (bool(self.soname) or ".so" in base) and not (
            self.interp and not self.soname)


@dataclass(frozen=True, slots=True)
class _Phdr:
    ptype: int
    offset: int
    vaddr: int
    filesz: int


def machine_name(number: int) -> str:
    """``e_machine`` spelt as pyelftools spells it: its enum name, or the bare number if it has none."""
    return MACHINES.get(number) or _pyelftools_machines().get(number, str(number))


@lru_cache(maxsize=1)
def _pyelftools_machines() -> dict[int, str]:
    from elftools.elf.enums import ENUM_E_MACHINE  # data only; the same reversal construct's Enum does

    return {v: k for k, v in ENUM_E_MACHINE.items() if k != "_default_"}


class _File:
    """Bounded reads of one file of ``size`` bytes, the first :data:`HEAD` bytes held in memory."""

    def __init__(self, read: Read, size: int) -> None:
        self._read = read
        self.size = size
        self.head = read(0, min(size, HEAD))

    def get(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset``; fewer at the end of the file, none outside it."""
        if offset < 0 or length <= 0 or offset >= self.size:
            return b""
        length = min(length, self.size - offset)
        end = offset + length
        if end <= len(self.head):
            return self.head[offset:end]
        return self._read(offset, length)[:length]

    def exact(self, offset: int, length: int) -> bytes | None:
        data = self.get(offset, length)
        return data if len(data) == length else None

    def cstring(self, offset: int) -> tuple[bytes, bool] | None:
        """The bytes at ``offset`` up to the first NUL, and whether there was one before the end of the file.

        None if the string runs on past :data:`MAX_STRING` bytes.
        """
        out = b""
        chunk = 256
        while len(out) <= MAX_STRING:
            data = self.get(offset + len(out), chunk)
            nul = data.find(b"\0")
            if nul >= 0:
                return out + data[:nul], True
            out += data
            if len(data) < chunk:
                return out, False
            chunk = min(chunk * 4, MAX_STRING)
        return None


def read_elf(read: Read, size: int, path: str = "") -> ElfInfo | None:
    """The loader-relevant facts of the ELF executable or shared object read by ``read`` (the file ``path``); None
    otherwise."""
    f = _File(read, size)
    head = f.head
    if len(head) < 16 or head[:4] != ELF_MAGIC or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    elfclass, little = (32 if head[4] == 1 else 64), head[5] == 1
    ehdr_s, phdr_s, dyn_s = _LAYOUTS[(elfclass, little)]
    ehdr = f.exact(0, ehdr_s.size)
    if ehdr is None:
        return None
    (e_type, e_machine, _version, _entry, e_phoff, _shoff, _flags, _ehsize, e_phentsize, e_phnum,
     _shentsize, _shnum, _shstrndx) = ehdr_s.unpack(ehdr)
    if e_type not in (ET_EXEC, ET_DYN):
        return None
    phdrs = _program_headers(f, phdr_s, e_phoff, e_phentsize, e_phnum, elfclass)
    if phdrs is None:
        return None
    interp = ""
    needed: list[str] = []
    rpath: list[str] = []
    runpath: list[str] = []
    soname = ""
    for ph in phdrs:
        if ph.ptype == PT_INTERP:
            found = f.cstring(ph.offset)
            if found is None or not found[1]:
                return None  # no NUL before the end of the file
            try:
                interp = found[0].decode("utf-8")
            except UnicodeDecodeError:
                return None
        elif ph.ptype == PT_DYNAMIC and ph.filesz:
            entries = _dynamic(f, dyn_s, ph.offset)
            if entries is None:
                return None
            strtab = _strtab(entries, phdrs)
            for tag, val in entries:
                if tag not in (DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME):
                    continue
                if strtab is None:
                    return None
                found = f.cstring(strtab + val)
                if found is None:
                    return None
                text = found[0].decode("utf-8", "replace") if found[1] else ""
                if tag == DT_NEEDED:
                    needed.append(text)
                elif tag == DT_RPATH:
                    rpath.extend(p for p in text.split(":") if p)
                elif tag == DT_RUNPATH:
                    runpath.extend(p for p in text.split(":") if p)
                else:
                    soname = text
    return ElfInfo(path, elfclass, little, machine_name(e_machine), "ET_EXEC" if e_type == ET_EXEC else "ET_DYN",
                   interp, tuple(needed), tuple(rpath), tuple(runpath), soname)


def _program_headers(f: _File, phdr_s: struct.Struct, phoff: int, phentsize: int, phnum: int,
                     elfclass: int) -> list[_Phdr] | None:
    if phnum == 0:
        return []
    if phnum >= PN_XNUM or phentsize < phdr_s.size or phnum * phentsize > MAX_PHDR_BYTES:
        return None  # PN_XNUM (count in section 0) has no real use; the kernel refuses tables over 64 KiB
    table = f.exact(phoff, (phnum - 1) * phentsize + phdr_s.size)
    if table is None:
        return None
    out = []
    for n in range(phnum):
        fields = phdr_s.unpack_from(table, n * phentsize)
        if elfclass == 32:
            ptype, offset, vaddr, _paddr, filesz = fields[:5]
        else:
            ptype, _flags, offset, vaddr, _paddr, filesz = fields[:6]
        out.append(_Phdr(ptype, offset, vaddr, filesz))
    return out


def _dynamic(f: _File, dyn_s: struct.Struct, offset: int) -> list[tuple[int, int]] | None:
    """The (d_tag, d_val) entries from ``offset`` up to DT_NULL; None if the file or MAX_DYN_ENTRIES ends first."""
    out: list[tuple[int, int]] = []
    step = dyn_s.size
    batch = 64
    while len(out) < MAX_DYN_ENTRIES:
        data = f.get(offset + len(out) * step, batch * step)
        for tag, val in dyn_s.iter_unpack(data[:len(data) - len(data) % step]):
            out.append((tag, val))
            if tag == DT_NULL:
                return out
        if len(data) < batch * step:
            return None
        batch = min(batch * 4, MAX_DYN_ENTRIES - len(out)) or 1
    return None


def _strtab(entries: list[tuple[int, int]], phdrs: list[_Phdr]) -> int | None:
    """The file offset of the first DT_STRTAB: inside the file image of the first PT_LOAD that holds it."""
    addr = next((val for tag, val in entries if tag == DT_STRTAB), None)
    if addr is None:
        return None
    for ph in phdrs:
        if ph.ptype == PT_LOAD and ph.vaddr <= addr and addr + 1 <= ph.vaddr + ph.filesz:
            return addr - ph.vaddr + ph.offset
    return None
