"""The shared primitives of rootfs_forge.util: one of each, and the bugs their duplicates had."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from rootfs_forge.errors import ForgeError, RootfsError
from rootfs_forge.util.arch import debian_arch, oci_platform
from rootfs_forge.util.canonical import canonical_json
from rootfs_forge.util.env import source_date_epoch
from rootfs_forge.util.files import write_atomic
from rootfs_forge.util.forked import run_parallel
from rootfs_forge.util.inroot import SymlinkLoop, resolve_in_root
from tests.support.forge import forge


def test_commit_with_a_bad_source_date_epoch_is_a_one_line_error(tmp_path: Path) -> None:
    done = forge("commit", "--state-dir", str(tmp_path), "nosuch", "img:tag", epoch="yesterday", cwd=tmp_path)
    assert done.returncode != 0  # in this process: an exception other than ForgeError would fail the test
    assert done.stderr == "forge: cannot use SOURCE_DATE_EPOCH: 'yesterday' is not a whole number of seconds\n"


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", None), (" 17 ", 17), ("0", 0)])
def test_source_date_epoch_values(value: str | None, expected: int | None) -> None:
    assert source_date_epoch({} if value is None else {"SOURCE_DATE_EPOCH": value}) == expected


@pytest.mark.parametrize("value", ["-1", "1.5", "now"])
def test_source_date_epoch_refuses(value: str) -> None:
    with pytest.raises(ForgeError, match="SOURCE_DATE_EPOCH"):
        source_date_epoch({"SOURCE_DATE_EPOCH": value})


def test_one_architecture_map() -> None:
    assert [debian_arch(n) for n in ("x86_64", "aarch64-linux-gnu", "armhf", "sparc")] == \
        ["amd64", "arm64", "armhf", "sparc"]
    assert [oci_platform(n) for n in ("arm64", "armv7l", "ppc64el", "386")] == \
        [("arm64", "v8"), ("arm", "v7"), ("ppc64le", ""), ("386", "")]


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": [1, "é"], "a": {}}) == '{"a":{},"b":[1,"é"]}'.encode()
    assert canonical_json({"é": 1}, ensure_ascii=True) == b'{"\\u00e9":1}'


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    write_atomic(dest, b"old")

    class Boom(Exception):
        pass

    from rootfs_forge.util.files import atomic_file

    with pytest.raises(Boom), atomic_file(dest) as fh:
        fh.write(b"half")
        raise Boom()
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert dest.stat().st_mode & 0o777 == 0o644


def _tree(**links: str) -> dict[str, SimpleNamespace]:
    nodes = {"/": SimpleNamespace(kind="dir", target=""), "/usr": SimpleNamespace(kind="dir", target=""),
             "/usr/bin": SimpleNamespace(kind="dir", target=""), "/etc": SimpleNamespace(kind="file", target="")}
    nodes |= {f"/{k}": SimpleNamespace(kind="symlink", target=v) for k, v in links.items()}
    return nodes


def test_one_resolver_for_writers_and_readers() -> None:
    nodes = _tree(bin="usr/bin", up="../../..", abs="/usr")
    assert resolve_in_root(nodes.get, "/bin/sh") == "/usr/bin/sh"  # a writer: the missing name is kept
    assert resolve_in_root(nodes.get, "/bin/sh", strict=True) is None  # a reader: it dangles
    assert resolve_in_root(nodes.get, "/up/etc/passwd") == "/etc/passwd"  # never above the root
    assert resolve_in_root(nodes.get, "/etc/passwd", strict=True) is None  # crosses a file
    chain: list[str] = []
    assert resolve_in_root(nodes.get, "/abs/bin", strict=True, chain=chain) == "/usr/bin"
    assert chain == ["/abs"]
    assert resolve_in_root(nodes.get, "/bin", follow_last=False) == "/bin"
    with pytest.raises(SymlinkLoop):
        resolve_in_root(_tree(a="b", b="a").get, "/a/x")


def test_run_parallel_reports_a_child_failure(tmp_path: Path) -> None:
    def fails() -> None:
        raise RootfsError("write", "/x", "disk full")

    def crashes() -> None:
        raise KeyError("k")

    with pytest.raises(RootfsError, match="cannot write /x: disk full"):
        run_parallel([lambda: None, fails])
    with pytest.raises(RootfsError, match="KeyError"):
        run_parallel([lambda: None, crashes])
    marks = [tmp_path / "a", tmp_path / "b"]
    run_parallel([lambda: marks[0].touch(), lambda: marks[1].touch()])
    assert all(m.exists() for m in marks)


def test_default_caches_of_compose_and_run_are_the_checkouts_cache_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --cache-dir or $FORGE_CACHE both caches are cache/ at the checkout's root (README and .gitignore
    live there), not a directory inside the package."""
    from rootfs_forge.archive.cache import default_cache_dir
    from rootfs_forge.run import paths

    monkeypatch.delenv("FORGE_CACHE", raising=False)
    checkout = Path(__file__).resolve().parents[1]
    assert default_cache_dir() == checkout / "cache"
    assert paths.default_cache_dir({}) == str(checkout / "cache")
