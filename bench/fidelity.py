#!/usr/bin/env python3
"""Fidelity benchmark: the tree forge composes vs the tree mmdebstrap installs, path by path, for package sets.

For each set both tools install the same request from the host's apt sources (read at run time; no host name is
written anywhere): mmdebstrap's custom variant (plus the packages its dpkg run needs inside the chroot, which
forge gets too) or its essential variant, with Debian's merged-/usr hook; forge as root with ``profile = "full"``
(nothing filtered) into a directory. Every path of both trees is compared: type, mode, owner, link target, size,
SHA-256 and extended attributes (mtimes differ by design: forge clamps them to the image epoch). Per set the
table says how many paths are identical, only in mmdebstrap, only in forge, or different; then every remaining
difference is given a reason from a short fixed list (``REASONS``), and whatever no reason covers is counted and
listed as **unexplained** — the number to drive to zero.

Run from the project root, as root: ``python3 bench/fidelity.py [--sets NAME…] [-v | --summary]`` (``-v``
lists every explained difference too, ``--summary`` only counts per reason: the README's form). Takes several
minutes: mmdebstrap runs dpkg and the maintainer scripts.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.compose import CUSTOM_EXTRA, mirror_lines, remove_tree  # noqa: E402
from rootfs_forge.archive.sources import host_sources  # noqa: E402

MERGED_USR = "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr"
# what mmdebstrap's custom variant needs in the chroot to run dpkg there (dpkg checks for rm, so coreutils too);
# forge is asked for the same packages
EXTRA = (*CUSTOM_EXTRA, "coreutils")


@dataclass(frozen=True)
class PackageSet:
    name: str
    packages: tuple[str, ...]
    essential: bool = False  # mmdebstrap's essential variant; forge's essential = true


# Sets whose maintainer scripts need more than dpkg's own tools (perl-base for debconf, adduser, openssl …) are
# installed on top of the essential set by both tools: mmdebstrap's custom variant fails to configure them (apt
# alone, curl + ca-certificates); apt is therefore compared as essential + apt only.
SETS = (
    PackageSet("python3", ("python3",)),
    PackageSet("ess+curl+ca", ("curl", "ca-certificates"), essential=True),
    PackageSet("essential+apt", ("apt",), essential=True),
    PackageSet("bash+coreutils", ("bash", "coreutils")),
    PackageSet("ess+nginx-light", ("nginx-light",), essential=True),
    PackageSet("ess+openssh-srv", ("openssh-server",), essential=True),
    PackageSet("ess+ping+login", ("iputils-ping", "login"), essential=True),
    PackageSet("ess+python3-pip", ("python3", "python3-pip"), essential=True),
)

# (reason, globs of in-root paths it explains, which differences: "only-mm", "only-forge", "different" or "*")
REASONS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("host-specific: mmdebstrap copies or makes it for the build host",
     ("/etc/resolv.conf", "/etc/hostname", "/etc/hosts", "/etc/apt/sources.list", "/etc/apt/sources.list.d",
      "/etc/apt/sources.list.d/*", "/etc/apt/apt.conf.d/99mmdebstrap", "/etc/machine-id",
      "/var/lib/dbus/machine-id", "/etc/mtab"), "*"),
    ("mmdebstrap's merged-/usr hook installs a usr-is-merged stand-in package",
     ("/usr/share/doc/usr-is-merged", "/usr/share/doc/usr-is-merged/*", "/var/lib/dpkg/info/usr-is-merged.*"),
     "only-mm"),
    ("apt's directories, lists and package cache (mmdebstrap runs apt in the tree; forge has its own cache)",
     ("/var/lib/apt/lists/*", "/var/cache/apt/*", "/var/lib/apt/extended_states", "/var/lib/apt/lists",
      "/var/cache/apt", "/var/lib/apt", "/etc/apt", "/etc/apt/apt.conf.d", "/etc/apt/preferences.d",
      "/etc/apt/trusted.gpg.d", "/var/cache"), "only-mm"),
    ("logs", ("/var/log", "/var/log/*"), "*"),
    ("no init system runs in an image: service enablement (deb-systemd-helper, update-rc.d, runit-helper) is not "
     "emulated (README: Maintainer-script effects)",
     ("/etc/systemd/system/*", "/var/lib/systemd", "/var/lib/systemd/deb-systemd-helper-enabled",
      "/var/lib/systemd/deb-systemd-helper-enabled/*", "/etc/rc?.d/*", "/etc/runit/runsvdir/default/*"), "only-mm"),
    ("per-host secrets: forge never bakes SSH host keys into an image (README: sshd-config)",
     ("/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_rsa_key.pub", "/etc/ssh/ssh_host_ecdsa_key",
      "/etc/ssh/ssh_host_ecdsa_key.pub", "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub"),
     "only-mm"),
    ("-old and - backups of a tool that rewrote a file", ("*-old", "/etc/passwd-", "/etc/group-", "/etc/shadow-",
                                                         "/etc/gshadow-", "/etc/subuid-", "/etc/subgid-",
                                                         "/var/lib/ucf/hashfile.0", "/var/lib/ucf/registry.0"),
     "*"),
    ("dpkg's and apt's run state (locks, the available file, caches of the installing tools)",
     ("/var/lib/dpkg/lock", "/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/triggers/Lock",
      "/var/lib/dpkg/triggers/Unincorp", "/var/lib/dpkg/available", "/var/cache/ldconfig/aux-cache",
      "/var/lib/dpkg/diversions-old", "/var/lib/dpkg/statoverride-old", "/var/cache/debconf/*.dat-old",
      "/var/lib/dpkg/cmethopt", "/var/lib/apt/lists/lock", "/var/cache/apt/archives/lock", "/etc/.pwd.lock"),
     "*"),
    ("apt's first run: apt makes its partial/ directories 0700 when it runs (the package ships them 0755)",
     ("/var/lib/apt/lists/partial", "/var/cache/apt/archives/partial"), "different"),
    ("without base-files, forge's base-files and identity effects still make /root, /run, /var/tmp and an "
     "os-release (README: Maintainer-script effects)",
     ("/root", "/run", "/var/tmp", "/etc/os-release"), "only-forge"),
    ("forge's own manifest (/var/lib/forge)", ("/var/lib/forge", "/var/lib/forge/*"), "only-forge"),
    ("bytecode: forge's pycs are unchecked-hash (reproducible), dpkg's postinsts write timestamped ones",
     ("*.pyc",), "different"),
    ("device nodes and mount points of mmdebstrap's chroot", ("/dev", "/dev/*", "/proc/*", "/sys/*"), "*"),
    ("contents that embed the build time or random data (shadow's lastchg day, debconf's caches)",
     ("/var/cache/debconf/config.dat", "/var/cache/debconf/templates.dat"), "different"),
)
UNEXPLAINED = "unexplained"


@dataclass(frozen=True)
class Meta:
    kind: str
    mode: int
    owner: str
    target: str = ""
    size: int = 0
    sha256: str = ""
    xattrs: tuple[tuple[str, str], ...] = ()

    def differences(self, other: Meta) -> list[str]:
        out = []
        for name in ("kind", "mode", "owner", "target", "size", "sha256", "xattrs"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                out.append(f"{name} {a:o}≠{b:o}" if name == "mode" else f"{name} {str(a)[:40]}≠{str(b)[:40]}")
        return out


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISCHR, "char"), (stat.S_ISBLK, "block"), (stat.S_ISFIFO, "fifo")):
        if test(mode):
            return name
    return "other"


def _xattrs(path: str) -> tuple[tuple[str, str], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    out = []
    for name in sorted(names):
        if name.startswith("security.selinux"):
            continue
        try:
            out.append((name, os.getxattr(path, name, follow_symlinks=False).hex()))
        except OSError:
            continue
    return tuple(out)


def scan(root: Path) -> dict[str, Meta]:
    """Every path below ``root`` (as an in-root path) with its metadata; never follows a symlink."""
    out: dict[str, Meta] = {}
    top = str(root)
    for dirpath, dirnames, filenames in os.walk(top):
        rel = dirpath[len(top):] or ""
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            kind = _kind(st.st_mode)
            target = os.readlink(full) if kind == "symlink" else ""
            digest = ""
            if kind == "file":
                h = hashlib.sha256()
                with open(full, "rb") as f:
                    for block in iter(functools.partial(f.read, 1 << 20), b""):
                        h.update(block)
                digest = h.hexdigest()
            out[f"{rel}/{name}"] = Meta(kind, stat.S_IMODE(st.st_mode), f"{st.st_uid}:{st.st_gid}", target,
                                        st.st_size if kind == "file" else 0, digest,
                                        _xattrs(full) if kind in ("file", "dir") else ())
    return out


HOOK_WHAT = "only the usr-is-merged stanza differs (checked)"
HOOK_REASON = REASONS[1][0]
DAY_WHAT = "only the last-change day differs (checked)"
DAY_REASON = next(r for r, _, _ in REASONS if r.startswith("contents that embed the build time"))


def reason_of(path: str, how: str, what: str = "") -> str:
    if how == "different" and path == STATUS and what == HOOK_WHAT:
        return HOOK_REASON
    if how == "different" and path == SHADOW and what == DAY_WHAT:
        return DAY_REASON
    for reason, globs, applies in REASONS:
        if applies not in ("*", how):
            continue
        if any(fnmatch.fnmatchcase(path, g) for g in globs):
            return reason
    return UNEXPLAINED


@dataclass
class Comparison:
    name: str
    identical: int
    only_mm: list[str]
    only_forge: list[str]
    different: list[tuple[str, str]]  # path, what differs

    def explained(self) -> Iterator[tuple[str, str, str]]:
        """(reason, path, difference) of every difference, sorted by path."""
        rows = [(reason_of(p, "only-mm"), p, "only in mmdebstrap") for p in self.only_mm]
        rows += [(reason_of(p, "only-forge"), p, "only in forge") for p in self.only_forge]
        rows += [(reason_of(p, "different", what), p, what) for p, what in self.different]
        return iter(sorted(rows, key=lambda r: r[1]))


STATUS = "/var/lib/dpkg/status"
HOOK_STANZA = "usr-is-merged"  # the package mmdebstrap's merged-/usr hook installs


def without_stanza(status: str, package: str) -> str:
    """A dpkg status file without ``package``'s stanza (pure)."""
    stanzas = [s for s in status.split("\n\n") if s.strip()]
    return "".join(s.strip("\n") + "\n\n" for s in stanzas if not s.startswith(f"Package: {package}\n"))


