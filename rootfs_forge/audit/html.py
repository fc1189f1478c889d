"""``forge audit TARGET --html REPORT.html``: one self-contained page people look at.

Sections: a zoomable treemap of the bytes (package -> directory -> file) with what the path filters and
``[slim]`` removed shown apart; the why-graph (requested packages -> dependencies, edges labelled with the
relation, the largest contributors highlighted, and what removing each package would save); the dynamic-linking
check; unowned files; setuid/setgid files and file capabilities; licences; the package list.

Nothing in the page is fetched: styles, data and the small click-to-zoom script are inline, the graph is inline
SVG. Every string from the image is escaped (HTML text, attributes, and ``</`` inside the JSON data).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from typing import Any

from rootfs_forge.audit.forgemeta import MANIFEST, read_manifest
from rootfs_forge.audit.graph import Saving, WhyGraph, human, largest, render_svg, savings, why_graph
from rootfs_forge.audit.licenses import split_synopsis
from rootfs_forge.audit.privileges import Privileged, privileged_files
from rootfs_forge.audit.report import AuditReport
from rootfs_forge.audit.treemap import CANVAS, byte_tree, layout
from rootfs_forge.audit.view import Node, read_bytes, resolve

HIGHLIGHT = 5  # how many of the largest contributors the graph highlights
MAX_GRAPH = 200  # packages drawn in the why-graph (the largest); the savings table covers them all
LIST_LIMIT = 500  # rows per list before "… N more"

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#1d2329;
background:#fafbfc}
header{background:#17324d;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#c9d6e3}
main{padding:8px 24px 40px;max-width:1280px}
section{margin:22px 0}h2{font-size:17px;border-bottom:1px solid #d8dee4;padding-bottom:4px}
.facts{display:flex;flex-wrap:wrap;gap:10px}.fact{background:#fff;border:1px solid #d8dee4;border-radius:6px;
padding:8px 12px}.fact b{display:block;font-size:18px}
.bad{color:#b3261e;font-weight:600}.ok{color:#1e7b34;font-weight:600}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #d8dee4;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#eef1f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.missing td{background:#fde8e6;color:#b3261e}
tr.added td{background:#e6f6e6}tr.removed td{background:#fbeaea}tr.changed td{background:#fff4dc}
div.crumbs{margin:6px 0;font-size:13px}div.crumbs a{color:#1f5fa8;cursor:pointer;text-decoration:underline}
svg.tm{width:100%;height:auto;background:#fff;border:1px solid #d8dee4;display:block}
svg.tm rect{stroke:#fff;stroke-width:1}svg.tm g.zoom{cursor:zoom-in}svg.tm text{pointer-events:none;
font-size:12px;fill:#10171e}svg.tm text.sub{font-size:10px;fill:#3a444e}
.graph{overflow:auto;background:#fff;border:1px solid #d8dee4;max-height:900px}
.graph svg{display:block;max-width:100%;height:auto}.graph.full svg{max-width:none}
button{font:inherit;margin:4px 0}
details summary{cursor:pointer}code{font-size:12px}.muted{color:#5d6a76}
.legend span{display:inline-block;padding:1px 8px;margin-right:8px;border-radius:3px}
"""

