"""The resolver, driven by the data cases in tests/resolve_cases/*.toml, plus properties no table can show."""

from __future__ import annotations

import hashlib
import itertools
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from rootfs_forge.errors import ForgeError, IndexError_, ResolveError
from rootfs_forge.model import MemoryIndex, Package, Reason, Resolution, ResolveRequest
from rootfs_forge.resolve.relations import Atom, compare_versions, parse_field, provides, relations, version_satisfies
from rootfs_forge.resolve.search import ResolveEvent, install_order, resolve
from rootfs_forge.resolve.why import resolution_table, why_chains

CASES_DIR = Path(__file__).parent / "resolve_cases"


def stanza(d: dict[str, Any]) -> Package:
    d = dict(d)
    d.setdefault("architecture", "amd64")
    d.setdefault("filename", f"pool/{d['name']}_{d['version']}_{d['architecture']}.deb")
    d.setdefault("size", 1000)
    d.setdefault("sha256", hashlib.sha256(f"{d['name']} {d['version']} {d['architecture']}".encode()).hexdigest())
    d.setdefault("suite", "stable")
    return Package(**d)


def request_of(case: dict[str, Any]) -> ResolveRequest:
    return ResolveRequest(
        packages=tuple(case["request"]),
        architecture=case.get("architecture", "amd64"),
        foreign_architectures=tuple(case.get("foreign", ())),
        recommends=case.get("recommends", False),
        essential=case.get("essential", False),
        prefer=tuple(case.get("prefer", ())),
        exclude=tuple(case.get("exclude", ())),
        strategy=case.get("strategy", "apt"),
        merged_usr=case.get("merged_usr", True),
        suite_priority=tuple(case.get("suite_priority", {}).items()),
    )


def load_cases() -> list[Any]:
    out = []
    for path in sorted(CASES_DIR.glob("*.toml")):
        for case in tomllib.loads(path.read_text())["case"]:
            out.append(pytest.param(case, id=f"{path.stem}-{case['name']}"))
    return out


def chosen(res: Resolution) -> list[str]:
    return sorted(f"{p.name}={p.version}:{p.architecture}" for p in res.packages)


def index_orders(stanzas: list[Package]) -> list[list[Package]]:
    """The given order, reversed and every rotation: results must not depend on index order."""
    orders = [stanzas, stanzas[::-1]]
    orders += [stanzas[i:] + stanzas[:i] for i in range(1, len(stanzas))]
    return orders


@pytest.mark.parametrize("case", load_cases())
def test_case(case: dict[str, Any]) -> None:
    stanzas = [stanza(s) for s in case["index"]]
    req = request_of(case)
    assert ("expect" in case) != ("error" in case), "a case expects either a set or an error"
    for order in index_orders(stanzas):
        index = MemoryIndex(order)
        if "error" in case:
            with pytest.raises(ForgeError) as info:
                resolve(index, req)
            message = str(info.value)
            assert case["error"] in message
            assert "\n" not in message
            continue
        res = resolve(index, req)
        assert chosen(res) == sorted(case["expect"])
        for note in case.get("notes", ()):
            assert any(note in n for n in res.notes), (note, res.notes)
        if "order" in case:
            assert [k for k in res.order if k in case["order"]] == case["order"]
        check_resolution_shape(res, req)


def check_resolution_shape(res: Resolution, req: ResolveRequest) -> None:
    keys = [p.key for p in res.packages]
    assert keys == [p.key for p in sorted(res.packages, key=lambda p: (p.name, p.architecture))]
    assert sorted(res.order) == sorted(keys)
    assert set(res.why) == set(keys)
    for key, reasons in res.why.items():
        assert reasons, key
        assert why_chains(res, key), f"{key} has no chain back to a requested package"
    assert all(any(r.parent is None for r in res.why[k]) for k in res.requested)
    assert len(res.requested) <= len(req.packages)


# ---- properties of the result ----------------------------------------------------------------------------
def _res(stanzas: list[dict[str, Any]], *names: str, **kw: Any) -> Resolution:
    return resolve(MemoryIndex(stanza(s) for s in stanzas),
                   ResolveRequest(packages=names, architecture="amd64", **kw))


def test_order_puts_dependencies_first_and_keeps_cycles_together() -> None:
    res = _res([
        {"name": "app", "version": "1", "depends": "libb, tool"},
        {"name": "libb", "version": "1", "depends": "libc6"},
        {"name": "libc6", "version": "1", "depends": "libgcc"},
        {"name": "libgcc", "version": "1", "depends": "libc6"},
        {"name": "tool", "version": "1", "pre_depends": "libc6"},
    ], "app")
    pos = {k: i for i, k in enumerate(res.order)}
    assert pos["libc6:amd64"] < pos["libb:amd64"] < pos["app:amd64"]
    assert pos["libgcc:amd64"] < pos["libb:amd64"]
    assert pos["tool:amd64"] < pos["app:amd64"]
    assert res.order[-1] == "app:amd64"