def status_differs_by_hook_only(mm_root: Path, forge_root: Path) -> bool:
    """The two status files are the same but for mmdebstrap's usr-is-merged stanza (forge's set lacks it)."""
    try:
        mm = (mm_root / STATUS.lstrip("/")).read_text()
        forge = (forge_root / STATUS.lstrip("/")).read_text()
    except OSError:
        return False
    return f"Package: {HOOK_STANZA}\n" not in forge and without_stanza(mm, HOOK_STANZA) == without_stanza(
        forge, HOOK_STANZA)


SHADOW = "/etc/shadow"


def without_days(shadow: str) -> list[list[str]]:
    """/etc/shadow's rows with the last-change day (the build day) blanked (pure)."""
    return [[*f[:2], "", *f[3:]] for f in (line.split(":") for line in shadow.splitlines())]


def shadow_differs_by_day_only(mm_root: Path, forge_root: Path) -> bool:
    try:
        mm = (mm_root / SHADOW.lstrip("/")).read_text()
        forge = (forge_root / SHADOW.lstrip("/")).read_text()
    except OSError:
        return False
    return without_days(mm) == without_days(forge)


def compare(name: str, mm: dict[str, Meta], forge: dict[str, Meta]) -> Comparison:
    both = mm.keys() & forge.keys()
    different = sorted((p, "; ".join(mm[p].differences(forge[p]))) for p in both if mm[p] != forge[p])
    return Comparison(name, len(both) - len(different), sorted(mm.keys() - both), sorted(forge.keys() - both),
                      different)


