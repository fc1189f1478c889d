"""TreeWriter: trees as sorted dumps, attacks named after what they try, conflicts, filters, real debs."""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import stat
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rootfs_forge.errors import DebError, RootfsError
from rootfs_forge.unpack.debfile import read_control
from rootfs_forge.unpack.filters import PathFilter
from rootfs_forge.unpack.writer import Entry, PackageFiles, PackageJob, TreeWriter, resolve_in_root, tree_dump
from tests.support.debs import MTIME, DebSpec, Dev, Dir, Fifo, Hard, Lnk, Member, Reg, build_deb, make_tar
from tests.support.treedump import dump_dir

ROOT = "0:0"


def sha8(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()[:8]


@dataclass
class Sandbox:
    """A root next to a sentinel directory: an escaping write would land in ``outside``."""

    base: Path

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def outside(self) -> Path:
        return self.base / "outside"

    def writer(self, **kw: object) -> TreeWriter:
        opts: dict[str, object] = {"merged_usr": False, "arch_multiarch": "amd64", "allow_devices": False,
                                   "epoch": None}
        opts.update(kw)
        return TreeWriter(self.root, **opts)  # type: ignore[arg-type]

    def deb(self, spec: DebSpec, **kw: object) -> Path:
        path = self.base / "debs" / f"{spec.name}_{spec.version}.deb"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(build_deb(spec, **kw))  # type: ignore[arg-type]
        return path

    def outside_untouched(self) -> bool:
        return sorted(os.listdir(self.outside)) == ["secret"] and \
            (self.outside / "secret").read_text() == "host secret\n" and os.stat(self.outside / "secret").st_nlink == 1


@pytest.fixture()
def box(tmp_path: Path) -> Sandbox:
    sb = Sandbox(tmp_path)
    sb.outside.mkdir()
    (sb.outside / "secret").write_text("host secret\n")
    return sb


def disk_dump(root: Path) -> dict[str, str]:
    """The tree as found on disk, in the same notation as ``tree_dump``."""
    return dump_dir(root, with_root=True)


def install(box: Sandbox, specs: Sequence[DebSpec], **kw: object) -> tuple[TreeWriter, list[PackageFiles]]:
    w = box.writer(**kw)
    results = []
    for spec in specs:
        results.append(w.add_package(spec.name, box.deb(spec),
                                     replaces=[r.strip() for r in spec.fields.get("Replaces", "").split(",")
                                               if r.strip()],
                                     multi_arch_same=spec.fields.get("Multi-Arch") == "same"))
    w.finish()
    return w, results


# -- the pure resolver ------------------------------------------------------------------------------------------

def _model(**links: str) -> dict[str, Entry]:
    nodes = {"/usr": Entry("dir", 0o755, 0, 0), "/usr/bin": Entry("dir", 0o755, 0, 0)}
    nodes.update({"/" + k.replace("__", "/"): Entry("symlink", 0o777, 0, 0, target=v) for k, v in links.items()})
    return nodes


RESOLVE = [
    # links, path, follow_last, expected
    ({"bin": "usr/bin"}, "/bin/sh", True, "/usr/bin/sh"),
    ({"bin": "usr/bin"}, "/bin", False, "/bin"),
    ({"bin": "usr/bin"}, "/bin", True, "/usr/bin"),
    ({"bin": "/usr/bin"}, "/bin/../../../../etc", True, "/etc"),
    ({"usr__bin__awk": "/etc/alternatives/awk", "etc__alternatives__awk": "/usr/bin/mawk"}, "/usr/bin/awk", True,
     "/usr/bin/mawk"),
    ({"a": "../../../../host"}, "/a/x", True, "/host/x"),
    ({"a": "b/c", "b": "usr"}, "/a/x", True, "/usr/c/x"),
    ({"up": "..", "a": "up/up/up"}, "/a/tmp", True, "/tmp"),
    ({"slash": "/"}, "/slash/slash/slash/etc", True, "/etc"),
]


@pytest.mark.parametrize(("links", "path", "follow", "expected"), RESOLVE)
def test_resolve_in_root(links: dict[str, str], path: str, follow: bool, expected: str) -> None:
    assert resolve_in_root(_model(**links), path, follow_last=follow) == expected


def test_resolve_in_root_stops_symlink_loops() -> None:
    with pytest.raises(RootfsError, match="too many levels"):
        resolve_in_root(_model(a="b", b="a"), "/a/x", follow_last=True)
    chain = {f"l{i}": f"l{i + 1}" for i in range(40)}
    assert resolve_in_root(_model(**chain), "/l0", follow_last=True) == "/l40"
    chain["l40"] = "l41"
    with pytest.raises(RootfsError, match="too many levels"):
        resolve_in_root(_model(**chain), "/l0", follow_last=True)


# -- trees as dumps -------------------------------------------------------------------------------------------

HELLO = DebSpec("hello", members=[
    Dir("usr"), Dir("usr/bin"), Reg("usr/bin/hello", "#!/bin/sh\necho hi\n", 0o755),
    Reg("usr/bin/su-ish", "suid", 0o4755), Reg("usr/bin/sg-ish", "sgid", 0o2755, 0, 43),
    Lnk("usr/bin/hi", "hello"), Lnk("usr/bin/awk", "/etc/alternatives/awk"), Hard("usr/bin/hello2", "usr/bin/hello"),
    Dir("var"), Dir("var/mail", 0o2775, 0, 8), Dir("tmp", 0o1777), Dir("home"), Dir("home/u", 0o700, 1000, 1000),
    Reg("home/u/.profile", "x", 0o600, 1000, 1000),
])

HELLO_TREE = {
    "/": "dir 0755 0:0",
    "/home": "dir 0755 0:0",
    "/home/u": "dir 0700 1000:1000",
    "/home/u/.profile": f"file 0600 1000:1000 {sha8('x')}",
    "/tmp": "dir 1777 0:0",
    "/usr": "dir 0755 0:0",
    "/usr/bin": "dir 0755 0:0",
    "/usr/bin/awk": "symlink /etc/alternatives/awk",
    "/usr/bin/hello": f"file 0755 0:0 {sha8('#!/bin/sh' + chr(10) + 'echo hi' + chr(10))}",
    "/usr/bin/hello2": f"file 0755 0:0 {sha8('#!/bin/sh' + chr(10) + 'echo hi' + chr(10))}",
    "/usr/bin/hi": "symlink hello",
    "/usr/bin/sg-ish": f"file 2755 0:43 {sha8('sgid')}",
    "/usr/bin/su-ish": f"file 4755 0:0 {sha8('suid')}",
    "/var": "dir 0755 0:0",
    "/var/mail": "dir 2775 0:8",
}


def test_package_tree_matches_dump_in_model_and_on_disk(box: Sandbox) -> None:
    w, (files,) = install(box, [HELLO])
    assert tree_dump(w.entries(), box.root) == HELLO_TREE
    if os.geteuid() == 0:
        assert disk_dump(box.root) == HELLO_TREE
    assert os.stat(box.root / "usr/bin/hello").st_ino == os.stat(box.root / "usr/bin/hello2").st_ino
    assert w.entries()["/usr/bin/hello2"].hardlink == "/usr/bin/hello"
    assert files.paths[0] == "/."
    assert files.paths == ("/.", *("/" + m.path for m in HELLO.members))
    assert files.md5sums["/usr/bin/hello"] == hashlib.md5(b"#!/bin/sh\necho hi\n").hexdigest()
    assert "usr/bin/hello2" in files.md5sums_text() and files.list_text().startswith("/.\n/usr\n")
    assert files.bytes_kept == sum(len(m.data) for m in HELLO.members)


def test_unprivileged_tree_keeps_intended_owners_in_entries(box: Sandbox) -> None:
    w, _ = install(box, [HELLO], privileged=False)
    assert tree_dump(w.entries(), box.root) == HELLO_TREE
    assert w.entries()["/home/u"].uid == 1000


@pytest.mark.parametrize(("epoch", "expected"), [(None, MTIME), (MTIME - 10, MTIME - 10), (MTIME + 10, MTIME)])
def test_mtimes_are_clamped_to_epoch(box: Sandbox, epoch: int | None, expected: int) -> None:
    w, _ = install(box, [HELLO], epoch=epoch)
    for key in ("/usr/bin/hello", "/usr/bin/hi", "/usr"):
        assert w.entries()[key].mtime == expected
        assert os.lstat(box.root / key.lstrip("/")).st_mtime == expected


# -- merged /usr ---------------------------------------------------------------------------------------------

LEGACY = DebSpec("legacy", members=[
    Dir("bin"), Reg("bin/sh", "sh", 0o755), Dir("sbin"), Reg("sbin/init", "init", 0o755),
    Dir("lib"), Dir("lib/x86_64-linux-gnu"), Reg("lib/x86_64-linux-gnu/libc.so.6", "libc"),
    Dir("lib64"), Lnk("lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
])


@pytest.mark.parametrize(("arch", "lib_links"), [
    ("amd64", ["lib32", "lib64", "libx32"]),
    ("x86_64-linux-gnu", ["lib32", "lib64", "libx32"]),
    ("arm64", []),
    ("ppc64el", ["lib64"]),
])
def test_merged_usr_layout_and_members_land_in_usr(box: Sandbox, arch: str, lib_links: list[str]) -> None:
    spec = LEGACY if "lib64" in lib_links else DebSpec("legacy", members=LEGACY.members[:7])
    w, (files,) = install(box, [spec], merged_usr=True, arch_multiarch=arch)
    dump = tree_dump(w.entries(), box.root)
    for d in ["bin", "sbin", "lib", *lib_links]:
        assert dump[f"/{d}"] == f"symlink usr/{d}"
        assert dump[f"/usr/{d}"].startswith("dir 0755")
    assert not any(k.startswith(("/bin/", "/sbin/", "/lib/", "/lib64/")) for k in dump)
    assert dump["/usr/bin/sh"] == f"file 0755 0:0 {sha8('sh')}"
    assert dump["/usr/sbin/init"] == f"file 0755 0:0 {sha8('init')}"
    assert dump["/usr/lib/x86_64-linux-gnu/libc.so.6"] == f"file 0644 0:0 {sha8('libc')}"
    if "lib64" in lib_links:
        assert dump["/usr/lib64/ld-linux-x86-64.so.2"] == "symlink /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    else:
        assert "/lib64" not in dump and "/usr/lib64" not in dump
    assert os.path.islink(box.root / "bin") and (box.root / "bin/sh").read_text() == "sh"
    assert "/bin" in files.paths and "/bin/sh" in files.paths  # dpkg lists paths as the package names them
    assert w.resolve("/bin/sh") == "/usr/bin/sh"


@pytest.mark.parametrize(("target", "ok"), [("usr/bin", True), ("/usr/bin", True), ("./usr/bin/", True),
                                            ("usr/sbin", False), ("/opt", False)])
def test_package_shipping_the_merged_usr_link_itself(box: Sandbox, target: str, ok: bool) -> None:
    spec = DebSpec("base-files", members=[Lnk("bin", target)])
    if not ok:
        with pytest.raises(RootfsError, match="merged /usr layout"):
            install(box, [spec], merged_usr=True)
        return
    w, (files,) = install(box, [spec], merged_usr=True)
    assert tree_dump(w.entries())["/bin"] == "symlink usr/bin" and "/bin" in files.paths


def test_merged_usr_same_file_via_bin_and_usr_bin_is_a_conflict(box: Sandbox) -> None:
    a = DebSpec("a", members=[Dir("bin"), Reg("bin/x", "a")])
    b = DebSpec("b", members=[Dir("usr"), Dir("usr/bin"), Reg("usr/bin/x", "b")])
    with pytest.raises(RootfsError, match=r"packages a and b both ship it"):
        install(box, [a, b], merged_usr=True)


# -- attacks ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../outside/evil", "./../outside/evil", "usr/../../outside/evil",
                                  "./usr/bin/../../../outside/evil"])
