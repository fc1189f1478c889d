#!/usr/bin/env python3
"""Compose benchmark: `forge compose` vs `mmdebstrap`, side by side, measured in one run, printed as one table.

Both tools read the same apt sources (the host's, read at run time; no host name is written anywhere), build a
directory rootfs as root, and are timed cold (empty caches: indexes and packages are downloaded) and warm (caches
kept). mmdebstrap's warm cache follows its manual ("EXAMPLES": sync-in/sync-out special hooks with
--skip=essential/unlink): the downloaded .debs *and* the apt lists are synced out of the chroot after the cold run
and synced back in before every warm run, so its `apt-get update` only revalidates, as forge revalidates InRelease.
Every output tree is kept until the whole benchmark ends and the disk is synced after each run, so no run pays for
the writeback of the previous run's tree, nor for its deletion: on ext4, creating inodes within minutes of deleting
many others is slow (perf shows the inode allocator's recently_deleted() check on every free inode it passes;
measured here: copying a 2,300-entry essential tree took 0.16-0.21 s, and 0.85-1.7 s right after deleting the
previous copy, nearly all of it system time), a cost of the benchmark loop that would land on whichever tool runs
next. The kept trees need a few GB in the temp directory.

Peak memory ("peak f MB", "peak m MB"; essential rows): after the timed runs, each essential configuration is
run cold again (--memory-repeat times, alternating the two tools; median), with the same probe for both: the
sum of the proportional set size (Pss of /proc/PID/smaps_rollup) of every process of the run's tree, sampled
every 5 ms, peak of the sums. Pss counts a page shared by n processes as 1/n in each, so the sum is the memory
the tree holds (a forked child is not counted twice for the pages it shares with its parent), and it counts no
page cache (the output tree, downloaded files) — a cgroup's memory.max_usage_in_bytes would count both tools'
written files. This process is a child subreaper during these runs, so daemonised descendants (forge's
detached index writer, mmdebstrap's helpers) stay in the tree, and the sampling lasts until the last of them
has exited. A peak shorter than the 5 ms step can be missed, alike for both tools.

Run from the project root, as root: `python3 bench/compose.py [--repeat N] [--cold-repeat N] [--quick]
[--only WORD]... [--oci-pairs] [--memory-repeat N]`. Takes several minutes (mmdebstrap's essential variant runs dpkg and
maintainer scripts for ~70 packages); `--only essential` runs only the essential rows, `--only ess-minimal
--only mergedusr` only the cold comparison of issue #18 (minimal essential vs mmdebstrap's merged-usr hook),
`--oci-pairs` only its OCI image vs directory pairs.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import compile_forge, host_suite_and_mirrors, preflight, print_table  # noqa: E402
from bench._common import mirror_lines as mirror_lines  # noqa: E402  (bench/fidelity.py imports it from here)

# mmdebstrap's custom variant installs with dpkg inside the chroot: beyond bash and coreutils it needs dpkg, the
# programs dpkg checks for in PATH (sh, diff, ldconfig, find) and what libc6's and base-files' scripts call.
CUSTOM_EXTRA = ("dpkg", "dash", "diffutils", "libc-bin", "findutils", "sed", "grep", "base-passwd")
EXTRACT_SET = ("base-files", "libc6", "bash", "coreutils")


@dataclass
class Runs:
    """Timings and what one configuration produced."""

    cold: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)
    packages: int | None = None
    size: int | None = None
    phases: list[dict[str, float]] = field(default_factory=list)  # forge's --json "timings" of warm runs
    peaks: list[int] = field(default_factory=list)  # bytes: peak of the tree's summed Pss, cold (module docstring)

    def peak(self) -> int | None:
        return int(statistics.median(self.peaks)) if self.peaks else None

    def cold_s(self) -> float | None:
        return statistics.median(self.cold) if self.cold else None

    def warm_s(self) -> float | None:
        return statistics.median(self.warm) if self.warm else None


@dataclass(frozen=True)
class ForgeConfig:
    label: str
    packages: tuple[str, ...]
    essential: bool
    profile: str


@dataclass(frozen=True)
class MmConfig:
    label: str
    variant: str
    include: tuple[str, ...]
    extra: tuple[str, ...] = ()  # further mmdebstrap options, e.g. a --hook-dir


@dataclass(frozen=True)
class Row:
    case: str
    forge: ForgeConfig
    mm: MmConfig
    note: str = ""


class Bench:
    """Owns the scratch directory; every output tree is measured and removed right after its run."""

    def __init__(self, work: Path, arch: str, suite: str, mirrors: list[str], verbose: bool) -> None:
        self.work = work
        self.arch = arch
        self.suite = suite
        self.mirrors = mirrors
        self.verbose = verbose
        self._n = 0

    def _fresh(self, name: str) -> Path:
        self._n += 1
        return self.work / f"{name}-{self._n}"

    def _run(self, argv: Sequence[str], what: str, peaks: list[int] | None = None) -> tuple[float, str]:
        """Run ``argv``; with ``peaks``, also sample the process tree's memory and append its peak."""
        t = time.perf_counter()
        if peaks is None:
            p = subprocess.run(list(argv), cwd=ROOT, capture_output=True, text=True)
            code, out, err = p.returncode, p.stdout, p.stderr
        else:
            code, out, err, peak = run_sampled(argv)
            peaks.append(peak)
        elapsed = time.perf_counter() - t
        if code != 0:
            tail = "\n".join((err or out).strip().splitlines()[-15:])
            raise RuntimeError(f"cannot run {what}: exit status {code}\n{tail}")
        if self.verbose:
            extra = f", peak {peaks[-1] / 1e6:.1f} MB" if peaks is not None else ""
            print(f"  {what}: {elapsed:.2f} s{extra}", file=sys.stderr)
        return elapsed, out

    # forge ------------------------------------------------------------------------------------------------
    def forge_recipe(self, cfg: ForgeConfig) -> Path:
        path = self.work / f"recipe-{cfg.label}.toml"
        if not path.exists():
            pkgs = ", ".join(json.dumps(p) for p in cfg.packages)
            path.write_text(f"packages = [{pkgs}]\nessential = {'true' if cfg.essential else 'false'}\n"
                            f"[image]\narchitecture = \"{self.arch}\"\n[paths]\nprofile = \"{cfg.profile}\"\n")
        return path

    def forge_once(self, cfg: ForgeConfig, cache: Path, fmt: str = "rootfs",
                   phases: list[dict[str, float]] | None = None,
                   peaks: list[int] | None = None) -> tuple[float, int, int]:
        """One compose; returns (seconds, packages, bytes of the output tree); appends its phase timings."""
        out = self._fresh(f"forge-{cfg.label}-{fmt}")
        argv = [sys.executable, "-m", "rootfs_forge", "compose", str(self.forge_recipe(cfg)), "--format", fmt,
                "-o", str(out), "--cache-dir", str(cache), "--json"]
        try:
            secs, stdout = self._run(argv, f"forge {cfg.label} {fmt}", peaks)
            report = json.loads(stdout.strip().splitlines()[-1])
            if phases is not None:
                phases.append(report.get("timings", {}))
            return secs, int(report["architectures"][self.arch]["packages"]), du_apparent(out)
        finally:
            os.sync()  # the tree itself stays until the end (see the module docstring)

    # mmdebstrap -------------------------------------------------------------------------------------------
    def mm_once(self, cfg: MmConfig, cache: Path, cold: bool,
                peaks: list[int] | None = None) -> tuple[float, int, int]:
        """One mmdebstrap run into an empty directory (root mode); cold runs save .debs and lists to ``cache``."""
        debs, lists = cache / "debs", cache / "lists"
        out = self._fresh(f"mm-{cfg.label}")
        out.mkdir()
        count_file = cache / "extracted.txt"
        argv = ["mmdebstrap", "--mode=root", "--format=directory", f"--variant={cfg.variant}",
                f"--architectures={self.arch}", "--quiet", *cfg.extra]
        if cfg.include:
            argv.append("--include=" + ",".join(cfg.include))
        argv += ["--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives \"$1\"/var/lib/apt/lists",
                 f"--setup-hook=sync-in {debs} /var/cache/apt/archives/",
                 f"--setup-hook=sync-in {lists} /var/lib/apt/lists/"]
        if cold:
            # Keep what was downloaded (the manual's recipe for reusing packages); the extract variant runs no
            # customize hooks, so it saves from its extract hook and records what it extracted.
            hook = "--extract-hook" if cfg.variant == "extract" else "--customize-hook"
            argv += ["--skip=essential/unlink",
                     f"{hook}=sync-out /var/cache/apt/archives {debs}",
                     f"{hook}=sync-out /var/lib/apt/lists {lists}"]
            if cfg.variant == "extract":
                argv.append(f"--extract-hook=ls \"$1\"/var/cache/apt/archives/ | grep -c '[.]deb$' > {count_file}")
        argv += [self.suite, str(out), *self.mirrors]
        try:
            secs, _ = self._run(argv, f"mmdebstrap {cfg.label} {'cold' if cold else 'warm'}", peaks)
            status = out / "var/lib/dpkg/status"
            pkgs = count_status(status)
            if not pkgs and count_file.is_file():
                pkgs = int(count_file.read_text().strip() or 0)
            return secs, int(pkgs), du_apparent(out)
        finally:
            unmount_below(out)  # an interrupted chroot's mounts go now, its tree at the end
            os.sync()  # the tree itself stays until the end (see the module docstring)

    def layer_throughput(self, cfg: ForgeConfig, cache: Path, repeat: int) -> tuple[float, int]:
        """Median seconds of ``write_layer`` (the image's default gzip) over one composed tree, and its tar bytes."""
        from rootfs_forge.image.layer import write_layer

        tree = self._fresh(f"forge-{cfg.label}-layer-src")
        try:
            self._run([sys.executable, "-m", "rootfs_forge", "compose", str(self.forge_recipe(cfg)), "--format",
                       "rootfs", "-o", str(tree), "--cache-dir", str(cache), "-q"], f"forge {cfg.label} rootfs")
            samples, size = [], 0
            for _ in range(repeat):
                layout = self._fresh("layout")
                try:
                    t = time.perf_counter()
                    blob = write_layer(tree, layout, epoch=0)
                    samples.append(time.perf_counter() - t)
                    size = blob.diff_size
                finally:
                    remove_tree(layout)
            return statistics.median(samples), size
        finally:
            remove_tree(tree)

    def measure(self, once: Callable[[bool], tuple[float, int, int]], runs: Runs, cold: bool) -> None:
        secs, pkgs, size = once(cold)
        (runs.cold if cold else runs.warm).append(secs)
        runs.packages = pkgs if runs.packages is None or pkgs else runs.packages
        runs.size = size


