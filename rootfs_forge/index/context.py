"""The explicit inputs of a run: host architecture, clock, epoch, cache, transport, and the verified index.

Commands build one ``Context`` and pass it down; nothing below reads the environment or the clock itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rootfs_forge.archive.cache import Cache, default_cache_dir
from rootfs_forge.archive.release import IndexFile, update_sources
from rootfs_forge.archive.sources import SourceEntry
from rootfs_forge.archive.transport import Transport
from rootfs_forge.errors import ArchiveError
from rootfs_forge.index.packages import PackageIndex
from rootfs_forge.util.arch import machine_debian_arch
from rootfs_forge.util.canonical import canonical_json
from rootfs_forge.util.env import source_date_epoch
from rootfs_forge.util.forked import Forked, can_fork
from rootfs_forge.util.timing import Timings

if TYPE_CHECKING:
    from rootfs_forge.image.layershare import LayerShare


def host_architecture() -> str:
    try:
        out = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return machine_debian_arch()


@dataclass
class Context:
    cache: Cache
    transport: Transport = field(default_factory=Transport)
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    epoch: int | None = None
    host_arch: str = field(default_factory=host_architecture)
    offline: bool = False
    warn: Callable[[str], None] | None = None
    timings: Timings = field(default_factory=Timings)  # "plan:update" and "plan:index" (see --json)
    # Optimistic update: use the index set the last update verified while this one runs in the background;
    # nothing may be output before confirm() says it is still current (see index_files).
    optimistic: bool = False
    _pending: list[tuple[list[IndexFile], Forked, Callable[[], list[IndexFile]], Path]] = field(
        default_factory=list, init=False, repr=False)
    # suite (as the sources name it) -> (Codename, Version) of its Release, from the index sets handed out
    releases: dict[str, tuple[str, str]] = field(default_factory=dict, init=False, repr=False)
    # a gallery compose's layers, written once for all its images (rootfs_forge.image.layershare)
    layer_share: LayerShare | None = field(default=None, repr=False)
    # plans a gallery compose made before it forked, planned_key(...) -> resolve.plan.Plan: each recipe's
    # compose takes its own (once) instead of resolving it again against the same index set
    planned: dict[tuple[str, bool, bool], Any] = field(default_factory=dict, repr=False)

    @classmethod
    def create(cls, cache_dir: str | None = None, *, offline: bool = False,
               warn: Callable[[str], None] | None = None) -> Context:
        return cls(Cache(default_cache_dir(cache_dir)), epoch=source_date_epoch(), offline=offline, warn=warn)

    def index_files(self, entries: Sequence[SourceEntry], architectures: Sequence[str]) -> list[IndexFile]:
        """Verified index files: fetched now, or (offline) the set the last update verified.

        ``optimistic``: when an earlier update verified a set that is still in the cache, return it at once and
        verify the suites again in a forked child process (see rootfs_forge.util.forked); the caller must call
        :meth:`confirm` before it outputs anything built from it (an apt-get update that overlaps the work
        instead of preceding it).
        """
        state = self.cache.state_path(state_key(entries, architectures))

        def update() -> list[IndexFile]:
            return update_sources(entries, architectures, self.cache, self.transport, self.now, self.warn)

        if self.offline or self.optimistic:
            previous = self._last_verified(state)
            if self.offline:
                assert previous is not None  # offline, _last_verified raises instead
                return self._remember(previous)
            if previous is not None and can_fork():
                child = Forked(lambda: [_file_to_json(f) for f in update()])
                self._pending.append((previous, child, update, state))
                return self._remember(previous)
        with self.timings.phase("plan:update"):
            files = update()
        self._save_state(state, files)
        return self._remember(files)

    def _remember(self, files: list[IndexFile]) -> list[IndexFile]:
        for f in files:
            self.releases[f.entry.suite] = (f.codename, f.version)
        return files

    def confirm(self) -> bool:
        """Wait for the background updates of an optimistic plan. True: every index set used is still the
        verified one. False: an index changed (plan again without ``optimistic``). A failed update raises
        its error, as it would have before the work."""
        current = True
        with self.timings.phase("plan:confirm"):
            pending, self._pending = self._pending, []
            for previous, child, update, state in pending:
                done = child.result()
                # a child that died without a ForgeError: update here, and meet whatever it met first-hand
                files = [_file_from_json(d) for d in done] if isinstance(done, list) else update()
                self._save_state(state, files)
                current = current and files == previous
        return current

    def _last_verified(self, state: Path) -> list[IndexFile] | None:
        """The index set the last update verified, if all of it is still cached (offline: or an error)."""
        try:
            files = [_file_from_json(d) for d in json.loads(state.read_text())]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            files = None
        if files is None:
            if self.offline:
                raise ArchiveError("load", "package index", "offline and no earlier 'forge update' of these sources")
            return None
        missing = [f.label for f in files if not self.cache.has(f.sha256)]
        if missing:
            if self.offline:
                raise ArchiveError("load", missing[0], "offline and it is not in the cache")
            return None
        return files

    def _save_state(self, state: Path, files: list[IndexFile]) -> None:
        doc = [_file_to_json(f) for f in files]
        self.cache.write_atomic(state, canonical_json(doc, ensure_ascii=True))

    def open_index(self, entries: Sequence[SourceEntry], architectures: Sequence[str]) -> PackageIndex:
        files = self.index_files(entries, architectures)
        with self.timings.phase("plan:index"):
            return PackageIndex.open(files, self.cache)


def planned_key(recipe_path: str | Path, locked: bool, use_lock: bool) -> tuple[str, bool, bool]:
    """The key of :attr:`Context.planned` for a recipe's plan made with these options."""
    return (str(recipe_path), locked, use_lock)


def state_key(entries: Sequence[SourceEntry], architectures: Sequence[str]) -> str:
    """Names the state file of the last verified update of ``entries`` for ``architectures``."""
    doc = {"entries": [asdict(e) for e in entries], "architectures": sorted(architectures)}
    return hashlib.sha256(canonical_json(doc)).hexdigest()[:32]


def _file_to_json(f: IndexFile) -> dict[str, object]:
    return {"entry": asdict(f.entry), "component": f.component, "architecture": f.architecture,
            "sha256": f.sha256, "compression": f.compression, "codename": f.codename, "version": f.version}


def _file_from_json(d: dict[str, object]) -> IndexFile:
    e = dict(d["entry"])  # type: ignore[call-overload]
    for k in ("components", "architectures", "mirrors"):
        e[k] = tuple(e[k])
    return IndexFile(SourceEntry(**e), str(d["component"]), str(d["architecture"]), str(d["sha256"]),
                     str(d["compression"]), str(d["codename"]), str(d.get("version", "")))