def run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise RuntimeError(f"{what}: {last}")


def mmdebstrap(s: PackageSet, out: Path, suite: str, mirrors: list[str], arch: str, debs: Path) -> None:
    include = s.packages if s.essential else (*s.packages, *EXTRA)
    argv = ["mmdebstrap", "--mode=root", "--format=directory", f"--architectures={arch}", "--quiet",
            f"--variant={'essential' if s.essential else 'custom'}", MERGED_USR, "--include=" + ",".join(include),
            "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives",
            f"--setup-hook=sync-in {debs} /var/cache/apt/archives/",
            "--skip=essential/unlink", f"--customize-hook=sync-out /var/cache/apt/archives {debs}",
            "--customize-hook=rm -f \"$1\"/var/cache/apt/archives/*.deb",
            suite, str(out), *mirrors]
    run(argv, f"mmdebstrap {s.name}")


def forge(s: PackageSet, out: Path, work: Path, cache: Path | None, arch: str) -> None:
    recipe = work / f"{s.name}.toml"
    include = s.packages if s.essential else (*s.packages, *EXTRA)
    pkgs = ", ".join(f'"{p}"' for p in include)
    recipe.write_text(f'packages = [{pkgs}]\nessential = {"true" if s.essential else "false"}\n'
                      f'[image]\nname = "fidelity/{s.name.replace("+", "-")}"\ntag = "x"\narchitecture = "{arch}"\n'
                      '[paths]\nprofile = "full"\n')
    argv = [sys.executable, "-m", "rootfs_forge", "compose", str(recipe), "-o", str(out), "--format", "rootfs",
            "-q"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if cache is not None:
        env["FORGE_CACHE"] = str(cache)
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=work)
    if proc.returncode != 0:
        raise RuntimeError(f"forge {s.name}: {(proc.stderr.strip().splitlines() or ['failed'])[-1]}")


IMPORTS = "ssl, json, asyncio, sqlite3, decimal, email.parser, http.client, logging, argparse"


