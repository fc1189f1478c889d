"""The struct-based ELF reader behind ``parse_elf`` against the pyelftools code it replaced.

The reference below is the pyelftools implementation ``parse_elf`` had before (kept verbatim but for the
uncaught exceptions, which it reports instead of raising). Every host ELF sampled, 32- and 64-bit, little and
big endian, must give exactly its answer; synthetic objects built here with ``struct`` pin the expected values;
mutated real and synthetic objects must never raise, never make a read outside the file, and give either None or
the reference's answer whenever pyelftools itself parses the file.

Where the two legitimately differ, on corrupt input only:

* pyelftools takes dynamic strings from the section that the ``.dynamic`` section header links to when there
  is one, the loader (and this reader) from ``DT_STRTAB`` mapped through ``PT_LOAD``. On every real file the
  two are the same offset (checked below on the host sample); a mutation that makes them differ only has to
  parse without raising, and where ``DT_STRTAB`` maps nowhere the reader says None while pyelftools still
  answers from the section.
* without section headers pyelftools decodes dynamic strings strictly and fails on bad UTF-8; with them (and
  here always) bad bytes become U+FFFD.
* the reader gives up (None) past its limits: more than 64 KiB of program headers or ``PN_XNUM``, no
  ``DT_NULL`` within 65536 entries, a string longer than 64 KiB.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest
from elftools.common.exceptions import ELFError
from elftools.construct.core import ConstructError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_E_MACHINE
from elftools.elf.segments import InterpSegment
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rootfs_forge.audit.elf import ElfInfo, parse_elf
from rootfs_forge.audit.elfread import MACHINES, machine_name, read_elf
from rootfs_forge.audit.view import DirView, FsView, MemoryView, Node, read_bytes

FAILED = "pyelftools raised"

# ----------------------------------------------------------------------------- reference: the old parse_elf


def reference(view: FsView, path: str) -> ElfInfo | str | None:
    """``parse_elf`` as it was with pyelftools; FAILED where that code let an exception escape."""
    node = view.lstat(path)
    if node is None or node.kind != "file" or node.size < 52:
        return None
    try:
        if read_bytes(view, path, 4) != b"\x7fELF":
            return None
        with view.open(path) as fh:
            elf = ELFFile(fh)
            etype = elf.header["e_type"]
            if etype not in ("ET_EXEC", "ET_DYN"):
                return None
            interp = ""
            needed: list[str] = []
            rpath: list[str] = []
            runpath: list[str] = []
            soname = ""
            for seg in elf.iter_segments():
                if isinstance(seg, InterpSegment):
                    interp = seg.get_interp_name()
                if not isinstance(seg, DynamicSegment):
                    continue
                for dyn in seg.iter_tags():
                    tag: Any = dyn
                    kind = tag.entry.d_tag
                    if kind == "DT_NEEDED":
                        needed.append(tag.needed)
                    elif kind == "DT_RPATH":
                        rpath.extend(p for p in tag.rpath.split(":") if p)
                    elif kind == "DT_RUNPATH":
                        runpath.extend(p for p in tag.runpath.split(":") if p)
                    elif kind == "DT_SONAME":
                        soname = tag.soname
            return ElfInfo(path, elf.elfclass, elf.little_endian, str(elf.header["e_machine"]), etype,
                           interp, tuple(needed), tuple(rpath), tuple(runpath), soname)
    except (ELFError, OSError, ValueError, KeyError, AttributeError, IndexError, TypeError, OverflowError,
            ConstructError, struct.error):
        return None
    except Exception:
        return FAILED


def strtab_sources_differ(data: bytes) -> bool:
    """Whether pyelftools reads some PT_DYNAMIC's strings from a section other than DT_STRTAB's mapping."""
    import io

    try:
        elf = ELFFile(io.BytesIO(data))
        for seg in elf.iter_segments():
            if isinstance(seg, DynamicSegment) and seg["p_filesz"]:
                table: Any = seg._get_stringtable()
                mapped = seg.get_table_offset("DT_STRTAB")[1]
                if hasattr(table, "header") and table["sh_offset"] != mapped:
                    return True
    except Exception:
        return False
    return False


# ----------------------------------------------------------------------------- host ELF files

HOST_DIRS = ("/usr/bin", "/usr/sbin", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
             "/usr/lib/arch-test", "/usr/libexec/valgrind", "/usr/lib/perf-core")
HOST_CAP = 300


def _is_elf(path: str) -> bool:
    try:
        if os.path.islink(path) or not os.path.isfile(path):
            return False
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def _host_elves() -> list[str]:
    """Up to HOST_CAP host ELF files, spread evenly over each directory; every non-x86-64 one is kept."""
    foreign: list[str] = []
    native: list[str] = []
    for top in HOST_DIRS:
        found = []
        for d, _dirs, files in os.walk(top):
            found += [p for f in sorted(files) if _is_elf(p := os.path.join(d, f))]
        for p in sorted(found):
            with open(p, "rb") as fh:
                head = fh.read(20)
            (foreign if head[4:6] != b"\x02\x01" or head[18:20] != b">\x00" else native).append(p)
    if os.path.isfile("/bin/busybox"):
        foreign.append(os.path.realpath("/bin/busybox"))  # a static executable
    room = max(HOST_CAP - len(foreign), 0)
    step = max(len(native) // room, 1) if room else len(native) + 1
    return sorted(set(foreign[:HOST_CAP] + native[::step][:room]))


@pytest.fixture(scope="module")
def host_elves() -> list[str]:
    return _host_elves()


def test_host_elf_files_read_as_pyelftools_reads_them(host_elves: list[str]) -> None:
    view = DirView("/")
    answers = {p: parse_elf(view, p) for p in host_elves}
    expected = {p: reference(view, p) for p in host_elves}
    assert answers == expected
    parsed = [i for i in answers.values() if i is not None]
    assert len(parsed) >= 50, "too few ELF files on this host to compare"
    assert sum(bool(i.needed) for i in parsed) >= 25
    assert any(i.interp for i in parsed) and any(i.soname for i in parsed)


def test_host_dynamic_strings_come_from_dt_strtab_in_pyelftools_too(host_elves: list[str]) -> None:
    differ = [p for p in host_elves[::3] if strtab_sources_differ(Path(p).read_bytes())]
    assert differ == []


@pytest.mark.parametrize(("elfclass", "little"), [(32, True), (32, False), (64, False)])
def test_host_foreign_layouts_read_as_pyelftools_reads_them(host_elves: list[str], elfclass: int,
                                                           little: bool) -> None:
    ident = bytes([1 if elfclass == 32 else 2, 1 if little else 2])
    paths = [p for p in host_elves if Path(p).read_bytes()[4:6] == ident]
    if not paths:
        pytest.skip(f"no {elfclass}-bit {'little' if little else 'big'}-endian ELF on this host "
                    "(the synthetic tests below cover the layout)")
    view = DirView("/")
    for p in paths:
        info = parse_elf(view, p)
        assert info == reference(view, p)
        assert info is None or (info.elfclass, info.little) == (elfclass, little)


# ----------------------------------------------------------------------------- synthetic objects

VADDR = 0x10000


def build_elf(elfclass: int = 64, little: bool = True, machine: int = 62, etype: int = 3, interp: str = "",
              dyn: list[tuple[int, str]] | None = None, extra_dyn: list[tuple[int, int]] | None = None) -> bytes:
    """A minimal ELF without section headers: PT_LOAD over the whole file, PT_INTERP, PT_DYNAMIC, .dynstr.

    ``dyn`` lists (d_tag, string) entries whose values go into the string table.
    """
    e = "<" if little else ">"
    wide = elfclass == 64
    ehsize, phentsize, dynsize = (64, 56, 16) if wide else (52, 32, 8)
    strtab = bytearray(b"\0")
    entries: list[tuple[int, int]] = []
    for tag, text in dyn or []:
        entries.append((tag, len(strtab)))
        strtab += text.encode() + b"\0"
    phnum = 3 if interp else 2
    interp_off = ehsize + phnum * phentsize
    interp_raw = interp.encode() + b"\0" if interp else b""
    strtab_off = interp_off + len(interp_raw)
    dyn_off = strtab_off + len(strtab)
    dyn_off += -dyn_off % 8
    entries += [(5, VADDR + strtab_off), (10, len(strtab)), *(extra_dyn or []), (0, 0)]
    total = dyn_off + len(entries) * dynsize

    def phdr(ptype: int, offset: int, size: int) -> bytes:
        if wide:
            return struct.pack(e + "IIQQQQQQ", ptype, 4, offset, VADDR + offset, VADDR + offset, size, size, 8)
        return struct.pack(e + "IIIIIIII", ptype, offset, VADDR + offset, VADDR + offset, size, size, 4, 4)

    ident = b"\x7fELF" + bytes([2 if wide else 1, 1 if little else 2, 1, 0]) + b"\0" * 8
    head = struct.pack(e + ("HHIQQQIHHHHHH" if wide else "HHIIIIIHHHHHH"), etype, machine, 1, VADDR,
                       ehsize, 0, 0, ehsize, phentsize, phnum, 0, 0, 0)
    phdrs = phdr(1, 0, total) + (phdr(3, interp_off, len(interp_raw)) if interp else b"")
    phdrs += phdr(2, dyn_off, len(entries) * dynsize)
    out = bytearray(ident + head + phdrs + interp_raw + strtab)
    out += b"\0" * (dyn_off - len(out))
    for tag, val in entries:
        out += struct.pack(e + ("qQ" if wide else "iI"), tag, val)
    assert len(out) == total
    return bytes(out)


def _view(data: bytes, path: str = "/usr/bin/x") -> MemoryView:
    view = MemoryView()
    view.add(path, Node("file", len(data), 0o755), data)
    return view


DYN = [(1, "libfoo.so.1"), (1, "libbar.so"), (15, "/opt/r1:$ORIGIN/../lib"), (29, "/opt/run::/x"),
       (14, "libself.so.2")]


@pytest.mark.parametrize(("elfclass", "little", "machine", "name"), [
    (64, True, 62, "EM_X86_64"), (32, True, 3, "EM_386"), (64, False, 22, "EM_S390"), (64, False, 21, "EM_PPC64"),
    (32, False, 8, "EM_MIPS"), (32, True, 40, "EM_ARM"), (64, True, 183, "EM_AARCH64"),
])
def test_synthetic_object_every_layout(elfclass: int, little: bool, machine: int, name: str) -> None:
    data = build_elf(elfclass, little, machine, interp="/lib/ld-test.so.1", dyn=DYN)
    view = _view(data)
    info = parse_elf(view, "/usr/bin/x")
    assert info == ElfInfo("/usr/bin/x", elfclass, little, name, "ET_DYN", "/lib/ld-test.so.1",
                           ("libfoo.so.1", "libbar.so"), ("/opt/r1", "$ORIGIN/../lib"), ("/opt/run", "/x"),
                           "libself.so.2")
    assert info == reference(view, "/usr/bin/x")


def test_machine_names_are_pyelftools_names() -> None:
    names = {v: k for k, v in ENUM_E_MACHINE.items() if k != "_default_"}
    assert all(names[number] == name for number, name in MACHINES.items())
    for number in (0, 2, 36902, 0x9026, 4660, 0xFFFF):  # 36902: the alpha in /usr/lib/arch-test
        expected = names.get(number, str(number))
        assert machine_name(number) == expected
        view = _view(build_elf(machine=number, etype=2))
        info = parse_elf(view, "/usr/bin/x")
        assert info is not None and info.machine == expected
        assert info == reference(view, "/usr/bin/x")


def test_odd_but_valid_objects_match_pyelftools() -> None:
    cases = {
        "static, no dynamic": build_elf(etype=2),
        "no strings needed": build_elf(extra_dyn=[(0x6FFFFFFB, 8)]),
        "string past the end": build_elf(extra_dyn=[(1, 1 << 40)]),
        "two sonames, last wins": build_elf(dyn=[(14, "a.so"), (14, "b.so")]),
        "executable": build_elf(etype=2, interp="/lib/ld.so", dyn=[(1, "libc.so.6")]),
    }
    for what, data in cases.items():
        view = _view(data)
        info = parse_elf(view, "/usr/bin/x")
        assert info is not None, what
        assert info == reference(view, "/usr/bin/x"), what
    assert parse_elf(_view(cases["string past the end"]), "/usr/bin/x").needed == ("",)  # type: ignore[union-attr]
    assert parse_elf(_view(cases["two sonames, last wins"]), "/usr/bin/x").soname == "b.so"  # type: ignore[union-attr]


def test_relocatable_and_core_files_are_not_objects() -> None:
    for etype in (0, 1, 4):
        assert parse_elf(_view(build_elf(etype=etype, dyn=DYN)), "/usr/bin/x") is None


# ----------------------------------------------------------------------------- hostile input


class Bounded:
    """A read function that fails the test on any read outside the file."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.calls = 0

    def __call__(self, offset: int, size: int) -> bytes:
        self.calls += 1
        assert offset >= 0 and size >= 0 and offset + size <= len(self.data), (offset, size, len(self.data))
        return self.data[offset:offset + size]


