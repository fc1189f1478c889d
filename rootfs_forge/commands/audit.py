"""``forge audit``, ``forge sbom`` and ``forge diff``: thin wiring of :mod:`rootfs_forge.audit`."""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
from pathlib import Path
from typing import Any

from rootfs_forge.commands.fmt import human_size
from rootfs_forge.commands.platform_arg import add_target_args
from rootfs_forge.util.arch import debian_arch
from rootfs_forge.util.canonical import canonical_json

FAIL_CONDITIONS = ("missing-libs", "unowned-files")
PLATFORM_HELP = ("the platform to read from a multi-platform image or reference: linux/amd64, linux/arm64/v8, "
                 "arm64 ... (default: the host's, said in one line on stderr)")


def register(sub: Any) -> None:
    p = sub.add_parser("audit", help="inventory, sizes, ELF closure and why-chains of an image or rootfs",
                       description="Audit TARGET: a rootfs directory, a rootfs tarball, an OCI image layout "
                                   "or oci-archive (PATH[:TAG]), or a registry reference "
                                   "(REGISTRY/REPO[:TAG|@DIGEST]).")
    p.add_argument("target", metavar="TARGET")
    p.add_argument("--json", action="store_true", help="print the full report as canonical JSON")
    p.add_argument("--fail-on", default="", metavar="LIST",
                   help=f"exit 1 when any of these holds (comma-separated): {', '.join(FAIL_CONDITIONS)}")
    p.add_argument("--top", type=int, default=10, metavar="N", help="how many largest packages/files to list")
    p.add_argument("--why", metavar="PKG", help="explain why PKG is in the target")
    add_target_args(p, PLATFORM_HELP)
    p.add_argument("--html", metavar="REPORT.html",
                   help="also write a self-contained HTML report (treemap, why-graph, linking, licences)")
    p.set_defaults(func=cmd_audit)

    s = sub.add_parser("sbom", help="write an SPDX 2.3 or CycloneDX 1.5 SBOM of an image or rootfs")
    s.add_argument("target", metavar="TARGET")
    s.add_argument("--format", choices=("spdx", "cyclonedx"), default="spdx")
    s.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    add_target_args(s, PLATFORM_HELP)
    s.set_defaults(func=cmd_sbom)

    d = sub.add_parser("diff", help="packages, files and layers that differ between two images, trees or locks")
    d.add_argument("a", metavar="A")
    d.add_argument("b", metavar="B")
    d.add_argument("--json", action="store_true", help="print canonical JSON")
    add_target_args(d, PLATFORM_HELP)
    d.add_argument("--html", metavar="REPORT.html",
                   help="also write a self-contained HTML report of what changed (treemaps, why-graph, …)")
    d.set_defaults(func=cmd_diff)


def _quiet_libraries() -> None:
    # python-debian logs a warning for every copyright file whose Format URL is spelled http://
    logging.getLogger("debian.copyright").setLevel(logging.ERROR)


def _canonical(data: object) -> str:
    return canonical_json(data, ensure_ascii=True).decode()


def host_arch() -> str:
    """The host's Debian architecture name."""
    return debian_arch(platform.machine())


def _arch(args: argparse.Namespace) -> str:
    """``--platform`` as given ("" reads the host's platform of a multi-platform image and says so)."""
    return str(getattr(args, "platform", "") or "")


def say_note(target: Any) -> None:
    """The one line a reader has for the user (which of several platforms it read), on stderr."""
    note = getattr(target, "note", "")
    if note:
        print(f"forge: {target.spec}: {note}", file=sys.stderr)



def _table(rows: list[list[str]], right: set[int] | None = None) -> list[str]:
    if not rows:
        return []
    right = right or set()
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            .rstrip() for r in rows]