SCRIPT = """
(function(){
var NS='http://www.w3.org/2000/svg';
function human(n){var neg=n<0;n=Math.abs(n);var u=['B','KiB','MiB','GiB'],i=0;while(n>=1024&&i<3){n/=1024;i++;}
return (neg?'-':'')+(i?n.toFixed(1)+' '+u[i]:n+' B');}
function el(name,attrs,parent){var e=document.createElementNS(NS,name);
for(var k in attrs)e.setAttribute(k,attrs[k]);parent.appendChild(e);return e;}
function treemap(svg){
 var rows=JSON.parse(document.getElementById(svg.getAttribute('data-rows')).textContent);
 var crumbs=document.getElementById(svg.getAttribute('data-crumbs'));
 var vb=svg.viewBox.baseVal,W=vb.width,H=vb.height,base=+(svg.getAttribute('data-hue')||-1);
 var kids=rows.map(function(){return [];});
 rows.forEach(function(r,i){if(r[2]>=0)kids[r[2]].push(i);});
 var top=rows.map(function(){return -1;});
 rows.forEach(function(r,i){top[i]=r[2]<=0?i:top[r[2]];});
 function color(i,depth){var h=base>=0?base:(top[i]*137.5)%%360;var l=Math.min(90,62+depth*9+(base>=0?(top[i]%%4)*4:0));
  return rows[i][7]===3?'hsl(0,0%%,'+(l+4)+'%%)':'hsl('+h.toFixed(0)+',55%%,'+l+'%%)';}
 function path(i){var p=[];while(i>=0){p.unshift(i);i=rows[i][2];}return p;}
 function draw(node){
  while(svg.firstChild)svg.removeChild(svg.firstChild);
  svg.setAttribute('data-node',rows[node][0]);
  kids[node].forEach(function(c){
   var r=rows[c],x=r[3]*W,y=r[4]*H,w=r[5]*W,h=r[6]*H;
   var g=el('g',{'class':kids[c].length?'zoom item':'item','data-name':r[0]},svg);
   el('title',{},g).textContent=r[0]+' \u2014 '+human(r[1]);
   el('rect',{x:x,y:y,width:Math.max(w,0),height:Math.max(h,0),fill:color(c,0)},g);
   kids[c].forEach(function(k){var s=rows[k];
    el('rect',{x:x+s[3]*w,y:y+s[4]*h,width:s[5]*w,height:s[6]*h,fill:color(k,1),'fill-opacity':0.85},g);});
   if(w>60&&h>30){var t=el('text',{x:x+4,y:y+14},g);
    t.textContent=r[0].length*7>w?r[0].slice(0,Math.floor(w/7)-1)+'\u2026':r[0];
    var s=el('text',{x:x+4,y:y+27,'class':'sub'},g);s.textContent=human(r[1]);}
   if(kids[c].length)g.addEventListener('click',function(){draw(c);});
  });
  if(!crumbs)return;
  while(crumbs.firstChild)crumbs.removeChild(crumbs.firstChild);
  path(node).forEach(function(i,n,all){
   if(n)crumbs.appendChild(document.createTextNode(' \u203a '));
   if(n<all.length-1){var a=document.createElement('a');a.textContent=rows[i][0];
    a.addEventListener('click',function(){draw(i);});crumbs.appendChild(a);}
   else{var b=document.createElement('b');b.textContent=rows[i][0]+' ('+human(rows[i][1])+')';
    crumbs.appendChild(b);}
  });
 }
 draw(0);
}
Array.prototype.forEach.call(document.querySelectorAll('svg[data-rows]'),treemap);
var gb=document.getElementById('graph-size'),gd=document.getElementById('why-graph');
if(gb&&gd)gb.addEventListener('click',function(){var full=gd.classList.toggle('full');
 gb.textContent=full?'fit to width':'actual size';});
})();
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _json_script(data: object) -> str:
    # no "<" at all inside the script element: neither "</script>" nor "<!--<script" can change how it parses
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")


def _table(head: Sequence[str], rows: Iterable[Sequence[object]], classes: Sequence[str] = (),
           numeric: Iterable[int] = ()) -> str:
    nums = set(numeric)
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    for i, row in enumerate(rows):
        cls = f' class="{_e(classes[i])}"' if i < len(classes) and classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(f'<td{" class=n" if j in nums else ""}>{_e(c)}</td>'
                                          for j, c in enumerate(row)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _path_list(paths: Sequence[str], empty: str) -> str:
    if not paths:
        return f"<p class=ok>{_e(empty)}</p>"
    items = "".join(f"<li><code>{_e(p)}</code></li>" for p in paths[:LIST_LIMIT])
    more = f"<li class=muted>… {len(paths) - LIST_LIMIT} more</li>" if len(paths) > LIST_LIMIT else ""
    return f"<ul>{items}{more}</ul>"


Files = list[tuple[str, int]]


def _groups(report: AuditReport, nodes: dict[str, Node], forge_files: Iterable[str]) -> dict[str, Files]:
    groups: dict[str, Files] = {}
    for key, paths in report.inventory.kept_files.items():
        files = [(p, nodes[p].size) for p in paths if p in nodes and nodes[p].kind == "file"]
        if files:
            groups[key] = files
    unowned = [(p, nodes[p].size) for p in report.inventory.unowned if nodes[p].kind == "file"]
    if unowned:
        groups["(no package)"] = unowned
    forge = [(p, nodes[p].size) for p in sorted(forge_files) if p in nodes and nodes[p].kind == "file"]
    if forge:
        groups["(written by forge)"] = forge
    return groups


def _raw_manifest(report: AuditReport) -> dict[str, Any]:
    view = report.target.view
    node = view.lstat(MANIFEST)
    if node is None or node.kind != "file":
        return {}
    try:
        data = json.loads(read_bytes(view, MANIFEST))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def removed_section(report: AuditReport) -> str:
    """What never made it into the image: the path filters' drops per package and ``[slim]``'s removals."""
    raw = _raw_manifest(report)
    if not report.forge:
        return ("<p class=muted>Not a forge image: what was removed before the image was written is not "
                "recorded in it.</p>")
    manifest = read_manifest(report.target.view)
    removed = {f"{key} (path filters)": d.bytes for key, d in (manifest.dropped.items() if manifest else ()) if d.bytes}
    slim = raw.get("slim") if isinstance(raw.get("slim"), dict) else None
    if slim and int(slim.get("removed_bytes") or 0) > 0:
        removed["[slim]"] = int(slim["removed_bytes"])
    total = sum(removed.values())
    if not total:
        return "<p>Nothing was removed by path filters or <code>[slim]</code>.</p>"
    tree = byte_tree({k: [("/" + k, v)] for k, v in removed.items()}, "removed")
    rows = layout(tree, (CANVAS[0], 160.0)).rows
    w, h = CANVAS[0], 160.0
    rects = []
    for r in rows:
        if r[2] != 0:
            continue
        x, y = float(r[3]) * w, float(r[4]) * h
        rw, rh = float(r[5]) * w, float(r[6]) * h
        label = (f'<text x="{x + 4:.1f}" y="{y + 14:.1f}">{_e(r[0])}</text>'
                 f'<text class=sub x="{x + 4:.1f}" y="{y + 27:.1f}">{_e(human(int(r[1])))}</text>'
                 if rw > 90 and rh > 30 else "")
        rects.append(f'<g class="removed" data-name="{_e(r[0])}"><title>{_e(r[0])} — {_e(human(int(r[1])))}'
                     f'</title><rect x="{x:.1f}" y="{y:.1f}" width="{rw:.1f}" height="{rh:.1f}" fill="#c9ced4"/>'
                     f"{label}</g>")
    svg = (f'<svg class=tm id=removed viewBox="0 0 {w:.0f} {h:.0f}" xmlns="http://www.w3.org/2000/svg">'
           + "".join(rects) + "</svg>")
    return (f"<p>Not in the image: {_e(human(total))} removed before it was written "
            f"(path filters and <code>[slim]</code>), shown apart from the image's own bytes.</p>{svg}")


def why_section(graph: WhyGraph, saved: dict[str, Saving], *, forge: bool) -> str:
    top = sorted(saved.values(), key=lambda s: (-s.bytes, s.package))
    highlight = sorted(graph.nodes, key=lambda k: (-graph.nodes[k], k))[:HIGHLIGHT]
    tips = {k: f"{k}: {human(graph.nodes.get(k, 0))}; without it: -{human(s.bytes)} "
               f"({len(s.packages)} package{'s' if len(s.packages) != 1 else ''})" for k, s in saved.items()}
    drawn = largest(graph, MAX_GRAPH)
    svg, engine = render_svg(drawn, highlight=highlight, tooltips=tips)
    cut = (f" Only the {len(drawn.nodes)} largest of {len(graph.nodes)} packages are drawn."
           if len(drawn.nodes) < len(graph.nodes) else "")
    source = ("forge's why-graph (the resolver's record)" if forge
              else "reverse Depends/Pre-Depends in the dpkg database (no forge why-graph in this tree)")
    rows = [[s.package, human(graph.nodes.get(s.package, 0)), human(s.bytes), len(s.packages),
             ", ".join(p.split(":", 1)[0] for p in s.packages[1:8]) + (" …" if len(s.packages) > 8 else "")]
            for s in top[:25]]
    return (f"<p>From {_e(source)}; laid out by {_e(engine)}. Requested packages have a double border; the "
            f"{len(highlight)} largest contributors (by their own bytes in the image) are "
            f'<span style="background:#ffb347;padding:0 4px">highlighted</span>. Hover a box or edge for '
            f"details.{_e(cut)}</p><button type=button id=graph-size>actual size</button>"
            f"<div class=graph id=why-graph data-engine={_e(engine)}>{svg}</div>"
            f"<h3>What would I save without X?</h3><p class=muted>The closure only X needs: X and every package no "
            f"longer reachable from the requested ones once X is gone.</p>"
            + _table(["package", "own size", "saved without it", "packages", "goes with it"], rows,
                     numeric=(1, 2, 3)))


def linking_section(report: AuditReport) -> str:
    closure = report.closure
    rows = [[m.kind, m.name, ", ".join(m.needed_by)] for m in closure.missing]
    head = (f"<p>ELF objects checked: {len(closure.checked)}; missing: "
            f"<span class={'bad' if closure.missing else 'ok'}>{len(closure.missing)}</span></p>")
    missing = _table(["kind", "missing", "needed by"], rows, classes=["missing"] * len(rows)) if rows else ""
    unused = closure.unused_libraries
    dl = (f"<details><summary>{len(unused)} shared libraries nothing links to (possibly dlopen()ed)</summary>"
          f"{_path_list(list(unused), '')}</details>") if unused else "<p>Every shared library is linked to.</p>"
    return head + missing + dl


def privileges_section(found: Sequence[Privileged]) -> str:
    if not found:
        return "<p class=ok>No setuid or setgid files and no file capabilities.</p>"
    rows = [[p.path, "setuid" if p.setuid else "", "setgid" if p.setgid else "", p.capabilities] for p in found]
    return _table(["path", "setuid", "setgid", "capabilities"], rows)


def license_names(text: str) -> list[str]:
    """The Debian short names in a machine-readable ``copyright`` file (every ``License:`` synopsis), in order.

    A light line scan rather than a full parse: the report only shows names (``forge sbom`` does the full job).
    """
    if not text.lstrip().lower().startswith("format:"):
        return []
    names: list[str] = []
    for line in text.splitlines():
        if line[:8].lower() == "license:":
            for name in split_synopsis(line[8:].strip()):
                if name and name not in names:
                    names.append(name)
    return names


def license_names_of(report: AuditReport) -> dict[str, list[str]]:
    """Package name -> Debian licence short names from its copyright file ([] when none is machine-readable)."""
    view = report.target.view
    out: dict[str, list[str]] = {}
    for pkg in report.packages:
        real = resolve(view, f"/usr/share/doc/{pkg.name}/copyright")
        node = view.lstat(real) if real else None
        text = read_bytes(view, real).decode("utf-8", "replace") if real and node and node.kind == "file" else ""
        out[pkg.name] = license_names(text) if text else []
    return out


def licenses_section(report: AuditReport) -> str:
    names = license_names_of(report)
    rows = [[name, ", ".join(found) if found else "(no machine-readable copyright file)"]
            for name, found in names.items()]
    return _table(["package", "licences (Debian short names)"], rows)


def packages_section(report: AuditReport) -> str:
    rows = [[u.name, u.version, u.architecture, human(u.bytes), f"{u.files_kept}/{u.files_shipped}"]
            for u in report.inventory.packages]
    return _table(["package", "version", "arch", "size", "files kept/shipped"], rows, numeric=(3, 4))


def zoomable_treemap(rows: list[list[Any]], name: str, label: str, *, hue: int = -1,
                     canvas: tuple[float, float] = CANVAS) -> str:
    """A treemap drawn (and zoomed) by the page's script from ``rows`` (laid out on ``canvas``)."""
    w, h = canvas
    return (f'<div id="{name}-crumbs" class=crumbs></div><svg class=tm id="{name}" data-rows="{name}-data" '
            f'data-crumbs="{name}-crumbs" data-hue="{hue}" viewBox="0 0 {w:.0f} {h:.0f}" '
            f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(label)}"></svg>'
            f'<script type="application/json" id="{name}-data">{_json_script(rows)}</script>')


