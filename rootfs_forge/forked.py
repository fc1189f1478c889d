"""Run one call in a forked child process and collect its result later: work that overlaps the main job
without taking its interpreter lock (a thread that parses HTTP and imports requests slows every sqlite query
and every unpack step of the main thread while it runs; a child process runs on the other core).

The result travels back as JSON through a pipe. A ``ForgeError`` raised in the child is raised again in the
parent, with its class, verb, object and reason. Anything else that goes wrong in the child (a crash, an
unexpected exception, a result that does not arrive) makes :meth:`Forked.result` return ``None``, so that the
caller can do the work itself and meet the error first-hand.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from rootfs_forge import errors
from rootfs_forge.errors import ForgeError


class Forked:
    """``call()`` in a child forked now; :meth:`result` waits for it. Fork before starting any thread."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._result: Any = None
        self._done = False
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the caller's code
            os.close(read)
            _child(call, write)
        os.close(write)
        self._pid, self._read = pid, read

    def result(self) -> Any:
        """The call's JSON result, or None when the child failed for another reason than a ForgeError."""
        if not self._done:
            self._done = True
            with os.fdopen(self._read, "rb") as f:
                raw = f.read()
            os.waitpid(self._pid, 0)
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = None
            if isinstance(doc, dict) and "error" in doc:
                raise _error_from(doc["error"])
            self._result = doc.get("result") if isinstance(doc, dict) else None
        return self._result


def _child(call: Callable[[], Any], fd: int) -> None:
    code = 1
    try:
        try:
            doc: dict[str, Any] = {"result": call()}
        except ForgeError as exc:
            doc = {"error": [type(exc).__name__, exc.verb, exc.obj, exc.reason]}
        data = json.dumps(doc).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        code = 0
    except BaseException:  # the parent redoes the work and meets what went wrong first-hand
        pass
    finally:
        os._exit(code)  # no atexit handlers, no flush of buffers inherited from the parent


def _error_from(parts: list[str]) -> ForgeError:
    name, verb, obj, reason = (str(p) for p in parts)
    cls = getattr(errors, name, ForgeError)
    if not (isinstance(cls, type) and issubclass(cls, ForgeError)):
        cls = ForgeError
    exc = cls.__new__(cls)
    ForgeError.__init__(exc, verb, obj, reason)  # the subclasses' own __init__ take other arguments
    return exc
