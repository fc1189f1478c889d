"""forge audit --html, the why-graph and its savings, the treemap layout, --dot outputs, privileged files.

The browser tests open the report in Debian's headless Chromium through the DevTools protocol
(tests/support/browser.py): the DOM, the console, the network and a screenshot are checked.
"""

from __future__ import annotations

import html
import json
import os
import shlex
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rootfs_forge.audit.graph import Edge, WhyGraph, layers, render_svg, savings, short_relation, to_dot
from rootfs_forge.audit.html import audit_html, license_names
from rootfs_forge.audit.privileges import decode_capability, privileged_files
from rootfs_forge.audit.report import audit_target
from rootfs_forge.audit.target import open_target
from rootfs_forge.audit.treemap import PACKAGE, byte_tree, layout
from rootfs_forge.cli import main
from tests.conftest import source_block
from tests.support.browser import Browser, chromium, distinct_colours
from tests.support.forge import forge, forge_command, forge_env
from tests.support.repo import RepoServer, Signer
from tests.test_audit import build_host_tree


class _Refs(HTMLParser):
    """Every tag and every attribute that could make a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.fetching: list[tuple[str, str, str]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in ("src", "href", "xlink:href", "srcset", "action", "poster", "data") and value \
                    and not value.startswith(("#", "data:")):
                self.fetching.append((tag, name, value))


def assert_self_contained(page: str) -> _Refs:
    refs = _Refs()
    refs.feed(page)
    assert refs.fetching == []
    assert "link" not in refs.tags and "iframe" not in refs.tags and "img" not in refs.tags
    assert "@import" not in page and "url(" not in page and "//fonts." not in page
    return refs


# ---------------------------------------------------------------- pure parts

def test_treemap_children_tile_their_parent_and_keep_the_bytes() -> None:
    tree = byte_tree({"big:amd64": [("/usr/lib/a.so", 600), ("/usr/lib/b.so", 200), ("/usr/share/doc/c", 100)],
                      "small:all": [("/etc/x", 100)], "empty:all": [("/etc/empty", 0)]})
    assert tree.size == 1000
    rows = layout(tree).rows
    by_parent: dict[int, list[list[object]]] = {}
    for row in rows[1:]:
        by_parent.setdefault(int(row[2]), []).append(row)  # type: ignore[call-overload]
    for kids in by_parent.values():
        area = sum(float(r[5]) * float(r[6]) for r in kids)  # type: ignore[arg-type]
        assert area == pytest.approx(1.0, abs=1e-3)  # squarified children fill the parent exactly
        for r in kids:
            x, y, w, h = (float(v) for v in r[3:7])  # type: ignore[arg-type]
            assert x >= 0 and y >= 0 and x + w <= 1.0001 and y + h <= 1.0001
    top = {str(r[0]): r for r in rows if r[2] == 0}
    assert set(top) == {"big:amd64", "small:all"}  # zero-byte packages take no space
    assert top["big:amd64"][1] == 900 and top["big:amd64"][7] == PACKAGE
    # a package under /usr only opens on what is inside usr/: its directories show at once
    inside = {str(r[0]) for r in rows if r[2] == rows.index(top["big:amd64"])}
    assert inside == {"usr/lib", "usr/share/doc"}


def test_treemap_folds_the_tail_of_a_crowded_directory() -> None:
    tree = byte_tree({"many:all": [(f"/d/f{i:03}", 1000 - i) for i in range(200)]})
    rows = layout(tree, max_children=10).rows
    folded = [r for r in rows if str(r[0]).startswith("(")]
    assert [str(r[0]) for r in folded] == ["(191 more)"]
    assert int(folded[0][1]) == sum(1000 - i for i in range(9, 200))  # type: ignore[call-overload]


def _graph() -> WhyGraph:
    # app -> lib-a -> shared ; app -> lib-b -> shared ; lib-b -> only-b ; tool (requested) -> only-b
    edges = [Edge("app", "lib-a", "Depends: lib-a"), Edge("app", "lib-b", "Depends: lib-b (>= 2)"),
             Edge("lib-a", "shared", "Depends: shared"), Edge("lib-b", "shared", "Pre-Depends: shared"),
             Edge("lib-b", "only-b", "Depends: only-b | other"), Edge("lib-b", "solo", "Depends: solo")]
    nodes = {"app": 10, "lib-a": 100, "lib-b": 200, "shared": 1000, "only-b": 50, "solo": 7, "tool": 3}
    return WhyGraph(nodes, frozenset({"app", "tool"}), tuple(edges), {"app": "requested", "tool": "requested"})


def test_savings_are_the_closure_only_that_package_needs() -> None:
    saved = savings(_graph())
    assert saved["lib-b"].packages == ("lib-b", "only-b", "solo") and saved["lib-b"].bytes == 257
    assert saved["lib-a"].packages == ("lib-a",)  # shared is still needed through lib-b
    assert saved["shared"].packages == ("shared",)
    assert set(saved["app"].packages) == {"app", "lib-a", "lib-b", "shared", "only-b", "solo"}
    assert saved["tool"].packages == ("tool",)


def test_dot_text_labels_edges_and_marks_requested_and_highlighted() -> None:
    text = to_dot(_graph(), highlight=["shared"])
    assert '"lib-b" -> "only-b" [label="Depends: only-b | other"' in text
    assert '"app" -> "lib-b" [label="Depends (>= 2)"' in text  # the child's own name is not repeated
    assert '"app" [' in text and 'peripheries="2"' in text.split('"app" [', 1)[1].split("\n", 1)[0]
    assert 'fillcolor="#ffb347"' in text.split('"shared" [', 1)[1].split("\n", 1)[0]
    assert short_relation("Depends: libc6 (>= 2.34)", "libc6:amd64") == "Depends (>= 2.34)"
    if shutil.which("dot"):
        done = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True, check=False)
        assert done.returncode == 0 and "<svg" in done.stdout, done.stderr


def test_plain_layout_without_graphviz_draws_every_node_and_edge() -> None:
    svg, engine = render_svg(_graph(), prefer_dot=False)
    assert engine == "plain"
    assert svg.count('class="node"') == 7 and svg.count('class="edge"') == 6
    assert layers(_graph())[0] == ["app", "tool"] and "shared" in layers(_graph())[2]


@pytest.mark.skipif(not shutil.which("dot"), reason="needs Graphviz dot (Debian package graphviz)")
def test_graphviz_layout_is_used_when_installed() -> None:
    svg, engine = render_svg(_graph())
    assert engine == "graphviz" and svg.startswith("<svg") and 'id="pkg-lib-b"' in html.unescape(svg)


def test_capability_xattr_is_decoded() -> None:
    v2 = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)  # cap_net_raw, effective
    assert decode_capability(v2) == "cap_net_raw=ep"
    v3 = struct.pack("<IIIIII", 0x03000000, (1 << 10) | (1 << 12), 0, 0, 0, 0)
    assert decode_capability(v3) == "cap_net_bind_service,cap_net_admin=p"
    assert decode_capability(b"junk") == ""


def test_license_names_are_read_from_machine_readable_copyright() -> None:
    text = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\n"
            "License: GPL-2+ or Artistic\n\nFiles: x\nLicense: BSD-3-clause\n text\n\nLicense: GPL-2+\n body\n")
    assert license_names(text) == ["GPL-2+", "Artistic", "BSD-3-clause"]
    assert license_names("This is free software, see /usr/share/common-licenses/GPL\n") == []


# ---------------------------------------------------------------- the report from a tree

@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    build_host_tree(root)
    manifest = {
        "packages": {"zz-epoch": {"dropped_files": 7, "dropped_bytes": 12345}},
        "why": {"coreutils:amd64": [{"parent": None, "relation": "requested"}],
                "libc6:amd64": [{"parent": "coreutils:amd64", "relation": "Pre-Depends: libc6 (>= 2.34)"}],
                "libselinux1:amd64": [{"parent": "coreutils:amd64", "relation": "Pre-Depends: libselinux1"}],
                "libpcre2-8-0:amd64": [{"parent": "libselinux1:amd64", "relation": "Depends: libpcre2-8-0"}],
                "zz-epoch:all": [{"parent": None, "relation": "requested"}]},
        "slim": {"removed_files": 3, "removed_bytes": 54321},
    }
    (root / "var/lib/forge").mkdir(parents=True)
    (root / "var/lib/forge/manifest.json").write_text(json.dumps(manifest))
    return root


def test_html_report_has_every_section_and_fetches_nothing(tree: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    # something to find in each list: a setuid file, a file no package owns, a missing library
    (tree / "usr/bin/suid-helper").write_bytes(b"#!/bin/sh\n")
    os.chmod(tree / "usr/bin/suid-helper", 0o4755)
    out = tmp_path / "report.html"
    assert main(["audit", str(tree), "--html", str(out)]) == 0
    text_report = capsys.readouterr().out
    assert text_report.startswith(f"{tree}: directory")  # the usual listing is still printed
    page = out.read_text()
    refs = assert_self_contained(page)
    assert {"treemap", "treemap-data", "why-graph", "removed", "linking", "unowned", "privileges", "licenses",
            "packages"} <= refs.ids
    rows = json.loads(page.split('id="treemap-data">', 1)[1].split("</script>", 1)[0])
    top = {r[0] for r in rows if r[2] == 0}
    assert {"coreutils:amd64", "libc6:amd64", "(no package)"} <= top
    assert "zz-epoch (path filters)" in page and "[slim]" in page  # what was removed, shown apart
    removed = page.split('id="removed-section"', 1)[1].split("</section>", 1)[0]
    assert "zz-epoch (path filters)" in removed and "coreutils" not in removed
    why = html.unescape(page.split('id="why-section"', 1)[1].split("</section>", 1)[0])
    assert "libpcre2-8-0" in why and "Pre-Depends" in why
    assert "/usr/bin/suid-helper" in page.split('id="privileges"', 1)[1].split("</section>", 1)[0]
    assert "/usr/bin/suid-helper" in page.split('id="unowned"', 1)[1].split("</section>", 1)[0]
    saved = page.split("What would I save without X?", 1)[1].split("</table>", 1)[0]
    assert "libselinux1:amd64" in saved and "libpcre2-8-0" in saved  # selinux takes pcre2 with it


def test_missing_library_is_listed_in_red(tree: Path, tmp_path: Path) -> None:
    victim = next(p for p in (tree / "usr/lib").rglob("libselinux.so.1") if not p.is_symlink())
    victim.unlink()
    report = audit_target(open_target(str(tree)))
    page = audit_html(report)
    linking = page.split('id="linking"', 1)[1].split("</section>", 1)[0]
    assert '<tr class="missing">' in linking and "libselinux.so.1" in linking
    assert "class=bad" in linking


def test_file_named_like_a_script_tag_cannot_inject_into_the_report(tree: Path, tmp_path: Path) -> None:
    # no name holds a "/", but a path does: /etc/a</script><script>document.title='pwned'</script><img src=x>
    hostile = tree / "etc" / "a<" / "script><script>document.title='pwned'<" / "script><img src=x>"
    hostile.parent.mkdir(parents=True)
    hostile.write_text("zz")
    page = audit_html(audit_target(open_target(str(tree))))
    assert "</script><script>document.title" not in page
    assert page.count("<script") == 2  # the treemap data and the report's own script, nothing else
    assert_self_contained(page)
    data = page.split('id="treemap-data">', 1)[1].split("</script>", 1)[0]
    assert "a\\u003c/script>\\u003cscript>document.title='pwned'\\u003c" in data  # kept, escaped
    names = {r[0] for r in json.loads(data)}
    assert "script><img src=x>" in names
    assert any(str(n).endswith("a</script><script>document.title='pwned'<") for n in names)


def test_capabilities_in_a_tarball_are_reported(tmp_path: Path) -> None:
    import tarfile

    raw = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)
    info = tarfile.TarInfo("usr/bin/ping")
    info.size, info.mode = 1, 0o755
    info.pax_headers = {"SCHILY.xattr.security.capability": raw.decode("latin-1")}
    su = tarfile.TarInfo("usr/bin/su")
    su.size, su.mode = 1, 0o4755
    import io

    with tarfile.open(tmp_path / "t.tar", "w", format=tarfile.PAX_FORMAT, encoding="latin-1") as tar:
        tar.addfile(info, io.BytesIO(b"x"))
        tar.addfile(su, io.BytesIO(b"y"))
    target = open_target(str(tmp_path / "t.tar"))
    found = {p.path: p for p in privileged_files(target.view, dict(target.view.walk()))}
    assert found["/usr/bin/ping"].capabilities == "cap_net_raw=ep" and not found["/usr/bin/ping"].setuid
    assert found["/usr/bin/su"].setuid and found["/usr/bin/su"].capabilities == ""


def test_capabilities_on_disk_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/ping").write_bytes(b"x")
    try:
        os.setxattr(root / "usr/bin/ping", "security.capability", struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0))
    except OSError as exc:
        pytest.skip(f"cannot set security.capability here: {exc}")
    target = open_target(str(root))
    assert [(p.path, p.capabilities) for p in privileged_files(target.view, dict(target.view.walk()))] == [
        ("/usr/bin/ping", "cap_net_raw=ep")]


def test_why_dot_on_a_tree_prints_the_chains_as_graphviz(tree: Path) -> None:
    proc = forge("why", "libpcre2-8-0", str(tree), "--dot")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('digraph "why libpcre2-8-0" {')
    assert '"libselinux1:amd64" -> "libpcre2-8-0:amd64" [label="Depends"' in proc.stdout
    assert '"coreutils:amd64" -> "libselinux1:amd64"' in proc.stdout
    assert "zz-epoch" not in proc.stdout  # only the chains
    if shutil.which("dot"):
        done = subprocess.run(["dot", "-Tsvg"], input=proc.stdout, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr


def test_resolve_and_why_dot_for_a_recipe(tmp_path: Path, repo_server: RepoServer, signer: Signer,
                                          cache_dir: Path) -> None:
    r = tmp_path / "r.toml"
    r.write_text('packages = ["hello"]\n' + source_block(repo_server, signer))
    full = forge("resolve", str(r), "--dot", cache=cache_dir)
    assert full.returncode == 0, full.stderr
    assert '"hello:' in full.stdout and '-> "mawk:' in full.stdout and "[label=\"Depends: awk\"" in full.stdout
    chains = forge("why", "libc6", str(r), "--dot", cache=cache_dir)
    assert chains.returncode == 0, chains.stderr
    assert chains.stdout.startswith('digraph "why libc6"') and '"mawk:' in chains.stdout
    assert "data-all" not in chains.stdout


# ---------------------------------------------------------------- in a browser

def _check_in_browser(report: Path, expected_packages: set[str], shot: Path | None = None) -> None:
    url = report.resolve().as_uri()
    with Browser(1280, 1000) as browser:
        browser.open(url)
        names = set(browser.evaluate(
            "Array.from(document.querySelectorAll('#treemap g.item')).map(g => g.getAttribute('data-name'))"))
        assert expected_packages <= names, names
        graph_ids = set(browser.evaluate(
            "Array.from(document.querySelectorAll('#why-graph svg .node')).map(g => g.id)"))
        assert {f"pkg-{p}" for p in expected_packages} <= graph_ids, graph_ids
        # click to zoom: the biggest package opens on its directories, the crumbs lead back
        first = browser.evaluate("document.querySelector('#treemap g.zoom').getAttribute('data-name')")
        browser.evaluate("document.querySelector('#treemap g.zoom').dispatchEvent(new MouseEvent('click', "
                         "{bubbles: true}))")
        assert browser.evaluate("document.getElementById('treemap').getAttribute('data-node')") == first
        inner = browser.evaluate("document.querySelectorAll('#treemap g.item').length")
        assert inner >= 1
        browser.evaluate("document.querySelector('#treemap-crumbs a').click()")
        assert browser.evaluate("document.getElementById('treemap').getAttribute('data-node')") == "image"
        png = browser.screenshot()
        assert distinct_colours(png) > 20  # not a blank page
        if shot is not None:
            shot.write_bytes(browser.screenshot(clip_height=1000))
        assert browser.errors() == []
        assert [u for u in browser.requests() if u != url] == []


@pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium")
def test_report_of_a_tree_opens_in_chromium_without_errors_or_requests(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["audit", str(tree), "--html", str(out)]) == 0
    _check_in_browser(out, {"coreutils:amd64", "libc6:amd64"})


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium")
def test_report_of_the_python3_gallery_image_in_chromium(tmp_path: Path) -> None:
    recipes = Path(__file__).resolve().parent.parent / "recipes"
    image = tmp_path / "python3"
    proc = forge("compose", str(recipes / "python3.toml"), "--locked", "-q", "-o", str(image),
                 cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "python3.html"
    proc = forge("audit", str(image), "--html", str(out), "--arch", "amd64")
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size < 2 << 20
    _check_in_browser(out, {"python3.11-minimal:amd64", "libc6:amd64", "libssl3:amd64"})


# ---------------------------------------------------------------- forge diff --html

def test_diff_html_shows_what_changed_in_the_form_of_the_report(tree: Path, tmp_path: Path) -> None:
    b = tmp_path / "b"
    shutil.copytree(tree, b, symlinks=True)
    # B: coreutils' ls grew, a new package arrived, a setuid file appeared, libselinux is gone (-> missing)
    with open(b / "usr/bin/ls", "ab") as fh:
        fh.write(b"\0" * 50_000)
    (b / "usr/bin/new-tool").write_bytes(b"t" * 30_000)
    (b / "usr/bin/new-tool").chmod(0o4755)
    status = (b / "var/lib/dpkg/status").read_text()
    (b / "var/lib/dpkg/status").write_text(status + "\nPackage: new-pkg\nStatus: install ok installed\n"
                                           "Architecture: amd64\nVersion: 1.0\nDepends: libc6\n")
    (b / "var/lib/dpkg/info/new-pkg.list").write_text("/usr/bin/new-tool\n")
    victim = next(p for p in (b / "usr/lib").rglob("libselinux.so.1") if not p.is_symlink())
    victim.unlink()
    out = tmp_path / "diff.html"
    assert main(["diff", str(tree), str(b), "--html", str(out)]) == 0
    page = out.read_text()
    refs = assert_self_contained(page)
    assert {"grown", "grown-data", "shrunk", "shrunk-data", "why-graph", "linking", "privileges", "licenses",
            "files", "layers"} <= refs.ids

    def section(sid: str) -> str:
        return html.unescape(page.split(f'id="{sid}"', 1)[1].split("</section>", 1)[0])

    grown = json.loads(page.split('id="grown-data">', 1)[1].split("</script>", 1)[0])
    assert {r[0] for r in grown if r[2] == 0} - {"(no package)"} == {"coreutils:amd64", "new-pkg:amd64"}
    shrunk = json.loads(page.split('id="shrunk-data">', 1)[1].split("</script>", 1)[0])
    assert {r[0] for r in shrunk if r[2] == 0} == {"libselinux1:amd64"}
    packages = section("packages")
    assert '<tr class="added"><td>+</td><td>new-pkg:amd64</td>' in packages
    assert "libselinux.so.1" in section("linking") and '<tr class="missing">' in section("linking")
    assert "/usr/bin/new-tool [setuid]" in section("privileges") and "class=bad" in section("privileges")
    assert "new-pkg:amd64" in section("why-section")


def test_diff_html_of_two_lock_files_has_the_package_changes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.lock", tmp_path / "b.lock"
    a.write_text('[[package]]\nname = "x"\nversion = "1"\narchitecture = "amd64"\n')
    b.write_text('[[package]]\nname = "x"\nversion = "2"\narchitecture = "amd64"\n'
                 '[[package]]\nname = "y"\nversion = "1"\narchitecture = "all"\n')
    out = tmp_path / "diff.html"
    assert main(["diff", str(a), str(b), "--html", str(out)]) == 0
    page = out.read_text()
    assert_self_contained(page)
    assert "<td>x:amd64</td><td>1</td><td>2</td>" in page and "<td>y:all</td>" in page
    assert "a lock file has packages only" in page


@pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium")
def test_diff_report_opens_in_chromium_without_errors_or_requests(tree: Path, tmp_path: Path) -> None:
    b = tmp_path / "b"
    shutil.copytree(tree, b, symlinks=True)
    (b / "usr/share/doc/zz-epoch/README").write_text("y" * 20_000)
    (tree / "usr/bin/true").unlink()
    out = tmp_path / "diff.html"
    assert main(["diff", str(tree), str(b), "--html", str(out)]) == 0
    url = out.resolve().as_uri()
    with Browser(1280, 1000) as browser:
        browser.open(url)
        assert browser.evaluate("document.getElementById('grown').getAttribute('data-node')") == "grown"
        names = browser.evaluate("Array.from(document.querySelectorAll('#grown g.item')).map(g => g.dataset.name)")
        assert set(names) == {"zz-epoch:all", "coreutils:amd64"}
        assert distinct_colours(browser.screenshot()) > 20
        assert browser.errors() == []
        assert [u for u in browser.requests() if u != url] == []


def test_a_huge_image_gives_a_bounded_report() -> None:
    from rootfs_forge.audit.graph import largest

    tree = byte_tree({f"pkg{i}:amd64": [(f"/usr/share/p{i}/d{j}/f{k}", 100 + k) for j in range(10) for k in range(30)]
                      for i in range(200)})  # 60 000 files
    rows = layout(tree, max_rows=5000).rows
    assert len(rows) < 5000 + 48
    top_level = [r for r in rows if r[2] == 0]
    assert len(top_level) == 48 and top_level[-1][0] == "(153 more)"  # the upper levels are complete
    graph = WhyGraph({f"p{i}": i for i in range(500)}, frozenset({"p0"}),
                     tuple(Edge("p0", f"p{i}", "Depends") for i in range(1, 500)))
    small = largest(graph, 50)
    assert len(small.nodes) == 50 and min(small.nodes.values()) == 450
    assert all(e.parent in small.nodes and e.child in small.nodes for e in small.edges)


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 14).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3 * n),
    st.sets(st.integers(0, n - 1), min_size=1, max_size=3))))
def test_savings_by_dominators_equal_the_definition(case: tuple[int, list[tuple[int, int]], set[int]]) -> None:
    from rootfs_forge.audit.graph import savings_brute_force

    n, pairs, roots = case
    graph = WhyGraph({f"p{i}": i + 1 for i in range(n)}, frozenset(f"p{r}" for r in roots),
                     tuple(Edge(f"p{a}", f"p{b}", "Depends") for a, b in sorted(set(pairs)) if a != b))
    assert savings(graph) == savings_brute_force(graph)


@pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium")
def test_the_browser_check_sees_requests_and_errors(tmp_path: Path) -> None:
    """The checks above can fail: a page that fetches and logs an error is caught (and a blank one is blank)."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><img src='http://127.0.0.1:9/x.png'>"
                    "<script>console.error('boom')</script></body></html>")
    with Browser(640, 480) as browser:
        browser.open(page.resolve().as_uri())
        assert "http://127.0.0.1:9/x.png" in browser.requests()
        assert any("boom" in e for e in browser.errors())
        blank = tmp_path / "blank.html"
        blank.write_text("<!DOCTYPE html><html><body style='background:#fff'></body></html>")
        browser.events.clear()
        browser.send("Page.navigate", {"url": blank.resolve().as_uri()})
        browser.wait_for("Page.loadEventFired")
        assert distinct_colours(browser.screenshot()) == 1


def test_report_is_written_even_when_the_listing_reader_stops_early(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    command = shlex.join(forge_command("audit", str(tree), "--html", str(out)))  # a real process: a pipe closes
    proc = subprocess.run(f"{command} | head -1", shell=True, capture_output=True, text=True, env=forge_env())
    assert proc.returncode == 0 and proc.stdout.startswith(f"{tree}: directory"), proc.stderr
    assert out.stat().st_size > 10_000 and out.read_text().rstrip().endswith("</html>")
