"""Work in forked child processes, for Python work that overlaps the main job without taking its interpreter
lock (a thread that parses HTTP and imports requests slows every sqlite query and every unpack step of the main
thread while it runs; a child process runs on the other core).

:class:`Forked` runs one call in a child and collects its result later; the result travels back through a pipe
with ``marshal`` (plain data: numbers, strings, lists, tuples, dicts), and the child shares the parent's memory
as it was at the fork, so its input is never copied. A ``ForgeError`` raised in the child is raised again in
the parent, with its class, verb, object and reason. Anything else that goes wrong in the child (a crash, an
unexpected exception, a result that does not arrive) makes :meth:`Forked.result` return ``None``, so that the
caller can do the work itself and meet the error first-hand.

:func:`detach` forks a child that nobody waits for. Both fork only when no other thread runs: a fork copies
no thread, nor the state of the locks they hold. :func:`run_parallel` runs parts of one job in children that
die with their parent and waits for all (the tree's file writers, whose parts take no lock at all).
"""

from __future__ import annotations

import contextlib
import functools
import marshal
import os
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any

from rootfs_forge import errors
from rootfs_forge.errors import ForgeError


def can_fork() -> bool:
    """True when this process runs no other thread (see the module docstring)."""
    return threading.active_count() == 1


class Forked:
    """``call()`` in a child forked now; :meth:`result` waits for it. Fork only when :func:`can_fork`."""

    def __init__(self, call: Callable[[], Any], *, die_with_parent: bool = False) -> None:
        """``die_with_parent``: the child is killed when this process dies (a writer must not go on writing
        into a tree its killed compose is no longer there to remove)."""
        self._result: Any = None
        self._done = False
        self.failure = ""  # why the child failed, when it did for another reason than a ForgeError
        parent = os.getpid()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the caller's code
            os.close(read)
            if die_with_parent:
                _die_with_parent(parent)
            _child(call, write)
        os.close(write)
        self._pid, self._read = pid, read

    @property
    def pid(self) -> int:
        return self._pid

    def fileno(self) -> int:
        """The pipe the result arrives on (readable once the child is done: for ``select``)."""
        return self._read

    def result(self) -> Any:
        """The call's result, or None when the child failed for another reason than a ForgeError."""
        if not self._done:
            self._done = True
            with os.fdopen(self._read, "rb") as f:
                raw = f.read()
            os.waitpid(self._pid, 0)
            self._pid = 0
            try:
                doc = marshal.loads(raw)
            except (ValueError, EOFError, TypeError):
                doc = None
            if isinstance(doc, tuple) and len(doc) == 2 and doc[0] == "error":
                raise _error_from(doc[1])
            if isinstance(doc, tuple) and len(doc) == 2 and doc[0] == "failed":
                self.failure = str(doc[1])
            elif doc is None:
                self.failure = "the child process died"
            self._result = doc[1] if isinstance(doc, tuple) and len(doc) == 2 and doc[0] == "result" else None
        return self._result

    def close(self) -> None:
        """End the child if its result was never asked for (after a failure in the parent)."""
        if self._pid and not self._done:
            self._done = True
            with contextlib.suppress(OSError):
                os.close(self._read)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            os.waitpid(self._pid, 0)
            self._pid = 0


def _child(call: Callable[[], Any], fd: int) -> None:
    code = 1
    try:
        try:
            doc: tuple[str, Any] = ("result", call())
            code = 0
        except ForgeError as exc:
            doc = ("error", [type(exc).__name__, exc.verb, exc.obj, exc.reason])
        except BaseException as exc:  # the parent redoes the work and meets what went wrong first-hand
            doc = ("failed", f"{type(exc).__name__}: {exc}")
        view = memoryview(marshal.dumps(doc))
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        code = 1
    finally:
        os._exit(code)  # no atexit handlers, no flush of buffers inherited from the parent


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this child when its parent dies (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def run_parallel(parts: Sequence[Callable[[], None]]) -> None:
    """Run ``parts[0]`` here and each other part in a forked child (killed with this process); wait for all and
    raise the first failure: a child's ``ForgeError`` as itself, anything else as a ``ForgeError`` saying what
    went wrong. Forks even while other threads run: the parts must take no lock another thread may hold."""
    children: list[Forked] = []
    try:
        for part in parts[1:]:
            children.append(Forked(functools.partial(_done_after, part), die_with_parent=True))
        parts[0]()
    except BaseException:
        for child in children:
            child.close()
        raise
    first: ForgeError | None = None
    for child in children:
        try:
            if child.result() is None and first is None:
                first = errors.RootfsError("write", "the tree", child.failure or "a writer process died")
        except ForgeError as exc:
            first = first or exc
    if first is not None:
        raise first


def _done_after(part: Callable[[], None]) -> bool:
    part()
    return True


def _error_from(parts: list[str]) -> ForgeError:
    name, verb, obj, reason = (str(p) for p in parts)
    cls = getattr(errors, name, ForgeError)
    if not (isinstance(cls, type) and issubclass(cls, ForgeError)):
        cls = ForgeError
    exc = cls.__new__(cls)
    ForgeError.__init__(exc, verb, obj, reason)  # the subclasses' own __init__ take other arguments
    return exc


def detach() -> bool | None:
    """Fork a child that no one waits for (a grandchild, reparented at once): True in it, False here. None,
    without forking, when other threads run. The child's standard streams go to /dev/null, so that whoever
    reads this process's output does not wait for the child; it must end in ``os._exit``."""
    if not can_fork():
        return None
    pid = os.fork()
    if pid == 0:
        try:
            if os.fork() != 0:
                os._exit(0)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
        except BaseException:
            os._exit(1)
        return True
    os.waitpid(pid, 0)
    return False
