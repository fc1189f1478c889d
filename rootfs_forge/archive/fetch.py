"""Download the chosen .debs into the cache: in parallel, verified against the index, with progress.

A warm cache means no network at all: a package whose SHA256 is already in ``blobs/`` is never requested.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rootfs_forge.archive.cache import Cache
from rootfs_forge.archive.transport import Transport
from rootfs_forge.errors import FetchError
from rootfs_forge.model import Package


@dataclass(frozen=True, slots=True)
class FetchedDeb:
    package: Package
    path: Path
    downloaded: bool  # False when it came from the cache


class Progress:
    """Receives byte and package counts; the CLI passes a tqdm-backed one, tests a silent one."""

    def start(self, total_bytes: int, total_packages: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def done_one(self, name: str) -> None: ...

    def close(self) -> None: ...


def download_verified(urls: Sequence[str], cache: Cache, sha256: str, size: int | None, what: str,
                      transport: Transport, progress: Callable[[int], None] | None = None) -> None:
    """Put the blob ``sha256`` into the cache from the first of ``urls`` whose body has that size and digest.

    One forge process at a time downloads a given blob (a per-digest lock); another that was waiting finds it
    in the cache. A URL that fails or serves other bytes is skipped for the next; when all fail, one
    FetchError lists the distinct reasons.
    """
    reasons: list[str] = []
    for url in urls:
        with cache.lock(sha256):
            if cache.has(sha256):
                return
            try:
                with cache.writer(sha256, size, what) as sink:
                    transport.download(url, sink, what=what, progress=progress)
                return
            except FetchError as exc:  # NotFound included
                reasons.append(exc.reason)
    raise FetchError("fetch", what, "; ".join(dict.fromkeys(reasons)))


def fetch_debs(packages: Sequence[Package], cache: Cache, transport: Transport, *, jobs: int = 8,
               mirrors: Mapping[str, Sequence[str]] | None = None,
               urls: Callable[[Package], list[str]] | None = None,
               progress: Progress | None = None,
               on_ready: Callable[[Package, Path], None] | None = None) -> list[FetchedDeb]:
    """Fetch every package not already cached; return them in the order given.

    ``mirrors`` maps a package's ``base_url`` to alternative archive roots tried in turn when it fails;
    ``urls(package)``, when given, names every place instead (the chain of rootfs_forge.archive.chain).
    ``on_ready(package, path)`` is called for each verified .deb as soon as it is in the cache (from a fetch
    thread), so that its unpacking can begin while the other downloads go on.
    """
    progress = progress or Progress()
    todo = [p for p in packages if not cache.has(p.sha256)]
    progress.start(sum(p.size for p in todo), len(todo))
    lock = threading.Lock()

    def advance(n: int) -> None:
        with lock:
            progress.advance(n)

    def one(pkg: Package) -> None:
        bases = [pkg.base_url, *(mirrors or {}).get(pkg.base_url, ())]
        what = f"{pkg.name} {pkg.version} ({pkg.filename.rsplit('/', 1)[-1]})"
        places = urls(pkg) if urls is not None else [base.rstrip("/") + "/" + pkg.filename for base in bases]
        download_verified(places, cache, pkg.sha256, pkg.size, what, transport, advance)
        with lock:
            progress.done_one(pkg.name)
        if on_ready is not None:
            on_ready(pkg, cache.blob_path(pkg.sha256))

    try:
        if todo:
            with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(todo))), thread_name_prefix="fetch") as pool:
                # largest first: its unpacking (on_ready) takes longest, and no big download is left alone at the end
                futures = [pool.submit(one, p) for p in sorted(todo, key=lambda p: -p.size)]
                errors = []
                for f in futures:
                    exc = f.exception()
                    if exc is not None:
                        errors.append(exc)
                if errors:
                    first = errors[0]
                    if isinstance(first, FetchError) and len(errors) > 1:
                        raise FetchError(first.verb, first.obj, f"{first.reason} (and {len(errors) - 1} more "
                                                                "packages failed)")
                    raise first
    finally:
        progress.close()
    return [FetchedDeb(p, cache.blob_path(p.sha256), p in todo) for p in packages]


class TqdmProgress(Progress):
    """Overall bytes and packages on one bar; silent when not a terminal or when quiet."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar = None
        self._done = 0
        self._total = 0

    def start(self, total_bytes: int, total_packages: int) -> None:
        if not self.enabled or not total_packages:
            return
        from tqdm import tqdm

        self._total = total_packages
        self._bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                         desc=f"fetch 0/{total_packages}", dynamic_ncols=True)

    def advance(self, nbytes: int) -> None:
        if self._bar is not None:
            self._bar.update(nbytes)

    def done_one(self, name: str) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.set_description(f"fetch {self._done}/{self._total}", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