PR_SET_CHILD_SUBREAPER = 36
SAMPLE_STEP = 0.005


def _tree(root: int) -> list[int]:
    """``root``'s descendants (not ``root``), from /proc/PID/task/TID/children."""
    out: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids = [int(x) for x in f.read().split()]
                out += kids
                todo += kids
        except OSError:  # it has exited meanwhile
            continue
    return out


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_sampled(argv: Sequence[str]) -> tuple[int, str, str, int]:
    """Run ``argv`` (output captured) as a child subreaper, sampling the summed Pss of every process below this
    one every SAMPLE_STEP until the last of them (daemonised ones too) has exited; (exit status, stdout,
    stderr, peak bytes). See the module docstring."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise RuntimeError("cannot become a child subreaper (prctl)")
    me, peak, stop = os.getpid(), [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], sum(_pss(pid) for pid in _tree(me)))
            time.sleep(SAMPLE_STEP)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.Popen(list(argv), cwd=ROOT, stdout=out, stderr=err)
            sampler.start()
            code = p.wait()
            while True:  # the orphans this process inherited: wait for each (they are ours to reap)
                try:
                    os.waitpid(-1, 0)
                except ChildProcessError:
                    break
            stop.set()
            sampler.join()
            out.seek(0)
            err.seek(0)
            return code, out.read().decode(errors="replace"), err.read().decode(errors="replace"), peak[0]
    finally:
        stop.set()
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def count_status(status: Path) -> int:
    """Packages recorded in a dpkg status file (0 when there is none, as after the extract variant)."""
    if not status.is_file():
        return 0
    return sum(1 for line in status.read_text(errors="replace").splitlines() if line.startswith("Package: "))


def du_apparent(path: Path) -> int:
    p = subprocess.run(["du", "-sb", "--apparent-size", str(path)], capture_output=True, text=True, check=True)
    return int(p.stdout.split()[0])


def remove_tree(path: Path) -> None:
    """Unmount whatever is still mounted below ``path`` (an interrupted chroot), then delete it."""
    unmount_below(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def unmount_below(path: Path) -> None:
    prefix = str(path.resolve()) + "/"
    try:
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    except OSError:
        mounts = []
    for m in sorted((m for m in mounts if (m + "/").startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def fmt_mb(x: int | None) -> str:
    return "-" if x is None else f"{x / 1e6:.1f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b <= 0 else f"{a / b:.2f}x"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="warm runs per configuration (median; default 5)")
    ap.add_argument("--cold-repeat", type=int, default=3, help="cold runs per configuration (median; default 3)")
    ap.add_argument("--quick", action="store_true", help="smoke test: only the custom case, one run each")
    ap.add_argument("--only", action="append", metavar="WORD",
                    help="run only the rows whose case or configuration names hold every WORD given (e.g. "
                         "essential; --only ess-minimal --only mergedusr: the issue's cold comparison)")
    ap.add_argument("--memory-repeat", type=int, default=1,
                    help="extra cold runs per essential configuration that measure peak memory (median; default 1)")
    ap.add_argument("--oci-pairs", action="store_true",
                    help="only issue #18's OCI image vs directory pairs (warm essential, minimal profile; one cold "
                         "compose fills the cache first): a minute instead of the whole table")
    ap.add_argument("--arch", default="amd64")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each run's time to stderr")
    args = ap.parse_args()
    if (status := preflight("bench/compose.py")) is not None:
        return status
    if args.quick:
        args.repeat, args.cold_repeat = 1, 1
    suite, mirrors = host_suite_and_mirrors()

    f_min = ForgeConfig("ess-minimal", ("base-files",), True, "minimal")
    f_full = ForgeConfig("ess-full", ("base-files",), True, "full")
    mm_ess = MmConfig("essential", "essential", ("base-files",))
    mm_ess_mu = MmConfig("essential-mergedusr", "essential", ("base-files",),
                         ("--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",))
    f_ext = ForgeConfig("extract-set", EXTRACT_SET, False, "full")
    mm_ext = MmConfig("extract", "extract", EXTRACT_SET)
    f_cus = ForgeConfig("custom-set", ("bash", "coreutils", *CUSTOM_EXTRA), False, "full")
    f_cus2 = ForgeConfig("bash-coreutils", ("bash", "coreutils"), False, "full")
    mm_cus = MmConfig("custom", "custom", ("bash", "coreutils", *CUSTOM_EXTRA))
    rows = [
        Row("1 essential", f_min, mm_ess, "mm default pulls usrmerge+perl"),
        Row("1 essential", f_full, mm_ess, ""),
        Row("1 essential", f_min, mm_ess_mu, "mm merged-usr hook: usr-is-merged"),
        Row("1 essential", f_full, mm_ess_mu, ""),
        Row("2 extract", f_ext, mm_ext, "mm: unpack only, no dpkg db"),
        Row("3 custom", f_cus, mm_cus, "same 10-package request"),
        Row("3 custom", f_cus2, mm_cus, "forge asks bash,coreutils only"),
    ]
    if args.quick:
        rows = [rows[5]]
    if args.oci_pairs:
        rows = []
    if args.only:
        rows = [r for r in rows if all(w in f"{r.case} {r.forge.label} {r.mm.label}" for w in args.only)]
        if not rows:
            print("bench/compose.py: --only matches no case", file=sys.stderr)
            return 2

    compile_forge()
    work = Path(tempfile.mkdtemp(prefix="forge-bench-compose-"))
    bench = Bench(work, args.arch, suite, mirrors, args.verbose)
    forge_runs: dict[str, Runs] = {}
    mm_runs: dict[str, Runs] = {}
    oci: list[float] = []
    dir_again: list[float] = []
    layer: tuple[float, int] | None = None
    memory: list[tuple[bool, bool, ForgeConfig, MmConfig, Runs, Runs, Path, Path]] = []
    try:
        for row in rows:
            f, m = row.forge, row.mm
            new_f, new_m = f.label not in forge_runs, m.label not in mm_runs
            fr = forge_runs.setdefault(f.label, Runs())
            mr = mm_runs.setdefault(m.label, Runs())
            fcache, mcache = work / f"cache-forge-{f.label}", work / f"cache-mm-{m.label}"
            for d in (mcache / "debs", mcache / "lists"):
                d.mkdir(parents=True, exist_ok=True)

            def f_once(cold: bool, f: ForgeConfig = f, fcache: Path = fcache,
                       fr: Runs = fr) -> tuple[float, int, int]:
                if cold:
                    remove_tree(fcache)
                return bench.forge_once(f, fcache, phases=None if cold else fr.phases)

            def m_once(cold: bool, m: MmConfig = m, mcache: Path = mcache) -> tuple[float, int, int]:
                if cold:
                    for d in (mcache / "debs", mcache / "lists"):
                        remove_tree(d)
                        d.mkdir(parents=True)
                return bench.mm_once(m, mcache, cold)

            if "essential" in row.case:
                memory.append((new_f, new_m, f, m, fr, mr, fcache, mcache))

            # Cold runs (the last one leaves the caches filled), then warm runs interleaved so that the
            # other load on the machine falls on both tools alike.
            for _ in range(args.cold_repeat):
                if new_f:
                    bench.measure(f_once, fr, cold=True)
                if new_m:
                    bench.measure(m_once, mr, cold=True)
            for _ in range(args.repeat):
                if new_f:
                    bench.measure(f_once, fr, cold=False)
                if new_m:
                    bench.measure(m_once, mr, cold=False)
        # Peak memory: further cold runs of the essential configurations, alternating the tools (after the
        # timed runs, so that the sampling costs them nothing).
        for _ in range(args.memory_repeat):
            for new_f, new_m, f, m, fr, mr, fcache, mcache in memory:
                if new_f:
                    remove_tree(fcache)
                    bench.forge_once(f, fcache, peaks=fr.peaks)
                if new_m:
                    for d in (mcache / "debs", mcache / "lists"):
                        remove_tree(d)
                        d.mkdir(parents=True)
                    bench.mm_once(m, mcache, True, peaks=mr.peaks)
        if args.oci_pairs or (not args.quick and not args.only):
            cache = work / f"cache-forge-{f_min.label}"
            if not cache.exists():
                bench.forge_once(f_min, cache, "rootfs")  # fills the cache: the pairs are warm composes
            for _ in range(args.repeat):
                dir_again.append(bench.forge_once(f_min, cache, "rootfs")[0])
                oci.append(bench.forge_once(f_min, cache, "oci")[0])
            layer = bench.layer_throughput(f_min, cache, args.repeat)
    except RuntimeError as exc:
        print(f"bench/compose.py: {exc}", file=sys.stderr)
        return 1
    finally:
        remove_tree(work)

    headers = ["case", "forge", "mmdebstrap", "pkgs f/m", "MB f", "MB m", "size f/m", "cold f s", "cold m s",
               "cold m/f", "warm f s", "warm m s", "warm m/f", "peak f MB", "peak m MB", "note"]
    table: list[list[str]] = []
    for row in rows:
        fr, mr = forge_runs[row.forge.label], mm_runs[row.mm.label]
        table.append([row.case, row.forge.label, row.mm.label, f"{fr.packages}/{mr.packages}",
                      fmt_mb(fr.size), fmt_mb(mr.size),
                      ratio(fr.size, mr.size), fmt_s(fr.cold_s()), fmt_s(mr.cold_s()), ratio(mr.cold_s(), fr.cold_s()),
                      fmt_s(fr.warm_s()), fmt_s(mr.warm_s()), ratio(mr.warm_s(), fr.warm_s()),
                      fmt_mb(fr.peak()), fmt_mb(mr.peak()), row.note])
    if rows:
        print(f"compose benchmark: {suite} {args.arch}, {len(mirrors)} host source(s); cold = empty caches (median "
              f"of {args.cold_repeat}), warm = caches kept (median of {args.repeat}); wall seconds incl. process start")
        print_table(headers, table)
        print("sizes: du -sb --apparent-size of the output directory; mm/f ratios >1x mean forge is faster; "
              "mmdebstrap warm = sync-in of saved .debs and apt lists (apt-get update still revalidates)")
    if memory:
        print(f"peak MB: cold run, peak of the summed Pss of the whole process tree (daemonised descendants "
              f"included), sampled every {SAMPLE_STEP * 1000:.0f} ms; median of {args.memory_repeat} extra run(s) "
              f"per configuration, alternating the tools; same probe for both (see the module docstring)")
    if any(r.mm.variant == "extract" for r in rows):
        print("2 extract: mmdebstrap's extract variant downloads --include plus dependencies with apt and only "
              "unpacks them (no dpkg database, no scripts); forge resolves the same request and also writes the "
              "dpkg database and script effects")
    if oci and dir_again:
        dt, o = statistics.median(dir_again), statistics.median(oci)
        # each OCI run right after a directory run: the pairs' ratios are the figure (robust to the machine's
        # speed drifting during the bench), the ratio of the medians beside it
        pairs = statistics.median(a / b for a, b in zip(oci, dir_again, strict=True))
        print(f"forge warm essential (minimal): OCI image {o:.2f} s vs directory {dt:.2f} s = {pairs:.2f}x "
              f"(median of {len(oci)} pairs' ratios; ratio of the medians {o / dt:.2f}x; target <= 1.3x; an "
              "image's scratch tree is built in /dev/shm when it fits, the directory on disk)")
    if layer:
        secs, tar_bytes = layer
        print(f"forge layer writing measured in-process (write_layer, default gzip, median of {args.repeat}): "
              f"{tar_bytes / 1e6:.1f} MB tar in {secs:.2f} s = {tar_bytes / secs / 1e6:.0f} MB/s")
    fmin, mmu = forge_runs.get(f_min.label), mm_runs.get(mm_ess_mu.label)
    if fmin and fmin.phases:
        names = list(dict.fromkeys(k for d in fmin.phases for k in d))
        spent = {k: statistics.median(d.get(k, 0.0) for d in fmin.phases) for k in names}
        top = {k: v for k, v in spent.items() if ":" not in k}  # "unpack:tree" is a part of "unpack"
        rest = (fmin.warm_s() or 0.0) - sum(top.values())
        print("forge warm essential (minimal), where the time goes (median s per phase, from --json timings): "
              + ", ".join(f"{k} {v:.2f}" for k, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v >= 0.005)
              + f"; start-up and exit {rest:.2f}")
    fext, mext = forge_runs.get(f_ext.label), mm_runs.get(mm_ext.label)
    mdef = mm_runs.get(mm_ess.label)
    if fmin and mmu and fext and mext and mdef:
        print(f"targets (not asserted): warm essential <= 1.5 s [{fmt_s(fmin.warm_s())} s]; >= 10x faster than "
              f"mmdebstrap [{ratio(mmu.warm_s(), fmin.warm_s())} vs merged-usr hook, "
              f"{ratio(mdef.warm_s(), fmin.warm_s())} vs default]; >= 2x faster than extract variant "
              f"[{ratio(mext.warm_s(), fext.warm_s())} warm]; cold >= 5x faster "
              f"[{ratio(mdef.cold_s(), fmin.cold_s())} vs default, {ratio(mmu.cold_s(), fmin.cold_s())} vs "
              f"merged-usr hook]; cold peak memory <= 120 MB [{fmt_mb(fmin.peak())} MB, mmdebstrap merged-usr hook "
              f"{fmt_mb(mmu.peak())} MB]; minimal size <= 50% of mmdebstrap "
              f"[{ratio(fmin.size, mdef.size)} of default, {ratio(fmin.size, mmu.size)} of merged-usr hook]")
    elif not args.oci_pairs:
        print("targets (not asserted, full run only): warm essential <= 1.5 s and >= 10x faster than mmdebstrap; "
              ">= 2x faster than mmdebstrap's extract variant; cold >= 5x faster; minimal size <= 50% of mmdebstrap")
    print("note: other jobs share this machine; timings are noisy")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
