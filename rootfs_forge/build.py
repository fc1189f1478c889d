"""One composed tree per architecture: resolution + fetched .debs → a rootfs directory and its record.

Each step is another module's job: :mod:`rootfs_forge.unpack.debcache` prepares the packages, ``rootfs.TreeWriter``
writes the tree and keeps its one record, the effects emulate maintainer scripts, ``dpkgwriter`` records what is
installed, :mod:`rootfs_forge.configure.manifest` writes forge's own manifest. The layers are derived from the record.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rootfs_forge.archive.cache import Cache
from rootfs_forge.configure.dpkgwriter import write_dpkg_db
from rootfs_forge.configure.effects import EffectsRun, apply_effects
from rootfs_forge.configure.effects.base import EffectContext, EffectOptions, HostTools, PackageInfo
from rootfs_forge.configure.effects.tree import RootDir
from rootfs_forge.configure.manifest import write_manifest
from rootfs_forge.errors import ForgeError, RecipeError, RootfsError
from rootfs_forge.model import InstalledPackage, Package, Resolution
from rootfs_forge.recipe import ImageConfigSpec, Recipe
from rootfs_forge.resolve.relations import RelationSyntaxError, parse_field
from rootfs_forge.unpack.debcache import cached_control, cached_member_rows, data_tar, deb_build_time, unpack_limit
from rootfs_forge.unpack.debfile import (
    MEMBER_TABLE_SCHEMA,
    DataMember,
    DebControl,
    members_of,
    parse_md5sums,
)
from rootfs_forge.unpack.filters import PathFilter
from rootfs_forge.unpack.writer import PackageFiles, PackageJob, TreeWriter
from rootfs_forge.util.canonical import canonical_json
from rootfs_forge.util.timing import Timings

if TYPE_CHECKING:
    from rootfs_forge.resolve.plan import Plan


@dataclass
class Tree:
    """One composed architecture: the tree on disk and everything known about how it was made."""

    root: Path
    arch: str
    resolution: Resolution
    epoch: int
    writer: TreeWriter
    files: dict[str, PackageFiles]
    controls: dict[str, DebControl]
    effects: EffectsRun
    db_notes: tuple[str, ...] = ()
    local_files: list[dict[str, object]] = field(default_factory=list)
    changed_paths: set[str] = field(default_factory=set)  # written by effects / dpkg db / local files
    slimmed: tuple[int, int] = (0, 0)  # files and bytes [slim] removed
    sliced_away: dict[str, str] = field(default_factory=dict)  # package kept no file -> why

    def dropped(self) -> tuple[int, int]:
        return (sum(f.files_dropped for f in self.files.values()),
                sum(f.bytes_dropped for f in self.files.values()))

    def kept(self) -> int:
        return sum(f.bytes_kept for f in self.files.values())

    def package_paths(self, name: str) -> set[str]:
        """Tree paths (merged /usr applied) of the members ``name`` kept."""
        return {self._tree_path(p) for p in self.files[name].paths if p not in ("/.", "/")}

    def keeps_a_file(self, name: str) -> bool:
        """Whether anything but a directory of the members ``name`` kept is in the tree: stops at the first,
        where :func:`sliced_away` used to resolve and look up every member of every package (30-50 ms of a warm
        essential compose)."""
        for p in self.files[name].paths:
            if p not in ("/.", "/"):
                entry = self.writer.lookup(self._tree_path(p), follow=False)
                if entry is not None and entry.kind != "dir":
                    return True
        return False

    def _tree_path(self, member: str) -> str:
        """A member's path in the tree: its parent directories resolved (merged /usr), its own name kept."""
        parent, base = os.path.split(member)
        return os.path.join(self.writer.resolve(parent or "/"), base)


def _replaces_names(control: DebControl) -> list[str]:
    value = control.fields.get("Replaces", "")
    if not value:
        return []
    try:
        return sorted({atom.name for group in parse_field(value) for atom in group})
    except RelationSyntaxError as exc:
        raise RootfsError("read", f"Replaces of {control.name}", str(exc)) from None