def treemap_section(report: AuditReport, nodes: dict[str, Node], forge_files: Iterable[str]) -> str:
    rows = layout(byte_tree(_groups(report, nodes, forge_files), "image")).rows
    return ("<p>Click a rectangle to zoom into it (package → directory → file); the path above the map zooms "
            "back out.</p>" + zoomable_treemap(rows, "treemap", "treemap of the image bytes"))


def summary(report: AuditReport) -> str:
    t = report.target
    os_name = " ".join(report.os_release.get(k, "") for k in ("ID", "VERSION_ID")).strip() or "unknown OS"
    facts = [("packages", len(report.inventory.packages)), ("files", report.sizes.total_files),
             ("bytes", human(report.sizes.total_bytes)), ("OS", os_name),
             ("missing libraries", len(report.closure.missing)), ("unowned files", len(report.inventory.unowned))]
    if t.layers:
        facts.append(("layers", len(t.layers)))
    if report.sizes.saved_bytes is not None:
        facts.append(("removed by path filters", human(report.sizes.saved_bytes)))
    return "<div class=facts>" + "".join(f"<div class=fact><b>{_e(v)}</b>{_e(k)}</div>" for k, v in facts) + "</div>"


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]], *, script: bool = True) -> str:
    """The whole document: ``sections`` are (id, heading, inner HTML)."""
    body = "\n".join(f'<section id="{_e(sid)}"><h2>{_e(head)}</h2>\n{inner}\n</section>'
                     for sid, head, inner in sections)
    js = f"<script>{SCRIPT % {}}</script>" if script else ""
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'; '
            "script-src 'unsafe-inline'; img-src data:\">"
            f"<meta name=viewport content=\"width=device-width\"><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body><header><h1>{_e(title)}</h1><p>{_e(subtitle)}</p></header>"
            f"<main>{body}</main>{js}</body></html>\n")