def test_dotdot_member_cannot_escape_root(box: Sandbox, name: str) -> None:
    raw = make_tar([Dir("."), Dir("usr"), Reg(name, "evil")])
    w = box.writer()
    with pytest.raises(DebError, match="escapes the root"):
        w.add_package("evil", box.deb(DebSpec("evil"), raw_data_tar=raw))
    assert box.outside_untouched()
    assert not (box.root / "outside").exists()


def test_absolute_member_lands_inside_root(box: Sandbox) -> None:
    host_path = str(box.outside / "evil")
    raw = make_tar([Dir("."), Reg("/etc/evil", "one"), Reg(host_path, "two")])
    w = box.writer()
    w.add_package("evil", box.deb(DebSpec("evil"), raw_data_tar=raw))
    assert (box.root / "etc/evil").read_text() == "one"
    assert (box.root / host_path.lstrip("/")).read_text() == "two"
    assert box.outside_untouched()


def test_write_through_absolute_symlink_stays_inside(box: Sandbox) -> None:
    spec = DebSpec("evil", members=[
        Lnk("escape", str(box.outside)), Reg("escape/evil", "one"),
        Lnk("slash", "/"), Reg(f"slash{box.outside}/evil2", "two"),
        Dir("etc"), Lnk("etc/alternatives", "/../../../../.."), Reg("etc/alternatives/evil3", "three"),
    ])
    w, _ = install(box, [spec])
    inside = box.root / str(box.outside).lstrip("/")
    assert (inside / "evil").read_text() == "one"
    assert (inside / "evil2").read_text() == "two"
    assert (box.root / "evil3").read_text() == "three"
    assert w.resolve("/escape/evil") == str(box.outside) + "/evil"
    assert box.outside_untouched()