def build_tree(root: Path, recipe: Recipe, arch: str, resolution: Resolution, debs: Mapping[str, Path],
               epoch: int | None, *, host: HostTools | None = None, threads: int = 2,
               cache: Cache | None = None, timings: Timings | None = None,
               releases: Mapping[str, tuple[str, str]] | None = None) -> Tree:
    """Unpack ``resolution`` into the empty directory ``root``, apply effects, write the dpkg database.
    ``releases``: suite -> (Codename, Version) of its Release, for an os-release written without base-files."""
    t = timings or Timings()
    host = host or HostTools.detect()
    by_key = {p.key: p for p in resolution.packages}
    order = [k for k in resolution.order if k in by_key] + sorted(set(by_key) - set(resolution.order))
    if epoch is None:
        epoch = max((deb_build_time(debs[k]) for k in order), default=0)
    path_filter = PathFilter(recipe.profile, exclude=recipe.path_exclude, include=recipe.path_include,
                             keep_locales=recipe.locales, slices=dict(recipe.slices))
    with t.phase("unpack"):
        writer, controls, files = _unpack_all(root, recipe, arch, epoch, order, by_key, debs, path_filter,
                                              threads, cache, t)
    tree = Tree(root, arch, resolution, epoch, writer, files, controls, effects=EffectsRun((), ()))
    _add_local_files(tree, recipe)
    suite = _suite_of(resolution)
    codename, version = (releases or {}).get(suite, ("", ""))
    options = EffectOptions.from_recipe(recipe, suite=codename or suite, release_version=version)
    sha256 = {by_key[k].name: by_key[k].sha256 for k in order}
    infos = {name: PackageInfo(name, control.fields, control.scripts, files[name].paths, control.files,
                               sha256.get(name, ""))
             for name, control in controls.items()}
    with t.phase("unpack"):
        writer.drop_unowned_libdirs()
        writer.finish()
    set_owners = os.geteuid() == 0
    with t.phase("effects"):
        tree.effects = apply_effects(EffectContext(root, infos, arch, host, epoch, options, set_owners, writer,
                                                   cache.root if cache is not None else None))
    tree.changed_paths |= {c.path for c in tree.effects.changed}
    if recipe.slim:
        with t.phase("slim"):
            files = _slim(tree, recipe)
        tree.files = files
    tree.sliced_away = sliced_away(tree, recipe)
    installed = [
        InstalledPackage(
            control=control.fields, files=files[name].paths, md5sums=files[name].md5sums,
            # a conffile the filters dropped is not installed, so it is no conffile of this image
            conffiles=tuple((c, files[name].md5sums[c]) for c in control.conffiles if c in files[name].md5sums),
        )
        for name, control in sorted(controls.items())
        # a package none of whose files is in the tree is not installed here (scanners would report its code)
        if recipe.sliced_packages == "installed" or name not in tree.sliced_away
    ]
    foreign = sorted({p.architecture for p in resolution.packages} - {arch, "all"})
    # TreeWriter hashed every kept file as it wrote it; re-reading the tree to hash it again costs ~1 s for the
    # essential set and proves nothing new
    with t.phase("dpkg-db"):
        db = write_dpkg_db(writer, installed, arch, foreign, epoch=epoch, set_owners=set_owners, check_disk=False)
    tree.db_notes = db.notes
    tree.changed_paths |= {c.path for c in db.changed}
    with t.phase("manifest"):
        write_manifest(tree, recipe)
        writer.finish()  # the directories the writes after the unpack touched: recorded modes and mtimes
    return tree


def tree_key(recipe: Recipe) -> Recipe:
    """``recipe`` with every field its trees do not depend on blanked: two recipes with equal keys and equal
    plans build the same trees, but for forge's manifest, which names the image's tag (:func:`retag_tree`).

    Blanked: where the recipe file is, the tag, the image's config (unless ``[slim]`` keeps the entrypoint),
    how the layers are cut and compressed, and the vendor stores (a ``.deb`` is the same file wherever it comes
    from: it is checked against its SHA-256). Anything else, a field added later included, keeps two recipes
    apart: a field wrongly kept only costs the sharing, a field wrongly blanked would give a wrong image.
    The image's name stays: effects read it (``debug`` images get busybox's links).
    """
    config = recipe.config if recipe.slim and not recipe.slim_keep else ImageConfigSpec()
    return replace(recipe, path=Path(), tag="", config=config, layers=(), layering="", layer_budget=0,
                   compression="", vendor=())


def same_trees(recipe: Recipe, plan: Plan, other: Recipe, other_plan: Plan) -> bool:
    """Whether two recipes build the same trees but for forge's manifest: equal :func:`tree_key` and plans."""
    return (tree_key(recipe) == tree_key(other) and plan.resolutions == other_plan.resolutions
            and plan.entries == other_plan.entries)