def test_order_honours_pre_depends_inside_a_cycle() -> None:
    # z pre-depends on a, a depends on z: a cycle; by name z would come last anyway, so use names against it
    deps = {"a": {"z"}, "z": {"a"}}
    assert install_order(deps, {("a", "z")}) == ["z", "a"]
    assert install_order(deps, {("z", "a")}) == ["a", "z"]
    assert install_order(deps, set()) == ["a", "z"]


def test_order_is_a_topological_order_for_every_edge_outside_cycles() -> None:
    deps = {"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set(), "e": {"a"}, "f": set()}
    order = install_order(deps, set())
    for k, ds in deps.items():
        for d in ds:
            assert order.index(d) < order.index(k)


def test_why_names_every_parent_and_the_relation() -> None:
    res = _res([
        {"name": "a", "version": "1", "depends": "c (>= 1)"},
        {"name": "b", "version": "1", "pre_depends": "c | d"},
        {"name": "c", "version": "1"},
    ], "a", "b")
    assert res.why["c:amd64"] == (
        Reason("a:amd64", "Depends: c (>= 1)"),
        Reason("b:amd64", "Pre-Depends: c | d"),
    )
    assert res.why["a:amd64"] == (Reason(None, "requested"),)
    assert res.requested == ("a:amd64", "b:amd64")


def test_essential_reason_is_recorded() -> None:
    res = _res([{"name": "a", "version": "1"}, {"name": "base", "version": "1", "essential": True}], "a",
               essential=True)
    assert res.why["base:amd64"] == (Reason(None, "essential"),)
    assert res.requested == ("a:amd64",)


def test_why_chains_lists_every_chain_shortest_first() -> None:
    res = _res([
        {"name": "a", "version": "1", "depends": "b, c"},
        {"name": "b", "version": "1", "depends": "c"},
        {"name": "c", "version": "1"},
    ], "a")
    assert why_chains(res, "c") == [["a:amd64", "c:amd64"], ["a:amd64", "b:amd64", "c:amd64"]]
    assert why_chains(res, "a:amd64") == [["a:amd64"]]
    assert why_chains(res, "nope") == []


def test_resolution_table_rows() -> None:
    res = _res([
        {"name": "a", "version": "1", "depends": "b", "installed_size": 7, "size": 3},
        {"name": "b", "version": "2", "architecture": "all", "installed_size": 11, "size": 5},
    ], "a")
    assert resolution_table(res) == [
        {"package": "a", "version": "1", "arch": "amd64", "size": 3, "installed_size": 7, "reason": "requested"},
        {"package": "b", "version": "2", "arch": "all", "size": 5, "installed_size": 11,
         "reason": "a:amd64 Depends: b"},
    ]


def test_reporter_receives_choices_and_backtracking() -> None:
    got: list[ResolveEvent] = []
    resolve(MemoryIndex(stanza(s) for s in [
        {"name": "a", "version": "1", "depends": "b | c, d"},
        {"name": "b", "version": "1", "conflicts": "d"},
        {"name": "c", "version": "1"},
        {"name": "d", "version": "1"},
    ]), ResolveRequest(packages=("a",), architecture="amd64"), got.append)
    events = [str(e) for e in got]
    assert ResolveEvent("choose", "b for b | c", "first alternative") in got
    assert "choose b for b | c: first alternative" in events
    assert any(e.startswith("backtrack: a depends on d, but d conflicts with b") and "trying c" in e
               for e in events), events


def test_resolving_twice_gives_the_same_result_and_nothing_leaks_between_indexes() -> None:
    first = [{"name": "a", "version": "1", "depends": "b"}, {"name": "b", "version": "1"}]
    second = [{"name": "a", "version": "1", "depends": "b"}, {"name": "b", "version": "2"}]
    r1, r2, r3 = _res(first, "a"), _res(second, "a"), _res(first, "a")
    assert chosen(r1) == chosen(r3) == ["a=1:amd64", "b=1:amd64"]
    assert chosen(r2) == ["a=1:amd64", "b=2:amd64"]
    assert r1 == r3


def test_unsolvable_search_stops_at_the_step_limit_with_a_clear_error() -> None:
    # 12 independent two-way choices and a dependency nothing satisfies behind a conflict the choices
    # cannot fix: without a bound the search would try 2**12 combinations.
    stanzas: list[dict[str, Any]] = [{"name": "root", "version": "1",
                                      "depends": ", ".join(f"x{i} | y{i}" for i in range(12)) + ", last"}]
    for i in range(12):
        stanzas += [{"name": f"x{i}", "version": "1", "conflicts": "last"},
                    {"name": f"y{i}", "version": "1", "conflicts": "last"}]
    stanzas.append({"name": "last", "version": "1"})
    with pytest.raises(ResolveError) as info:
        resolve(MemoryIndex(stanza(s) for s in stanzas), ResolveRequest(packages=("root",), architecture="amd64"),
                max_steps=300)
    assert "gave up after 300 search steps" in str(info.value)


def test_backjumping_skips_unrelated_choices() -> None:
    # Many unrelated choices before a dependency nothing can satisfy: the answer comes at once, not after
    # trying every combination of the unrelated choices.
    stanzas: list[dict[str, Any]] = [{"name": "root", "version": "1",
                                      "depends": ", ".join(f"x{i} | y{i}" for i in range(40)) + ", gone"}]
    for i in range(40):
        stanzas += [{"name": f"x{i}", "version": "1"}, {"name": f"y{i}", "version": "1"}]
    start = time.perf_counter()
    with pytest.raises(ResolveError) as info:
        resolve(MemoryIndex(stanza(s) for s in stanzas), ResolveRequest(packages=("root",), architecture="amd64"),
                max_steps=2000)
    assert str(info.value) == "cannot install root: root depends on gone, but gone is not available in any source"
    assert time.perf_counter() - start < 2


def test_problem_messages_are_sorted_and_deterministic() -> None:
    stanzas = [
        {"name": "a", "version": "1", "depends": "zz"},
        {"name": "b", "version": "1", "depends": "aa"},
    ]
    messages = set()
    for perm in itertools.permutations(stanzas):
        with pytest.raises(ResolveError) as info:
            resolve(MemoryIndex(stanza(s) for s in perm),
                    ResolveRequest(packages=("b", "a"), architecture="amd64"))
        messages.add(str(info.value))
        assert info.value.problems == sorted(info.value.problems)
    assert messages == {
        "cannot install a, b: a depends on zz, but zz is not available in any source; "
        "b depends on aa, but aa is not available in any source"
    }


# ---- relations -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("version", "op", "ref", "ok"), [
    ("1.0", "<<", "1.1", True), ("1.1", "<<", "1.1", False),
    ("1.1", "<=", "1.1", True), ("1.2", "<=", "1.1", False),
    ("1.1", "=", "0:1.1", True), ("1.1-1", "=", "1.1", False),
    ("1.1", ">=", "1.1", True), ("1.0", ">=", "1.1", False),
    ("1.2", ">>", "1.1", True), ("1.1", ">>", "1.1", False),
    ("1:0.1", ">>", "9.9", True), ("1.0~rc1", "<<", "1.0", True), ("1.0~~", "<<", "1.0~", True),
    ("1.0+b1", ">>", "1.0", True), ("2.36-9+deb12u4", ">=", "2.34", True), ("1.0", None, None, True),
])
def test_version_satisfies(version: str, op: str | None, ref: str | None, ok: bool) -> None:
    assert version_satisfies(version, op, ref) is ok