def test_write_through_relative_symlink_chain_stays_inside(box: Sandbox) -> None:
    # on the host, usr/up -> ../../outside would point at the sentinel; chained links climb further
    spec = DebSpec("evil", members=[
        Dir("usr"), Lnk("usr/up", "../../outside"), Reg("usr/up/evil", "one"),
        Lnk("a", "b"), Lnk("b", "usr/c"), Lnk("usr/c", "../../../../d/.."), Reg("a/outside/evil2", "two"),
        Lnk("usr/hop", "up/../../outside/"), Reg("usr/hop/evil3", "three"),
    ])
    install(box, [spec])
    assert (box.root / "outside/evil").read_text() == "one"
    assert (box.root / "outside/evil2").read_text() == "two"
    assert (box.root / "outside/evil3").read_text() == "three"
    assert box.outside_untouched()


def test_symlink_loop_is_refused(box: Sandbox) -> None:
    spec = DebSpec("loop", members=[Lnk("a", "b"), Lnk("b", "a"), Reg("a/x", "x")])
    with pytest.raises(RootfsError, match="too many levels of symbolic links"):
        install(box, [spec])
    assert box.outside_untouched()


def test_file_member_replaces_final_symlink_instead_of_writing_through(box: Sandbox) -> None:
    spec = DebSpec("evil", members=[Dir("etc"), Lnk("etc/passwd", str(box.outside / "secret")),
                                    Reg("etc/passwd", "root:x:0:0\n")])
    w, _ = install(box, [spec])
    assert not os.path.islink(box.root / "etc/passwd")
    assert tree_dump(w.entries())["/etc/passwd"] == "file 0644 0:0"
    assert box.outside_untouched()


def test_directory_member_over_symlink_to_outside_is_made_inside(box: Sandbox) -> None:
    spec = DebSpec("evil", members=[Lnk("opt", str(box.outside)), Dir("opt"), Reg("opt/evil", "x")])
    w, _ = install(box, [spec])
    assert tree_dump(w.entries())["/opt"] == "dir 0755 0:0"
    assert (box.root / "opt/evil").read_text() == "x"
    assert box.outside_untouched()


