"""``forge run -t``: a pseudo-terminal of the container's own, relayed to the caller's terminal.

The container never gets the caller's terminal. PID 1, already the leader of a session of its own (the launcher's
children call ``setsid`` first), opens ``/dev/ptmx`` of the container's devpts instance after ``pivot_root``,
makes the slave its controlling terminal, its fds 0/1/2 and ``/dev/console``, and hands the master to the
launcher over a socketpair (SCM_RIGHTS, like crun's console socket). The launcher puts the caller's terminal in
raw mode, copies bytes both ways until the container has exited and the master is drained, keeps the window size
in step (SIGWINCH) and turns SIGINT/SIGQUIT sent to forge into the same signals a keyboard would make (TIOCSIG:
to the pty's foreground process group). Ctrl-C typed by the user is just a byte: the container's line discipline
makes the SIGINT.

Imported only on the ``-t`` path (socket, termios and tty stay off the ordinary start path). Everything PID 1
needs from here is imported before it forks, so nothing is imported after ``pivot_root``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import struct
import termios
import tty

from rootfs_forge.errors import RunError
from rootfs_forge.run import relay
from rootfs_forge.run import syscalls as sc

TIOCGPTN = 0x80045430  # _IOR('T', 0x30, unsigned int)
TIOCSPTLCK = 0x40045431  # _IOW('T', 0x31, int)
TIOCSIG = 0x40045436  # _IOW('T', 0x36, int)
TIOCGPTPEER = 0x5441  # _IO('T', 0x41), Linux 4.13
KEYBOARD_SIGNALS = (signal.SIGINT, signal.SIGQUIT)


def copy_winsize(src: int, dst: int) -> None:
    try:
        fcntl.ioctl(dst, termios.TIOCSWINSZ, fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return  # no size to copy (not a terminal any more): the pty keeps the one it has


# ------------------------------------------------------------------------------------------------------------
# container side (PID 1)
# ------------------------------------------------------------------------------------------------------------

def _open_slave(master: int) -> tuple[int, str]:
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
    path = f"/dev/pts/{number}"
    try:  # the peer of this very master, not whatever the path names
        return fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC), path
    except OSError:
        return os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC), path


def attach(sock_fd: int, uid: int) -> None:
    """PID 1, after ``pivot_root``, still privileged and a session leader without a controlling terminal: give
    the container its own terminal and send the master to the launcher. Afterwards fds 0/1/2 are the slave."""
    try:
        master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise RunError("allocate", "a terminal", f"/dev/ptmx: {exc.strerror}") from None
    slave = -1
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        slave, path = _open_slave(master)
        copy_winsize(0, slave)  # fd 0 is still the caller's terminal: the initial size, before anything runs
        # the command's user may reopen it (tty, ttyname); rootless with an unmapped user this fails, and
        # becoming that user fails later with its own message
        with contextlib.suppress(OSError):
            os.fchown(slave, uid, -1)
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        console = "/dev/console"
        os.close(os.open(console, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        sc.mount(path, console, None, sc.MS_BIND)
        with socket.socket(fileno=sock_fd) as sock:
            socket.send_fds(sock, [b"m"], [master])
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
    except OSError as exc:
        raise RunError("allocate", "a terminal", exc.strerror or str(exc)) from None
    finally:
        os.close(master)
        if slave > 2:
            os.close(slave)


# ------------------------------------------------------------------------------------------------------------
# launcher side
# ------------------------------------------------------------------------------------------------------------

class Console:
    """The launcher's end: the socket PID 1 sends the master on, then the relay between the caller's terminal
    (fds 0 and 1) and the master."""

    def __init__(self) -> None:
        if not os.isatty(0):
            raise RunError("allocate", "a terminal", "-t needs stdin to be a terminal")
        self._sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.child_fd = child.detach()  # PID 1's end; close it in the launcher once it has forked
        self.master = -1
        self.queued: list[int] = []  # keyboard signals sent to forge before the command ran
        self.live = False

    def forked(self) -> None:
        """In the launcher, after the fork: only the container holds the other end now."""
        os.close(self.child_fd)
        self.child_fd = -1

    def receive(self) -> bool:
        """Wait for the master from PID 1. False: PID 1 failed before sending it (it reports why)."""
        try:
            _, fds, _, _ = socket.recv_fds(self._sock, 1, 1)
        except OSError:
            fds = []
        self._sock.close()
        if fds:
            self.master = fds[0]
            os.set_blocking(self.master, False)
        return bool(fds)

    def signal(self, signum: int) -> bool:
        """Deliver ``signum`` sent to forge the way a terminal would; False: forward it to PID 1 instead."""
        if signum == signal.SIGWINCH:
            if self.master >= 0:
                copy_winsize(0, self.master)  # the kernel signals the pty's foreground process group
            return True  # before: the size is copied when the relay starts
        if signum in KEYBOARD_SIGNALS:
            if not self.live:  # PID 1 takes these for the terminal's own: keep them until the command runs
                self.queued.append(signum)
                return True
            try:
                fcntl.ioctl(self.master, TIOCSIG, signum)
            except OSError:
                return False
            return True
        return False

    def relay(self, pid: int, oom_fd: int | None) -> bool:
        """Copy between the caller's terminal (raw meanwhile) and the master until ``pid`` exits, then drain the
        master. ``oom_fd`` firing kills ``pid``; returns whether it did."""
        saved = termios.tcgetattr(0)
        try:
            tty.setraw(0, termios.TCSANOW)
            copy_winsize(0, self.master)  # it may have changed while the container started
            self.live = True  # the command runs (PID 1 closed the error pipe after starting it)
            for signum in self.queued:
                self.signal(signum)
            return relay.copy([relay.Stream(0, self.master, own_dst=True), relay.Stream(self.master, 1, own_dst=False)],
                              pid, oom_fd)
        finally:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)

    def close(self) -> None:
        for fd in (self.master, self.child_fd):
            if fd >= 0:
                os.close(fd)
        self.master = self.child_fd = -1
        self._sock.close()