def test_compare_versions_orders_like_dpkg() -> None:
    ordered = ["0.9", "1.0~rc1", "1.0", "1.0-1", "1.0a", "1.0+b1", "1:0.1"]
    for a, b in itertools.pairwise(ordered):
        assert compare_versions(a, b) < 0 < compare_versions(b, a)


@pytest.mark.parametrize(("text", "expected"), [
    ("", ()),
    ("libc6 (>= 2.34)", ((Atom("libc6", None, ">=", "2.34"),),)),
    ("a | b:any, c:native (<< 1~)", ((Atom("a"), Atom("b", "any")), (Atom("c", "native", "<<", "1~"),))),
    ("a (< 1), b (> 2)", ((Atom("a", None, "<=", "1"),), (Atom("b", None, ">=", "2"),))),
])
def test_parse_field(text: str, expected: tuple[Any, ...]) -> None:
    assert parse_field(text) == expected


@pytest.mark.parametrize(("depends", "reason"), [
    ("b (>= 1", 'cannot parse package relationship "b (>= 1"'),
    ("b (=< 1)", 'unknown relation operator "=<" in "b"'),
    ("${shlibs:Depends}", 'cannot parse package relationship "${shlibs:Depends}"'),
    ("b, , c", 'cannot parse package relationship ""'),
    ("b (>= 1\n c", 'cannot parse package relationship "b (>= 1 c"'),
])
def test_malformed_relation_raises_index_error(depends: str, reason: str) -> None:
    pkg = stanza({"name": "a", "version": "1.0", "depends": depends})
    with pytest.raises(IndexError_) as info:
        relations(pkg, "Depends")
    assert str(info.value) == f"cannot parse Depends of a 1.0: {reason}"


def test_versioned_provides_must_use_equals() -> None:
    pkg = stanza({"name": "a", "version": "1", "provides": "foo (>= 1)"})
    with pytest.raises(IndexError_, match='cannot parse Provides of a 1: "foo \\(>= 1\\)" uses ">="'):
        provides(pkg)


def test_relation_parsing_does_not_log(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(IndexError_):
        relations(stanza({"name": "a", "version": "1", "depends": "b (>= 1"}), "Depends")
    assert caplog.records == []
