"""forge audit: targets, dpkg database, inventory, ELF closure, why-chains, sizes, slimming, CLI.

Trees are built from real host ELF files (``/usr/bin/ls``, ``/usr/bin/true`` and the libraries ``ldd`` names),
copied with the symlinks on their host path, so the closure check runs on real binaries.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rootfs_forge.audit.dpkgreader import read_dpkg_db
from rootfs_forge.audit.elf import ElfInfo, Loader, check_closure, ld_so_conf_dirs, parse_elf
from rootfs_forge.audit.forgemeta import parse_manifest
from rootfs_forge.audit.inventory import take_inventory
from rootfs_forge.audit.report import audit_target
from rootfs_forge.audit.slim import glob_regex, slim_keep_set
from rootfs_forge.audit.target import load_tar_bytes, open_target
from rootfs_forge.audit.view import DirView, MemoryView, Node, resolve
from rootfs_forge.audit.why import chains_from_dependencies, chains_from_manifest
from rootfs_forge.cli import main
from rootfs_forge.errors import AuditError
from tests.support.debs import Dev, Dir, Hard, Lnk, Reg, compress, make_tar

HOST_PROGRAMS = ("/usr/bin/ls", "/usr/bin/true")
TOPLEVEL_LINKS = {"/bin", "/lib", "/lib64", "/sbin"}


# ---------------------------------------------------------------- helpers (also used by test_sbom / test_diff)

def ldd_paths(program: str) -> list[str]:
    """The interpreter and libraries ``ldd`` names for a host program, as paths."""
    out = subprocess.run(["ldd", program], check=True, capture_output=True, text=True).stdout
    paths = []
    for line in out.splitlines():
        line = line.strip()
        if "=>" in line:
            target = line.split("=>", 1)[1].split("(")[0].strip()
            if target.startswith("/"):
                paths.append(target)
        elif line.startswith("/"):
            paths.append(line.split()[0])
    return paths


def mirror(host_path: str, root: Path) -> list[str]:
    """Copy ``host_path`` into ``root`` with every symlink met on the way; return the in-root paths made."""
    made: list[str] = []
    todo = [p for p in host_path.split("/") if p]
    cur = "/"
    hops = 0
    while todo:
        part = todo.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            cur = posixpath.dirname(cur)
            continue
        host = posixpath.join(cur, part)
        dst = root / host.lstrip("/")
        if os.path.islink(host):
            hops += 1
            assert hops < 40
            target = os.readlink(host)
            if not dst.is_symlink():
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.symlink_to(target)
            made.append(host)
            todo = [p for p in target.split("/") if p] + todo
            if target.startswith("/"):
                cur = "/"
            continue
        if os.path.isdir(host):
            dst.mkdir(parents=True, exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(host, dst)
            made.append(host)
        cur = host
    return made


def _owner(path: str) -> str:
    base = posixpath.basename(path)
    if base.startswith(("libc.so", "ld-linux")):
        return "libc6"
    if base.startswith("libselinux"):
        return "libselinux1"
    if base.startswith("libpcre2"):
        return "libpcre2-8-0"
    return "coreutils"


PACKAGES = {
    "coreutils": {"Version": "9.1-1", "Pre-Depends": "libc6 (>= 2.34), libselinux1 (>= 3.1~)", "Essential": "yes"},
    "libc6": {"Version": "2.36-9+deb12u4", "Source": "glibc", "Depends": "libgcc-s1"},
    "libselinux1": {"Version": "3.4-1+b6", "Source": "libselinux (3.4-1)", "Depends": "libc6 (>= 2.34), libpcre2-8-0"},
    "libpcre2-8-0": {"Version": "10.42-1", "Source": "pcre2", "Depends": "libc6 (>= 2.34)"},
    "zz-epoch": {"Version": "1:2.0+b1", "Architecture": "all"},
}


def write_dpkg_db(root: Path, lists: dict[str, list[str]], packages: dict[str, dict[str, str]] | None = None,
                  *, extra_status: str = "") -> None:
    """A dpkg status file, ``info/<pkg>.list`` and ``.md5sums`` for ``lists`` (package -> paths)."""
    packages = packages if packages is not None else PACKAGES
    admin = root / "var/lib/dpkg"
    (admin / "info").mkdir(parents=True, exist_ok=True)
    stanzas = []
    for name, fields in sorted(packages.items()):
        arch = fields.get("Architecture", "amd64")
        lines = [f"Package: {name}", "Status: install ok installed", f"Architecture: {arch}"]
        lines += [f"{k}: {v}" for k, v in fields.items() if k != "Architecture"]
        stanzas.append("\n".join(lines) + "\n")
        paths = sorted(set(lists.get(name, [])))
        dirs = sorted({posixpath.dirname(p) for p in paths})
        (admin / "info" / f"{name}.list").write_text("/.\n" + "".join(f"{p}\n" for p in dirs + paths))
        md5 = []
        for p in paths:
            host = root / p.lstrip("/")
            if host.is_file() and not host.is_symlink():
                md5.append(f"{hashlib.md5(host.read_bytes()).hexdigest()}  {p.lstrip('/')}\n")
        (admin / "info" / f"{name}.md5sums").write_text("".join(md5))
    (admin / "status").write_text("\n".join(stanzas) + extra_status)


def build_host_tree(root: Path, programs: tuple[str, ...] = HOST_PROGRAMS) -> dict[str, list[str]]:
    """A small usr-merged rootfs of host programs and their libraries, with a dpkg database."""
    lists: dict[str, list[str]] = {}
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    (root / "bin").symlink_to("usr/bin")  # usr-merged, as Debian 12
    for program in programs:
        for path in [program, *ldd_paths(program)]:
            for made in mirror(path, root):
                if made not in TOPLEVEL_LINKS:
                    lists.setdefault(_owner(made), []).append(made)
    # coreutils' list names /bin/ls, as in Debian 12: ownership must see through the /bin -> usr/bin link
    lists["coreutils"] = [p.replace("/usr/bin/", "/bin/") for p in lists["coreutils"]]
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/hostname").write_text("forge\n")
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n')
    doc = root / "usr/share/doc/zz-epoch"
    doc.mkdir(parents=True)
    (doc / "README").write_text("x" * 5000)
    lists["zz-epoch"] = ["/usr/share/doc/zz-epoch/README", "/usr/share/doc/zz-epoch/dropped-by-filter"]
    write_dpkg_db(root, lists)
    return lists


def real(root: Path, path: str) -> str:
    """The in-root real path of ``path``."""
    hit = resolve(DirView(root), path)
    assert hit is not None, path
    return hit


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    build_host_tree(root)
    return root


# ---------------------------------------------------------------- ELF closure

def test_closure_of_host_binaries_is_complete(tree: Path) -> None:
    report = check_closure(DirView(tree))
    assert report.missing == ()
    assert "/usr/bin/ls" in report.checked and "/usr/bin/true" in report.checked
    libc = real(tree, "/lib/x86_64-linux-gnu/libc.so.6")
    assert report.edges["/usr/bin/ls"]["libc.so.6"] == libc
    assert report.edges["/usr/bin/ls"]["/lib64/ld-linux-x86-64.so.2"] == real(tree, "/lib64/ld-linux-x86-64.so.2")
    assert report.unused_libraries == ()  # every library here is linked by ls or true


def test_deleted_library_is_named_with_the_objects_that_need_it(tree: Path) -> None:
    pcre = real(tree, "/lib/x86_64-linux-gnu/libpcre2-8.so.0")
    os.unlink(tree / pcre.lstrip("/"))
    report = check_closure(DirView(tree))
    assert [(m.name, m.kind) for m in report.missing] == [("libpcre2-8.so.0", "library")]
    assert report.missing[0].needed_by == (real(tree, "/lib/x86_64-linux-gnu/libselinux.so.1"),)


def test_missing_interpreter_is_reported(tree: Path) -> None:
    os.unlink(tree / real(tree, "/lib64/ld-linux-x86-64.so.2").lstrip("/"))
    report = check_closure(DirView(tree))
    interp = [m for m in report.missing if m.kind == "interpreter"]
    assert [m.name for m in interp] == ["/lib64/ld-linux-x86-64.so.2"]
    assert "/usr/bin/ls" in interp[0].needed_by and "/usr/bin/true" in interp[0].needed_by
    # libc.so.6 needs ld-linux-x86-64.so.2 by DT_NEEDED, and that is gone too
    assert "ld-linux-x86-64.so.2" in [m.name for m in report.missing if m.kind == "library"]


def test_unlinked_library_is_flagged_possibly_dlopened_not_missing(tree: Path) -> None:
    plugin = tree / "usr/lib/x86_64-linux-gnu/plugin.so"
    shutil.copy(tree / real(tree, "/lib/x86_64-linux-gnu/libpcre2-8.so.0").lstrip("/"), plugin)
    report = check_closure(DirView(tree))
    assert report.unused_libraries == ("/usr/lib/x86_64-linux-gnu/plugin.so",)
    assert report.missing == ()


def test_absolute_library_symlink_resolves_inside_root_not_host(tree: Path) -> None:
    # the link names a path that exists on the host but not in the tree: the library must count as missing
    link = tree / real(tree, "/lib/x86_64-linux-gnu/libpcre2-8.so.0").lstrip("/")
    host_target = os.path.realpath("/lib/x86_64-linux-gnu/libpcre2-8.so.0")
    os.unlink(link)
    for path in (tree / "usr/lib/x86_64-linux-gnu").iterdir():
        if path.name.startswith("libpcre2-8.so"):
            path.unlink()
    (tree / "usr/lib/x86_64-linux-gnu/libpcre2-8.so.0").symlink_to(host_target)
    assert os.path.exists(host_target)
    report = check_closure(DirView(tree))
    assert [m.name for m in report.missing] == ["libpcre2-8.so.0"]


def test_symlinked_parent_cannot_redirect_reads_to_host(tmp_path: Path) -> None:
    # the tree's /var is an absolute symlink to a host directory holding a dpkg database
    host = tmp_path / "host"
    (host / "lib/dpkg").mkdir(parents=True)
    (host / "lib/dpkg/status").write_text("Package: host-secret\nStatus: install ok installed\nVersion: 1\n")
    root = tmp_path / "root"
    root.mkdir()
    (root / "var").symlink_to(host)
    view = DirView(root)
    assert read_dpkg_db(view) == []
    assert view.lstat("/var/lib/dpkg/status") is None
    with pytest.raises(FileNotFoundError):
        view.open("/var/lib/dpkg/status")
    # the same link inside the tree is followed inside it
    (root / str(host).lstrip("/") / "lib/dpkg").mkdir(parents=True)
    (root / str(host).lstrip("/") / "lib/dpkg/status").write_text(
        "Package: in-tree\nStatus: install ok installed\nVersion: 2\nArchitecture: all\n")
    assert [p.name for p in read_dpkg_db(DirView(root))] == ["in-tree"]


def test_memory_view_resolves_symlinked_parents_inside() -> None:
    view = load_tar_bytes(make_tar([Dir("usr"), Dir("usr/lib"), Reg("usr/lib/os-release", "ID=debian\n"),
                                    Lnk("lib", "/usr/lib"), Lnk("etc", "../../usr/lib")]), name="t")
    assert view.open("/lib/os-release").read() == b"ID=debian\n"
    assert view.lstat("/etc/os-release") == view.lstat("/usr/lib/os-release")
    assert view.listdir("/lib") == ["os-release"]


def test_dotdot_library_symlink_is_clamped_to_root(tree: Path) -> None:
    libdir = tree / "usr/lib/x86_64-linux-gnu"
    real_pcre = real(tree, "/lib/x86_64-linux-gnu/libpcre2-8.so.0")
    os.unlink(libdir / "libpcre2-8.so.0")
    # ../../../../../.. climbs to the root and stops there, like the kernel under chroot
    (libdir / "libpcre2-8.so.0").symlink_to("../../../../../.." + real_pcre)
    assert check_closure(DirView(tree)).missing == ()


def _flip_machine(data: bytes, machine: int) -> bytes:
    return data[:18] + machine.to_bytes(2, "little") + data[20:]


def _memory_tree(files: dict[str, bytes], links: dict[str, str] | None = None) -> MemoryView:
    view = MemoryView()
    for path, data in files.items():
        view.add(path, Node("file", len(data), 0o755), data)
    for path, target in (links or {}).items():
        view.add(path, Node("symlink", target=target))
    return view


@pytest.fixture(scope="module")
def libc_bytes() -> bytes:
    return Path(os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6")).read_bytes()


def _obj(path: str, **kw: object) -> ElfInfo:
    base = {"elfclass": 64, "little": True, "machine": "EM_X86_64", "etype": "ET_DYN"}
    return ElfInfo(path, **{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(("case", "obj", "loaders", "where", "found"), [
    ("runpath with $ORIGIN", _obj("/opt/app/bin/app", runpath=("$ORIGIN/../lib",)), [],
     "/opt/app/lib", "/opt/app/lib/libc.so.6"),
    ("${ORIGIN} spelling", _obj("/opt/app/bin/app", runpath=("${ORIGIN}/../lib",)), [],
     "/opt/app/lib", "/opt/app/lib/libc.so.6"),
    ("$LIB expands to the multiarch dir", _obj("/opt/app/bin/app", runpath=("/opt/$LIB",)), [],
     "/opt/lib/x86_64-linux-gnu", "/opt/lib/x86_64-linux-gnu/libc.so.6"),
    ("rpath of the object", _obj("/x/app", rpath=("/opt/r",)), [], "/opt/r", "/opt/r/libc.so.6"),
    ("a relative rpath is relative to the unknown cwd", _obj("/opt/app", rpath=("r",)), [], "/opt/r", None),
    ("rpath is ignored when the object has a runpath", _obj("/x/app", rpath=("/opt/r",), runpath=("/opt/nothing",)),
     [], "/opt/r", None),
    ("rpath of the loader is inherited", _obj("/x/lib.so"), [(_obj("/x/app", rpath=("/opt/r",)), "/x")],
     "/opt/r", "/opt/r/libc.so.6"),
    ("runpath of the loader is not inherited", _obj("/x/lib.so"), [(_obj("/x/app", runpath=("/opt/r",)), "/x")],
     "/opt/r", None),
    ("loader rpath is not used when the object has a runpath", _obj("/x/lib.so", runpath=("/none",)),
     [(_obj("/x/app", rpath=("/opt/r",)), "/x")], "/opt/r", None),
    ("multiarch default dir", _obj("/x/app"), [], "/usr/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
    ("lib64 default dir for 64-bit", _obj("/x/app"), [], "/usr/lib64", "/usr/lib64/libc.so.6"),
    ("plain /lib default dir", _obj("/x/app"), [], "/lib", "/lib/libc.so.6"),
])
def test_loader_search_rules(case: str, obj: ElfInfo, loaders: list[tuple[ElfInfo, str]], where: str,
                             found: str | None, libc_bytes: bytes) -> None:
    view = _memory_tree({f"{where}/libc.so.6": libc_bytes})
    hit = Loader(view).find("libc.so.6", obj, posixpath.dirname(obj.path), loaders)
    assert (hit[0] if hit else None) == found, case


@pytest.mark.parametrize(("obj", "expected"), [
    (_obj("/x/app"), ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib",
                      "/usr/lib"]),
    (_obj("/x/app", elfclass=32, machine="EM_386"), ["/lib/i386-linux-gnu", "/usr/lib/i386-linux-gnu", "/lib",
                                                      "/usr/lib"]),
    (_obj("/x/app", machine="EM_AARCH64"), ["/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64",
                                             "/usr/lib64", "/lib", "/usr/lib"]),
])
def test_default_search_dirs_follow_class_and_machine(obj: ElfInfo, expected: list[str]) -> None:
    assert list(Loader(MemoryView()).search_dirs(obj, "/x", [])) == expected


def test_library_of_another_machine_is_skipped_for_a_later_match(libc_bytes: bytes) -> None:
    view = _memory_tree({
        "/usr/lib/x86_64-linux-gnu/libc.so.6": _flip_machine(libc_bytes, 183),  # EM_AARCH64
        "/usr/lib/libc.so.6": libc_bytes,
    })
    info = parse_elf(view, "/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert info is not None and info.machine == "EM_AARCH64"
    hit = Loader(view).find("libc.so.6", _obj("/x/app"), "/x", [])
    assert hit == ("/usr/lib/libc.so.6", "/usr/lib")


def test_ld_so_conf_include_globs_add_directories(libc_bytes: bytes) -> None:
    view = _memory_tree({
        "/etc/ld.so.conf": b"# comment\ninclude /etc/ld.so.conf.d/*.conf\n/opt/first\n",
        "/etc/ld.so.conf.d/a.conf": b"/opt/a\n",
        "/etc/ld.so.conf.d/b.conf": b"/opt/b:/opt/c # trailing comment\n",
        "/etc/ld.so.conf.d/ignored.txt": b"/opt/nope\n",
        "/opt/c/libc.so.6": libc_bytes,
    })
    assert ld_so_conf_dirs(view) == ["/opt/a", "/opt/b", "/opt/c", "/opt/first"]
    assert Loader(view).find("libc.so.6", _obj("/x/app"), "/x", []) == ("/opt/c/libc.so.6", "/opt/c")


def test_ld_so_conf_include_loop_terminates() -> None:
    view = _memory_tree({"/etc/ld.so.conf": b"include /etc/ld.so.conf\n/opt/x\n"})
    assert ld_so_conf_dirs(view) == ["/opt/x"]


def test_non_elf_and_truncated_files_are_not_checked(tmp_path: Path) -> None:
    view = _memory_tree({"/usr/bin/script": b"#!/bin/sh\necho hi\n", "/usr/bin/broken": b"\x7fELF" + b"\0" * 60})
    assert parse_elf(view, "/usr/bin/script") is None
    assert parse_elf(view, "/usr/bin/broken") is None
    assert check_closure(view).checked == ()


# ---------------------------------------------------------------- dpkg database, inventory, why, sizes

def test_dpkg_db_reads_installed_packages_only(tree: Path) -> None:
    extra = "\nPackage: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1\n"
    status = tree / "var/lib/dpkg/status"
    status.write_text(status.read_text() + extra)
    pkgs = read_dpkg_db(DirView(tree))
    assert [p.name for p in pkgs] == ["coreutils", "libc6", "libpcre2-8-0", "libselinux1", "zz-epoch"]
    selinux = next(p for p in pkgs if p.name == "libselinux1")
    assert (selinux.source, selinux.source_version) == ("libselinux", "3.4-1")
    assert any(p.endswith("libselinux.so.1") for p in selinux.md5sums)


def test_status_d_layout_of_distroless_is_read(tmp_path: Path) -> None:
    view = _memory_tree({
        "/var/lib/dpkg/status.d/base-files": b"Package: base-files\nVersion: 12.4\nArchitecture: amd64\n",
        "/var/lib/dpkg/status.d/base-files.md5sums": b"0123  etc/debian_version\n",
        "/etc/debian_version": b"12.4\n",
    })
    (pkg,) = read_dpkg_db(view)
    assert (pkg.name, pkg.version, pkg.files) == ("base-files", "12.4", ("/etc/debian_version",))
    inv = take_inventory(view, [pkg])
    assert inv.unowned == () and inv.packages[0].files_kept == 1


def test_status_without_package_field_is_an_audit_error() -> None:
    view = _memory_tree({"/var/lib/dpkg/status": b"Version: 1\nArchitecture: amd64\n"})
    with pytest.raises(AuditError, match="cannot read /var/lib/dpkg/status: a stanza has no Package field"):
        read_dpkg_db(view)


def test_inventory_counts_kept_and_shipped_and_finds_unowned(tree: Path) -> None:
    view = DirView(tree)
    inv = take_inventory(view, read_dpkg_db(view))
    by = {u.name: u for u in inv.packages}
    # /bin/ls in the list is /usr/bin/ls in the tree
    assert "/usr/bin/ls" in inv.kept_files["coreutils:amd64"]
    assert by["coreutils"].bytes == os.path.getsize(tree / "usr/bin/ls") + os.path.getsize(tree / "usr/bin/true")
    assert (by["zz-epoch"].files_kept, by["zz-epoch"].files_shipped) == (1, 2)  # one listed file is gone
    assert by["zz-epoch"].bytes == 5000 and by["zz-epoch"].dropped_bytes is None
    assert "/etc/hostname" in inv.unowned and "/etc/os-release" in inv.unowned
    assert not any(p.startswith("/var/lib/dpkg/") for p in inv.unowned)
    assert "/usr/bin/ls" not in inv.unowned


def test_forge_manifest_supplies_dropped_counts_and_generated_files(tree: Path) -> None:
    manifest = {
        "packages": {"zz-epoch": {"dropped_files": 7, "dropped_bytes": 12345}},
        "files": [{"path": "/etc/hostname", "sha256": "0" * 64, "src": "hostname"}],
        "effects": [{"effect": "os-release", "changed": ["/etc/os-release"], "status": "applied"}],
        "why": {"zz-epoch:all": [{"parent": None, "relation": "requested"}]},
    }
    (tree / "var/lib/forge").mkdir(parents=True)
    (tree / "var/lib/forge/manifest.json").write_text(json.dumps(manifest))
    report = audit_target(open_target(str(tree)), top=3)
    usage = {u.name: u for u in report.inventory.packages}["zz-epoch"]
    assert (usage.files_kept, usage.files_shipped, usage.dropped_bytes) == (1, 8, 12345)
    assert "/etc/hostname" not in report.inventory.unowned and "/etc/os-release" not in report.inventory.unowned
    assert (report.sizes.saved_files, report.sizes.saved_bytes) == (7, 12345)
    assert report.forge is True


@pytest.mark.parametrize("bad", [[], {"why": {"x:amd64": "nope"}}])
def test_malformed_forge_manifest_is_an_audit_error(bad: object) -> None:
    with pytest.raises(AuditError, match=r"cannot read /var/lib/forge/manifest\.json"):
        parse_manifest(bad)


def test_why_from_manifest_follows_parents_to_the_request() -> None:
    manifest = parse_manifest({"why": {
        "app:amd64": [{"parent": None, "relation": "requested"}],
        "libfoo:amd64": [{"parent": "app:amd64", "relation": "Depends: libfoo (>= 1)"}],
        "libc6:amd64": [{"parent": "libfoo:amd64", "relation": "Depends: libc6"},
                        {"parent": "app:amd64", "relation": "Pre-Depends: libc6"}],
    }})
    chains = chains_from_manifest(manifest.why, "libc6")
    rendered = [[(link.package, link.parent, link.relation) for link in chain] for chain in chains]
    assert rendered == [
        [("libc6:amd64", "app:amd64", "Pre-Depends: libc6"), ("app:amd64", None, "requested")],
        [("libc6:amd64", "libfoo:amd64", "Depends: libc6"), ("libfoo:amd64", "app:amd64", "Depends: libfoo (>= 1)"),
         ("app:amd64", None, "requested")],
    ]


def test_why_for_foreign_tree_uses_reverse_dependencies(tree: Path) -> None:
    pkgs = read_dpkg_db(DirView(tree))
    chains = chains_from_dependencies(pkgs, "libpcre2-8-0")
    rendered = [[(link.package, link.parent) for link in chain] for chain in chains]
    assert rendered[0] == [("libpcre2-8-0:amd64", "libselinux1:amd64"), ("libselinux1:amd64", "coreutils:amd64"),
                           ("coreutils:amd64", None)]
    with pytest.raises(AuditError, match="cannot explain nosuch: no such package"):
        chains_from_dependencies(pkgs, "nosuch")


def test_sizes_rank_largest_files_and_packages(tree: Path) -> None:
    report = audit_target(open_target(str(tree)), top=2)
    files = dict(DirView(tree).walk())
    expected = sorted(((p, n.size) for p, n in files.items() if n.kind == "file"), key=lambda x: (-x[1], x[0]))[:2]
    assert list(report.sizes.largest_files) == expected
    assert len(report.sizes.largest_packages) == 2
    assert report.sizes.largest_packages[0][0] == "libc6:amd64"
    assert report.sizes.saved_bytes is None


# ---------------------------------------------------------------- targets: tarballs, OCI

def _tar_of_dir(root: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(root, arcname=".")
    return buf.getvalue()


@pytest.mark.parametrize("how", ["none", "gz", "xz", "zst"])
def test_rootfs_tarball_audits_like_its_directory(tree: Path, tmp_path: Path, how: str) -> None:
    suffix, data = compress(_tar_of_dir(tree), how)
    tarball = tmp_path / f"rootfs.tar{suffix}"
    tarball.write_bytes(data)
    from_dir = audit_target(open_target(str(tree))).as_dict()
    from_tar = audit_target(open_target(str(tarball))).as_dict()
    for key in ("packages", "unowned_files", "elf", "sizes"):
        assert from_tar[key] == from_dir[key], key


def test_tar_member_with_dotdot_is_not_placed() -> None:
    view = load_tar_bytes(make_tar([Reg("../../etc/evil", "x"), Reg("a/../../b", "y"), Reg("ok", "z")]), name="t")
    assert sorted(p for p, _ in view.walk()) == ["/ok"]


def test_device_members_stay_inert_nodes() -> None:
    view = load_tar_bytes(make_tar([Dir("dev"), Dev("dev/null"), Dev("dev/sda", kind="block", major=8, minor=0)]),
                          name="t")
    assert view.lstat("/dev/null") == Node("other", 0, 0o666, 1_700_000_000)
    with pytest.raises(FileNotFoundError):
        view.open("/dev/null")


def test_write_through_absolute_symlink_stays_inside() -> None:
    view = load_tar_bytes(make_tar([Dir("etc"), Lnk("escape", "/etc"), Reg("escape/passwd", "root:x")]), name="t")
    assert view.open("/etc/passwd").read() == b"root:x"
    assert view.lstat("/escape") == Node("symlink", 0, 0o777, 1_700_000_000, "/etc")


def test_hardlink_cannot_escape_root() -> None:
    view = load_tar_bytes(make_tar([Reg("a", "data"), Hard("b", "a"), Hard("c", "/../../etc/shadow")]), name="t")
    assert view.open("/b").read() == b"data"
    assert view.lstat("/c") is None


def test_symlink_loop_does_not_hang() -> None:
    view = load_tar_bytes(make_tar([Lnk("x", "y"), Lnk("y", "x")]), name="t")
    assert resolve(view, "/x") is None


def oci_layout(path: Path, layers: list[bytes], tag: str = "latest", *, extra_tags: tuple[str, ...] = ()) -> None:
    """A minimal OCI image layout with the given (uncompressed) layer tars."""
    blobs = path / "blobs/sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}"

    layer_descs = []
    for layer in layers:
        _, data = compress(layer, "gz")
        layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(data),
                            "size": len(data)})
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    config_digest = put(config.encode())
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": config_digest, "size": len(config)},
                           "layers": layer_descs}).encode()
    digest = put(manifest)
    index_path = path / "index.json"
    index: dict[str, Any] = (json.loads(index_path.read_text()) if index_path.exists()
                             else {"schemaVersion": 2, "manifests": []})
    for t in (tag, *extra_tags):
        index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                                   "size": len(manifest),
                                   "annotations": {"org.opencontainers.image.ref.name": t}})
    index_path.write_text(json.dumps(index))
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')


LOWER = make_tar([Dir("etc"), Reg("etc/keep", "k"), Reg("etc/gone", "g"), Dir("opt"), Reg("opt/old", "o"),
                  Dir("opt/sub"), Reg("opt/sub/deep", "d")])
UPPER = make_tar([Reg("etc/.wh.gone"), Dir("opt"), Reg("opt/.wh..wh..opq"), Reg("opt/new", "n"),
                  Reg("etc/keep", "k2")])


def test_oci_layers_apply_in_order_with_whiteouts(tmp_path: Path) -> None:
    oci_layout(tmp_path / "img", [LOWER, UPPER])
    target = open_target(str(tmp_path / "img"))
    paths = sorted(p for p, _ in target.view.walk())
    assert paths == ["/etc", "/etc/keep", "/opt", "/opt/new"]
    assert target.view.open("/etc/keep").read() == b"k2"
    assert target.kind == "oci-layout" and len(target.layers) == 2 and target.ref == "latest"


def test_oci_tag_selects_the_image(tmp_path: Path) -> None:
    oci_layout(tmp_path / "img", [LOWER], tag="v1")
    oci_layout(tmp_path / "img", [LOWER, UPPER], tag="v2")
    assert open_target(f"{tmp_path / 'img'}:v1").view.lstat("/etc/gone") is not None
    assert open_target(f"{tmp_path / 'img'}:v2").view.lstat("/etc/gone") is None
    with pytest.raises(AuditError, match=r"the layout holds 2 manifests; name one with :TAG \(tags: v1, v2\)"):
        open_target(str(tmp_path / "img"))
    with pytest.raises(AuditError, match=r"cannot find tag .*:v3: the layout has v1, v2"):
        open_target(f"{tmp_path / 'img'}:v3")


def test_multi_platform_index_picks_the_requested_architecture(tmp_path: Path) -> None:
    oci_layout(tmp_path / "amd", [make_tar([Reg("which", "amd64")])])
    oci_layout(tmp_path / "arm", [make_tar([Reg("which", "arm64")])])
    layout = tmp_path / "multi"
    shutil.copytree(tmp_path / "amd", layout)
    shutil.copytree(tmp_path / "arm/blobs", layout / "blobs", dirs_exist_ok=True)
    descs = []
    for src, arch in (("amd", "amd64"), ("arm", "arm64")):
        desc = json.loads((tmp_path / src / "index.json").read_text())["manifests"][0]
        descs.append({**desc, "platform": {"os": "linux", "architecture": arch}, "annotations": {}})
    nested = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                         "manifests": descs}).encode()
    digest = hashlib.sha256(nested).hexdigest()
    (layout / "blobs/sha256" / digest).write_bytes(nested)
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": f"sha256:{digest}", "size": len(nested),
        "annotations": {"org.opencontainers.image.ref.name": "multi"}}]}))
    for arch in ("amd64", "arm64"):
        assert open_target(f"{layout}:multi", arch=arch).view.open("/which").read() == arch.encode()
    assert open_target(str(layout), arch="x86_64").view.open("/which").read() == b"amd64"
    assert open_target(str(layout), arch="linux/arm64/v8").view.open("/which").read() == b"arm64"
    # without a platform the host's is read and the target says so (no error)
    host = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, "")
    if host:
        target = open_target(str(layout))
        assert target.view.open("/which").read() == host.encode()
        assert target.note.startswith(f"2 platforms (linux/amd64, linux/arm64): reading linux/{host}, the host's")
    with pytest.raises(AuditError, match=r"no image for linux/s390x \(the index has: linux/amd64, linux/arm64\)"):
        open_target(str(layout), arch="s390x")


def test_oci_archive_is_read_like_the_layout(tmp_path: Path) -> None:
    oci_layout(tmp_path / "img", [LOWER, UPPER])
    archive = tmp_path / "img.tar"
    archive.write_bytes(_tar_of_dir(tmp_path / "img"))
    target = open_target(str(archive))
    assert target.kind == "oci-archive"
    assert sorted(p for p, _ in target.view.walk()) == ["/etc", "/etc/keep", "/opt", "/opt/new"]


def test_oci_blob_that_does_not_match_its_digest_is_refused(tmp_path: Path) -> None:
    oci_layout(tmp_path / "img", [LOWER])
    index = json.loads((tmp_path / "img/index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((tmp_path / "img/blobs/sha256" / manifest_digest).read_text())
    layer = tmp_path / "img/blobs/sha256" / manifest["layers"][0]["digest"].split(":")[1]
    layer.write_bytes(layer.read_bytes() + b"tampered")
    with pytest.raises(AuditError, match="does not match its digest"):
        open_target(str(tmp_path / "img"))


def test_docker_save_archive_is_read(tmp_path: Path) -> None:
    manifest = json.dumps([{"Config": "c.json", "RepoTags": ["app:1"], "Layers": ["l1/layer.tar", "l2/layer.tar"]}])
    archive = tmp_path / "docker.tar"
    archive.write_bytes(make_tar([Reg("manifest.json", manifest), Reg("c.json", "{}"), Dir("l1"), Dir("l2"),
                                  Reg("l1/layer.tar", LOWER), Reg("l2/layer.tar", UPPER)]))
    target = open_target(f"{archive}:1")
    assert target.kind == "docker-archive"
    assert target.layers == tuple("sha256:" + hashlib.sha256(x).hexdigest() for x in (LOWER, UPPER))
    assert sorted(p for p, _ in target.view.walk()) == ["/etc", "/etc/keep", "/opt", "/opt/new"]


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file or directory"),
    (b"this is not a tarball", "not a readable tar archive"),
])
def test_bad_targets_are_audit_errors(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "target.tar"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AuditError, match=message):
        open_target(str(path))


# ---------------------------------------------------------------- slimming

def test_slim_keeps_program_closure_symlinks_and_parents(tree: Path) -> None:
    keep = slim_keep_set(DirView(tree), ["/bin/ls"], [])
    libc_real = real(tree, "/lib/x86_64-linux-gnu/libc.so.6")
    ld_real = real(tree, "/lib64/ld-linux-x86-64.so.2")
    assert {"/bin", "/usr/bin/ls", "/lib", "/lib64", libc_real, ld_real, "/usr", "/usr/lib"} <= keep
    assert real(tree, "/lib/x86_64-linux-gnu/libpcre2-8.so.0") in keep
    assert "/usr/lib/x86_64-linux-gnu/libpcre2-8.so.0" in keep  # the soname link itself
    assert "/usr/bin/true" not in keep and "/etc/hostname" not in keep
    # what is kept is enough: audit the kept subset alone
    assert check_closure(DirView(tree), [p for p in keep if (tree / p.lstrip("/")).is_file()]).missing == ()


def test_slim_follows_shebang_and_env_to_interpreters(tree: Path) -> None:
    (tree / "usr/local/bin").mkdir(parents=True)
    (tree / "usr/local/bin/tool").write_text("#!/usr/bin/env true\n")
    os.symlink("ls", tree / "usr/bin/env")  # stands in for env: any program will do
    keep = slim_keep_set(DirView(tree), ["/usr/local/bin/tool"], [])
    assert {"/usr/local/bin/tool", "/usr/bin/env", "/usr/bin/ls", "/usr/bin/true"} <= keep


def test_slim_keeps_data_dirs_and_globs(tree: Path) -> None:
    (tree / "usr/share/app/sub").mkdir(parents=True)
    (tree / "usr/share/app/sub/a.dat").write_text("a")
    (tree / "etc/app.conf").write_text("c")
    (tree / "etc/other.txt").write_text("o")
    (tree / "etc/app.d").mkdir()
    (tree / "etc/app.d/nested.conf").write_text("n")
    keep = slim_keep_set(DirView(tree), [], ["/usr/share/app", "/etc/*.conf"])
    assert {"/usr/share/app", "/usr/share/app/sub", "/usr/share/app/sub/a.dat", "/etc/app.conf", "/etc"} <= keep
    assert "/etc/other.txt" not in keep and "/usr/bin/ls" not in keep and "/etc/app.d/nested.conf" not in keep


@pytest.mark.parametrize(("pattern", "path", "hit"), [
    ("/etc/*.conf", "/etc/app.conf", True),
    ("/etc/*.conf", "/etc/ld.so.conf.d/x.conf", False),
    ("/etc/**.conf", "/etc/ld.so.conf.d/x.conf", True),
    ("/usr/share/**", "/usr/share/a/b/c", True),
    ("/usr/lib/lib?.so", "/usr/lib/libc.so", True),
    ("/usr/lib/lib?.so", "/usr/lib/lib/.so", False),
    ("/x/[ab].txt", "/x/b.txt", True),
    ("/x/[!ab].txt", "/x/b.txt", False),
    ("/x/a+b(c).txt", "/x/a+b(c).txt", True),
])
def test_slim_glob_semantics(pattern: str, path: str, hit: bool) -> None:
    assert bool(glob_regex(pattern).match(path)) is hit


def test_slim_unknown_program_is_an_error(tree: Path) -> None:
    with pytest.raises(AuditError, match="cannot keep /usr/bin/nope: no such file in the tree"):
        slim_keep_set(DirView(tree), ["/usr/bin/nope"], [])


# ---------------------------------------------------------------- CLI

def test_cli_fail_on_missing_libs_exits_non_zero_with_summary(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(tree), "--fail-on", "missing-libs"]) == 0
    os.unlink(tree / real(tree, "/lib/x86_64-linux-gnu/libpcre2-8.so.0").lstrip("/"))
    capsys.readouterr()
    assert main(["audit", str(tree), "--fail-on", "missing-libs"]) == 1
    out, err = capsys.readouterr()
    assert "MISSING library libpcre2-8.so.0" in out
    assert err.strip().splitlines() == [
        f"forge: audit of {tree} failed: 1 missing library (libpcre2-8.so.0 needed by "
        f"{real(tree, '/lib/x86_64-linux-gnu/libselinux.so.1')})"]


def test_cli_fail_on_unowned_files(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(tree), "--fail-on", "unowned-files", "--json"]) == 1
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert "/etc/hostname" in report["unowned_files"]
    assert "unowned file(s)" in err


def test_cli_json_is_canonical_and_stable(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["audit", str(tree), "--json", "--why", "libpcre2-8-0"])
    first = capsys.readouterr().out
    main(["audit", str(tree), "--json", "--why", "libpcre2-8-0"])
    assert capsys.readouterr().out == first
    data = json.loads(first)
    assert first.strip() == json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert data["why"]["chains"][0][0]["parent"] == "libselinux1:amd64"
    assert [p["name"] for p in data["packages"]] == ["coreutils", "libc6", "libpcre2-8-0", "libselinux1", "zz-epoch"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--fail-on", "everything"],
     "forge: cannot use --fail-on everything: unknown condition (known: missing-libs, unowned-files)"),
    (["--top", "-1"], "forge: cannot use --top -1: must be zero or more"),
])
def test_cli_rejects_bad_options(tree: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                 message: str) -> None:
    assert main(["audit", str(tree), *argv]) == AuditError.exit_code
    assert capsys.readouterr().err == message + "\n"


def test_cli_missing_target_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(tmp_path / "nope")]) == AuditError.exit_code
    assert capsys.readouterr().err == f"forge: cannot open {tmp_path / 'nope'}: no such file or directory\n"


def test_cli_human_report_names_packages_and_sections(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(tree), "--top", "3", "--why", "libc6"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"{tree}: directory, debian 12, 5 packages")
    assert "libselinux1" in out and "files owned by no package" in out and "why libc6:" in out


# ---------------------------------------------------------------- acceptance: a real mmdebstrap minbase tarball

def _host_mirror() -> str:
    for source in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in source.read_text().splitlines():
            if line.startswith("URIs:") and line.split()[1:]:
                return line.split()[1]
    pytest.skip("the host's apt sources name no deb822 URIs: line")


@pytest.fixture(scope="session")
def minbase_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap is not installed")
    out = tmp_path_factory.mktemp("minbase") / "minbase.tar"
    subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase", "bookworm", str(out), _host_mirror()],
                   check=True, capture_output=True, timeout=600)
    return out


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.root
def test_mmdebstrap_minbase_inventory_matches_dpkg_query(minbase_tar: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(minbase_tar), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    extracted = tmp_path / "x"
    extracted.mkdir()
    subprocess.run(["tar", "-C", str(extracted), "--exclude=./dev/*", "-xf", str(minbase_tar)], check=True)
    listed = subprocess.run(
        ["dpkg-query", f"--admindir={extracted}/var/lib/dpkg", "-W", "-f", "${Package}\t${Version}\t${Architecture}\n"],
        check=True, capture_output=True, text=True).stdout
    expected = sorted(tuple(line.split("\t")) for line in listed.splitlines() if line)
    got = sorted((p["name"], p["version"], p["architecture"]) for p in report["packages"])
    assert got == expected and len(got) > 50
    assert report["elf"]["missing"] == [] and report["elf"]["checked"] > 100
    assert report["os"]["ID"] == "debian"
    # the same tarball's CycloneDX SBOM passes the official 1.5 schema and names every package by purl
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    assert main(["sbom", str(minbase_tar), "--format", "cyclonedx"]) == 0
    sbom = capsys.readouterr().out
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(sbom) is None
    purls = {c["purl"] for c in json.loads(sbom)["components"]}
    assert len(purls) == len(expected)
    assert all(p.startswith("pkg:deb/debian/") and "distro=debian-12" in p for p in purls)


@settings(max_examples=300, deadline=None)
@given(header=st.binary(min_size=60, max_size=400), tail=st.binary(max_size=200))
def test_garbage_after_elf_magic_never_raises(header: bytes, tail: bytes) -> None:
    data = b"\x7fELF" + header + tail
    view = _memory_tree({"/usr/bin/x": data})
    info = parse_elf(view, "/usr/bin/x")
    assert info is None or info.path == "/usr/bin/x"
    check_closure(view)


@settings(max_examples=200, deadline=None)
@given(mutations=st.lists(st.tuples(st.integers(min_value=0, max_value=1 << 16), st.integers(0, 255)),
                          min_size=1, max_size=8),
       cut=st.integers(min_value=64, max_value=1 << 16))
def test_corrupted_real_elf_never_raises(mutations: list[tuple[int, int]], cut: int, true_bytes: bytes) -> None:
    data = bytearray(true_bytes[:cut])
    for offset, byte in mutations:
        if offset < len(data):
            data[offset] = byte
    view = _memory_tree({"/usr/bin/true": bytes(data)})
    info = parse_elf(view, "/usr/bin/true")
    assert info is None or info.path == "/usr/bin/true"
    check_closure(view)


@pytest.fixture(scope="module")
def true_bytes() -> bytes:
    return Path("/usr/bin/true").read_bytes()