def _fields(data: bytes) -> list[tuple[int, int]]:
    """(offset, width) of the header, program header and dynamic fields a mutation may hit."""
    wide = data[4] == 2
    e = "<" if data[5] == 1 else ">"
    w = 8 if wide else 4
    out = [(16, 2), (18, 2), (28 if not wide else 32, w), (44 if not wide else 56, 2), (42 if not wide else 54, 2)]
    phoff = struct.unpack_from(e + ("Q" if wide else "I"), data, 32 if wide else 28)[0]
    phnum = struct.unpack_from(e + "H", data, 56 if wide else 44)[0]
    phent = 56 if wide else 32
    for n in range(min(phnum, 16)):
        base = phoff + n * phent
        if base + phent > len(data):
            break
        out += [(base, 4)] + ([(base + 8, 8), (base + 16, 8), (base + 32, 8)] if wide else
                              [(base + 4, 4), (base + 8, 4), (base + 16, 4)])
        ptype = struct.unpack_from(e + "I", data, base)[0]
        off = struct.unpack_from(e + ("Q" if wide else "I"), data, base + (8 if wide else 4))[0]
        if ptype == 2:
            for k in range(16):
                out += [(off + k * 2 * w, w), (off + k * 2 * w + w, w)]
    return [(o, n) for o, n in out if o + n <= len(data)]