@pytest.mark.parametrize(("members", "error"), [
    ([Hard("evil", "../outside/secret")], DebError),
    ([Hard("evil", str(Path("/proc/self/root/etc/passwd")))], RootfsError),
    ([Lnk("l", "/"), Hard("evil", "l/etc/passwd")], RootfsError),
    ([Lnk("host", "OUTSIDE"), Hard("evil", "host/secret")], RootfsError),
    ([Lnk("s", "OUTSIDE/secret"), Hard("evil", "s")], RootfsError),
    ([Dir("d"), Hard("evil", "d")], RootfsError),
    ([Hard("evil", "later"), Reg("later", "x")], RootfsError),
])
def test_hardlink_cannot_escape_root(box: Sandbox, members: list[Member], error: type[Exception]) -> None:
    members = [Member(m.path, m.kind, m.data, m.mode, target=m.target.replace("OUTSIDE", str(box.outside)))
               for m in members]
    with pytest.raises(error, match="escapes the root" if error is DebError else r"hard link to .*, which is"):
        install(box, [DebSpec("evil", members=members)])
    assert box.outside_untouched()


def test_hardlink_to_file_of_earlier_package_is_allowed(box: Sandbox) -> None:
    a = DebSpec("a", members=[Dir("usr"), Reg("usr/a", "shared")])
    b = DebSpec("b", members=[Dir("usr"), Hard("usr/b", "usr/a")])
    _, (_, fb) = install(box, [a, b])
    assert os.stat(box.root / "usr/a").st_ino == os.stat(box.root / "usr/b").st_ino
    assert fb.md5sums == {"/usr/b": hashlib.md5(b"shared").hexdigest()}


def test_device_node_is_skipped(box: Sandbox) -> None:
    spec = DebSpec("devs", members=[Dir("dev"), Dev("dev/null"), Dev("dev/sda", "block", 8, 0),
                                    Dir("run"), Fifo("run/initctl"), Reg("run/ok", "ok")])
    w, (files,) = install(box, [spec])
    assert files.skipped == (("/dev/null", "char"), ("/dev/sda", "block"), ("/run/initctl", "fifo"))
    assert sorted(os.listdir(box.root / "dev")) == [] and os.listdir(box.root / "run") == ["ok"]
    assert "/dev/null" not in w.entries() and "/dev/null" not in files.paths
    assert box.outside_untouched()


def test_fifo_is_made_when_devices_are_allowed(box: Sandbox) -> None:
    spec = DebSpec("devs", members=[Dir("run"), Fifo("run/initctl")])
    w, (files,) = install(box, [spec], allow_devices=True)
    assert stat.S_ISFIFO(os.lstat(box.root / "run/initctl").st_mode)
    assert w.entries()["/run/initctl"].kind == "fifo" and files.skipped == ()


