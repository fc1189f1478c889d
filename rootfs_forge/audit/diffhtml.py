"""``forge diff A B --html REPORT.html``: what changed between two targets, in the form of the audit report.

Treemaps of the bytes that arrived or grew (by B's packages) and of those that left or shrank (by A's), the
package changes with their sizes, B's why-graph with the added and upgraded packages coloured, and the changes in
the dynamic-linking check, unowned files, setuid/setgid files and capabilities, licences, files and layers.
A lock file side has packages only; the sections that need a tree say so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rootfs_forge.audit.diff import DiffReport, Side
from rootfs_forge.audit.forgemeta import read_manifest
from rootfs_forge.audit.graph import human, largest, render_svg, why_graph
from rootfs_forge.audit.html import (
    LIST_LIMIT,
    MAX_GRAPH,
    _e,
    _path_list,
    _table,
    license_names_of,
    page,
    zoomable_treemap,
)
from rootfs_forge.audit.privileges import privileged_files
from rootfs_forge.audit.report import AuditReport, audit_target
from rootfs_forge.audit.target import Target
from rootfs_forge.audit.treemap import CANVAS, byte_tree, layout

ADDED, CHANGED = "#9be39b", "#ffd27f"


def _report(side: Side) -> AuditReport | None:
    if side.view is None:
        return None
    return audit_target(Target(side.spec, side.kind, side.view, side.layers))


def _owners(report: AuditReport) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, paths in report.inventory.kept_files.items():
        for p in paths:
            out.setdefault(p, key)
    return out


def _grouped(files: Iterable[tuple[str, int]], owners: dict[str, str]) -> dict[str, list[tuple[str, int]]]:
    groups: dict[str, list[tuple[str, int]]] = {}
    for path, size in files:
        if size > 0:
            groups.setdefault(owners.get(path, "(no package)"), []).append((path, size))
    return groups


def _bytes_section(diff: DiffReport, ra: AuditReport, rb: AuditReport) -> str:
    grown = [*diff.files_added, *((p, b - a) for p, a, b in diff.files_changed if b > a)]
    shrunk = [*diff.files_removed, *((p, a - b) for p, a, b in diff.files_changed if a > b)]
    parts = [f"<p>Bytes {'+' if diff.bytes_delta >= 0 else '-'}{_e(human(abs(diff.bytes_delta)))} in all: "
             f"{_e(human(sum(s for _, s in grown)))} arrived or grew, {_e(human(sum(s for _, s in shrunk)))} left "
             f"or shrank. Click a rectangle to zoom (package → directory → file).</p>"]
    largest = max(sum(s for _, s in grown), sum(s for _, s in shrunk), 1)
    for title, files, owners, name, hue in (("Arrived or grew (by B's packages)", grown, _owners(rb), "grown", 130),
                                            ("Left or shrank (by A's packages)", shrunk, _owners(ra), "shrunk", 0)):
        parts.append(f"<h3>{_e(title)}</h3>")
        if not files:
            parts.append("<p class=muted>Nothing.</p>")
            continue
        # the two maps share one scale: the smaller change gets the smaller map
        canvas = (CANVAS[0], max(120.0, round(CANVAS[1] * sum(s for _, s in files) / largest)))
        rows = layout(byte_tree(_grouped(files, owners), name), canvas).rows
        parts.append(zoomable_treemap(rows, name, title, hue=hue, canvas=canvas))
    return "".join(parts)


def _packages_section(diff: DiffReport, ra: AuditReport | None, rb: AuditReport | None) -> str:
    size_a = {f"{u.name}:{u.architecture}": u.bytes for u in ra.inventory.packages} if ra else {}
    size_b = {f"{u.name}:{u.architecture}": u.bytes for u in rb.inventory.packages} if rb else {}

    def size(table: dict[str, int], key: str) -> str:
        return human(table[key]) if key in table else ""

    rows: list[list[object]] = []
    classes: list[str] = []
    for key, version in diff.added:
        rows.append(["+", key, "", version, "", size(size_b, key)])
        classes.append("added")
    for key, version in diff.removed:
        rows.append(["-", key, version, "", size(size_a, key), ""])
        classes.append("removed")
    for key, old, new in diff.changed:
        rows.append(["~", key, old, new, size(size_a, key), size(size_b, key)])
        classes.append("changed")
    head = (f"<p>{len(diff.added)} added, {len(diff.removed)} removed, {len(diff.changed)} changed "
            f"(A: {len(diff.a.packages)} packages, B: {len(diff.b.packages)}).</p>")
    if not rows:
        return head
    return head + _table(["", "package", "A version", "B version", "A size", "B size"], rows, classes=classes,
                         numeric=(4, 5))


def _graph_section(diff: DiffReport, rb: AuditReport) -> str:
    manifest = read_manifest(rb.target.view)
    sizes = {f"{u.name}:{u.architecture}": u.bytes for u in rb.inventory.packages}
    graph = why_graph(manifest.why if manifest else None, list(rb.packages), sizes)
    colors = {k: ADDED for k, _ in diff.added}
    colors.update({k: CHANGED for k, _, _ in diff.changed})
    tips = {k: f"{k}: {human(graph.nodes.get(k, 0))}" for k in graph.nodes}
    svg, engine = render_svg(largest(graph, MAX_GRAPH), tooltips=tips, colors=colors)
    gone = ", ".join(k for k, _ in diff.removed) or "none"
    return (f'<p>B\'s why-graph (laid out by {_e(engine)}): <span style="background:{ADDED};padding:0 4px">added'
            f'</span> and <span style="background:{CHANGED};padding:0 4px">changed version</span> packages '
            f"coloured. Removed from A: {_e(gone)}.</p><button type=button id=graph-size>actual size</button>"
            f"<div class=graph id=why-graph data-engine={_e(engine)}>{svg}</div>")


def _set_change(title: str, before: Sequence[str], after: Sequence[str], *, bad_when_new: bool = False) -> str:
    new = sorted(set(after) - set(before))
    gone = sorted(set(before) - set(after))
    cls = " class=bad" if bad_when_new and new else ""
    out = [f"<p{cls}>{_e(title)}: {len(new)} new in B, {len(gone)} gone (A: {len(before)}, B: {len(after)})</p>"]
    if new:
        out.append("<h4>new in B</h4>" + _path_list(new, ""))
    if gone:
        out.append("<h4>gone</h4>" + _path_list(gone, ""))
    return "".join(out)


def _linking_section(ra: AuditReport, rb: AuditReport) -> str:
    def missing(r: AuditReport) -> list[str]:
        return [f"{m.kind} {m.name} (needed by {', '.join(m.needed_by)})" for m in r.closure.missing]

    a_names = {m.name for m in ra.closure.missing}
    rows = [[m.kind, m.name, ", ".join(m.needed_by)] for m in rb.closure.missing if m.name not in a_names]
    fixed = [m.name for m in ra.closure.missing if m.name not in {x.name for x in rb.closure.missing}]
    out = [f"<p>Missing libraries: A {len(ra.closure.missing)}, B "
           f"<span class={'bad' if rb.closure.missing else 'ok'}>{len(rb.closure.missing)}</span>; "
           f"{len(rows)} new in B, {len(fixed)} fixed.</p>"]
    if rows:
        out.append(_table(["kind", "missing in B", "needed by"], rows, classes=["missing"] * len(rows)))
    if fixed:
        out.append("<h4>fixed in B</h4>" + _path_list(fixed, ""))
    out.append(_set_change("Shared libraries nothing links to (possibly dlopen()ed)", ra.closure.unused_libraries,
                           rb.closure.unused_libraries))
    return "".join(out)


def _privileges(report: AuditReport) -> list[str]:
    nodes = dict(report.target.view.walk())
    out = []
    for p in privileged_files(report.target.view, nodes):
        flags = [x for x in ("setuid" if p.setuid else "", "setgid" if p.setgid else "", p.capabilities) if x]
        out.append(f"{p.path} [{' '.join(flags)}]")
    return out


def _licenses_section(ra: AuditReport, rb: AuditReport) -> str:
    la, lb = license_names_of(ra), license_names_of(rb)
    rows = [[k, ", ".join(la.get(k, [])) or "—", ", ".join(lb.get(k, [])) or "—"]
            for k in sorted(set(la) | set(lb)) if la.get(k) != lb.get(k)]
    all_a = {n for names in la.values() for n in names}
    all_b = {n for names in lb.values() for n in names}
    new = sorted(all_b - all_a)
    head = f"<p>Licences new in B: {_e(', '.join(new) or 'none')}.</p>"
    return head + (_table(["package", "A", "B"], rows) if rows else "<p>No package's licences changed.</p>")


def _files_section(diff: DiffReport) -> str:
    def lst(items: list[str]) -> str:
        return _path_list(items, "None.")

    added = [f"{p} ({human(n)})" for p, n in diff.files_added]
    removed = [f"{p} ({human(n)})" for p, n in diff.files_removed]
    changed = [f"{p} ({human(a)} → {human(b)})" for p, a, b in diff.files_changed]
    return (f"<p>{len(added)} added, {len(removed)} removed, {len(changed)} changed"
            f"{f' (lists cut at {LIST_LIMIT})' if max(len(added), len(removed), len(changed)) > LIST_LIMIT else ''}"
            f".</p><details><summary>added</summary>{lst(added)}</details><details><summary>removed</summary>"
            f"{lst(removed)}</details><details><summary>changed</summary>{lst(changed)}</details>")


def _layers_section(diff: DiffReport) -> str:
    if diff.shared_layers is None:
        return "<p class=muted>Not two images.</p>"
    shared = set(diff.shared_layers)
    rows = [[d, "shared" if d in shared else "A only"] for d in diff.a.layers]
    rows += [[d, "B only"] for d in diff.b.layers if d not in shared]
    return (f"<p>{len(shared)} shared of {len(diff.a.layers)} (A) and {len(diff.b.layers)} (B).</p>"
            + _table(["layer", ""], rows))


def diff_html(diff: DiffReport) -> str:
    ra, rb = _report(diff.a), _report(diff.b)
    sides = f"A = {diff.a.spec} ({diff.a.kind}) · B = {diff.b.spec} ({diff.b.kind})"
    facts: list[tuple[str, object]] = [("packages added", len(diff.added)), ("removed", len(diff.removed)),
                                       ("changed", len(diff.changed))]
    if diff.compared_files:
        facts += [("files added", len(diff.files_added)), ("files removed", len(diff.files_removed)),
                  ("files changed", len(diff.files_changed)),
                  ("bytes", ("+" if diff.bytes_delta >= 0 else "-") + human(abs(diff.bytes_delta)))]
    if diff.shared_layers is not None:
        facts.append(("layers shared", len(diff.shared_layers)))
    summary = "<div class=facts>" + "".join(f"<div class=fact><b>{_e(v)}</b>{_e(k)}</div>" for k, v in facts) + \
        "</div>"
    no_tree = "<p class=muted>Needs two trees or images (a lock file has packages only).</p>"
    sections: list[tuple[str, str, str]] = [("summary", "Summary", summary)]
    if ra and rb:
        sections.append(("bytes-section", "Where the bytes changed", _bytes_section(diff, ra, rb)))
    sections.append(("packages", "Packages", _packages_section(diff, ra, rb)))
    if rb:
        sections.append(("why-section", "Why each package of B is there", _graph_section(diff, rb)))
    if ra and rb:
        sections += [
            ("linking", "Dynamic linking", _linking_section(ra, rb)),
            ("unowned", "Files owned by no package",
             _set_change("Unowned files", ra.inventory.unowned, rb.inventory.unowned)),
            ("privileges", "setuid, setgid and file capabilities",
             _set_change("Privileged files", _privileges(ra), _privileges(rb), bad_when_new=True)),
            ("licenses", "Licences", _licenses_section(ra, rb)),
            ("files", "Files", _files_section(diff)),
        ]
    else:
        sections.append(("trees", "Files, linking, licences", no_tree))
    sections.append(("layers", "Layers", _layers_section(diff)))
    return page(f"forge diff: {diff.a.spec} → {diff.b.spec}", sides, sections)
