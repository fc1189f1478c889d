"""Build real .deb files in memory from data, including hostile ones, for the test suite.

A .deb is an ``ar`` archive of ``debian-binary``, ``control.tar.*`` and ``data.tar.*``. Members are described as
data (``Reg``, ``Dir``, ``Lnk``, ``Hard``, ``Dev``, ``Fifo``) so a test reads like the tree it expects.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

MTIME = 1_700_000_000


@dataclass(frozen=True)
class Member:
    path: str
    kind: str  # file | dir | symlink | hardlink | char | block | fifo
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    target: str = ""
    major: int = 0
    minor: int = 0
    mtime: int = MTIME


def Reg(path: str, data: bytes | str = b"", mode: int = 0o644, uid: int = 0, gid: int = 0) -> Member:
    return Member(path, "file", data.encode() if isinstance(data, str) else data, mode, uid, gid)


def Dir(path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Member:
    return Member(path, "dir", b"", mode, uid, gid)


def Lnk(path: str, target: str) -> Member:
    return Member(path, "symlink", b"", 0o777, target=target)


def Hard(path: str, target: str) -> Member:
    return Member(path, "hardlink", b"", 0o644, target=target)


def Dev(path: str, kind: str = "char", major: int = 1, minor: int = 3) -> Member:
    return Member(path, kind, b"", 0o666, major=major, minor=minor)


def Fifo(path: str) -> Member:
    return Member(path, "fifo", b"", 0o644)


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def make_tar(members: Iterable[Member], *, prefix: str = "./") -> bytes:
    """An uncompressed tar of ``members``; paths get ``prefix`` unless they start with '/' or '.'."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for m in members:
            name = m.path if m.path.startswith(("/", ".")) else prefix + m.path
            info = tarfile.TarInfo(name)
            info.type = _TYPES[m.kind]
            info.mode = m.mode
            info.uid, info.gid = m.uid, m.gid
            info.uname = info.gname = "root"
            info.mtime = m.mtime
            if m.kind in ("symlink", "hardlink"):
                info.linkname = m.target if m.kind == "symlink" or m.target.startswith(("/", ".")) \
                    else prefix + m.target
            if m.kind in ("char", "block"):
                info.devmajor, info.devminor = m.major, m.minor
            if m.kind == "file":
                info.size = len(m.data)
                tar.addfile(info, io.BytesIO(m.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def compress(data: bytes, how: str) -> tuple[str, bytes]:
    """Return (suffix, payload) for ``how`` in none, gz, xz, zst, bz2."""
    if how == "none":
        return "", data
    if how == "gz":
        import gzip

        return ".gz", gzip.compress(data, mtime=0)
    if how == "xz":
        return ".xz", lzma.compress(data)
    if how == "zst":
        import zstandard

        return ".zst", zstandard.ZstdCompressor().compress(data)
    if how == "bz2":
        import bz2

        return ".bz2", bz2.compress(data)
    raise ValueError(how)


def ar_archive(members: Sequence[tuple[str, bytes]]) -> bytes:
    """A System V ``ar`` archive, as dpkg-deb writes it."""
    out = [b"!<arch>\n"]
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
        assert len(header) == 60
        out.append(header)
        out.append(data)
        if len(data) % 2:
            out.append(b"\n")
    return b"".join(out)


@dataclass
class DebSpec:
    """A package described as data: control fields, files and maintainer scripts."""

    name: str
    version: str = "1.0"
    architecture: str = "amd64"
    fields: Mapping[str, str] = field(default_factory=dict)  # extra control fields (Depends, Provides …)
    members: Sequence[Member] = ()
    scripts: Mapping[str, str] = field(default_factory=dict)  # postinst, preinst, prerm, postrm, config
    conffiles: Sequence[str] = ()
    compression: str = "xz"
    control_compression: str = "xz"

    def control_text(self) -> str:
        fields: dict[str, str] = {
            "Package": self.name,
            "Version": self.version,
            "Architecture": self.architecture,
            "Maintainer": "Forge Tests <tests@example.invalid>",
        }
        size = sum(len(m.data) for m in self.members) // 1024 + 1
        fields["Installed-Size"] = str(size)
        fields.update(self.fields)
        fields.setdefault("Description", f"test package {self.name}\n synthetic package for rootfs_forge tests")
        lines = [f"{k}: {v}" for k, v in fields.items()]
        return "\n".join(lines) + "\n"


def build_deb(spec: DebSpec, *, raw_data_tar: bytes | None = None,
              order: Sequence[str] = ("debian-binary", "control", "data")) -> bytes:
    """The bytes of a real .deb for ``spec``. ``raw_data_tar`` replaces the data tar (for hostile archives)."""
    md5 = "".join(
        f"{hashlib.md5(m.data).hexdigest()}  {m.path.lstrip('./')}\n" for m in spec.members if m.kind == "file"
    )
    control_members = [Reg("control", spec.control_text())]
    if md5:
        control_members.append(Reg("md5sums", md5))
    if spec.conffiles:
        control_members.append(Reg("conffiles", "".join(c + "\n" for c in spec.conffiles)))
    for script, body in sorted(spec.scripts.items()):
        control_members.append(Reg(script, body, mode=0o755))
    csuffix, control = compress(make_tar([Dir("."), *control_members]), spec.control_compression)
    data_tar = raw_data_tar if raw_data_tar is not None else make_tar(
        [Dir("."), *spec.members]
    )
    dsuffix, data = compress(data_tar, spec.compression)
    parts = {
        "debian-binary": ("debian-binary", b"2.0\n"),
        "control": ("control.tar" + csuffix, control),
        "data": ("data.tar" + dsuffix, data),
    }
    return ar_archive([parts[p] for p in order])