def _cuts(data: bytes) -> list[int]:
    cuts = {0, 4, 16, 51, 52, 63, 64, len(data) - 1}
    for off, width in _fields(data):
        cuts |= {off, off + width - 1, off + width}
    return sorted(c for c in cuts if 0 <= c < len(data))


SAMPLES = {
    "true": Path("/usr/bin/true").read_bytes(),
    "libz": Path(os.path.realpath("/usr/lib/x86_64-linux-gnu/libz.so.1")).read_bytes()
    if os.path.exists("/usr/lib/x86_64-linux-gnu/libz.so.1") else b"",
    "be32": build_elf(32, False, 8, interp="/lib/ld.so.1", dyn=DYN),
    "le32": build_elf(32, True, 3, interp="/lib/ld-linux.so.2", dyn=DYN),
    "be64": build_elf(64, False, 22, interp="/lib/ld64.so.1", dyn=DYN),
}
HUGE = [0, 1, 2, 7, 0x7F, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 40, (1 << 63) - 1, (1 << 64) - 1]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from([k for k, v in SAMPLES.items() if v]))
    data = bytearray(SAMPLES[name])
    fields = _fields(bytes(data))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["field", "flip", "byte"]))
        off, width = draw(st.sampled_from(fields))
        if kind == "field":
            value = draw(st.sampled_from([*HUGE, len(data), len(data) - 1, len(data) + 1])) % (1 << (8 * width))
            data[off:off + width] = value.to_bytes(width, "little" if data[5] == 1 else "big")
        elif kind == "flip":
            data[off + draw(st.integers(0, width - 1))] ^= 1 << draw(st.integers(0, 7))
        else:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[:draw(st.sampled_from(_cuts(bytes(data))))]
    return name, bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=mutated())