def retag_tree(tree: Tree, recipe: Recipe) -> None:
    """Make ``tree`` (built for a recipe of the same :func:`tree_key`) what ``recipe``'s compose builds: its
    manifest names ``recipe``'s image, through the writer that keeps the tree's record."""
    write_manifest(tree, recipe)
    tree.writer.finish()


def sliced_away(tree: Tree, recipe: Recipe) -> dict[str, str]:
    """The packages none of whose files (anything but directories) is in the tree, and why."""
    slices = dict(recipe.slices)
    out: dict[str, str] = {}
    for name, pf in sorted(tree.files.items()):
        if tree.keeps_a_file(name):
            continue
        if name in slices and not slices[name]:
            out[name] = f"[slice.{name}] keeps nothing of it"
        elif name in slices:
            out[name] = f"[slice.{name}] include matches none of its files"
        elif recipe.slim and pf.files_dropped == 0:
            out[name] = "[slim] removed every file of it"
        elif pf.overridden and not pf.files_dropped:
            out[name] = "every file it ships is taken by another package"
        else:
            out[name] = "the path filters dropped every file of it"
    return out


def slim_keep(recipe: Recipe) -> list[str]:
    """The programs ``[slim]`` keeps: its ``keep`` list, else the image's entrypoint (or first cmd word)."""
    if recipe.slim_keep:
        return list(recipe.slim_keep)
    argv = recipe.config.entrypoint or recipe.config.cmd
    if not argv:
        raise ForgeError("slim", recipe.path.name, "[slim] needs keep = [...] or an entrypoint to keep")
    return [argv[0]]


def _slim(tree: Tree, recipe: Recipe) -> dict[str, PackageFiles]:
    """Remove every package file outside the keep-set; return file lists that describe what remains."""
    from rootfs_forge.audit.slim import slim_keep_set
    from rootfs_forge.audit.view import DirView

    keep = slim_keep_set(DirView(tree.root), slim_keep(recipe), list(recipe.slim_data))
    keep |= tree.changed_paths
    removed = removed_bytes = 0
    out: dict[str, PackageFiles] = {}
    for name, pf in tree.files.items():
        kept_paths = []
        for member in pf.paths:
            parent, base = os.path.split(member)
            real = os.path.join(tree.writer.resolve(parent or "/"), base) if member not in ("/.", "/") else "/"
            entry = tree.writer.lookup(real, follow=False)
            if entry is None:
                continue
            target = tree.writer.lookup(real, follow=True) if entry.kind == "symlink" else entry
            # directories stay (and links to them: /bin -> usr/bin is how merged /usr works)
            if entry.kind == "dir" or (target is not None and target.kind == "dir") or real in keep:
                kept_paths.append(member)
                continue
            removed += 1
            removed_bytes += entry.size
            tree.writer.remove(real)
        kept = set(kept_paths)
        md5 = {p: m for p, m in pf.md5sums.items() if p in kept}
        out[name] = replace(pf, paths=tuple(kept_paths), md5sums=md5)
    tree.slimmed = (removed, removed_bytes)
    return {n: replace(f, bytes_kept=_bytes_of(tree, f)) for n, f in out.items()}


def _bytes_of(tree: Tree, pf: PackageFiles) -> int:
    total = 0
    for member in pf.paths:
        parent, base = os.path.split(member)
        if member in ("/.", "/"):
            continue
        entry = tree.writer.lookup(os.path.join(tree.writer.resolve(parent or "/"), base), follow=False)
        if entry is not None and entry.kind == "file":
            total += entry.size
    return total


