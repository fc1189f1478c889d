"""Getting bytes from a URL: http(s) through requests with retries and backoff, file:// from disk.

The one module that talks to the network. Callers stream into a sink (usually a cache writer) and verify
digests themselves; a transport only promises "these are the bytes the server sent, all of them".
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from rootfs_forge.errors import FetchError

if TYPE_CHECKING:
    import requests

_SESSION_LOCK = threading.Lock()
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class NotFound(FetchError):
    """The server answered 404/410, or the file:// path does not exist."""


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


@dataclass
class Transport:
    """Fetches URLs. ``retries`` extra attempts with exponential backoff for transient failures."""

    retries: int = 3
    backoff: float = 0.5
    timeout: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session | None = None  # made on first HTTP use: a warm, locked compose never imports requests
    user_agent: str = "rootfs-forge/0.1"

    def _session(self) -> requests.Session:
        with _SESSION_LOCK:  # threads share one session (its connection pool is thread-safe)
            if self.session is None:
                import requests

                self.session = requests.Session()
            return self.session

    def get_bytes(self, url: str, what: str | None = None) -> bytes:
        chunks: list[bytes] = []

        class _Collect:
            def write(self, data: bytes, /) -> int:
                chunks.append(data)
                return len(data)

        self.download(url, _Collect(), what=what)
        return b"".join(chunks)

    def download(self, url: str, sink: Sink | BinaryIO, *, what: str | None = None,
                 progress: Callable[[int], None] | None = None,
                 restart: Callable[[], None] | None = None) -> int:
        """Stream ``url`` into ``sink``; return the byte count.

        On a transient failure after bytes were written, ``restart`` is called (it must reset the sink) before
        the next attempt; without it such a failure is final.
        """
        what = what or url
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme == "file":
            return self._file(Path(urllib.parse.unquote(parsed.path)), sink, what, progress)
        if parsed.scheme in ("oci+http", "oci+https"):  # a blob of an OCI vendor store (registry auth)
            from rootfs_forge.image.blobfetch import download_blob

            return download_blob(url, sink, what, progress)
        if parsed.scheme not in ("http", "https"):
            raise FetchError("fetch", what, f"unsupported URL scheme {parsed.scheme!r}")
        import requests

        session = self._session()
        attempt = 0
        while True:
            written = 0
            try:
                with session.get(url, stream=True, timeout=self.timeout,
                                      headers={"User-Agent": self.user_agent}) as resp:
                    if resp.status_code in (404, 410):
                        raise NotFound("fetch", what, f"HTTP {resp.status_code} from {_origin(url)}")
                    if resp.status_code in RETRY_STATUS:
                        raise _Transient(f"HTTP {resp.status_code}")
                    if resp.status_code != 200:
                        raise FetchError("fetch", what, f"HTTP {resp.status_code} from {_origin(url)}")
                    expected = resp.headers.get("Content-Length")
                    for chunk in resp.iter_content(1 << 16):
                        sink.write(chunk)
                        written += len(chunk)
                        if progress:
                            progress(len(chunk))
                    if expected is not None and resp.headers.get("Content-Encoding") in (None, "identity") \
                            and int(expected) != written:
                        raise _Transient(f"truncated body: {written} of {expected} bytes")
                    return written
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                    _Transient) as exc:
                reason = _describe(exc)
                if attempt >= self.retries:
                    raise FetchError("fetch", what, f"{reason} (after {attempt + 1} attempts)") from None
                if written:
                    if restart is None:
                        raise FetchError("fetch", what, reason) from None
                    restart()
                    if progress:
                        progress(-written)
                attempt += 1
                self.sleep(self.backoff * (2 ** (attempt - 1)))

    @staticmethod
    def _file(path: Path, sink: Sink | BinaryIO, what: str,
              progress: Callable[[int], None] | None) -> int:
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise NotFound("fetch", what, f"no such file {path}") from None
        except OSError as exc:
            raise FetchError("fetch", what, exc.strerror or str(exc)) from None
        written = 0
        with f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                sink.write(chunk)
                written += len(chunk)
                if progress:
                    progress(len(chunk))
        return written


class _Transient(Exception):
    pass


def _origin(url: str) -> str:
    p = urllib.parse.urlsplit(url)
    return f"{p.scheme}://{p.netloc}"


def _describe(exc: Any) -> str:
    import requests

    if isinstance(exc, _Transient):
        return str(exc)
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection broken mid-transfer"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        if "timed out" in text:
            return "timed out"
        if "Connection refused" in text:
            return "connection refused"
        if "Name or service not known" in text or "Temporary failure in name resolution" in text:
            return "cannot resolve host name"
        if "reset" in text.lower():
            return "connection reset"
        return "connection failed"
    return type(exc).__name__