def test_mutated_objects_never_raise_and_agree_when_pyelftools_parses_them(case: tuple[str, bytes]) -> None:
    _name, data = case
    bounded = Bounded(data)
    facts = read_elf(bounded, len(data))  # asserts every read stays inside the file
    assert bounded.calls <= 64
    view = _view(data)
    info = parse_elf(view, "/usr/bin/x")
    assert (info is None) == (facts is None)
    expected = reference(view, "/usr/bin/x")
    if info is None or expected is None or expected == FAILED:
        return
    if strtab_sources_differ(data):
        return  # documented: pyelftools takes the section's string table, the loader DT_STRTAB's
    assert info == expected


@pytest.mark.parametrize("name", ["true", "be32", "le32", "be64"])
def test_every_truncation_is_none_or_the_reference(name: str) -> None:
    data = SAMPLES[name]
    for cut in _cuts(data) + list(range(0, min(len(data), 600), 7)):
        view = _view(data[:cut])
        info = parse_elf(view, "/usr/bin/x")
        read_elf(Bounded(data[:cut]), cut)
        expected = reference(view, "/usr/bin/x")
        assert info is None or expected in (None, FAILED) or info == expected, cut


def test_absurd_counts_and_loops_are_bounded() -> None:
    base = build_elf(dyn=DYN)
    # a dynamic array without DT_NULL that runs to the end of a large file: None, in a bounded number of reads
    no_null = bytearray(base[:-16] + struct.pack("<qQ", 0x6FFFFFF0, 1) * 70000)
    bounded = Bounded(bytes(no_null))
    assert read_elf(bounded, len(no_null)) is None
    assert bounded.calls < 20
    # e_phnum = PN_XNUM, and a program header table larger than the kernel accepts
    for phnum, phentsize in ((0xFFFF, 56), (2000, 56), (2, 0xFFFF), (2, 8)):
        data = bytearray(base)
        struct.pack_into("<HH", data, 54, phentsize, phnum)
        assert read_elf(Bounded(bytes(data)), len(data)) is None
    # an interpreter string with no NUL before the end of the file (PT_INTERP is program header 1)
    data = bytearray(build_elf(interp="/lib/ld.so"))
    struct.pack_into("<Q", data, 64 + 56 + 8, len(data))
    data += b"/lib/ld.so"
    view = _view(bytes(data))
    assert parse_elf(view, "/usr/bin/x") is None
    assert reference(view, "/usr/bin/x") is None
    data[-1:] = b"\0"
    assert parse_elf(_view(bytes(data)), "/usr/bin/x").interp == "/lib/ld.s"  # type: ignore[union-attr]


def test_strtab_must_lie_in_the_file_image_of_a_load_segment() -> None:
    data = bytearray(build_elf(dyn=DYN))
    strtab = data.index(b"\0libfoo.so.1\0")
    for filesz, found in ((strtab, False), (strtab + 1, True)):  # PT_LOAD (program header 0) ends there
        struct.pack_into("<Q", data, 64 + 32, filesz)
        view = _view(bytes(data))
        info = parse_elf(view, "/usr/bin/x")
        assert (info is not None) == found, filesz
        if found:
            assert info is not None and info.needed[0] == "libfoo.so.1"
            assert info == reference(view, "/usr/bin/x")
        else:
            assert reference(view, "/usr/bin/x") in (None, FAILED)  # no .dynstr section to fall back on