def _unpack_all(root: Path, recipe: Recipe, arch: str, epoch: int, order: Sequence[str],
                by_key: Mapping[str, Package], debs: Mapping[str, Path], path_filter: PathFilter,
                threads: int, cache: Cache | None = None, timings: Timings | None = None
                ) -> tuple[TreeWriter, dict[str, DebControl], dict[str, PackageFiles]]:
    """Unpack every package: control parts read and data.tars decompressed in ``threads`` threads (the codecs
    release the GIL), then the tree decided in install order and written by ``threads`` processes."""
    writer = TreeWriter(root, merged_usr=recipe.merged_usr, arch_multiarch=arch, allow_devices=recipe.allow_devices,
                        epoch=epoch, conflict_policy=dict(recipe.conflicts_prefer))

    def prepare(item: tuple[int, str]) -> tuple[DebControl, PackageJob]:
        rank, key = item
        pkg, deb = by_key[key], debs[key]
        control = cached_control(cache, pkg, deb)
        limit = unpack_limit(pkg, control)
        tar = data_tar(cache, pkg, deb, limit)
        md5sums = parse_md5sums(control.md5sums)
        members: list[DataMember] | None = None
        table: list[list[Any]] | None = None
        rows = cached_member_rows(cache, pkg) if cache is not None else None
        if rows is not None:
            members, extra = members_of(rows)
            md5sums.update(extra)
        elif cache is not None:
            table = []  # the scan fills it in; saved below
        job = PackageJob(pkg.name, deb, tar, tuple(_replaces_names(control)), path_filter, limit,
                         control.multi_arch == "same", rank, md5sums, members, table)
        return control, job

    t = timings or Timings()
    prepared: list[tuple[DebControl, PackageJob]] = []
    with t.phase("unpack:tree"):  # the scan (as the packages become ready), then the forked writers
        writer.add_packages(_prepared_in_order(list(enumerate(order)), prepare, threads, t, prepared),
                            workers=threads)
    for key, (_, job) in zip(order, prepared, strict=True):
        if cache is not None and job.table:  # for the next compose: it plans without reading tar headers
            cache.write_atomic(cache.members_path(by_key[key].sha256),
                               canonical_json({"schema": MEMBER_TABLE_SCHEMA, "members": job.table}))
    controls = {job.name: control for control, job in prepared}
    # a later package may have taken over paths of an earlier one (Replaces): take every list as it ends up
    files = {job.name: writer.package_files(job.name) for _, job in prepared}
    return writer, controls, files


def _prepared_in_order(items: list[tuple[int, str]],
                       prepare: Callable[[tuple[int, str]], tuple[DebControl, PackageJob]], threads: int,
                       timings: Timings, out: list[tuple[DebControl, PackageJob]]) -> Iterator[PackageJob]:
    """The packages' jobs in install order, each as soon as it is prepared (control part read, data.tar
    decompressed or found): ``threads`` threads prepare the ones after it while the scan of the tree takes
    it — the codecs release the interpreter lock, the scan holds it. ``out`` collects (control, job).
    ``unpack:wait`` times how long the scan waited for a package."""
    if threads <= 1:
        for item in items:
            with timings.phase("unpack:wait"):
                out.append(prepare(item))
            yield out[-1][1]
        return
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="unpack")
    try:
        futures = [pool.submit(prepare, item) for item in items]
        for future in futures:
            with timings.phase("unpack:wait"):
                out.append(future.result())
            yield out[-1][1]
    finally:
        # before the tree's writers fork (right after the last job): no thread of this pool may be left
        pool.shutdown(wait=True, cancel_futures=True)


def _suite_of(res: Resolution) -> str:
    suites = sorted({p.suite for p in res.packages if p.suite})
    return suites[0] if suites else ""


def _add_local_files(tree: Tree, recipe: Recipe) -> None:
    for f in recipe.files:
        try:
            data = Path(f.src).read_bytes()
        except OSError as exc:
            raise RootfsError("add", f"local file {f.src}", exc.strerror or str(exc)) from None
        tree.writer.add_file(f.dest, data, mode=f.mode, uid=f.uid, gid=f.gid)
        tree.changed_paths.add(f.dest)
        tree.local_files.append({"path": f.dest, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                 "mode": f"{f.mode:04o}", "owner": f"{f.uid}:{f.gid}",
                                 "src": os.path.basename(f.src)})


def layer_record(tree: Tree) -> tuple[dict[str, tuple[int, int, int]], dict[str, tuple[tuple[str, bytes], ...]]]:
    """For the layer writer, from one read of the tree's record: the (uid, gid, mode) of every tree path, and the
    extended attributes (file capabilities) of those that have any. The record is what every writer (packages,
    effects, the dpkg database, the manifest, local files, ``[slim]``) goes through, so a compose run by any user
    (which may not set owners or ``security.*`` on disk) gives the layers a root compose gives."""
    owners: dict[str, tuple[int, int, int]] = {}
    xattrs: dict[str, tuple[tuple[str, bytes], ...]] = {}
    for path, e in tree.writer.entries().items():
        rel = path.lstrip("/")
        if path != "/":
            owners[rel] = (e.uid, e.gid, e.mode)
        if e.xattrs:
            xattrs[rel] = e.xattrs
    return owners, xattrs


def check_user(tree: Tree, user: str) -> None:
    """An image's configured user must exist in its /etc/passwd (a numeric uid[:gid] is taken as is)."""
    from rootfs_forge.image.configcheck import user_problem

    why = user_problem(RootDir(tree.writer), user)
    if why:
        raise RecipeError(str(tree.root), [f"config.user: {why}"], verb="use recipe")


