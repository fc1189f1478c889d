"""Files that run with more privilege than their caller: setuid/setgid bits and file capabilities.

Capabilities live in the ``security.capability`` extended attribute (``struct vfs_cap_data``): read from disk
for a directory tree, from the archive entries for tarballs and image layers (see :mod:`.xattrs`).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from rootfs_forge.audit.view import DirView, FsView, Node

CAPABILITY_XATTR = "security.capability"
CAP_NAMES = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
    "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
    "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
    "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf",
    "checkpoint_restore",
)


@dataclass(frozen=True)
class Privileged:
    path: str
    setuid: bool
    setgid: bool
    capabilities: str  # "cap_net_raw=ep", or ""


def decode_capability(raw: bytes) -> str:
    """``struct vfs_cap_data`` (v1, v2 or v3) as ``cap_a,cap_b=eip``; "" when it cannot be read."""
    if len(raw) < 12:
        return ""
    magic, permitted_lo, inheritable_lo = struct.unpack_from("<III", raw)
    permitted, inheritable = permitted_lo, inheritable_lo
    if magic & 0xFF000000 in (0x02000000, 0x03000000) and len(raw) >= 20:
        permitted_hi, inheritable_hi = struct.unpack_from("<II", raw, 12)
        permitted |= permitted_hi << 32
        inheritable |= inheritable_hi << 32
    names = [f"cap_{CAP_NAMES[i]}" if i < len(CAP_NAMES) else f"cap_{i}"
             for i in range(64) if (permitted | inheritable) >> i & 1]
    if not names:
        return ""
    flags = ("e" if magic & 1 else "") + ("i" if inheritable else "") + ("p" if permitted else "")
    return ",".join(names) + "=" + flags


def _capability(view: FsView, path: str, captured: Mapping[str, bytes]) -> str:
    if path in captured:
        return decode_capability(captured[path])
    if isinstance(view, DirView):
        host = view._host(path)
        if host is not None:
            try:
                return decode_capability(os.getxattr(host, CAPABILITY_XATTR, follow_symlinks=False))
            except OSError:
                return ""
    return ""


def privileged_files(view: FsView, nodes: Mapping[str, Node]) -> list[Privileged]:
    """Regular files with setuid/setgid bits or file capabilities, sorted by path."""
    captured: Mapping[str, bytes] = getattr(view, "xattr_capabilities", {})
    on_disk = isinstance(view, DirView)
    out = []
    for path, node in sorted(nodes.items()):
        if node.kind != "file":
            continue
        caps = _capability(view, path, captured) if on_disk or path in captured else ""
        if node.mode & 0o6000 or caps:
            out.append(Privileged(path, bool(node.mode & 0o4000), bool(node.mode & 0o2000), caps))
    return out
