"""The library entry point: compose a recipe in-process, as ``forge compose`` does.

Use::

    import rootfs_forge

    report = rootfs_forge.compose("recipes/python3.toml", "out/python3", cache_dir="cache")
    print(report["manifest_digest"])

:func:`compose` plans (lock or resolution), fetches, builds one tree per architecture and writes the output;
it raises a :class:`rootfs_forge.errors.ForgeError` (one-line message) on any failure and leaves nothing
half-written. It prints nothing: the report it returns is what ``forge compose --json`` prints.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rootfs_forge.archive.chain import make_chain
from rootfs_forge.archive.fetch import TqdmProgress, fetch_debs
from rootfs_forge.build import Tree, build_tree, layer_record, retag_tree, same_trees
from rootfs_forge.errors import ForgeError
from rootfs_forge.image.configcheck import check_config
from rootfs_forge.index.context import Context, planned_key
from rootfs_forge.recipe import FORMATS, Recipe, load_recipe
from rootfs_forge.resolve.lockcheck import behind_line, lock_behind
from rootfs_forge.resolve.plan import Plan, plan
from rootfs_forge.unpack.debcache import UnpackAhead
from rootfs_forge.util import workdir as workdir
from rootfs_forge.util.outputs import check_destination, remove_tree, staged_output
from rootfs_forge.util.pids import process_alive
from rootfs_forge.util.timing import Timings

if TYPE_CHECKING:
    from rootfs_forge.image.layershare import LayerShare

DEFAULT_FORMAT = "oci"
ARCHIVE_FORMATS = ("tar", "oci-archive", "docker-archive")

__all__ = ["DEFAULT_FORMAT", "FORMATS", "Twin", "compose", "default_output", "selected_architectures"]
# the image formats: their output is read from the trees (a rootfs output is the trees themselves, moved into
# place), so a gallery's images can share their layers and twins their trees
IMAGE_FORMATS = ("oci", "oci-archive", "docker-archive")
# the formats whose output is a directory (the others: one file)
DIRECTORY_FORMATS = ("oci", "rootfs", "lxc")


@dataclass(eq=False)
class Twin:
    """A recipe composed from another recipe's trees (``compose(..., twins=[...])``): a gallery's ``:nonroot``
    tag of an image, say. It is one when it builds the same trees: equal :func:`rootfs_forge.build.tree_key`
    and an equal plan. Its compose then only rewrites forge's manifest (the tag), checks its config and writes
    its output: the same bytes a compose of it alone writes. ``report`` is its report, ``error`` what failed it;
    both None: it was not composed (not a twin after all, or the trees could not be built): compose it alone.
    """

    recipe: Recipe
    dest: Path
    report: dict[str, Any] | None = None
    error: ForgeError | None = None
    seconds: float = 0.0  # what its compose took (the output, mostly)


def default_output(name: str, tag: str, fmt: str) -> Path:
    """``out/<name>-<tag>`` (``.tar`` for the archive formats), ``<name>`` being the last part of the image
    name (``forge/python3`` → ``out/python3-bookworm``), as ``docker save`` users expect a file name."""
    base = Path("out") / f"{name.rsplit('/', 1)[-1]}-{tag}"
    return base.with_name(base.name + ".tar") if fmt in ARCHIVE_FORMATS else base


def compose(recipe: str | os.PathLike[str] | Recipe, output: str | os.PathLike[str] | None = None, *,
            format: str = DEFAULT_FORMAT, cache_dir: str | os.PathLike[str] | None = None,
            offline: bool = False, locked: bool = False, use_lock: bool = True, jobs: int = 8,
            epoch: int | None = None, progress: bool = False, warn: Callable[[str], None] | None = None,
            context: Context | None = None, vendor: Sequence[str] = (), insecure: bool = False,
            registry_cache: str = "", platforms: Sequence[str] = (), twins: Sequence[Twin] = ()) -> dict[str, Any]:
    """Compose ``recipe`` (a path or a loaded :class:`Recipe`) into ``output`` and return the report.

    ``format``: oci (default), oci-archive, docker-archive, rootfs, tar or lxc (``DIR/rootfs.tar.xz`` and
    ``DIR/meta.tar.xz`` for LXC's ``local`` template). ``output`` defaults to
    :func:`default_output`. ``locked`` refuses a missing or stale lock; ``use_lock=False`` resolves afresh.
    ``epoch`` dates everything written (default: ``SOURCE_DATE_EPOCH``, else the newest package). ``context``
    replaces the cache, transport and clock (``cache_dir``, ``offline`` and ``warn`` are then ignored).
    ``vendor`` adds vendor stores (``oci://HOST/REPO``, ``file:///DIR``) to the recipe's ``vendor`` list: the
    chain of places a ``.deb`` is looked for by its SHA-256 (rootfs_forge.archive.chain); ``insecure`` reads
    OCI stores (and the registry cache) over plain HTTP. ``registry_cache`` (``REGISTRY/REPO``, format oci): fetch
    the image stored under this compose's key instead of composing, or compose and push it there
    (rootfs_forge.image.regcache); the report's ``cache`` says ``hit`` or ``miss``.
    ``platforms`` (Docker's spelling: ``linux/amd64``, ``linux/arm64/v8``, or a bare architecture) builds only
    those of the recipe's architectures; every format takes one, tar and docker-archive only one.
    ``twins`` (image formats, no registry cache): recipes composed from this recipe's trees once its own output
    is written, each to its own ``dest``, with the same options (see :class:`Twin`); its report or error is set
    on each, and a failure of this recipe's own config or output does not stop them.

    The report holds ``image`` (name:tag), ``output``, ``format``, ``from_lock`` (and ``lock_behind``: the
    locked packages the last index update has newer or no longer has), ``architectures`` (per architecture: packages,
    downloads, kept and filtered bytes, effects, script verdicts, notes, epoch), ``manifest_digest`` and
    ``manifests`` for images (``diff_id`` for a tarball), ``seconds`` and ``timings`` (wall seconds per phase).
    """
    t0 = time.perf_counter()
    if format not in FORMATS:
        raise ForgeError("compose", str(recipe), f"unknown format {format!r} ({', '.join(FORMATS)})")
    ctx = context or Context.create(os.fspath(cache_dir) if cache_dir is not None else None, offline=offline,
                                    warn=warn)
    if epoch is not None:
        ctx.epoch = epoch
    loaded = recipe if isinstance(recipe, Recipe) else load_recipe(Path(recipe), ctx.host_arch)
    if jobs < 1:
        raise ForgeError("compose", loaded.path.name, "--jobs must be at least 1")
    archs = selected_architectures(loaded, platforms)
    dest = Path(output) if output is not None else default_output(loaded.name, loaded.tag, format)
    if len(archs) > 1 and format in ("tar", "docker-archive", "lxc"):
        from rootfs_forge.util.platform import debian_label

        what = {"tar": "a tarball", "docker-archive": "a docker-archive", "lxc": "an LXC image"}[format]
        raise ForgeError("compose", f"{loaded.path.name} as {format}",
                         f"{what} holds one platform and the recipe builds {len(archs)}; choose one with "
                         f"--platform {debian_label(archs[0])} (or use --format oci)")
    check_destination(dest.absolute(), directory=format in DIRECTORY_FORMATS)  # before any work, not after
    job = _Job(ctx, loaded, dest, format, locked, use_lock, jobs, progress, archs)
    job.vendor, job.insecure = (*loaded.vendor, *vendor), insecure
    if registry_cache and format != "oci":
        raise ForgeError("compose", loaded.path.name, "--registry-cache needs --format oci")
    job.registry_cache = registry_cache
    if format in IMAGE_FORMATS and not registry_cache:
        job.twins = list(twins)
    report = job.run_optimistic()
    # this recipe's own seconds: its twins' outputs are in their reports
    twin_seconds = sum(t.seconds for t in job.twins)
    report["seconds"] = round(time.perf_counter() - t0 - twin_seconds, 3)
    # where the time went (wall seconds per phase); the start-up before the call is not in it
    report["timings"] = ctx.timings.report()
    return report


class _IndexChanged(Exception):
    """The optimistic plan's index set is no longer the current one: compose again."""


def selected_architectures(recipe: Recipe, platforms: Sequence[str]) -> tuple[str, ...]:
    """The recipe's architectures ``platforms`` name (all of them when none is named)."""
    if not platforms:
        return tuple(recipe.architectures)
    from rootfs_forge.util.platform import PlatformError, parse_platform, select_architectures

    try:
        return select_architectures(tuple(recipe.architectures), [parse_platform(p) for p in platforms],
                                    recipe.path.name)
    except PlatformError as exc:
        raise ForgeError("compose", f"{recipe.path.name} for --platform {','.join(platforms)}", str(exc)) from None


class _Job:
    def __init__(self, ctx: Context, recipe: Recipe, dest: Path, fmt: str, locked: bool, use_lock: bool,
                 jobs: int, progress: bool, archs: tuple[str, ...]) -> None:
        self.archs = archs
        self.ctx, self.recipe, self.dest, self.fmt = ctx, recipe, dest, fmt
        self.locked, self.use_lock, self.jobs, self.progress = locked, use_lock, jobs, progress
        self.warned: set[str] = set()  # recipes whose stale lock was reported (once, even when composed again)
        self.vendor: tuple[str, ...] = ()
        self.insecure = False
        self.registry_cache = ""
        self.twins: list[Twin] = []

    def run_optimistic(self) -> dict[str, Any]:
        """Plan against the index set the last update verified while the suites are verified again in the
        background; the result is written only once that update confirms the set is still current. If an index
        changed (or the work failed on an index that has since changed), everything is done again."""
        ctx = self.ctx
        ctx.optimistic = not ctx.offline
        try:
            return self.run()
        except _IndexChanged:
            return self.run()
        except ForgeError:
            if not ctx.optimistic or ctx.confirm():  # the error stands: the index it was met with is current
                raise
            ctx.optimistic = False
            return self.run()

    def run(self) -> dict[str, Any]:
        ctx, recipe, timings = self.ctx, self.recipe, self.ctx.timings
        with timings.phase("plan"):
            result = ctx.planned.pop(planned_key(recipe.path, self.locked, self.use_lock), None) \
                or plan(recipe, ctx, locked=self.locked, use_lock=self.use_lock)
        cached = self._from_registry_cache(result) if self.registry_cache else None
        if cached is not None and cached.get("cache") == "hit":
            return cached
        chain = make_chain(result.entries, self.vendor, insecure=self.insecure)
        trees: list[Tree] = []
        report = self._report(recipe, self.dest, result)
        with _work_dir(self.dest, self.fmt, result) as work:
            for arch in self.archs:
                res = result.resolutions[arch]
                with UnpackAhead(ctx.cache) as ahead:
                    with timings.phase("fetch"):  # each .deb is decompressed as soon as it is in
                        fetched = fetch_debs(list(res.packages), ctx.cache, ctx.transport, jobs=self.jobs,
                                             urls=chain.urls, progress=TqdmProgress(self.progress),
                                             on_ready=ahead.submit)
                    debs = {f.package.key: f.path for f in fetched}
                    root = Path(work) / f"rootfs-{arch}"
                    ahead.close()
                    tree = build_tree(root, recipe, arch, res, debs, ctx.epoch, cache=ctx.cache, timings=timings,
                                      releases=ctx.releases)
                trees.append(tree)
                files_dropped, bytes_dropped = tree.dropped()
                report["architectures"][arch] = {
                    "packages": len(res.packages),
                    "downloaded": sum(1 for f in fetched if f.downloaded),
                    "kept_bytes": tree.kept(),
                    "filtered_files": files_dropped,
                    "filtered_bytes": bytes_dropped,
                    "scripts": tree.effects.report(),
                    "effects": tree.effects.effects_report(),
                    "notes": list(res.notes) + list(tree.db_notes),
                    "epoch": tree.epoch,
                }
            twins = self._twins_of(result)
            if ctx.optimistic and not ctx.confirm():  # nothing is output from an index that is not current
                ctx.optimistic = False
                raise _IndexChanged()
            failure: ForgeError | None = None
            try:
                check_config(trees, recipe)  # the program, working dir and user exist: before anything is written
                with timings.phase("output"):
                    report.update(write_output(trees, recipe, self.dest, self.fmt, ctx.cache.root, ctx.layer_share))
            except ForgeError as exc:
                if not twins:
                    raise
                failure = exc  # this recipe's own config or output failing does not fail its twins
            for twin, twin_plan in twins:
                self._compose_twin(twin, twin_plan, trees, report["architectures"])
            if failure is not None:
                raise failure
        if cached is not None:
            from rootfs_forge.image.regcache import push_cached

            with timings.phase("cache:push"):
                pushed = push_cached(self.dest, recipe.tag, cached["cache_reference"],
                                     insecure=cached["insecure"], epoch=ctx.epoch)
            report.update({"cache": "miss", "cache_key": cached["cache_key"], "cache_push": pushed})
        return report

    def _report(self, recipe: Recipe, dest: Path, result: Plan) -> dict[str, Any]:
        """The head of ``recipe``'s report (its architectures come later); a stale lock is warned about once."""
        report: dict[str, Any] = {"recipe": str(recipe.path), "image": f"{recipe.name}:{recipe.tag}",
                                  "output": str(dest), "format": self.fmt, "from_lock": result.from_lock,
                                  "architectures": {}}
        if result.from_lock:
            behind = lock_behind(recipe, result, self.ctx)
            report["lock_behind"] = behind
            if behind and self.ctx.warn and str(recipe.path) not in self.warned:
                self.warned.add(str(recipe.path))
                self.ctx.warn(behind_line(recipe.path, behind))
        return report

    def _twins_of(self, result: Plan) -> list[tuple[Twin, Plan]]:
        """The twins that build this recipe's trees (and their plans); the others are left uncomposed."""
        out: list[tuple[Twin, Plan]] = []
        for twin in self.twins:
            twin.report, twin.error, twin.seconds = None, None, 0.0
            key = planned_key(twin.recipe.path, self.locked, self.use_lock)
            try:
                mine = self.ctx.planned.get(key) \
                    or plan(twin.recipe, self.ctx, locked=self.locked, use_lock=self.use_lock)
            except ForgeError:
                continue  # composed alone, it meets the error first-hand
            if same_trees(self.recipe, result, twin.recipe, mine):
                self.ctx.planned.pop(key, None)
                out.append((twin, mine))
        return out

    def _compose_twin(self, twin: Twin, result: Plan, trees: list[Tree], archs: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        timings = Timings()
        recipe = twin.recipe
        try:
            check_destination(twin.dest.absolute(), directory=self.fmt in DIRECTORY_FORMATS)
            report = self._report(recipe, twin.dest, result)
            report["trees_of"] = str(self.recipe.path)
            report["architectures"] = {a: {**r, "downloaded": 0} for a, r in archs.items()}
            for tree in trees:
                retag_tree(tree, recipe)
            check_config(trees, recipe)
            with timings.phase("output"):
                report.update(write_output(trees, recipe, twin.dest, self.fmt, self.ctx.cache.root,
                                           self.ctx.layer_share))
        except ForgeError as exc:
            twin.error = exc
            return
        finally:
            twin.seconds = round(time.perf_counter() - t0, 3)
        report["seconds"] = twin.seconds
        report["timings"] = timings.report()
        twin.report = report

    def _from_registry_cache(self, result: Plan) -> dict[str, Any]:
        """A hit: the report of the image fetched from the registry cache. A miss: what pushing needs."""
        from rootfs_forge.image.pull import is_insecure, parse_pull_reference
        from rootfs_forge.image.regcache import cache_key, cache_reference, fetch_cached

        ctx, recipe = self.ctx, self.recipe
        if ctx.optimistic and not ctx.confirm():  # the key is only as current as the index it was resolved from
            ctx.optimistic = False
            raise _IndexChanged()
        ctx.optimistic = False
        key = cache_key(recipe, result.resolutions, ctx.epoch)
        reference = cache_reference(self.registry_cache, key)
        insecure = is_insecure(parse_pull_reference(reference).host, self.insecure)
        with ctx.timings.phase("cache:fetch"):
            digest = fetch_cached(reference, self.dest, recipe.tag, ctx.cache, insecure=insecure)
        if digest is None:
            return {"cache": "miss", "cache_key": key, "cache_reference": reference, "insecure": insecure}
        return {"recipe": str(recipe.path), "output": str(self.dest), "format": self.fmt,
                "from_lock": result.from_lock, "cache": "hit", "cache_key": key, "manifest_digest": digest,
                "architectures": {arch: {"packages": len(res.packages), "downloaded": 0}
                                  for arch, res in result.resolutions.items()}}


def _work_dir(dest: Path, fmt: str, result: Plan) -> tempfile.TemporaryDirectory[str]:
    """A temporary directory for the trees: in memory for scratch trees that fit (see rootfs_forge.util.workdir)."""
    estimate = sum(p.installed_size for res in result.resolutions.values() for p in res.packages) * 1024
    parent = dest.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    where = workdir.choose(estimate, parent, scratch=fmt != "rootfs", env=os.environ.get("FORGE_WORK_DIR"))
    if where == parent:
        # named like staged outputs (".<dest>.forge-<pid>-…"): a later run cleans it up if this one is killed
        return tempfile.TemporaryDirectory(prefix=f".{dest.name}.forge-{os.getpid()}-work-", dir=parent)
    for old in workdir.stale(where, process_alive):
        remove_tree(old)
    return tempfile.TemporaryDirectory(prefix=f"{workdir.WORK_PREFIX}{os.getpid()}-", dir=where)


def write_output(trees: list[Tree], recipe: Recipe, dest: Path, fmt: str,
                 cache_root: Path | None = None, share: LayerShare | None = None) -> dict[str, Any]:
    """Write the composed ``trees`` to ``dest`` in ``fmt``; return what the report says about the output.
    ``cache_root``: the download cache, which keeps compressed image layers for the next compose; ``share``:
    the layers a gallery compose shares between its images."""
    multi = len(trees) > 1
    if fmt == "rootfs":
        with staged_output(dest, directory=True) as out:
            if multi:
                for t in trees:
                    os.rename(t.root, out / t.arch)
            else:
                os.rename(trees[0].root, out)
        return {}
    if fmt == "lxc":
        from rootfs_forge.image.lxc import write_lxc

        if multi:
            raise ForgeError("compose", f"{recipe.path.name} as an LXC image", "an LXC image holds one platform; "
                                                                             "choose one with --platform")
        with staged_output(dest, directory=True) as out:
            return write_lxc(trees[0], recipe, out)
    if fmt == "tar":
        from rootfs_forge.image.layer import write_layer

        if multi:
            raise ForgeError("compose", f"{recipe.path.name} as a tarball", "a tarball holds one platform; "
                                                                           "choose one with --platform")
        t = trees[0]
        owners, xattrs = layer_record(t)
        with staged_output(dest, directory=False) as out:
            out.parent.mkdir(parents=True, exist_ok=True)
            blob = write_layer(t.root, out.parent / "blob", epoch=t.epoch, compression="none",
                               owners=owners, xattrs=xattrs)
            Path(blob.path).rename(out)
        return {"diff_id": blob.diff_id}
    from rootfs_forge.image.write import write_images

    return write_images(trees, recipe, dest, fmt, cache_root, share)
