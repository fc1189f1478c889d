#!/usr/bin/env python3
"""Resolver fidelity: forge's closure vs apt's choice for the same one-package request, plus validity.

For a fixed-seed random sample of the main suite's amd64 index plus ten common packages, resolve each name with
forge (in-process) and with ``apt-get install -s --no-install-recommends`` in a scratch dir (empty dpkg status,
the very same sources). Every forge closure is checked independently: in Python (each Depends/Pre-Depends group
satisfied inside the set, no Conflicts/Breaks inside it, one version per name) and with ``dose-debcheck`` over a
Packages file of exactly the chosen stanzas plus a meta package depending on all of them (so the set must be
co-installable as a whole, not just each package alone). Prints one summary and then every difference,
explained. Targets (printed, not asserted): 100 % valid, >= 95 % identical.

Run from the project root: ``python3 bench/resolver_vs_apt.py [--sample N] [--seed S] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._apt import AptRun, ReferenceApt, chain
from rootfs_forge.archive.sources import SourceEntry, host_sources
from rootfs_forge.errors import ForgeError
from rootfs_forge.index.context import Context
from rootfs_forge.index.packages import PackageIndex
from rootfs_forge.index.scan import decompress, scan_stanzas
from rootfs_forge.model import Package, Resolution, ResolveRequest
from rootfs_forge.resolve.relations import (
    Atom,
    Group,
    group_text,
    provide_satisfies,
    provides,
    relations,
    version_satisfies,
)
from rootfs_forge.resolve.search import resolve
from rootfs_forge.resolve.why import why_chains

COMMON = ("python3", "curl", "openssh-server", "nginx", "postgresql-15", "git", "perl", "ca-certificates", "tzdata",
          "busybox")
MERGED_USR = "merged-usr: forge picks usr-is-merged by design"
ALREADY = "apt picks an alternative already installed in its simulation"
VIRTUAL = "virtual provider choice"
ALTERNATIVE = "alternative choice (another member of an or-group)"
VERSION = "version differs (index skew between the two downloads)"
FAILS = "only one side finds a solution"
TIE = "forge refuses to guess between providers apt's own order breaks ties for (forge policy: name one in prefer)"
_TIE_RE = re.compile(r"which (.+?) provide equally")
UNEXPLAINED = "unexplained"


# ---- independent validity check -----------------------------------------------------------------------
def _arch_ok(atom: Atom, t: Package, native: str) -> bool:
    if atom.archqual == "any":
        return t.multi_arch == "allowed"
    if atom.archqual in (None, "native"):
        return t.architecture in (native, "all")
    return t.architecture in (atom.archqual, "all")


def satisfiers(atom: Atom, pool: Iterable[Package], native: str) -> list[Package]:
    """Packages of ``pool`` that satisfy ``atom`` by name or by a Provides entry."""
    out = []
    for t in pool:
        if not _arch_ok(atom, t, native):
            continue
        by_name = t.name == atom.name and version_satisfies(t.version, atom.op, atom.version)
        if by_name or any(pr.name == atom.name and provide_satisfies(pr, atom) for pr in provides(t)):
            out.append(t)
    return out


def group_satisfiers(group: Group, pool: Sequence[Package], native: str) -> list[Package]:
    seen: dict[str, Package] = {}
    for atom in group:
        for t in satisfiers(atom, pool, native):
            seen.setdefault(t.name, t)
    return list(seen.values())


def self_check(pkgs: Sequence[Package], native: str) -> list[str]:
    """Every problem of ``pkgs`` as an installed set, sorted; empty means valid."""
    problems: list[str] = []
    names: dict[str, list[str]] = {}
    for p in pkgs:
        names.setdefault(p.name, []).append(p.version)
        if p.architecture not in (native, "all"):
            problems.append(f"{p.name} is {p.architecture}, not {native}")
    problems += [f"{n} chosen in several versions: {', '.join(v)}" for n, v in names.items() if len(v) > 1]
    for p in pkgs:
        for fld in ("Pre-Depends", "Depends"):
            for group in relations(p, fld):
                if not group_satisfiers(group, pkgs, native):
                    problems.append(f"{p.name} {fld}: {group_text(group)} is not satisfied inside the set")
        for fld in ("Conflicts", "Breaks"):
            for group in relations(p, fld):
                for atom in group:
                    for q in satisfiers(Atom(atom.name, None, atom.op, atom.version), pkgs, native):
                        if q.name != p.name:
                            problems.append(f"{p.name} {fld}: {atom} hits {q.name} {q.version}")
    return sorted(set(problems))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def packages_file(pkgs: Sequence[Package]) -> str:
    """A Packages file of the chosen stanzas and a meta package that depends on every one of them."""
    out = []
    for p in pkgs:
        lines = [f"Package: {p.name}", f"Version: {p.version}", f"Architecture: {p.architecture}"]
        if p.multi_arch != "no":
            lines.append(f"Multi-Arch: {p.multi_arch}")
        if p.essential:
            lines.append("Essential: yes")
        for fld, value in (("Pre-Depends", p.pre_depends), ("Depends", p.depends), ("Conflicts", p.conflicts),
                           ("Breaks", p.breaks), ("Provides", p.provides)):
            if value.strip():
                lines.append(f"{fld}: {_one_line(value)}")
        out.append("\n".join(lines))
    meta = ", ".join(f"{p.name} (= {p.version})" for p in pkgs)
    out.append(f"Package: forge-closure-check\nVersion: 1\nArchitecture: all\nDepends: {meta}")
    return "\n\n".join(out) + "\n"


def dose_check(pkgs: Sequence[Package], native: str, work: Path) -> list[str]:
    """dose-debcheck's broken packages (with its reasons) in the universe of exactly ``pkgs``; empty = valid."""
    path = work / "closure.Packages"
    path.write_text(packages_file(pkgs))
    proc = subprocess.run(["dose-debcheck", "--failures", "--explain", f"--deb-native-arch={native}", str(path)],
                          capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        return [f"dose-debcheck failed: {_one_line(proc.stderr)[:300]}"]
    broken = []
    for block in re.split(r"^ -\n", proc.stdout, flags=re.M)[1:]:
        name = re.search(r"^  package: (\S+)", block, re.M)
        if name and re.search(r"^  status: broken", block, re.M):
            why = re.findall(r"(unsat-dependency|unsat-conflict): (.+)", block)
            broken.append(f"{name.group(1)}: " + "; ".join(f"{k} {v}" for k, v in why))
    return broken


# ---- one request --------------------------------------------------------------------------------------
@dataclass
class Case:
    request: str
    forge: Resolution | None = None
    forge_error: str = ""
    forge_seconds: float = 0.0
    forge_plain: Resolution | None = None  # merged_usr=False
    forge_plain_error: str = ""
    apt: AptRun | None = None
    problems: list[str] = field(default_factory=list)  # Python self-check
    dose: list[str] = field(default_factory=list)
    apt_parents: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def valid(self) -> bool | None:
        return None if self.forge is None else not (self.problems or self.dose)


def forge_versions(res: Resolution | None) -> dict[str, str] | None:
    return None if res is None else {p.name: p.version for p in res.packages}


def same(a: dict[str, str] | None, b: dict[str, str] | None) -> bool:
    return a == b  # both None: both sides say unsatisfiable


def jaccard(a: dict[str, str] | None, b: dict[str, str] | None) -> float:
    if a is None or b is None:
        return 1.0 if a is None and b is None else 0.0
    sa, sb = set(a.items()), set(b.items())
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


# ---- explaining a difference ----------------------------------------------------------------------------
@dataclass
class Divergence:
    parent: str
    relation: str
    forge: list[str]
    apt: list[str]
    kind: str


def apt_packages(index: PackageIndex, chosen: dict[str, str], native: str) -> tuple[list[Package], list[str]]:
    """apt's choice as index stanzas; names whose chosen version forge's index does not have."""
    out, missing = [], []
    for name, version in sorted(chosen.items()):
        match = [p for p in index.packages(name) if p.version == version and p.architecture in (native, "all")]
        if match:
            out.append(match[0])
        else:
            missing.append(f"{name} {version}")
    return out, missing


def divergences(fpkgs: Sequence[Package], apkgs: Sequence[Package], parents: dict[str, tuple[str, str]],
                native: str) -> list[Divergence]:
    """Relation groups of packages both sides install (same version) that the two sides satisfy disjointly."""
    fby = {p.name: p for p in fpkgs}
    aby = {p.name: p for p in apkgs}
    out = []
    for name in sorted(fby.keys() & aby.keys()):
        p = fby[name]
        if p.version != aby[name].version:
            continue
        for fld in ("Pre-Depends", "Depends"):
            for group in relations(p, fld):
                sf = group_satisfiers(group, fpkgs, native)
                sa = group_satisfiers(group, apkgs, native)
                if {q.name for q in sf} & {q.name for q in sa} or not sf or not sa:
                    continue
                names = {q.name for q in sf + sa}
                by_name = {a.name for a in group}
                if names & {"usrmerge", "usr-is-merged"}:
                    kind = MERGED_USR
                elif any(parents.get(q.name, ("(requested)", ""))[0] != name for q in sa):
                    kind = ALREADY
                elif not names <= by_name:
                    kind = VIRTUAL
                else:
                    kind = ALTERNATIVE
                out.append(Divergence(name, f"{fld}: {group_text(group)}", sorted(q.name for q in sf),
                                      sorted(q.name for q in sa), kind))
    return out


def explain(case: Case, index: PackageIndex, native: str) -> dict[str, Any]:
    """A JSON-able explanation of one differing request."""
    fv = forge_versions(case.forge)
    av = case.apt.chosen if case.apt else None
    doc: dict[str, Any] = {"request": case.request}
    if fv is None or av is None:
        doc["kinds"] = [FAILS]
        doc["forge"] = case.forge_error or f"{len(fv or {})} packages"
        doc["apt"] = (case.apt.error if case.apt else "") or f"{len(av or {})} packages"
        tie = _TIE_RE.search(case.forge_error)
        if tie and av is not None:
            tied = [n.strip().split(":")[0] for n in tie.group(1).split(",")]
            doc["kinds"] = [TIE]
            doc["apt"] += f"; apt installs {', '.join(n for n in tied if n in av) or 'none of the tied providers'}"
            for n in tied:
                if n in av:
                    doc["apt"] += f" via {' -> '.join(chain(case.apt_parents, n))}"
        return doc
    assert case.forge is not None
    fpkgs = list(case.forge.packages)
    apkgs, missing = apt_packages(index, av, native)
    divs = divergences(fpkgs, apkgs, case.apt_parents, native)
    only_f = sorted(fv.keys() - av.keys())
    only_a = sorted(av.keys() - fv.keys())
    vers = sorted(n for n in fv.keys() & av.keys() if fv[n] != av[n])
    roots_f = {n for d in divs for n in d.forge}
    roots_a = {n for d in divs for n in d.apt}
    kinds = {d.kind for d in divs}
    if vers or missing:
        kinds.add(VERSION)
    plus = []
    for n in only_f:
        chains = why_chains(case.forge, n, limit=3)
        via = " -> ".join(k.split(":")[0] for k in chains[0]) if chains else "(no chain)"
        key = next(p.key for p in case.forge.packages if p.name == n)
        parents_f = {r.parent.split(":")[0] for r in case.forge.why.get(key, ()) if r.parent is not None}
        role = "choice" if n in roots_f else ("pulled in by a forge-only package" if parents_f <= set(only_f)
                                               else UNEXPLAINED)
        if role == UNEXPLAINED:
            kinds.add(UNEXPLAINED)
        plus.append({"package": n, "version": fv[n], "why": via, "role": role})
    minus = []
    for n in only_a:
        via = " -> ".join(chain(case.apt_parents, n))
        par = case.apt_parents.get(n, ("", ""))[0]
        role = "choice" if n in roots_a else ("pulled in by an apt-only package" if par in only_a
                                               else UNEXPLAINED)
        if role == UNEXPLAINED:
            kinds.add(UNEXPLAINED)
        minus.append({"package": n, "version": av[n], "why": via, "role": role})
    doc.update({
        "kinds": sorted(kinds),
        "forge_only": plus,
        "apt_only": minus,
        "versions": [{"package": n, "forge": fv[n], "apt": av[n]} for n in vers],
        "missing_in_forge_index": missing,
        "choices": [{"parent": d.parent, "relation": d.relation, "forge": d.forge, "apt": d.apt, "kind": d.kind}
                    for d in divs],
        "plain_identical": same(forge_versions(case.forge_plain), av),
    })
    return doc


# ---- the run ----------------------------------------------------------------------------------------------
def index_names(ctx: Context, entries: Sequence[SourceEntry], arch: str) -> list[str]:
    """Every package name of the index files (a plain scan of the verified Packages text)."""
    names: set[str] = set()
    for f in ctx.index_files(entries, [arch]):
        text = decompress(ctx.cache.blob_path(f.sha256).read_bytes(), f.compression, f.label)
        names.update(n for n in scan_stanzas(text).names if n)
    return sorted(names)


def run_case(name: str, index: PackageIndex, apt: ReferenceApt, arch: str, work: Path) -> Case:
    case = Case(name)
    req = ResolveRequest(packages=(name,), architecture=arch)
    t = time.perf_counter()
    try:
        case.forge = resolve(index, req)
    except ForgeError as exc:
        case.forge_error = str(exc)
    case.forge_seconds = time.perf_counter() - t
    try:
        case.forge_plain = resolve(index, replace(req, merged_usr=False))
    except ForgeError as exc:
        case.forge_plain_error = str(exc)
    case.apt = apt.run([name])
    if case.forge is not None:
        case.problems = self_check(case.forge.packages, arch)
        case.dose = dose_check(case.forge.packages, arch, work)
    if not same(forge_versions(case.forge), case.apt.chosen) and case.apt.chosen is not None:
        case.apt_parents = apt.parents([name])
    return case


def summarize(cases: Sequence[Case], index: PackageIndex, arch: str) -> dict[str, Any]:
    n = len(cases)
    solved = [c for c in cases if c.forge is not None]
    valid = [c for c in solved if c.valid]
    ident = [c for c in cases if same(forge_versions(c.forge), c.apt.chosen if c.apt else None)]
    ident_plain = [c for c in cases if same(forge_versions(c.forge_plain), c.apt.chosen if c.apt else None)]
    both = [c for c in cases if c.forge is not None and c.apt is not None and c.apt.chosen is not None]
    dcount, dsize = [], []
    for c in both:
        assert c.forge is not None and c.apt is not None and c.apt.chosen is not None
        apkgs, _ = apt_packages(index, c.apt.chosen, arch)
        dcount.append(len(c.forge.packages) - len(c.apt.chosen))
        dsize.append(sum(p.installed_size for p in c.forge.packages) - sum(p.installed_size for p in apkgs))
    diffs = [explain(c, index, arch) for c in cases if c not in ident]
    kinds: dict[str, int] = {}
    for d in diffs:
        for k in d["kinds"]:
            kinds[k] = kinds.get(k, 0) + 1
    return {
        "requests": n,
        "forge_solved": len(solved),
        "apt_solved": sum(1 for c in cases if c.apt and c.apt.chosen is not None),
        "valid": len(valid),
        "valid_pct": 100.0 * len(valid) / len(solved) if solved else 0.0,
        "identical": len(ident),
        "identical_pct": 100.0 * len(ident) / n if n else 0.0,
        "identical_merged_usr_false": len(ident_plain),
        "identical_merged_usr_false_pct": 100.0 * len(ident_plain) / n if n else 0.0,
        "differences_merged_usr_false": n - len(ident_plain),
        "median_jaccard": statistics.median(jaccard(forge_versions(c.forge), c.apt.chosen if c.apt else None)
                                            for c in cases) if cases else 0.0,
        "mean_count_diff": statistics.mean(dcount) if dcount else 0.0,
        "mean_installed_size_diff_kib": statistics.mean(dsize) if dsize else 0.0,
        "median_forge_s": statistics.median(c.forge_seconds for c in cases) if cases else 0.0,
        "median_apt_s": statistics.median(c.apt.seconds for c in cases if c.apt) if cases else 0.0,
        "difference_kinds": kinds,
        "invalid": [{"request": c.request, "self_check": c.problems, "dose": c.dose} for c in solved if not c.valid],
        "differences": diffs,
    }


def print_report(s: dict[str, Any], header: str) -> None:
    print(header)
    rows = [
        ("requests (random sample + common)", f"{s['requests']}"),
        ("solved: forge / apt", f"{s['forge_solved']} / {s['apt_solved']}"),
        ("valid forge closures (self-check and dose-debcheck; target 100 %)",
         f"{s['valid']}/{s['forge_solved']} = {s['valid_pct']:.1f} %"),
        ("identical to apt, merged_usr=True (default; target >= 95 %)",
         f"{s['identical']}/{s['requests']} = {s['identical_pct']:.1f} %"),
        ("identical to apt, merged_usr=False",
         f"{s['identical_merged_usr_false']}/{s['requests']} = {s['identical_merged_usr_false_pct']:.1f} %"),
        ("median Jaccard similarity (name=version)", f"{s['median_jaccard']:.3f}"),
        ("mean size difference forge - apt: packages", f"{s['mean_count_diff']:+.2f}"),
        ("mean size difference forge - apt: Installed-Size KiB", f"{s['mean_installed_size_diff_kib']:+.0f}"),
        ("median time: forge resolve (in-process) / apt-get install -s",
         f"{s['median_forge_s'] * 1000:.1f} ms / {s['median_apt_s'] * 1000:.0f} ms = "
         f"{s['median_apt_s'] / max(s['median_forge_s'], 1e-9):.0f}x"),
    ]
    for label, value in rows:
        print(f"  {label:70} {value}")
    kinds: dict[str, int] = s["difference_kinds"]
    if kinds:
        print("differing requests by kind (a request may have several):")
        for kind, count in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"  {count:4}  {kind}")
    for inv in s["invalid"]:
        print(f"INVALID {inv['request']}:")
        for line in [*inv["self_check"], *(f"dose: {d}" for d in inv["dose"])]:
            print(f"    {line}")
    diffs: list[dict[str, Any]] = s["differences"]
    if diffs:
        print("\ndifferences (+ only forge chose, - only apt chose; forge's why-chain / apt's AutoInstall chain):")
    for d in diffs:
        kinds_txt = "; ".join(d["kinds"])
        if "forge_only" not in d:
            print(f"* {d['request']}: {kinds_txt}\n    forge: {_one_line(str(d['forge']))[:400]}\n"
                  f"    apt:   {_one_line(str(d['apt']))[:400]}")
            continue
        plain = "disappears" if d["plain_identical"] else "remains"
        print(f"* {d['request']}: {kinds_txt} (with merged_usr=False the difference {plain})")
        if d["kinds"] == [MERGED_USR] and d["plain_identical"] and not d["versions"]:
            _print_merged_usr(d)
            continue
        for ch in d["choices"]:
            print(f"    choice: {ch['parent']} {ch['relation']}: forge {', '.join(ch['forge'])}, "
                  f"apt {', '.join(ch['apt'])} [{ch['kind']}]")
        for p in d["forge_only"]:
            print(f"    + {p['package']} {p['version']}  [{p['role']}]  {p['why']}")
        for p in d["apt_only"]:
            print(f"    - {p['package']} {p['version']}  [{p['role']}]  {p['why']}")
        for v in d["versions"]:
            print(f"    ~ {v['package']}: forge {v['forge']}, apt {v['apt']}")
        for m in d["missing_in_forge_index"]:
            print(f"    ? apt's {m} is not in forge's index")


