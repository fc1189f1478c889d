"""The caller's terminal never enters the container: without ``-t``, each of fds 0/1/2 that is a terminal is
replaced by a pipe the launcher copies (as Docker does without ``-t``).

A terminal handed to the container could be turned against the caller: a process inside can ``setsid`` and take a
terminal that is nobody's controlling terminal as its own (TIOCSCTTY), then queue input for whoever reads it
next with TIOCSTI; it could also change the terminal's modes or line discipline. Pipes carry the bytes and
nothing else. Files, pipes and sockets on fds 0/1/2 are passed on unchanged (no terminal ioctls work on them).

Imports only os, select and signal: the ordinary start path loads this module when a terminal is on 0/1/2.
"""

from __future__ import annotations

import os
import select
import signal


class Stream:
    """Bytes from ``src`` to ``dst``. ``own_dst``: ``dst`` is forge's own (a pipe or pty master, made
    non-blocking so the relay never stalls on it); otherwise it is the caller's fd, written with blocking writes
    (its flags are shared with the caller and are left alone). ``close_dst``: close ``dst`` at end of input."""

    __slots__ = ("close_dst", "dst", "open", "own_dst", "pending", "src")

    def __init__(self, src: int, dst: int, own_dst: bool, close_dst: bool = False) -> None:
        self.src = src
        self.dst = dst
        self.own_dst = own_dst
        self.close_dst = close_dst
        self.pending = b""
        self.open = True
        if own_dst:
            os.set_blocking(dst, False)

    def read(self) -> int:
        """1 read something, 0 nothing now, -1 end of input (EOF, or EIO: no pty slave left)."""
        try:
            data = os.read(self.src, 65536)
        except BlockingIOError:
            return 0
        except OSError:
            data = b""
        if not data:
            self.finish()
            return -1
        if self.own_dst:
            self.pending = data
            self.flush()
        else:
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(self.dst, view):]
                except OSError:
                    break  # the caller's end is gone; keep reading so the container is not blocked
        return 1

    def flush(self) -> None:
        try:
            self.pending = self.pending[os.write(self.dst, self.pending):]
        except BlockingIOError:
            pass
        except OSError:  # nobody reads any more
            self.pending = b""
            self.finish()

    def finish(self) -> None:
        if self.open and self.close_dst:
            os.close(self.dst)
        self.open = False


def copy(streams: list[Stream], pid: int, oom_fd: int | None = None) -> bool:
    """Relay ``streams`` until ``pid`` exits, then drain what is left to read. ``oom_fd`` becoming readable
    kills ``pid`` (a memory limit was hit); returns whether it did."""
    pidfd = os.pidfd_open(pid)
    oom = False
    try:
        while True:
            rlist = [s.src for s in streams if s.open and not s.pending] + [pidfd]
            if oom_fd is not None and not oom:
                rlist.append(oom_fd)
            wlist = [s.dst for s in streams if s.open and s.pending]
            ready, writable, _ = select.select(rlist, wlist, [])
            for s in streams:
                if s.open and s.pending and s.dst in writable:
                    s.flush()
                elif s.open and not s.pending and s.src in ready:
                    s.read()
            if oom_fd is not None and not oom and oom_fd in ready:
                oom = True
                os.kill(pid, signal.SIGKILL)
            if pidfd in ready:
                for s in streams:
                    if not s.own_dst:  # output: once nothing inside holds the writing end, reads end
                        while s.open and s.read() > 0:
                            pass
                return oom
    finally:
        os.close(pidfd)


class Pipes:
    """Pipes in place of the caller's terminals on fds 0/1/2 (stdout and stderr on the same terminal share one
    pipe, so their order is kept). Without ``interactive`` stdin becomes /dev/null instead."""

    def __init__(self, interactive: bool) -> None:
        self.child: dict[int, int] = {}  # fd in the container -> fd to put there
        self.streams: list[Stream] = []
        if os.isatty(0):
            if interactive:
                r, w = os.pipe()
                self.child[0] = r
                self.streams.append(Stream(0, w, own_dst=True, close_dst=True))
            else:
                self.child[0] = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        seen: dict[tuple[int, int], int] = {}
        for fd in (1, 2):
            if not os.isatty(fd):
                continue
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                r, w = os.pipe()
                seen[key] = w
                self.streams.append(Stream(r, fd, own_dst=False))
                os.set_blocking(r, False)
            self.child[fd] = seen[key]

    def in_child(self) -> None:
        """In the forked child, before anything else: the pipes become its fds 0/1/2."""
        for target, fd in self.child.items():
            os.dup2(fd, target)

    def relay(self, pid: int, oom_fd: int | None) -> bool:
        return copy(self.streams, pid, oom_fd)

    def forked(self) -> None:
        """In the launcher after the fork: keep only its own ends."""
        for fd in set(self.child.values()):
            os.close(fd)
        self.child = {}

    def close(self) -> None:
        for fd in set(self.child.values()):
            os.close(fd)
        self.child = {}
        for s in self.streams:
            if s.own_dst and s.open:
                s.finish()
            elif not s.own_dst:
                os.close(s.src)
        self.streams = []
