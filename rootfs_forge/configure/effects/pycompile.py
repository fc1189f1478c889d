"""Compiling Python sources with the image's own interpreter, sandboxed, and the cache of what it made.

The interpreter runs under bubblewrap with the image as a read-only ``/`` (every namespace unshared: no
network, nothing of the host), reads in-root paths on stdin and writes back, for each, the ``unchecked-hash``
pyc ``python3 -m py_compile --invalidation-mode unchecked-hash PATH`` would write (the same loader calls, in
memory): the bytes depend only on the source and the interpreter, never on a timestamp. Records on both pipes
are length-prefixed: ``<u32 len><path>`` in, ``<u32 len><path><u32 len><pyc>`` out (an empty pyc: the
source did not compile, and py_compile would have written nothing either).

The cache keeps one file per (package .deb SHA-256, interpreter package version, cache tag): a warm compose
reads it instead of starting the interpreter.
"""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from rootfs_forge.errors import RootfsError
from rootfs_forge.util.files import atomic_file

# Run inside the image by its interpreter (-E -S -I: no environment, no site, isolated).
_COMPILER = r"""
import sys, struct, importlib.util, importlib.machinery, importlib._bootstrap_external as be
inp, out = sys.stdin.buffer, sys.stdout.buffer
out.write(sys.implementation.cache_tag.encode() + b"\n")
while True:
    head = inp.read(4)
    if len(head) < 4:
        break
    path = inp.read(struct.unpack("<I", head)[0]).decode("utf-8", "surrogateescape")
    try:
        loader = importlib.machinery.SourceFileLoader("<py_compile>", path)
        source = loader.get_data(path)
        code = loader.source_to_code(source, path)
        data = be._code_to_hash_pyc(code, importlib.util.source_hash(source), False)
    except Exception:
        data = b""
    name = path.encode("utf-8", "surrogateescape")
    out.write(struct.pack("<I", len(name)) + name + struct.pack("<I", len(data)) + bytes(data))
out.flush()
"""
_FORMAT = b"forge-pyc-1\n"


def sandbox_argv(bwrap: str, root: str, argv: list[str]) -> list[str]:
    """``argv`` run by bubblewrap with ``root`` as a read-only ``/``, every namespace unshared (no network),
    an empty environment (pure). Nothing else is mounted: a minimal image may have no /proc or /dev."""
    return [bwrap, "--ro-bind", root, "/", "--unshare-all",
            "--die-with-parent", "--new-session", "--clearenv", "--chdir", "/", *argv]


def parse_records(data: bytes) -> dict[str, bytes]:
    """``<u32><path><u32><pyc>`` records → path → pyc (pure)."""
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        (n,) = struct.unpack_from("<I", data, pos)
        path = data[pos + 4 : pos + 4 + n].decode("utf-8", "surrogateescape")
        pos += 4 + n
        (m,) = struct.unpack_from("<I", data, pos)
        out[path] = data[pos + 4 : pos + 4 + m]
        pos += 4 + m
    return out


def records(pycs: Mapping[str, bytes]) -> bytes:
    parts = []
    for path in sorted(pycs):
        name = path.encode("utf-8", "surrogateescape")
        parts.append(struct.pack("<I", len(name)) + name + struct.pack("<I", len(pycs[path])) + pycs[path])
    return b"".join(parts)


def compile_in_image(bwrap: str, root: Path, interpreter: str,
                     sources: Iterable[str]) -> tuple[str, dict[str, bytes]]:
    """(cache tag, source path → pyc) compiled by ``interpreter`` inside ``root`` (sandboxed)."""
    feed = b"".join(struct.pack("<I", len(p.encode())) + p.encode() for p in sources)
    argv = sandbox_argv(bwrap, str(root), [interpreter, "-E", "-S", "-I", "-c", _COMPILER])
    try:
        done = subprocess.run(argv, input=feed, capture_output=True, check=False, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RootfsError("compile", f"Python modules with {interpreter}", str(exc)) from None
    tag, sep, rest = done.stdout.partition(b"\n")
    if done.returncode != 0 or not sep:
        last = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["failed"])[-1]
        raise RootfsError("compile", f"Python modules with {interpreter}", last[:200])
    return tag.decode(), parse_records(rest)


def cache_path(cache_dir: Path, sha256: str, interpreter_version: str, tag: str) -> Path:
    safe = "".join(c if c.isalnum() or c in ".+-" else "_" for c in interpreter_version)
    return cache_dir / "bytecode" / f"{sha256}-{tag}-{safe}.pycs"


def read_cached(path: Path) -> dict[str, bytes] | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(_FORMAT):
        return None
    try:
        return parse_records(data[len(_FORMAT):])
    except struct.error:
        return None


def write_cached(path: Path, pycs: Mapping[str, bytes]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as fh:
            fh.write(_FORMAT + records(pycs))
    except OSError:
        pass  # a cache that cannot be written only costs the next compose time


__all__ = ["cache_path", "compile_in_image", "parse_records", "read_cached", "records", "sandbox_argv",
           "write_cached"]