@pytest.mark.root
def test_device_node_is_made_when_devices_are_allowed(box: Sandbox) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root")
    spec = DebSpec("devs", members=[Dir("dev"), Dev("dev/null", "char", 1, 3)])
    w, _ = install(box, [spec], allow_devices=True)
    st = os.lstat(box.root / "dev/null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    assert tree_dump(w.entries())["/dev/null"] == "char 0666 0:0 1:3"


@pytest.mark.parametrize("members", [
    [Reg("bomb", b"\0" * (4 << 20))],
    [Reg(f"many{i}", b"\0" * (256 << 10)) for i in range(16)],
    [Reg(f"empty{i}") for i in range(2100)],
])
def test_decompression_bomb_is_bounded(box: Sandbox, members: list[Member]) -> None:
    deb = box.deb(DebSpec("bomb", members=members))
    assert deb.stat().st_size < 64 << 10  # tiny on the wire
    w = box.writer()
    # refused while decompressing (the tar outgrows the limit) or while reading member headers
    with pytest.raises((RootfsError, DebError), match=r"exceeds? the limit of 1048576 bytes"):
        w.add_package("bomb", deb, max_bytes=1 << 20)
    written = list(box.root.rglob("*"))
    assert sum(f.stat().st_size for f in written if f.is_file()) <= 1 << 20 and len(written) < 2048
    assert box.outside_untouched()


@pytest.mark.parametrize(("kind", "mangle"), [
    ("truncated ar", lambda deb: deb[: len(deb) // 2]),
    ("not an ar", lambda deb: b"PK\x03\x04" + deb[4:]),
    ("wrong member order", None),
    ("unknown compression", None),
])
def test_malformed_deb_is_refused_without_writing(box: Sandbox, kind: str, mangle: object) -> None:
    spec = DebSpec("bad", members=[Dir("usr"), Reg("usr/x", b"x" * 5000)], compression="none")
    if kind == "wrong member order":
        data = build_deb(spec, order=("debian-binary", "data", "control"))
    elif kind == "unknown compression":
        spec.compression = "xz"
        data = build_deb(spec).replace(b"data.tar.xz     ", b"data.tar.lz4    ")
        assert b"data.tar.lz4" in data
    else:
        data = mangle(build_deb(spec))  # type: ignore[operator]
    deb = box.base / "bad.deb"
    deb.write_bytes(data)
    w = box.writer()
    with pytest.raises(DebError):
        w.add_package("bad", deb)
    assert not (box.root / "usr/x").exists()
    assert box.outside_untouched()


# -- conflicts -------------------------------------------------------------------------------------------------

def pkg(name: str, *members: Member, **fields: str) -> DebSpec:
    return DebSpec(name, fields=fields, members=[Dir("usr"), *members])


CONFLICTS = [
    # (case, packages, policy, expected winner of /usr/x or error regex)
    ("same file, no relation", [pkg("a", Reg("usr/x", "a")), pkg("b", Reg("usr/x", "b"))], {},
     r"packages a and b both ship it"),
    ("b replaces a", [pkg("a", Reg("usr/x", "a")), pkg("b", Reg("usr/x", "b"), Replaces="a")], {}, "b"),
    ("a replaces b", [pkg("a", Reg("usr/x", "a"), Replaces="b"), pkg("b", Reg("usr/x", "b"))], {}, "a"),
    ("policy picks a", [pkg("a", Reg("usr/x", "a")), pkg("b", Reg("usr/x", "b"))], {"/usr/*": "a"}, "a"),
    ("policy beats replaces", [pkg("a", Reg("usr/x", "a")), pkg("b", Reg("usr/x", "b"), Replaces="a")],
     {"/usr/x": "a"}, "a"),
    ("file vs dir", [pkg("a", Reg("usr/x", "a")), pkg("b", Dir("usr/x"))], {}, r"packages a and b both ship it"),
    ("identical symlinks", [pkg("a", Lnk("usr/x", "y")), pkg("b", Lnk("usr/x", "y"))], {}, "shared"),
    ("different symlinks", [pkg("a", Lnk("usr/x", "y")), pkg("b", Lnk("usr/x", "z"))], {},
     r"packages a and b both ship it"),
    ("identical files, both M-A same", [pkg("a", Reg("usr/x", "s"), **{"Multi-Arch": "same"}),
                                        pkg("b", Reg("usr/x", "s"), **{"Multi-Arch": "same"})], {}, "shared"),
    ("identical files, one M-A same", [pkg("a", Reg("usr/x", "s"), **{"Multi-Arch": "same"}),
                                       pkg("b", Reg("usr/x", "s"))], {}, r"packages a and b both ship it"),
    ("different files, both M-A same", [pkg("a", Reg("usr/x", "a"), **{"Multi-Arch": "same"}),
                                        pkg("b", Reg("usr/x", "b"), **{"Multi-Arch": "same"})], {},
     r"packages a and b both ship it"),
]


@pytest.mark.parametrize(("case", "specs", "policy", "expected"), CONFLICTS, ids=[c[0] for c in CONFLICTS])
def test_file_conflicts_in_every_order(box: Sandbox, case: str, specs: list[DebSpec], policy: dict[str, str],
                                       expected: str) -> None:
    for n, perm in enumerate(itertools.permutations(specs)):
        sub = Sandbox(box.base / f"perm{n}")
        sub.base.mkdir()
        if expected not in ("a", "b", "shared"):
            with pytest.raises(RootfsError, match=expected):
                install(sub, perm, conflict_policy=policy)
            continue
        w, results = install(sub, perm, conflict_policy=policy)
        files = {r.name: r for r in results}
        if expected == "shared":
            assert "/usr/x" in files["a"].paths and "/usr/x" in files["b"].paths
            if "file" in tree_dump(w.entries())["/usr/x"]:
                assert files["a"].md5sums["/usr/x"] == files["b"].md5sums["/usr/x"] == hashlib.md5(b"s").hexdigest()
            continue
        loser = "b" if expected == "a" else "a"
        assert (sub.root / "usr/x").read_text() == expected, case
        assert "/usr/x" in w.package_files(expected).paths
        assert "/usr/x" not in w.package_files(loser).paths
        assert "/usr/x" not in w.package_files(loser).md5sums


def test_shared_directories_are_fine_and_keep_first_metadata(box: Sandbox) -> None:
    a = DebSpec("a", members=[Dir("usr"), Dir("usr/share", 0o755), Reg("usr/share/a", "a")])
    b = DebSpec("b", members=[Dir("usr"), Dir("usr/share", 0o775, 0, 50), Reg("usr/share/b", "b")])
    w, (fa, fb) = install(box, [a, b])
    assert "/usr/share" in fa.paths and "/usr/share" in fb.paths
    assert tree_dump(w.entries())["/usr/share"] == "dir 0755 0:0"
    other = Sandbox(box.base / "ba")
    other.base.mkdir()
    w, _ = install(other, [b, a])
    assert tree_dump(w.entries())["/usr/share"] == "dir 0775 0:50"


@pytest.mark.parametrize("calls", [("a", "b"), ("b", "a")])
def test_shared_directory_metadata_follows_rank_not_call_order(box: Sandbox, calls: tuple[str, str]) -> None:
    specs = {"a": DebSpec("a", members=[Dir("usr"), Dir("usr/share", 0o755), Reg("usr/share/a", "a")]),
             "b": DebSpec("b", members=[Dir("usr"), Dir("usr/share", 0o775, 0, 50), Reg("usr/share/b", "b")])}
    rank = {"b": 0, "a": 1}  # the install order says b first
    w = box.writer()
    for name in calls:
        w.add_package(name, box.deb(specs[name]), rank=rank[name])
    w.finish()
    assert tree_dump(w.entries(), box.root)["/usr/share"] == "dir 0775 0:50"
    assert stat.S_IMODE(os.stat(box.root / "usr/share").st_mode) == 0o775


def test_member_repeated_in_one_package_is_listed_once_and_last_wins(box: Sandbox) -> None:
    spec = DebSpec("dup", members=[Dir("etc"), Reg("etc/x", "first"), Dir("etc"), Reg("etc/x", "second", 0o600)])
    w, (files,) = install(box, [spec])
    assert files.paths == ("/.", "/etc", "/etc/x")
    assert tree_dump(w.entries(), box.root)["/etc/x"] == f"file 0600 0:0 {sha8('second')}"
    assert files.md5sums == {"/etc/x": hashlib.md5(b"second").hexdigest()}


def test_same_package_twice_is_refused(box: Sandbox) -> None:
    w = box.writer()
    deb = box.deb(HELLO)
    w.add_package("hello", deb)
    with pytest.raises(RootfsError, match="already unpacked"):
        w.add_package("hello", deb)


def test_parallel_packages_give_the_same_tree_as_serial(box: Sandbox) -> None:
    def doc(i: int) -> list[Member]:
        copyright = [Reg(f"usr/share/doc/p{i}/copyright", f"c{i}")] if i % 2 else []
        return [Dir("usr/share/doc"), Dir(f"usr/share/doc/p{i}"), *copyright,
                Reg(f"usr/share/doc/p{i}/changelog.gz", "x" * 3000)]

    specs = [DebSpec(f"p{i}", members=[Dir("usr"), Dir("usr/share"), Dir(f"usr/share/p{i}"),
                                        *(Reg(f"usr/share/p{i}/f{j}", f"{i}-{j}" * 1000) for j in range(20)),
                                        Lnk(f"usr/share/p{i}/link", "f0"), *doc(i)],
                     fields={"Replaces": "p0"} if i == 3 else {})
             for i in range(8)]
    specs[0] = DebSpec("p0", members=[*specs[0].members, Dir("usr/share/p3"), Reg("usr/share/p3/f0", "old")])
    debs = [(s, box.deb(s)) for s in specs]
    minimal = PathFilter("minimal")

    def add(w: TreeWriter, sd: tuple[DebSpec, Path]) -> PackageFiles:
        replaces = [sd[0].fields["Replaces"]] if "Replaces" in sd[0].fields else []
        return w.add_package(sd[0].name, sd[1], replaces=replaces, path_filter=minimal)

    serial_box = Sandbox(box.base / "s")
    serial_box.base.mkdir()
    serial = serial_box.writer()
    for sd in debs:
        add(serial, sd)
    serial.finish()
    expected = tree_dump(serial.entries(), serial_box.root)
    assert "/usr/share/doc/p1/copyright" in expected and "/usr/share/doc/p2" not in expected
    assert "/usr/share/p3/f0" in expected and (serial_box.root / "usr/share/p3/f0").read_text() == "3-0" * 1000
    for _ in range(3):
        shutil.rmtree(box.root, ignore_errors=True)
        w = box.writer()
        with ThreadPoolExecutor(4) as ex:
            list(ex.map(lambda sd, w=w: add(w, sd), debs))
        w.finish()
        assert tree_dump(w.entries(), box.root) == expected
        assert disk_dump(box.root) == disk_dump(serial_box.root)
        for sd in debs:
            assert w.package_files(sd[0].name).paths == serial.package_files(sd[0].name).paths


def _jobs(box: Sandbox, specs: Sequence[DebSpec], **kw: object) -> list[PackageJob]:
    return [PackageJob(spec.name, box.deb(spec), replaces=tuple(r.strip() for r in spec.fields.get("Replaces", "")
                                                                 .split(",") if r.strip()), **kw)  # type: ignore[arg-type]
            for spec in specs]


SPREAD = [DebSpec(f"p{i}", members=[Dir("usr"), Dir("usr/share"), Dir(f"usr/share/p{i}"),
                                    *(Reg(f"usr/share/p{i}/f{j}", f"{i}-{j}" * (100 + 500 * j)) for j in range(12)),
                                    Reg(f"usr/share/p{i}/suid", "s", 0o4755), Hard(f"usr/share/p{i}/hl",
                                                                                  f"usr/share/p{i}/f1")],
                  fields={"Replaces": "p0"} if i == 3 else {})
          for i in range(6)]
SPREAD[0] = DebSpec("p0", members=[*SPREAD[0].members, Dir("usr/share/p3"), Reg("usr/share/p3/f0", "old"),
                                   Hard("usr/share/p3/keep", "usr/share/p3/f0")])


@pytest.mark.parametrize("workers", [2, 3])
def test_forked_writers_give_the_same_tree_as_one(box: Sandbox, workers: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    one = Sandbox(box.base / "one")
    one.base.mkdir()
    serial = one.writer()
    serial.add_packages(_jobs(one, SPREAD), workers=1)
    serial.finish()
    forks: list[int] = []
    real_fork = os.fork

    def counting_fork() -> int:
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", counting_fork)
    w = box.writer()
    results = w.add_packages(_jobs(box, SPREAD), workers=workers)
    w.finish()
    assert len(forks) == workers - 1  # the parent writes one share itself
    assert tree_dump(w.entries(), box.root) == tree_dump(serial.entries(), one.root)
    assert disk_dump(box.root) == disk_dump(one.root)
    assert [r.paths for r in results] == [serial.package_files(s.name).paths for s in SPREAD]
    # p3 took p0's /usr/share/p3/f0; p0's hard link to it keeps the content p0 shipped
    assert (box.root / "usr/share/p3/f0").read_text() == "3-0" * 100
    assert (box.root / "usr/share/p3/keep").read_text() == "old"
    assert stat.S_IMODE(os.stat(box.root / "usr/share/p2/suid").st_mode) == 0o4755
    assert os.stat(box.root / "usr/share/p2/hl").st_ino == os.stat(box.root / "usr/share/p2/f1").st_ino


def test_failure_in_a_forked_writer_fails_the_unpack(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    real, parent = TreeWriter._write_member, os.getpid()

    def failing_in_child(self: TreeWriter, write: object, m: object) -> None:
        if os.getpid() != parent:  # only the forked writer fails: its report must reach the parent
            raise RootfsError("write", getattr(m, "path", "?"), "No space left on device")
        real(self, write, m)  # type: ignore[arg-type]

    monkeypatch.setattr(TreeWriter, "_write_member", failing_in_child)
    w = box.writer()
    with pytest.raises(RootfsError, match=r"cannot write /usr/share/p\d/\w+: No space left on device"):
        w.add_packages(_jobs(box, SPREAD), workers=2)
    assert box.outside_untouched()


def test_md5sums_come_from_the_package_when_it_ships_them(box: Sandbox) -> None:
    spec = DebSpec("sums", members=[Dir("etc"), Reg("etc/conf", "c"), Dir("usr"), Reg("usr/x", "payload")])
    w = box.writer()
    # what dpkg records: the package's own md5sums, hashed here only for files it does not list (conffiles)
    (job,) = _jobs(box, [spec], md5sums={"/usr/x": "0" * 32})
    (files,) = w.add_packages([job])
    assert files.md5sums == {"/etc/conf": hashlib.md5(b"c").hexdigest(), "/usr/x": "0" * 32}
    assert (box.root / "usr/x").read_text() == "payload"


# -- filters ---------------------------------------------------------------------------------------------------

DOCS = DebSpec("docs", members=[
    Dir("usr"), Dir("usr/bin"), Reg("usr/bin/tool", "tool", 0o755),
    Dir("usr/share"), Dir("usr/share/doc"), Dir("usr/share/doc/docs"), Reg("usr/share/doc/docs/copyright", "c"),
    Reg("usr/share/doc/docs/changelog.gz", "x" * 100), Dir("usr/share/doc/other"),
    Reg("usr/share/doc/other/README", "r"), Dir("usr/share/man"), Dir("usr/share/man/man1"),
    Reg("usr/share/man/man1/tool.1.gz", "m" * 10), Dir("usr/share/locale"), Dir("usr/share/locale/de"),
    Dir("usr/share/locale/de/LC_MESSAGES"), Reg("usr/share/locale/de/LC_MESSAGES/tool.mo", "de"),
    Dir("usr/share/locale/fr"), Dir("usr/share/locale/fr/LC_MESSAGES"),
    Reg("usr/share/locale/fr/LC_MESSAGES/tool.mo", "fr"),
])


def test_minimal_profile_tree(box: Sandbox) -> None:
    w = box.writer()
    files = w.add_package("docs", box.deb(DOCS), path_filter=PathFilter("minimal", keep_locales=["de"]))
    assert sorted(tree_dump(w.entries())) == [
        "/", "/usr", "/usr/bin", "/usr/bin/tool", "/usr/share", "/usr/share/doc", "/usr/share/doc/docs",
        "/usr/share/doc/docs/copyright", "/usr/share/locale", "/usr/share/locale/de",
        "/usr/share/locale/de/LC_MESSAGES", "/usr/share/locale/de/LC_MESSAGES/tool.mo",
    ]
    assert "/usr/share/doc/other" not in files.paths and "/usr/share/doc/docs" in files.paths
    assert files.bytes_dropped == 100 + 1 + 10 + 2
    assert files.files_dropped == 9  # 4 files, man dirs (2), fr dirs (2) and the pruned empty doc/other
    assert not (box.root / "usr/share/doc/other").exists()


def test_slice_keeps_only_its_paths_and_their_parents(box: Sandbox) -> None:
    w = box.writer()
    f = PathFilter("full", slices={"docs": ["/usr/bin/*", "/usr/share/doc/*/copyright"]})
    files = w.add_package("docs", box.deb(DOCS), path_filter=f)
    assert sorted(w.entries()) == ["/", "/usr", "/usr/bin", "/usr/bin/tool", "/usr/share", "/usr/share/doc",
                                   "/usr/share/doc/docs", "/usr/share/doc/docs/copyright"]
    assert files.paths == ("/.", "/usr", "/usr/bin", "/usr/bin/tool", "/usr/share", "/usr/share/doc",
                           "/usr/share/doc/docs", "/usr/share/doc/docs/copyright")


# -- forge-made entries ---------------------------------------------------------------------------------------

def test_effect_writes_resolve_inside_root(box: Sandbox) -> None:
    w, _ = install(box, [DebSpec("l", members=[Dir("etc"), Lnk("etc/alt", str(box.outside)),
                                               Lnk("etc/rel", "../../../outside")])])
    assert w.add_file("/etc/alt/x", b"1", 0o600, 0, 42) == str(box.outside) + "/x"
    assert w.add_file("etc/rel/y", b"2") == "/outside/y"
    assert w.add_symlink("/etc/alt/link", "/etc/shadow") == str(box.outside) + "/link"
    assert w.add_dir("/var/lib/misc", 0o700) == "/var/lib/misc"
    assert w.read_file("/etc/rel/y") == b"2"
    assert w.lookup("/etc/alt/x") is not None and w.lookup("/etc/alt/x").gid == 42  # type: ignore[union-attr]
    with pytest.raises(RootfsError, match="escapes the root"):
        w.add_file("../outside/z", b"3")
    assert w.remove("/etc/alt") and w.lookup("/etc/alt", follow=False) is None
    assert w.read_file("/etc/passwd") is None
    assert box.outside_untouched()


def test_effect_file_replaces_symlink_and_remove_drops_tree(box: Sandbox) -> None:
    w, _ = install(box, [HELLO])
    w.add_file("/usr/bin/awk", b"#!/bin/sh\n", 0o755)
    assert tree_dump(w.entries())["/usr/bin/awk"] == "file 0755 0:0"
    assert w.remove("/usr")
    assert sorted(w.entries()) == ["/", "/home", "/home/u", "/home/u/.profile", "/tmp", "/var", "/var/mail"]
    assert not (box.root / "usr").exists()


def test_non_utf8_names_keep_their_bytes(box: Sandbox) -> None:
    raw = make_tar([Dir("."), Reg("caf\udce9", "latin-1"), Reg("ünï", "utf-8")])
    w = box.writer()
    files = w.add_package("names", box.deb(DebSpec("names"), raw_data_tar=raw))
    assert sorted(os.listdir(os.fsencode(box.root))) == [b"caf\xe9", "ünï".encode()]
    assert files.paths == ("/.", "/caf\udce9", "/ünï")
    assert w.read_file("/caf\udce9") == b"latin-1"


def test_target_directory_must_be_empty(box: Sandbox) -> None:
    box.root.mkdir()
    (box.root / "stale").write_text("x")
    with pytest.raises(RootfsError, match="not empty"):
        box.writer()


# -- real Debian packages ------------------------------------------------------------------------------------

REAL = ("bash", "coreutils", "libc6")


@pytest.fixture(scope="module")
def real_debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("real-debs")
    proc = subprocess.run(["apt-get", "download", *REAL], cwd=d, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"apt-get download failed: {proc.stderr.strip()}")
    return {read_control(p).name: p for p in d.glob("*.deb")}


def dpkg_deb_tree(deb: Path, dest: Path) -> dict[str, str]:
    dest.mkdir()
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
    return disk_dump(dest)


def merge_usr(path: str) -> str:
    for d in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        if path == f"/{d}" or path.startswith(f"/{d}/"):
            return "/usr" + path
    return path


@pytest.mark.network
@pytest.mark.parametrize("name", REAL)
def test_real_deb_matches_dpkg_deb_extract(box: Sandbox, real_debs: dict[str, Path], name: str) -> None:
    expected = dpkg_deb_tree(real_debs[name], box.base / "dpkg")
    w = box.writer()
    files = w.add_package(name, real_debs[name])
    w.finish()
    got = disk_dump(box.root)
    if os.geteuid() == 0:
        assert got == expected
    assert {k: v for k, v in tree_dump(w.entries(), box.root).items() if k != "/"} == \
        {k: v for k, v in expected.items() if k != "/"}
    control = read_control(real_debs[name])
    ours = {p.lstrip("/"): m for p, m in files.md5sums.items()}
    theirs = {line.split(None, 1)[1]: line.split(None, 1)[0] for line in control.md5sums.splitlines()}
    assert {p: ours[p] for p in theirs} == theirs


@pytest.mark.network
@pytest.mark.slow
def test_real_debs_merged_usr_tree_matches_dpkg_deb_modulo_usr_merge(
        box: Sandbox, real_debs: dict[str, Path]) -> None:
    expected: dict[str, str] = {}
    for n, name in enumerate(REAL):
        for key, value in dpkg_deb_tree(real_debs[name], box.base / f"dpkg{n}").items():
            if key != "/" and merge_usr(key) not in ("/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib64"):
                expected[merge_usr(key)] = value
    w = box.writer(merged_usr=True)
    for name in REAL:
        w.add_package(name, real_debs[name], multi_arch_same=read_control(real_debs[name]).multi_arch == "same")
    w.finish()
    got = {k: v for k, v in tree_dump(w.entries(), box.root).items()
           if k not in ("/", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr/bin", "/usr/sbin",
                        "/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/libx32")}
    assert got == expected


# -- fuzz: random trees of links and files never leave the root, and the model matches the disk --------------

_PART = st.sampled_from(["a", "b", "c", "..", "."])
_REL = st.lists(_PART, min_size=1, max_size=4).map("/".join)
_TARGET = st.one_of(_REL, _REL.map(lambda p: "/" + p), st.just("/"), st.just("OUTSIDE"), st.just("../../outside"))
_MEMBER = st.one_of(
    st.builds(lambda p: Dir(p), _REL),
    st.builds(lambda p, d: Reg(p, d), _REL, st.binary(max_size=64)),
    st.builds(lambda p, t: Lnk(p, t), _REL, _TARGET),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=st.lists(_MEMBER, min_size=1, max_size=12), merged=st.booleans())
def test_random_link_trees_stay_inside_and_model_matches_disk(tmp_path_factory: pytest.TempPathFactory,
                                                              members: list[Member], merged: bool) -> None:
    sb = Sandbox(tmp_path_factory.mktemp("fuzz"))
    sb.outside.mkdir()
    (sb.outside / "secret").write_text("host secret\n")
    fixed = [Member(m.path, m.kind, m.data, m.mode, target=m.target.replace("OUTSIDE", str(sb.outside)))
             for m in members]
    w = sb.writer(merged_usr=merged)
    try:
        w.add_package("fuzz", sb.deb(DebSpec("fuzz", members=fixed)))
    except (RootfsError, DebError):
        assert sb.outside_untouched()
        event("refused")
        return
    event("written")
    w.finish()
    assert sb.outside_untouched()
    if os.geteuid() == 0:
        assert disk_dump(sb.root) == tree_dump(w.entries(), sb.root)
    else:
        assert sorted(disk_dump(sb.root)) == sorted(tree_dump(w.entries(), sb.root))
