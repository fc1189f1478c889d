"""The ``security.capability`` extended attribute of an archive entry (libarchive's xattr list, via ctypes).

libarchive-c does not expose extended attributes; libarchive itself reads them from PAX headers
(``SCHILY.xattr.*``, ``LIBARCHIVE.xattr.*``). This reads just the one attribute the audit reports.
"""

from __future__ import annotations

import ctypes
from typing import Any

from libarchive import ffi

CAPABILITY = b"security.capability"
_reset: Any = None
_next: Any = None


def _functions() -> tuple[Any, Any]:
    global _reset, _next
    if _reset is None:
        _reset = ffi.ffi("entry_xattr_reset", [ffi.c_archive_entry_p], ctypes.c_int)
        _next = ffi.ffi("entry_xattr_next", [ffi.c_archive_entry_p, ctypes.POINTER(ctypes.c_char_p),
                                             ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)],
                        ctypes.c_int)
    return _reset, _next


def entry_capability(entry: Any) -> bytes | None:
    """The raw ``security.capability`` value of a libarchive-c entry, or None."""
    pointer = getattr(entry, "_entry_p", None)
    if pointer is None:
        return None
    reset, nxt = _functions()
    if reset(pointer) <= 0:
        return None
    name, value, size = ctypes.c_char_p(), ctypes.c_void_p(), ctypes.c_size_t()
    while nxt(pointer, ctypes.byref(name), ctypes.byref(value), ctypes.byref(size)) == 0:
        if name.value is None:
            break
        if name.value == CAPABILITY and value.value:
            return ctypes.string_at(value.value, size.value)
    return None
