"""Compose: resolutions + fetched .debs → a rootfs tree per architecture → rootfs dir, tarball or OCI image.

Orchestration only: each step is another module's job (rootfs.TreeWriter writes, effects emulate maintainer
scripts, dpkgdb records what is installed, layer/oci serialise). Every output is built under a temporary
name next to its destination and renamed at the end, so a failure — or a kill — never leaves a half-written
result where the user asked for one.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import libarchive

from rootfs_forge.cache import Cache
from rootfs_forge.debfile import (
    MEMBER_TABLE_SCHEMA,
    DataMember,
    DebControl,
    control_from_files,
    extract_data_tar,
    members_of,
    parse_md5sums,
    read_control,
)
from rootfs_forge.dpkgdb import InstalledPackage, write_dpkg_db
from rootfs_forge.effects import EffectsRun, apply_effects
from rootfs_forge.effects.base import EffectContext, EffectOptions, HostTools, PackageInfo
from rootfs_forge.effects.tree import RootDir
from rootfs_forge.errors import ForgeError, RootfsError
from rootfs_forge.filters import PathFilter
from rootfs_forge.model import Package, Resolution
from rootfs_forge.pids import process_alive
from rootfs_forge.recipe import Recipe
from rootfs_forge.relations import RelationSyntaxError, parse_field
from rootfs_forge.rootfs import PackageFiles, PackageJob, TreeWriter
from rootfs_forge.timing import Timings
from rootfs_forge.util.canonical import canonical_json

FORGE_MANIFEST = "/var/lib/forge/manifest.json"
BOMB_MARGIN = 4  # a package may unpack to at most 4x its declared Installed-Size (+16 MiB)


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

    def dropped(self) -> tuple[int, int]:
        return (sum(f.files_dropped for f in self.files.values()),
                sum(f.bytes_dropped for f in self.files.values()))

    def kept(self) -> int:
        return sum(f.bytes_kept for f in self.files.values())

    def package_paths(self, name: str) -> set[str]:
        """Tree paths (merged /usr applied) of the members ``name`` kept."""
        out = set()
        for p in self.files[name].paths:
            if p in ("/.", "/"):
                continue
            parent, base = os.path.split(p)
            out.add(os.path.join(self.writer.resolve(parent or "/"), base))
        return out


def deb_build_time(path: Path) -> int:
    """The build time dpkg-deb records in the ar header of a .deb (0 if absent)."""
    with libarchive.file_reader(str(path), format_name="ar") as archive:
        for entry in archive:
            return int(entry.mtime or 0)
    return 0


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
               cache: Cache | None = None, timings: Timings | None = None) -> Tree:
    """Unpack ``resolution`` into the empty directory ``root``, apply effects, write the dpkg database."""
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
    options = EffectOptions.from_recipe(recipe, suite=_suite_of(resolution))
    infos = {name: PackageInfo(name, control.fields, control.scripts, files[name].paths)
             for name, control in controls.items()}
    with t.phase("unpack"):
        writer.finish()
    set_owners = os.geteuid() == 0
    with t.phase("effects"):
        tree.effects = apply_effects(EffectContext(root, infos, arch, host, epoch, options, set_owners, writer))
    tree.changed_paths |= {c.path for c in tree.effects.changed}
    if recipe.slim:
        with t.phase("slim"):
            files = _slim(tree, recipe)
        tree.files = files
    installed = [
        InstalledPackage(
            control=control.fields, files=files[name].paths, md5sums=files[name].md5sums,
            # a conffile the filters dropped is not installed, so it is no conffile of this image
            conffiles=tuple((c, files[name].md5sums[c]) for c in control.conffiles if c in files[name].md5sums),
        )
        for name, control in sorted(controls.items())
    ]
    foreign = sorted({p.architecture for p in resolution.packages} - {arch, "all"})
    # TreeWriter hashed every kept file as it wrote it; re-reading the tree to hash it again costs ~1 s for the
    # essential set and proves nothing new
    with t.phase("dpkg-db"):
        db = write_dpkg_db(writer, installed, arch, foreign, epoch=epoch, set_owners=set_owners, check_disk=False)
    tree.db_notes = db.notes
    tree.changed_paths |= {c.path for c in db.changed}
    with t.phase("manifest"):
        _write_manifest(tree, recipe)
        writer.finish()  # the directories the writes after the unpack touched: recorded modes and mtimes
    return tree


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


def data_tar(cache: Cache | None, pkg: Package, deb: Path, max_bytes: int) -> Path | None:
    """The cached, decompressed data.tar of ``deb`` (made on first use: temp name, then rename)."""
    if cache is None:
        return None
    path = cache.data_tar_path(pkg.sha256)
    if path.is_file():
        return path
    with cache.lock(f"unpack-{pkg.sha256}"):  # one decompression per package, across threads and processes
        if not path.is_file():
            tmp = cache.root / "tmp" / f"{pkg.sha256}.{os.getpid()}.{threading.get_ident()}.tar"
            try:
                _, digest = extract_data_tar(deb, tmp, max_bytes)
                # its digest, for `forge cache verify`; written first, so a tar never exists without one
                cache.write_atomic(path.with_name(path.name + ".sha256"), digest.encode())
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
    return path


class UnpackAhead:
    """Decompress each package's data.tar into the cache as soon as its .deb is there, while the other
    downloads go on: a cold compose then decompresses in the shadow of the network instead of after it.

    Only warms the cache (the control part and the data.tar, through :func:`cached_control` and
    :func:`data_tar`, under its per-package lock); :func:`build_tree` does the real work and finds it done. A
    package that fails here is left alone: build_tree meets the same failure and reports it.
    """

    def __init__(self, cache: Cache, threads: int = 2) -> None:
        self.cache = cache
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="unpack-ahead")

    def submit(self, pkg: Package, deb: Path) -> None:
        if not self.cache.data_tar_path(pkg.sha256).is_file():
            self._pool.submit(self._warm, pkg, deb)

    def _warm(self, pkg: Package, deb: Path) -> None:
        with contextlib.suppress(ForgeError):
            data_tar(self.cache, pkg, deb, unpack_limit(pkg, cached_control(self.cache, pkg, deb)))

    def close(self) -> None:
        """Drop what has not started (build_tree does it) and wait for what runs: build_tree forks its
        writers, and no thread of this pool may be in the middle of anything then."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> UnpackAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