def import_times(roots: tuple[Path, Path], runs: int = 15) -> tuple[float, float]:
    """Median seconds python3 in each root (chroot, -B: writes nothing) takes to import ``IMPORTS``; the two
    trees take turns, so that a change in the machine's load falls on both."""
    code = f"import time; t = time.perf_counter(); import {IMPORTS}; print(time.perf_counter() - t)"
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for root, out in zip(roots, times, strict=True):
            proc = subprocess.run(["chroot", str(root), "python3", "-B", "-c", code], capture_output=True,
                                  text=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
            if proc.returncode != 0:
                raise RuntimeError(f"python3 in {root}: {(proc.stderr.strip().splitlines() or ['failed'])[-1]}")
            out.append(float(proc.stdout))
    first, second = (sorted(t)[len(t) // 2] for t in times)
    return first, second


def table(rows: list[Comparison]) -> str:
    head = f"{'set':<16} {'identical':>9} {'only mm':>8} {'only forge':>10} {'different':>9} {'unexplained':>11}"
    lines = [head, "-" * len(head)]
    for c in rows:
        unexplained = sum(1 for r, _, _ in c.explained() if r == UNEXPLAINED)
        lines.append(f"{c.name:<16} {c.identical:>9} {len(c.only_mm):>8} {len(c.only_forge):>10} "
                     f"{len(c.different):>9} {unexplained:>11}")
    return "\n".join(lines)


def report(c: Comparison, verbose: bool, summary: bool, emit: Callable[[str], None]) -> None:
    by_reason: Counter[str] = Counter(r for r, _, _ in c.explained())
    emit(f"\n{c.name}: " + ("; ".join(f"{n} {r.split(' (')[0]}" for r, n in sorted(by_reason.items()))
                             or "no differences"))
    for reason, path, what in c.explained():
        if (reason == UNEXPLAINED and not summary) or verbose:
            emit(f"  {path}: {what} [{reason}]")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="*", help="only these sets (names as in the table)")
    ap.add_argument("--arch", default="amd64")
    ap.add_argument("--cache-dir", type=Path, help="forge's cache (default: a fresh one per run of this script)")
    ap.add_argument("--keep", action="store_true", help="keep the trees (their directory is printed)")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every explained difference too")
    ap.add_argument("--summary", action="store_true", help="counts per reason only (bench/run_all, README)")
    args = ap.parse_args()
    if os.geteuid() != 0 or shutil.which("mmdebstrap") is None:
        print("bench/fidelity.py: needs root and mmdebstrap", file=sys.stderr)
        return 2
    entries = host_sources()
    suite = next(e.suite for e in entries if not e.flat and "-" not in e.suite)
    mirrors = mirror_lines(entries)
    sets = [s for s in SETS if not args.sets or s.name in args.sets]
    work = Path(tempfile.mkdtemp(prefix="forge-bench-fidelity-"))
    debs = work / "debs"
    debs.mkdir()
    rows: list[Comparison] = []
    timed: tuple[float, float] | None = None
    try:
        for s in sets:
            print(f"== {s.name}", file=sys.stderr, flush=True)
            mm_out, forge_out = work / f"mm-{s.name}", work / f"forge-{s.name}"
            mm_out.mkdir()
            try:
                mmdebstrap(s, mm_out, suite, mirrors, args.arch, debs)
                forge(s, forge_out, work, args.cache_dir or work / "cache", args.arch)
            except RuntimeError as exc:
                print(f"{s.name}: skipped: {exc}", file=sys.stderr)
                continue
            row = compare(s.name, scan(mm_out), scan(forge_out))
            if status_differs_by_hook_only(mm_out, forge_out):  # checked, so the reason may cover it
                row.different = [(p, HOOK_WHAT if p == STATUS else w) for p, w in row.different]
            if shadow_differs_by_day_only(mm_out, forge_out):
                row.different = [(p, DAY_WHAT if p == SHADOW else w) for p, w in row.different]
            rows.append(row)
            if s.name == "python3":
                timed = import_times((forge_out, mm_out))
        print(f"fidelity vs mmdebstrap ({suite} {args.arch}; paths compared by type, mode, owner, link target, "
              "size, sha256, xattrs)\n")
        print(table(rows))
        if timed is not None:
            print(f"\npython3 -c 'import {IMPORTS}' in the python3 trees (median of 15, taking turns, chroot): forge "
                  f"{timed[0] * 1000:.0f} ms, mmdebstrap {timed[1] * 1000:.0f} ms ({timed[0] / timed[1]:.2f}x)")
        for c in rows:
            report(c, args.verbose, args.summary, print)
    finally:
        if args.keep:
            print(f"trees kept in {work}", file=sys.stderr)
        else:
            for child in work.iterdir():
                remove_tree(child)
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