def _print_merged_usr(d: dict[str, Any]) -> None:
    """The usual merged-usr difference in three lines: forge's usr-is-merged, apt's usrmerge and what it pulls."""
    for p in d["forge_only"]:
        print(f"    + {p['package']} {p['version']}  {p['why']}")
    roots = [p for p in d["apt_only"] if p["role"] == "choice"]
    rest = [p for p in d["apt_only"] if p["role"] != "choice"]
    for p in roots:
        print(f"    - {p['package']} {p['version']}  {p['why']}")
    if rest:
        print(f"    - and {len(rest)} packages apt installs only for usrmerge: "
              + ", ".join(p["package"] for p in rest))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=int, default=190, help="random packages on top of the 10 common ones")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--suite", nargs="+", default=["bookworm"],
                    help="host source suites to use on both sides (e.g. bookworm bookworm-updates bookworm-security)")
    ap.add_argument("--arch", default="amd64")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--only", nargs="+", default=None, help="compare just these packages (no sample)")
    ap.add_argument("--json", action="store_true", help="print the summary as canonical JSON")
    ap.add_argument("--progress", action="store_true", help="one line per request on stderr")
    args = ap.parse_args()

    entries = [e for e in host_sources() if e.suite in args.suite]
    missing = sorted(set(args.suite) - {e.suite for e in entries})
    if missing:
        print(f"cannot find suite {', '.join(missing)}: not in the host's apt sources", file=sys.stderr)
        return 2
    ctx = Context.create(args.cache_dir)
    index = ctx.open_index(entries, [args.arch])
    names = index_names(ctx, entries, args.arch)
    pool = [n for n in names if n not in COMMON]
    requests = [*COMMON, *sorted(random.Random(args.seed).sample(pool, min(args.sample, len(pool))))]
    if args.only:
        requests = list(args.only)
    work = Path(tempfile.mkdtemp(prefix="forge-bench-resolve-"))
    try:
        apt = ReferenceApt.for_entries(work / "apt", args.arch, entries)
        apt.update()
        apt.run(["base-files"])  # builds the package cache outside the timings
        cases = []
        for i, name in enumerate(requests, 1):
            case = run_case(name, index, apt, args.arch, work)
            cases.append(case)
            if args.progress:
                state = "same" if same(forge_versions(case.forge), case.apt.chosen if case.apt else None) else "DIFF"
                print(f"[{i}/{len(requests)}] {name}: {state} valid={case.valid}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarize(cases, index, args.arch)
    summary.update({"seed": args.seed, "suites": args.suite, "architecture": args.arch,
                    "components": sorted({c for e in entries for c in e.components})})
    if args.json:
        print(json.dumps(summary, sort_keys=True, separators=(",", ":")))
    else:
        print_report(summary, f"resolver vs apt: {' '.join(args.suite)} {','.join(summary['components'])} "
                              f"{args.arch}, " + (f"{len(requests)} named packages" if args.only else
                                           f"seed {args.seed}, {len(COMMON)} common + {args.sample} random"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