CONTROL_SCHEMA = 1


def cached_control(cache: Cache | None, pkg: Package, deb: Path) -> DebControl:
    """The control part of ``deb``: from ``unpacked/<sha256>.control.json`` when an earlier compose saved it
    there (read_control decompresses the control.tar of every package on every compose otherwise)."""
    if cache is None:
        return read_control(deb)
    path = cache.control_path(pkg.sha256)
    try:
        doc = json.loads(path.read_bytes())
        if doc.get("schema") == CONTROL_SCHEMA:
            return control_from_files(str(deb), {k: base64.b64decode(v) for k, v in doc["files"].items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        pass
    control = read_control(deb)
    cache.write_atomic(path, control_doc(control))
    return control


def control_doc(control: DebControl) -> bytes:
    """What :func:`cached_control` saves: the control.tar's files, base64, in canonical JSON."""
    files = {k: base64.b64encode(v).decode() for k, v in control.files.items()}
    return canonical_json({"schema": CONTROL_SCHEMA, "files": files})


def unpack_limit(pkg: Package, control: DebControl) -> int:
    """The most bytes a package's data.tar may hold: its declared Installed-Size with a wide margin."""
    declared = max(control.installed_size, pkg.installed_size)
    return declared * 1024 * BOMB_MARGIN + (16 << 20)


def cached_member_rows(cache: Cache, pkg: Package) -> list[list[Any]] | None:
    """The member table of a cached data.tar (``unpacked/<sha256>.members.json``), or None: a warm compose
    reads it instead of walking the tar's headers through libarchive. The first compose that unpacks the
    package records it while it scans."""
    try:
        doc = json.loads(cache.members_path(pkg.sha256).read_bytes())
        if doc.get("schema") == MEMBER_TABLE_SCHEMA and isinstance(doc.get("members"), list):
            return list(doc["members"])
    except (OSError, ValueError, AttributeError):
        pass
    return None


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


def manifest_doc(tree: Tree, recipe: Recipe) -> dict[str, object]:
    res = tree.resolution
    return {
        "schema": 1,
        "image": {"name": recipe.name, "tag": recipe.tag, "architecture": tree.arch},
        "requested": list(res.requested),
        "packages": {
            p.name: {
                "version": p.version, "architecture": p.architecture, "sha256": p.sha256,
                "dropped_files": tree.files[p.name].files_dropped, "dropped_bytes": tree.files[p.name].bytes_dropped,
                "kept_bytes": tree.files[p.name].bytes_kept,
            }
            for p in res.packages
        },
        "why": {k: [{"parent": r.parent, "relation": r.relation} for r in v] for k, v in sorted(res.why.items())},
        "files": sorted(tree.local_files, key=lambda d: str(d["path"])),
        "slim": {"removed_files": tree.slimmed[0], "removed_bytes": tree.slimmed[1]} if recipe.slim else None,
        "scripts": tree.effects.report(),
        "effects": [*tree.effects.effects_report(), _layout_effect(tree)],
    }


def _layout_effect(tree: Tree) -> dict[str, object]:
    """The merged-/usr links forge lays out itself (no package ships /lib32 or /libx32, for instance)."""
    entries = tree.writer.entries()
    links = [p for p in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
             if entries.get(p) is not None and entries[p].kind == "symlink"]
    return {"effect": "merged-usr", "status": "applied" if links else "not-applicable", "skipped": "",
            "messages": [], "changed": links}


def _write_manifest(tree: Tree, recipe: Recipe) -> None:
    """``/var/lib/forge/manifest.json``: what forge knows that dpkg does not (why-graph, filters, local files).

    Written after the effects, through the same in-root writer they and the dpkg database use.
    """
    doc = manifest_doc(tree, recipe)
    rd = RootDir(tree.writer)
    rd.mkdir(os.path.dirname(FORGE_MANIFEST), 0o755)
    rd.write_file(FORGE_MANIFEST, canonical_json(doc) + b"\n")
    tree.changed_paths.add(FORGE_MANIFEST)


# ------------------------------------------------------------------------------------- atomic outputs


@contextlib.contextmanager
def staged_output(dest: Path, *, directory: bool) -> Iterator[Path]:
    """Yield a temp path next to ``dest``; on success rename it to ``dest``, on failure remove it.

    An existing ``dest`` is replaced only after the new one is complete.
    """
    dest = dest.absolute()
    check_destination(dest, directory=directory)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_temps(dest)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.forge-{os.getpid()}-"))
    tmp.chmod(0o755)
    target = tmp if directory else tmp / dest.name
    try:
        yield target
        if dest.is_dir() and not dest.is_symlink():
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.forge-{os.getpid()}-old-"))
            os.rename(dest, old / "x")
            os.rename(target, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(target, dest)
    except BaseException:
        remove_tree(tmp)
        raise
    if not directory:
        remove_tree(tmp)


def check_destination(dest: Path, *, directory: bool) -> None:
    """Refuse to replace a file with a directory output or the other way round (and never write through a link)."""
    if dest.is_symlink():
        raise ForgeError("write", str(dest), "it is a symbolic link; name the real path")
    if directory and dest.exists() and not dest.is_dir():
        raise ForgeError("write", str(dest), "a file is in the way of this directory output; remove it or choose "
                                            "another --output")
    if not directory and dest.is_dir():
        raise ForgeError("write", str(dest), "a directory is in the way of this file output; remove it or choose "
                                            "another --output")
    if dest.parent.exists() and not dest.parent.is_dir():
        raise ForgeError("write", str(dest), f"{dest.parent} is not a directory")


def remove_tree(path: Path) -> None:
    if path.exists():
        # a rootfs contains read-only directories (e.g. /proc 0555); make them writable before removal
        for dirpath, dirnames, _ in os.walk(path):
            for d in dirnames:
                with contextlib.suppress(OSError):
                    p = os.path.join(dirpath, d)
                    if not os.path.islink(p):
                        os.chmod(p, 0o755)
        shutil.rmtree(path, ignore_errors=True)


def _clean_stale_temps(dest: Path) -> None:
    """Remove temp siblings left by forge processes that were killed."""
    for p in dest.parent.glob(f".{dest.name}.forge-*"):
        pid = p.name.rsplit(".forge-", 1)[-1].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            remove_tree(p)


def layer_owners(tree: Tree) -> dict[str, tuple[int, int, int]]:
    """The (uid, gid, mode) of every tree path, for the layer writer: from the tree's one record, which every
    writer (packages, effects, the dpkg database, the manifest, local files, ``[slim]``) goes through, so a
    compose run by any user gives the layers a root compose gives."""
    return {path.lstrip("/"): (e.uid, e.gid, e.mode) for path, e in tree.writer.entries().items() if path != "/"}


def check_user(tree: Tree, user: str) -> None:
    """An image's configured user must exist in its /etc/passwd (a numeric uid[:gid] is taken as is)."""
    if not user or user.split(":")[0].isdigit():
        return
    name = user.split(":")[0]
    # the accounts effect writes /etc/passwd after unpacking: the tree's record knows it
    rd = RootDir(tree.writer)
    data = rd.read_bytes("/etc/passwd") if rd.is_file("/etc/passwd") else b""
    names = {line.split(":", 1)[0] for line in data.decode("utf-8", "replace").splitlines() if line}
    if name not in names:
        raise ForgeError("configure", f"user {name!r}", "no such user in the image's /etc/passwd (add an "
                                                        "[[account]] or the package that creates it)")

