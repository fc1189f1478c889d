"""PID 1 as a fresh process image: a static init (Debian's ``tini-static``, which Docker ships as
``docker-init``) executed from a sealed memfd.

Container processes can read their namespace's init through /proc/1 (environ, cmdline, mem, ptrace), so PID 1
must hold nothing of the caller. A fork of forge would hold everything: the caller's environment (registry
passwords), forge's heap. The forked setup process therefore ends by exec'ing the static init, which then
starts the command, reaps zombies, forwards signals and exits with the command's status (128+N for signal N).

The binary is copied into a memfd sealed against writes and exec'd from there (runc's answer to
CVE-2019-5736): ``/proc/1/exe`` then names the memfd, never a host file the container could reopen for writing.
A dynamically linked binary could not run inside an arbitrary image, so only static ones are taken.
"""

from __future__ import annotations

import fcntl
import os

NAMES = ("tini-static", "docker-init")
EXTRA_DIRS = ("/usr/libexec/docker",)
PT_INTERP = 3


def is_static_elf(path: str) -> bool:
    """True for an ELF executable without a program interpreter (PT_INTERP)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 52 or head[:4] != b"\x7fELF":
                return False
            wide, little = head[4] == 2, head[5] == 1
            if wide:
                phoff, phentsize, phnum = _u(head[32:40], little), _u(head[54:56], little), _u(head[56:58], little)
            else:
                phoff, phentsize, phnum = _u(head[28:32], little), _u(head[42:44], little), _u(head[44:46], little)
            if not 0 < phnum < 256 or phentsize < 4:
                return False
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    types = (_u(table[i:i + 4], little) for i in range(0, len(table) - 3, phentsize))
    return PT_INTERP not in types


def _u(raw: bytes, little: bool) -> int:
    return int.from_bytes(raw, "little") if little else int.from_bytes(raw, "big")


def find(path_var: str | None = None) -> str | None:
    """The first static init on ``$PATH`` (then /usr/libexec/docker), or None."""
    dirs = (os.environ.get("PATH", "") if path_var is None else path_var).split(":")
    for d in (*dirs, *EXTRA_DIRS):
        if not d:
            continue
        for name in NAMES:
            candidate = os.path.join(d, name)
            if os.access(candidate, os.X_OK) and is_static_elf(candidate):
                return candidate
    return None


def exec_from_memfd(binary_fd: int, argv: list[str], env: dict[str, str]) -> None:
    """Copy the binary open at ``binary_fd`` into a sealed memfd and exec it; returns only by raising OSError.
    Runs after pivot_root, so everything it needs is imported at module load."""
    memfd = os.memfd_create("forge-init", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    size = os.fstat(binary_fd).st_size
    done = 0
    while done < size:
        sent = os.sendfile(memfd, binary_fd, done, size - done)
        if sent <= 0:
            raise OSError(5, "short copy of the init binary")
        done += sent
    fcntl.fcntl(memfd, fcntl.F_ADD_SEALS,
                fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    os.execve(memfd, argv, env)