def audit_html(report: AuditReport) -> str:
    view = report.target.view
    nodes = dict(view.walk())
    manifest = read_manifest(view)
    sizes = {f"{u.name}:{u.architecture}": u.bytes for u in report.inventory.packages}
    graph = why_graph(manifest.why if manifest else None, list(report.packages), sizes)
    saved = savings(graph)
    t = report.target
    title = f"forge audit: {t.spec}"
    subtitle = (f"{t.kind}{' ' + t.ref if t.ref else ''} · {len(report.inventory.packages)} packages · "
                f"{human(report.sizes.total_bytes)} in {report.sizes.total_files} files")
    sections = [
        ("summary", "Summary", summary(report)),
        ("treemap-section", "Where the bytes are",
         treemap_section(report, nodes, manifest.files if manifest else ())),
        ("removed-section", "Removed before the image was written", removed_section(report)),
        ("why-section", "Why each package is there",
         why_section(graph, saved, forge=bool(manifest and manifest.why))),
        ("linking", "Dynamic linking", linking_section(report)),
        ("unowned", "Files owned by no package", _path_list(list(report.inventory.unowned), "None.")),
        ("privileges", "setuid, setgid and file capabilities", privileges_section(privileged_files(view, nodes))),
        ("licenses", "Licences", licenses_section(report)),
        ("packages", "Packages", packages_section(report)),
    ]
    return page(title, subtitle, sections)