def cmd_audit(args: argparse.Namespace) -> int:
    from rootfs_forge.audit.report import audit_target
    from rootfs_forge.audit.target import open_target
    from rootfs_forge.errors import AuditError

    conditions = [c.strip() for c in args.fail_on.split(",") if c.strip()]
    unknown = sorted(set(conditions) - set(FAIL_CONDITIONS))
    if unknown:
        raise AuditError("use", f"--fail-on {','.join(unknown)}",
                         f"unknown condition (known: {', '.join(FAIL_CONDITIONS)})")
    if args.top < 0:
        raise AuditError("use", f"--top {args.top}", "must be zero or more")
    target = open_target(args.target, arch=_arch(args), insecure=args.insecure)
    say_note(target)
    report = audit_target(target, top=args.top, why=args.why)
    if args.html:  # first: a reader of the listing that stops early (| head) must not cost the report
        from rootfs_forge.audit.html import audit_html

        write_output(args.html, audit_html(report))
    if args.json:
        print(_canonical(report.as_dict()))
    else:
        print("\n".join(_audit_lines(report, args.top)))
    failures = []
    if "missing-libs" in conditions and report.closure.missing:
        first = report.closure.missing[0]
        failures.append(f"{len(report.closure.missing)} missing librar"
                        f"{'y' if len(report.closure.missing) == 1 else 'ies'} "
                        f"({first.name} needed by {first.needed_by[0]})")
    if "unowned-files" in conditions and report.inventory.unowned:
        failures.append(f"{len(report.inventory.unowned)} unowned file(s) (first: {report.inventory.unowned[0]})")
    if failures:
        print(f"forge: audit of {args.target} failed: {'; '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def _audit_lines(report: Any, top: int) -> list[str]:
    target = report.target
    os_name = " ".join(report.os_release.get(k, "") for k in ("ID", "VERSION_ID")).strip() or "unknown OS"
    sizes = report.sizes
    lines = [f"{target.spec}: {target.kind}{' ' + target.ref if target.ref else ''}, {os_name}, "
             f"{len(report.inventory.packages)} packages, {sizes.total_files} files, {human_size(sizes.total_bytes)}"]
    if target.layers:
        lines.append(f"layers: {len(target.layers)}")
    rows = [["PACKAGE", "VERSION", "ARCH", "SIZE", "FILES KEPT/SHIPPED"]]
    rows += [[u.name, u.version, u.architecture, human_size(u.bytes), f"{u.files_kept}/{u.files_shipped}"]
             for u in report.inventory.packages]
    lines += ["", *_table(rows, {3})]
    if sizes.largest_packages:
        lines += ["", f"largest packages (top {top}):"]
        lines += ["  " + r for r in _table([[k, human_size(b)] for k, b in sizes.largest_packages], {1})]
    if sizes.largest_files:
        lines += ["", f"largest files (top {top}):"]
        lines += ["  " + r for r in _table([[p, human_size(b)] for p, b in sizes.largest_files], {1})]
    if sizes.saved_bytes is not None:
        lines += ["", f"path filters saved {sizes.saved_files} files, {human_size(sizes.saved_bytes)}"]
        lines += ["  " + r for r in _table([[k, f"{f} files", human_size(b)] for k, f, b in sizes.saved_by_package],
                                           {1, 2})]
    unowned = report.inventory.unowned
    lines += ["", f"files owned by no package: {len(unowned)}"]
    lines += [f"  {p}" for p in unowned[:top]] + ([f"  … {len(unowned) - top} more"] if len(unowned) > top else [])
    privileged = report.privileged
    lines += ["", f"setuid/setgid files and file capabilities: {len(privileged)}"]
    lines += [f"  {p.path}" + "".join(f" {flag}" for flag, on in (("setuid", p.setuid), ("setgid", p.setgid)) if on)
              + (f" {p.capabilities}" if p.capabilities else "") for p in privileged]
    closure = report.closure
    lines += ["", f"ELF objects checked: {len(closure.checked)}; missing: {len(closure.missing)}"]
    for m in closure.missing:
        lines.append(f"  MISSING {m.kind} {m.name}, needed by: {', '.join(m.needed_by)}")
    unused = closure.unused_libraries
    if unused:
        lines.append(f"shared libraries nothing links to (possibly dlopen()ed): {len(unused)}")
        lines += [f"  {p}" for p in unused[:top]] + ([f"  … {len(unused) - top} more"] if len(unused) > top else [])
    if report.why is not None:
        lines += ["", f"why {report.why_package}:"]
        if not report.why:
            lines.append("  no chain found")
        for chain in report.why:
            parts = [chain[0].package] if chain else []
            parts += [f"← {link.parent} [{link.relation}]" if link.parent else f"({link.relation})" for link in chain]
            lines.append("  " + " ".join(parts))
    return lines


def cmd_sbom(args: argparse.Namespace) -> int:
    from rootfs_forge.audit.report import sbom_input
    from rootfs_forge.audit.sbom import cyclonedx_document, spdx_document
    from rootfs_forge.audit.target import open_target, split_spec
    from rootfs_forge.errors import AuditError

    _quiet_libraries()
    from rootfs_forge.errors import ForgeError
    from rootfs_forge.util.env import source_date_epoch

    try:
        epoch = source_date_epoch()
    except ForgeError as exc:
        raise AuditError(exc.verb, exc.obj, exc.reason) from None
    target = open_target(args.target, arch=_arch(args), insecure=args.insecure)
    say_note(target)
    path, tag = split_spec(args.target)
    name = os.path.basename(os.path.normpath(path)) + (f":{tag}" if tag else "")
    inp = sbom_input(target, name=name, source_date_epoch=epoch)
    doc = spdx_document(inp) if args.format == "spdx" else cyclonedx_document(inp)
    text = _canonical(doc) + "\n"
    if not args.output:
        sys.stdout.write(text)
        return 0
    write_output(args.output, text)
    return 0


def write_output(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (util.files), mode 0644."""
    from rootfs_forge.errors import AuditError
    from rootfs_forge.util.files import write_atomic

    try:
        write_atomic(Path(os.path.abspath(path)), text.encode())
    except OSError as exc:
        raise AuditError("write", path, exc.strerror or str(exc)) from None


def cmd_diff(args: argparse.Namespace) -> int:
    from rootfs_forge.audit.diff import diff_sides, open_side

    arch = _arch(args)
    a, b = open_side(args.a, arch=arch, insecure=args.insecure), open_side(args.b, arch=arch, insecure=args.insecure)
    say_note(a)
    say_note(b)
    report = diff_sides(a, b)
    if args.html:
        from rootfs_forge.audit.diffhtml import diff_html

        write_output(args.html, diff_html(report))
    if args.json:
        print(_canonical(report.as_dict()))
        return 0
    lines = [f"packages: +{len(report.added)} -{len(report.removed)} ~{len(report.changed)}"]
    lines += [f"  + {k} {v}" for k, v in report.added]
    lines += [f"  - {k} {v}" for k, v in report.removed]
    lines += [f"  ~ {k} {a} -> {b}" for k, a, b in report.changed]
    if report.compared_files:
        lines += ["", f"files: +{len(report.files_added)} -{len(report.files_removed)} ~{len(report.files_changed)}"
                      f", bytes {'+' if report.bytes_delta >= 0 else '-'}{human_size(abs(report.bytes_delta))}"]
        lines += [f"  + {p} ({human_size(n)})" for p, n in report.files_added]
        lines += [f"  - {p} ({human_size(n)})" for p, n in report.files_removed]
        lines += [f"  ~ {p} ({human_size(a)} -> {human_size(b)})" for p, a, b in report.files_changed]
    if report.shared_layers is not None:
        lines += ["", f"layers shared: {len(report.shared_layers)} of {len(report.a.layers)} / {len(report.b.layers)}"]
        lines += [f"  = {d}" for d in report.shared_layers]
    print("\n".join(lines))
    return 0
