"""``forge run`` / ``ps`` / ``rm`` / ``commit``: each isolation, limit and cleanup property shown on a real
container built from the static busybox (apt package ``busybox-static``). Needs root (namespaces, mounts,
cgroups), hence ``@pytest.mark.root`` on everything that launches; the pure parsers are tested without root.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from rootfs_forge.errors import ImageError, RunError
from rootfs_forge.image.select import select_manifest
from rootfs_forge.run import commit as commit_mod
from rootfs_forge.run import image as img
from rootfs_forge.run.cgroups import parse_proc_cgroup
from rootfs_forge.run.mounts import host_path_in_root
from rootfs_forge.run.spec import (
    ProcessDefaults,
    User,
    Volume,
    merge_env,
    parse_cpus,
    parse_size,
    parse_volume,
    plan_process,
    resolve_user,
)
from tests.support.debs import Dir, Lnk, Reg, make_tar
from tests.support.forge import forge as run_forge
from tests.support.images import BUSYBOX, DIRS, busybox_root, tar_of_tree, write_layout

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by an unprivileged user, unlike a pyenv under /root
APPLETS = ("sh", "echo", "cat", "ps", "hostname", "ip", "mount", "sleep", "true", "false", "kill", "ls", "dd",
           "head", "tail", "yes", "id", "env", "touch", "rm", "mkdir", "chmod", "grep", "wc", "trap", "seq")
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root")


# ------------------------------------------------------------------------------------------------------------
# pure parts (no root)
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("64m", 64 << 20), ("64M", 64 << 20), ("1g", 1 << 30), ("512k", 512 << 10), ("100", 100), ("2mb", 2 << 20),
    ("1.5k", 1536), ("3MiB", 3 << 20),
])
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "m", "-1m", "0", "12q", "lots"])
def test_parse_size_rejects(bad: str) -> None:
    with pytest.raises(RunError, match="cannot parse memory limit"):
        parse_size(bad)


@pytest.mark.parametrize(("text", "quota"), [("0.5", 50_000), ("2", 200_000), ("0.001", 1000)])
def test_parse_cpus(text: str, quota: int) -> None:
    assert parse_cpus(text) == quota


@pytest.mark.parametrize(("text", "expected"), [
    ("/a:/b", Volume("/a", "/b", False)), ("/a:/b:ro", Volume("/a", "/b", True)),
    ("rel:/b:rw", Volume("rel", "/b", False)),
])
def test_parse_volume(text: str, expected: Volume) -> None:
    assert parse_volume(text) == expected


@pytest.mark.parametrize("bad", ["/a", "/a:b", ":/b", "/a:/b:rx:1"])
def test_parse_volume_rejects(bad: str) -> None:
    with pytest.raises(RunError):
        parse_volume(bad)


PASSWD = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n"
GROUP = "root:x:0:\nwww:x:33:\nadm:x:4:www,other\nnogroup:x:65534:\n"


@pytest.mark.parametrize(("spec", "expected"), [
    ("", User(0, 0, (0,), "/root")),
    ("www", User(33, 33, (33, 4), "/var/www")),
    ("www:adm", User(33, 4, (4,), "/var/www")),
    ("33", User(33, 33, (33, 4), "/var/www")),
    ("1234", User(1234, 0, (0,), "/")),
    ("1234:99", User(1234, 99, (99,), "/")),
    ("nobody:65534", User(65534, 65534, (65534,), "/")),
])
def test_resolve_user(spec: str, expected: User) -> None:
    assert resolve_user(spec, PASSWD, GROUP) == expected


@pytest.mark.parametrize(("spec", "msg"), [("ghost", "no such user"), ("www:ghosts", "no such group")])
def test_resolve_user_rejects_unknown_names(spec: str, msg: str) -> None:
    with pytest.raises(RunError, match=msg):
        resolve_user(spec, PASSWD, GROUP)


def test_plan_process_follows_docker_rules() -> None:
    cfg = ProcessDefaults(entrypoint=("/bin/ep",), cmd=("default",), env=("A=1", "PATH=/img"), workdir="/w", user="www")
    p = plan_process(cfg, [], ("A=2",), None, None, "img")
    assert (p.argv, p.workdir, p.user) == (("/bin/ep", "default"), "/w", "www")
    assert dict(e.split("=", 1) for e in p.env) == {"PATH": "/img", "A": "2"}
    p = plan_process(cfg, ["x", "y"], (), "/other", "0", "img")
    assert (p.argv, p.workdir, p.user) == (("/bin/ep", "x", "y"), "/other", "0")
    with pytest.raises(RunError, match="no command"):
        plan_process(ProcessDefaults(), [], (), None, None, "rootfs")


def test_merge_env_overrides_by_key_keeping_order() -> None:
    assert merge_env(("A=1", "B=2"), ("B=3", "C=4=5")) == ("A=1", "B=3", "C=4=5")


def test_parse_proc_cgroup_hybrid() -> None:
    text = "9:name=systemd:/\n4:memory:/process_api/x\n1:cpu,cpuacct:/a\n0::/\n"
    assert parse_proc_cgroup(text) == {"name=systemd": "/", "memory": "/process_api/x", "cpu": "/a",
                                       "cpuacct": "/a", "": "/"}


@pytest.mark.parametrize(("links", "path", "expected"), [
    ({"etc": "/../../../outside"}, "/etc/hosts", "outside/hosts"),
    ({"etc": "../.."}, "/etc/hosts", "hosts"),
    ({"a": "b", "b": "/c/d"}, "/a/x", "c/d/x"),
    ({}, "/../../x/./y", "x/y"),
    ({}, "/", ""),
    ({"usr": "/", "etc": "usr/usr/e"}, "/etc/./hosts", "e/hosts"),
])
def test_symlinked_mount_target_stays_inside_root(tmp_path: Path, links: dict[str, str], path: str,
                                                  expected: str) -> None:
    for name, target in links.items():
        os.symlink(target, tmp_path / name)
    assert host_path_in_root(str(tmp_path), path) == str(tmp_path / expected)


def test_symlink_loop_in_image_is_an_error(tmp_path: Path) -> None:
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    with pytest.raises(RunError, match="too many levels"):
        host_path_in_root(str(tmp_path), "/a/x")


@pytest.mark.parametrize(("index", "tag", "want"), [
    ({"manifests": [{"digest": "d1"}]}, None, "d1"),
    ({"manifests": [{"digest": "d1", "annotations": {img.REF_NAME: "a"}},
                    {"digest": "d2", "annotations": {img.REF_NAME: "b"}}]}, "b", "d2"),
])
def test_choose_manifest(index: dict, tag: str | None, want: str) -> None:
    assert select_manifest(index, tag, None, lambda d: {"layers": []}, "layout")[0]["digest"] == want


@pytest.mark.parametrize(("index", "tag", "msg"), [
    ({"manifests": [{"digest": "d1"}, {"digest": "d2"}]}, None, "name one with :TAG"),
    ({"manifests": [{"digest": "d1", "annotations": {img.REF_NAME: "a"}}]}, "zz", "the layout has a"),
])
def test_choose_manifest_rejects(index: dict, tag: str | None, msg: str) -> None:
    with pytest.raises(ImageError, match=msg):
        select_manifest(index, tag, None, lambda d: {"layers": []}, "layout")


# ------------------------------------------------------------------------------------------------------------
# fixtures: a busybox rootfs and OCI layouts built from it
# ------------------------------------------------------------------------------------------------------------

def build_busybox_root(root: Path) -> Path:
    return busybox_root(root, APPLETS, (*DIRS, "data"), {"etc/passwd": PASSWD, "etc/group": GROUP,
                                                        "etc/motd": "hello from the image\n", "data/keep": "lower\n"})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not (ROOT and os.path.exists(BUSYBOX)):
        pytest.skip("needs root and busybox-static")
    base = tmp_path_factory.mktemp("forge-run")
    rootfs = build_busybox_root(base / "rootfs")
    layout = base / "image"
    # layer 2 deletes /etc/motd, hides the lower /data contents (opaque) and adds /data/new
    top = make_tar([Dir("etc"), Reg("etc/.wh.motd"), Dir("data"), Reg("data/.wh..wh..opq"),
                    Reg("data/new", "upper\n"), Reg("etc/layer2", "2\n")])
    write_layout(layout, [tar_of_tree(rootfs), top], "base",
                 config={"Cmd": ["/bin/sh", "-c", "echo default cmd"], "Env": ["FROM_IMAGE=yes"],
                         "WorkingDir": "/etc"})
    return {"base": base, "rootfs": rootfs, "layout": layout, "cache": base / "cache", "state": base / "state"}


AS_NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", SYSTEM_PYTHON, "-m", "rootfs_forge"]


def rootless_setup(world: dict[str, Path], base: Path) -> tuple[Path, Path, dict[str, str]]:
    """A copy of the package, of the world's layout and a layer cache under ``base`` (which must be outside
    pytest's 0700 tree), all owned by uid 65534; returns the cache, the layout and the environment to run forge
    as that user (``AS_NOBODY``). The pyenv interpreter under /root is not readable by nobody, so the system
    Python runs the copy; the layer cache is unpacked in rootless form here because that Python lacks
    libarchive."""
    pkg = base / "pkg"
    shutil.copytree(REPO / "rootfs_forge", pkg / "rootfs_forge")
    cache = base / "cache"
    img.layer_dirs(img.open_layout(str(world["layout"]), "base"), str(cache), rootless=True)
    layout = base / "layout"
    shutil.copytree(world["layout"], layout)
    (base / "xdg").mkdir(mode=0o700)  # a real XDG_RUNTIME_DIR (a missing one is not used)
    for p in [base, *base.rglob("*")]:
        os.lchown(p, 65534, 65534)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(base), "XDG_RUNTIME_DIR": str(base / "xdg"),
           "XDG_STATE_HOME": str(base / "state"), "PYTHONPATH": str(pkg), "PYTHONDONTWRITEBYTECODE": "1"}
    return cache, layout, env


def forge(world: dict[str, Path], *args: str, timeout: float = 60, check: int | None = None,
          **popen: Any) -> subprocess.CompletedProcess[str]:
    """forge against the world's cache and state dir: ``run`` as a real process (it forks into namespaces;
    ``popen`` goes to ``subprocess.run``), ``ps``/``rm``/``commit`` in this process."""
    state = ("--state-dir", str(world["state"]))
    if args and args[0] == "run":
        proc = run_forge("run", *state, *args[1:], cache=world["cache"], epoch=None, cli=True, timeout=timeout,
                         **popen)
    else:
        proc = run_forge(*args, *(state if args and args[0] in ("ps", "rm", "commit") else ()), epoch=None)
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def tree_digest(root: Path) -> dict[str, str]:
    """Every path with type, mode, owner, xattrs and content (or link target): a change anywhere shows."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            what = f"{stat.filemode(st.st_mode)} {st.st_uid}:{st.st_gid} {st.st_mtime_ns}"
            if p.is_symlink():
                what += " -> " + os.readlink(p)
            elif p.is_file():
                what += " " + hashlib.sha256(p.read_bytes()).hexdigest()
            elif stat.S_ISCHR(st.st_mode):
                what += f" dev {st.st_rdev}"
            what += " " + ",".join(sorted(os.listxattr(p, follow_symlinks=False)))
            out[str(p.relative_to(root))] = what
    return out


# ------------------------------------------------------------------------------------------------------------
# isolation
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.root
def test_command_is_pid_1_with_no_init(world: dict[str, Path]) -> None:
    assert forge(world, "run", "--no-init", str(world["rootfs"]), "sh", "-c", "echo $$", check=0).stdout == "1\n"


@pytest.mark.root
def test_forge_init_is_pid_1_and_command_pid_2(world: dict[str, Path]) -> None:
    out = forge(world, "run", str(world["rootfs"]), "sh", "-c", "echo $$; cat /proc/1/cmdline", check=0).stdout
    assert out.split("\n")[0] == "2" and out.split("\n")[1].startswith("forge-init\0--\0/bin/sh\0"), out


@pytest.mark.root
def test_host_command_line_not_visible_inside(world: dict[str, Path]) -> None:
    out = forge(world, "run", str(world["rootfs"]), "sh", "-c", "cat /proc/1/cmdline; echo; ps -o args", check=0)
    assert str(REPO) not in out.stdout and sys.executable not in out.stdout and "rootfs_forge" not in out.stdout
    assert out.stdout.startswith("forge-init")


@pytest.mark.root
def test_host_processes_invisible(world: dict[str, Path]) -> None:
    marker = subprocess.Popen(["sleep", "3600.123"])
    try:
        out = forge(world, "run", str(world["rootfs"]), "ps", "-o", "pid,args", check=0).stdout
    finally:
        marker.kill()
        marker.wait()
    pids = [int(line.split()[0]) for line in out.splitlines()[1:]]
    assert "3600.123" not in out
    assert sorted(pids) == list(range(1, len(pids) + 1)) and len(pids) <= 3, out


@pytest.mark.root
def test_hostname_isolated(world: dict[str, Path]) -> None:
    before = socket.gethostname()
    out = forge(world, "run", "--hostname", "inside-box", str(world["rootfs"]), "sh", "-c",
                "hostname; hostname changed-too 2>/dev/null || echo denied; hostname; cat /etc/hostname",
                check=0).stdout
    assert out.split() == ["inside-box", "denied", "inside-box", "inside-box"]  # no CAP_SYS_ADMIN inside
    assert socket.gethostname() == before


@pytest.mark.root
def test_no_network_but_loopback_by_default(world: dict[str, Path]) -> None:
    out = forge(world, "run", str(world["rootfs"]), "sh", "-c", "cat /proc/net/dev; ip -o link", check=0).stdout
    ifaces = [line.split(":")[0].strip() for line in out.splitlines() if ":" in line and "|" not in line
              and not line[0].isdigit()]
    assert ifaces == ["lo"], out
    assert "state UNKNOWN" in out or "UP" in out
    host = Path("/proc/net/dev").read_text()
    assert any(line.split(":")[0].strip() != "lo" for line in host.splitlines()[2:])  # host has more than lo


@pytest.mark.root
def test_network_host_shares_interfaces(world: dict[str, Path]) -> None:
    out = forge(world, "run", "--network", "host", str(world["rootfs"]), "cat", "/proc/net/dev", check=0).stdout
    names = sorted(line.split(":")[0].strip() for line in out.splitlines()[2:])
    host = sorted(line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:])
    assert names == host


WRITE_EVERYWHERE = ("rm -rf /bin/ls /etc/motd /data; echo pwned > /etc/passwd; chmod 777 /etc; mkdir /new; "
                    "touch /bin/new; ln -sf /x /bin/cat2; echo x >> /bin/busybox; echo ok")


@pytest.mark.root
@pytest.mark.parametrize("storage", ["overlay", "copy"])
def test_rootfs_dir_unchanged_after_a_run_that_writes_everywhere(world: dict[str, Path], storage: str) -> None:
    before = tree_digest(world["rootfs"])
    out = forge(world, "run", "--storage", storage, str(world["rootfs"]), "sh", "-c", WRITE_EVERYWHERE, check=0)
    assert out.stdout == "ok\n"
    assert tree_digest(world["rootfs"]) == before


@pytest.mark.root
def test_image_and_layer_cache_unchanged_after_writes(world: dict[str, Path]) -> None:
    forge(world, "run", f"{world['layout']}:base", "true", check=0)  # fill the cache
    before = tree_digest(world["layout"]), tree_digest(world["cache"])
    forge(world, "run", f"{world['layout']}:base", "sh", "-c", WRITE_EVERYWHERE, check=0)
    assert (tree_digest(world["layout"]), tree_digest(world["cache"])) == before


@pytest.mark.root
def test_read_only_root(world: dict[str, Path]) -> None:
    out = forge(world, "run", "--read-only", str(world["rootfs"]), "sh", "-c",
                "touch /x 2>&1; touch /tmp/ok && echo tmp-writable", check=0).stdout
    assert "Read-only file system" in out and "tmp-writable" in out


@pytest.mark.root
def test_volumes_rw_and_ro(world: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("from host\n")
    out = forge(world, "run", "-v", f"{tmp_path}:/mnt", str(world["rootfs"]), "sh", "-c",
                "cat /mnt/in.txt; echo back > /mnt/out.txt", check=0).stdout
    assert out == "from host\n" and (tmp_path / "out.txt").read_text() == "back\n"
    out = forge(world, "run", "-v", f"{tmp_path}:/mnt:ro", str(world["rootfs"]), "sh", "-c",
                "echo no > /mnt/ro.txt", check=1)
    assert "Read-only" in out.stderr and not (tmp_path / "ro.txt").exists()


@pytest.mark.root
def test_user_env_workdir(world: dict[str, Path]) -> None:
    out = forge(world, "run", "--user", "www", "-e", "X=1", "-w", "/data", str(world["rootfs"]), "sh", "-c",
                'id -u; id -g; id -G; echo "$X $HOME"; pwd', check=0).stdout
    assert out.split("\n")[:5] == ["33", "33", "33 4", "1 /var/www", "/data"]


@pytest.mark.root
def test_capabilities_bounded_to_docker_default_and_no_new_privs(world: dict[str, Path]) -> None:
    out = forge(world, "run", str(world["rootfs"]), "grep", "-E", "^(CapBnd|CapEff|CapInh|NoNewPrivs)",
                "/proc/self/status", check=0).stdout
    fields = dict(line.split(":\t") for line in out.strip().splitlines())
    assert fields["CapBnd"] == fields["CapEff"] == "00000000a00425fb"  # Docker's default without CAP_MKNOD
    assert fields["CapInh"] == "0000000000000000" and fields["NoNewPrivs"] == "1"


@pytest.mark.root
def test_container_cannot_mount_or_reach_host_root(world: dict[str, Path]) -> None:
    out = forge(world, "run", str(world["rootfs"]), "sh", "-c",
                "mount -t tmpfs x /mnt 2>&1 || echo denied; ls /", check=0).stdout
    assert "denied" in out
    assert "root" not in out.split() and "work" not in out.split()  # host dirs not reachable


@pytest.mark.root
def test_inherited_fds_closed(world: dict[str, Path], tmp_path: Path) -> None:
    leak = os.open(tmp_path / "secret", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        out = forge(world, "run", str(world["rootfs"]), "ls", "/proc/self/fd", pass_fds=(leak,), check=0).stdout
    finally:
        os.close(leak)
    assert sorted(int(x) for x in out.split()) == [0, 1, 2, 3]  # 3: ls's own directory handle


@pytest.mark.root
def test_dev_is_minimal(world: dict[str, Path]) -> None:
    out = forge(world, "run", str(world["rootfs"]), "ls", "/dev", check=0).stdout.split()
    assert sorted(out) == sorted(["core", "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
                                  "stdout", "tty", "urandom", "zero"])
    assert forge(world, "run", str(world["rootfs"]), "sh", "-c", "echo x > /sys/x", check=1).returncode == 1


# ------------------------------------------------------------------------------------------------------------
# images: defaults, whiteouts, bad input
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.root
def test_image_defaults_and_whiteouts(world: dict[str, Path]) -> None:
    out = forge(world, "run", f"{world['layout']}:base", check=0).stdout
    assert out == "default cmd\n"
    out = forge(world, "run", f"{world['layout']}:base", "sh", "-c",
                'pwd; echo $FROM_IMAGE; ls /data; cat /etc/layer2; cat /etc/motd 2>&1 || echo gone', check=0).stdout
    assert out.split("\n")[:5] == ["/etc", "yes", "new", "2", "cat: can't open '/etc/motd': No such file or directory"]


@pytest.mark.root
def test_image_runs_with_copy_fallback_too(world: dict[str, Path]) -> None:
    out = forge(world, "run", "--storage", "copy", f"{world['layout']}:base", "sh", "-c",
                "ls /data; cat /etc/motd 2>/dev/null || echo gone", check=0).stdout
    assert out == "new\ngone\n"


@pytest.mark.root
def test_oci_archive(world: dict[str, Path], tmp_path: Path) -> None:
    archive = tmp_path / "img.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(world["layout"], arcname=".")
    out = forge(world, "run", f"{archive}:base", "cat", "/data/new", check=0).stdout
    assert out == "upper\n"


@pytest.mark.root
@pytest.mark.parametrize("kind", ["layout", "oci-archive"])
def test_relative_image_and_cache_paths_work_from_any_directory(world: dict[str, Path], tmp_path: Path,
                                                                kind: str) -> None:
    """The README's quick start runs ``forge run out/NAME:TAG``: relative image and cache paths, layers not yet
    cached (the layer unpack changes directory; a relative blob path must not break it)."""
    if kind == "layout":
        shutil.copytree(world["layout"], tmp_path / "out" / "img")
    else:
        (tmp_path / "out").mkdir()
        with tarfile.open(tmp_path / "out" / "img", "w") as tar:
            tar.add(world["layout"], arcname=".")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "rootfs_forge", "run", "--cache-dir", "rel-cache",
                           "--state-dir", str(world["state"]), "out/img:base", "cat", "/data/new"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (0, "upper\n"), proc.stderr
    assert any((tmp_path / "rel-cache" / "layers" / "sha256").iterdir())


@pytest.mark.root
def test_unknown_tag_is_a_one_line_error(world: dict[str, Path]) -> None:
    out = forge(world, "run", f"{world['layout']}:nope", "true", check=7)
    assert out.stderr.strip() == f"forge: cannot find tag {world['layout']}:nope: the layout has base"


@pytest.mark.root
def test_missing_command_exits_127(world: dict[str, Path]) -> None:
    out = forge(world, "run", str(world["rootfs"]), "/no/such", check=127)
    assert out.stderr.strip() == "forge: cannot execute /no/such: No such file or directory"


@pytest.mark.root
@pytest.mark.parametrize(("args", "code", "message"), [
    (["-w", "/nope", "{rootfs}", "true"], 125, "cannot enter working directory /nope: No such file or directory"),
    (["-u", "ghost", "{rootfs}", "true"], 125, "cannot resolve user 'ghost': no such user in the image's /etc/passwd"),
    (["-v", "/nonexistent-forge:/x", "{rootfs}", "true"], 125, "cannot mount volume /nonexistent-forge: no such"),
    (["--memory", "lots", "{rootfs}", "true"], 8, "cannot parse memory limit: 'lots' is not a size"),
    (["/nonexistent-forge", "true"], 8, "cannot run /nonexistent-forge: no such directory, OCI layout or oci-archive"),
    (["--name", "a/b", "{rootfs}", "true"], 8, "cannot use container name 'a/b'"),
    (["{rootfs}"], 8, "cannot run {rootfs}: no command given and the image has no Entrypoint or Cmd"),
    (["{rootfs}", "/etc/passwd"], 126, "cannot execute /etc/passwd: Permission denied"),
])
def test_bad_input_is_a_one_line_error(world: dict[str, Path], args: list[str], code: int, message: str) -> None:
    out = forge(world, "run", *[a.format(rootfs=world["rootfs"]) for a in args], check=code)
    expected = "forge: " + message.format(rootfs=world["rootfs"])
    assert out.stderr.startswith(expected) and out.stderr.count("\n") == 1, out.stderr


@pytest.mark.root
def test_whiteout_under_symlink_cannot_escape_layer(world: dict[str, Path], tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    evil = make_tar([Lnk("escape", str(victim)), Reg("escape/.wh.pwned")])
    layout = tmp_path / "evil"
    write_layout(layout, [evil], "x")
    out = forge(world, "run", f"{layout}:x", "true")
    assert out.returncode != 0 and "cannot unpack layer" in out.stderr
    assert list(victim.iterdir()) == []
    assert not list((world["cache"] / "layers" / "sha256").glob("*.tmp-*"))


@pytest.mark.root
def test_etc_symlink_in_image_cannot_redirect_mounts_to_host(world: dict[str, Path], tmp_path: Path) -> None:
    victim = tmp_path / "hostetc"
    victim.mkdir()
    evil_root = tmp_path / "evilroot"
    shutil.copytree(world["rootfs"], evil_root, symlinks=True)
    shutil.rmtree(evil_root / "etc")
    os.symlink(str(victim), evil_root / "etc")  # an absolute link that would point a mount at the host
    out = forge(world, "run", str(evil_root), "sh", "-c", "cat /etc/hostname; echo x > /etc/written", check=0)
    assert out.stdout.strip().startswith("forge-")
    assert list(victim.iterdir()) == []


@pytest.mark.root
def test_corrupt_layer_blob_is_rejected(world: dict[str, Path], tmp_path: Path) -> None:
    layout = tmp_path / "corrupt"
    write_layout(layout, [make_tar([Reg("f", "data")])], "x")
    man = json.loads((layout / "blobs" / "sha256" / json.loads((layout / "index.json").read_text())["manifests"][0]
                      ["digest"][7:]).read_text())
    blob = layout / "blobs" / "sha256" / man["layers"][0]["digest"][7:]
    blob.write_bytes(gzip.compress(b"tampered"))
    out = forge(world, "run", f"{layout}:x", "true", check=7)
    assert "cannot verify layer" in out.stderr


# ------------------------------------------------------------------------------------------------------------
# limits
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.root
def test_memory_limit_kills_container(world: dict[str, Path]) -> None:
    out = forge(world, "run", "--memory", "32m", str(world["rootfs"]), "sh", "-c",
                "head -c 200m /dev/zero | tail; sleep 5; echo survived", check=137)  # forge kills within 5 s
    assert "survived" not in out.stdout
    assert "forge: container killed: memory limit 32m exceeded" in out.stderr


@pytest.mark.root
def test_memory_below_limit_runs_normally(world: dict[str, Path]) -> None:
    out = forge(world, "run", "--memory", "64m", str(world["rootfs"]), "sh", "-c",
                "head -c 8m /dev/zero | tail | wc -c", check=0)
    assert out.stdout.strip() == str(8 << 20) and "killed" not in out.stderr


@pytest.mark.root
def test_pids_limit_stops_fork_loop(world: dict[str, Path]) -> None:
    t0 = time.monotonic()
    out = forge(world, "run", "--pids", "16", str(world["rootfs"]), "sh", "-c",
                "i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; echo spawned-all", timeout=60)
    assert out.returncode != 0 and "spawned-all" not in out.stdout
    assert "can't fork" in out.stderr and "pids limit 16 reached" in out.stderr
    assert time.monotonic() - t0 < 20  # PID 1's exit took the sleeps with it
    assert subprocess.run(["true"]).returncode == 0  # the host can still fork


@pytest.mark.root
@pytest.mark.slow
def test_cpu_quota_throttles(world: dict[str, Path]) -> None:
    """Two busy loops for 2 s under --cpus 0.2 get at most ~0.4 s of CPU, and the kernel reports throttling in
    the container's cgroup (read from the host while it runs; load elsewhere cannot fake either)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    own = parse_proc_cgroup(Path("/proc/self/cgroup").read_text()).get("cpu", "/").lstrip("/")
    cpu_root = Path("/sys/fs/cgroup/cpu") / own
    before = {p.name for p in cpu_root.glob("forge-*")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rootfs_forge", "run", "--cpus", "0.2", "--cache-dir", str(world["cache"]),
         str(world["rootfs"]), "sh", "-c",
         "yes > /dev/null & a=$!; yes > /dev/null & b=$!; sleep 2; cat /proc/$a/stat /proc/$b/stat; kill $a $b"],
        stdout=subprocess.PIPE, text=True, env=env)
    quota, throttled = "", 0
    while proc.poll() is None:
        for d in cpu_root.glob("forge-*"):
            if d.name not in before:
                try:
                    quota = (d / "cpu.cfs_quota_us").read_text().strip()
                    stat_ = dict(line.split() for line in (d / "cpu.stat").read_text().splitlines())
                    throttled = max(throttled, int(stat_["nr_throttled"]))
                except (OSError, KeyError):
                    continue
        time.sleep(0.05)
    out, _ = proc.communicate()
    assert proc.returncode == 0
    ticks = sum(int(f[11]) + int(f[12]) for f in (line.rsplit(")", 1)[1].split() for line in out.splitlines()))
    assert ticks / os.sysconf("SC_CLK_TCK") <= 0.55, out  # 0.2 CPU for 2 s is 0.4 s (unlimited: up to 4 s)
    assert quota == "20000" and throttled > 0


# ------------------------------------------------------------------------------------------------------------
# exit codes and signals
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.root
@pytest.mark.parametrize(("script", "code"), [
    ("exit 0", 0), ("exit 7", 7), ("kill -TERM $$", 143), ("kill -KILL $$", 137), ("kill -INT $$", 130), ("false", 1),
])
def test_exit_codes_and_signals_propagate(world: dict[str, Path], script: str, code: int) -> None:
    forge(world, "run", str(world["rootfs"]), "sh", "-c", script, check=code)


@pytest.mark.root
@pytest.mark.parametrize(("sig", "expected"), [(signal.SIGTERM, "got TERM"), (signal.SIGUSR1, "got USR1"),
                                               (signal.SIGHUP, "got HUP")])
def test_signal_to_forge_run_is_forwarded_to_command(world: dict[str, Path], sig: int, expected: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    name = expected.split()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rootfs_forge", "run", "--cache-dir", str(world["cache"]), str(world["rootfs"]),
         "sh", "-c", f'trap "echo {expected}; exit 3" {name}; echo ready; while :; do sleep 0.1; done'],
        stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=20)
    assert out == f"{expected}\n" and proc.returncode == 3


@pytest.mark.root
@pytest.mark.parametrize(("sig", "ignored"), [(signal.SIGTERM, False), (signal.SIGHUP, True)],
                         ids=["TERM", "HUP-ignored-by-the-caller"])
def test_signal_sent_while_forge_starts_the_container_is_forwarded_not_lost(world: dict[str, Path], sig: int,
                                                                           ignored: bool) -> None:
    """A signal that reaches forge between its fork of the container and the installation of its forwarding
    handlers used to kill forge (default action: the container went with it, the command's trap never ran) or,
    with the signal ignored by forge's caller (nohup, some CI runners), vanish: the container ran on forever.
    strace widens that window deterministically: it holds forge's return from the fork for 1.5 s while the
    container starts, prints ``ready`` and the test sends the signal."""
    strace = shutil.which("strace")
    assert strace, "strace is installed by .ci/setup"
    name = signal.Signals(sig).name[3:]
    cmd = [strace, "-D", "-o", "/dev/null", "-e", "trace=clone", "-e", "inject=clone:delay_exit=1500000",
           sys.executable, "-m", "rootfs_forge", "run", "--cache-dir", str(world["cache"]), str(world["rootfs"]),
           "sh", "-c", f'trap "echo got {name}; exit 3" {name}; echo ready; while :; do sleep 0.1; done']

    def ignore() -> None:
        signal.signal(sig, signal.SIG_IGN)

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                            preexec_fn=ignore if ignored else None)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert (proc.returncode, out) == (3, f"got {name}\n")


@pytest.mark.root
@pytest.mark.skipif(not (os.path.exists(SYSTEM_PYTHON) and shutil.which("setpriv")),
                    reason="needs /usr/bin/python3 and setpriv to run as an unprivileged user")
def test_signal_sent_while_a_rootless_forge_starts_the_container_is_forwarded_not_lost(
        world: dict[str, Path]) -> None:
    """The same window rootless (uid 65534): forge forks the middle process that creates the user namespace
    and PID 1; a SIGTERM held up in that window must still reach the command's trap. (Set up as in
    test_rootless_maps_caller_to_root_in_user_namespace.)"""
    strace = shutil.which("strace")
    assert strace, "strace is installed by .ci/setup"
    base = Path(tempfile.mkdtemp(prefix="forge-rootless-"))
    proc: subprocess.Popen[str] | None = None
    try:
        cache, layout, env = rootless_setup(world, base)
        proc = subprocess.Popen(
            [strace, "-D", "-o", "/dev/null", "-e", "trace=clone", "-e", "inject=clone:delay_exit=1500000",
             *AS_NOBODY, "run", "--cache-dir", str(cache), f"{layout}:base", "sh", "-c",
             'trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 0.1; done'],
            stdout=subprocess.PIPE, text=True, env=env, cwd=base)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        shutil.rmtree(base)
    assert (proc.returncode, out) == (3, "got TERM\n")


@pytest.mark.root
def test_container_ignoring_sigterm_is_killed_after_stop_timeout(world: dict[str, Path]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rootfs_forge", "run", "--cache-dir", str(world["cache"]), "--stop-timeout", "1",
         str(world["rootfs"]), "sh", "-c", 'trap "" TERM; echo ready; while :; do sleep 0.1; done'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 137
    assert err.strip() == "forge: container ignored the stop signal for 1 s: killed"


@pytest.mark.root
def test_container_filling_its_tmpfs_gets_enospc_and_host_is_untouched(world: dict[str, Path]) -> None:
    out = forge(world, "run", "--tmp-size", "16m", str(world["rootfs"]), "sh", "-c",
                "dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>&1; echo status=$?; ls -l /tmp/fill")
    assert out.returncode == 0, out.stderr
    assert "No space left on device" in out.stdout and "status=1" in out.stdout
    assert " 16777216 " in out.stdout  # the file stopped at the tmpfs size
    bad = forge(world, "run", "--tmp-size", "lots", str(world["rootfs"]), "true")
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "--tmp-size" in bad.stderr


# ------------------------------------------------------------------------------------------------------------
# named containers, commit, ps, rm
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.root
def test_commit_change_appears_in_new_image_only(world: dict[str, Path], tmp_path: Path) -> None:
    layout = tmp_path / "img"
    shutil.copytree(world["layout"], layout)
    base_index = (layout / "index.json").read_text()
    forge(world, "run", "--name", "c1", f"{layout}:base", "sh", "-c",
          "echo hello > /greeting; rm /bin/ls; rm -rf /data; mkdir /data; echo fresh > /data/only", check=0)
    ps = forge(world, "ps", check=0).stdout
    assert "c1" in ps and f"{layout}:base" in ps
    again = forge(world, "run", "--name", "c1", f"{layout}:base", "true")
    assert again.returncode == 8 and "name is in use" in again.stderr
    digest = forge(world, "commit", "c1", f"{layout}:v2", check=0).stdout.strip()
    assert digest.startswith("sha256:")
    new = forge(world, "run", f"{layout}:v2", "sh", "-c",
                "cat /greeting; ls /bin/ls 2>/dev/null || echo no-ls; ls /data", check=0).stdout
    assert new == "hello\nno-ls\nonly\n"
    old = forge(world, "run", f"{layout}:base", "sh", "-c",
                "cat /greeting 2>/dev/null || echo no-greeting; ls /bin/ls; ls /data", check=0).stdout
    assert old == "no-greeting\n/bin/ls\nnew\n"
    assert forge(world, "run", str(world["rootfs"]), "sh", "-c", "cat /greeting", check=1)
    # the base entry is untouched; the new one is added under its tag
    index = json.loads((layout / "index.json").read_text())
    assert [m["annotations"][img.REF_NAME] for m in index["manifests"]] == ["base", "v2"]
    assert json.loads(base_index)["manifests"][0] == index["manifests"][0]
    forge(world, "rm", "c1", check=0)
    assert "c1" not in forge(world, "ps", check=0).stdout


@pytest.mark.root
def test_commit_is_deterministic(world: dict[str, Path], tmp_path: Path) -> None:
    digests = []
    for i in range(2):
        layout = tmp_path / f"img{i}"
        shutil.copytree(world["layout"], layout)
        forge(world, "run", "--name", f"det{i}", f"{layout}:base", "sh", "-c", "echo same > /f; rm /etc/layer2",
              check=0)
        digests.append(forge(world, "commit", f"det{i}", f"{layout}:v", check=0).stdout)
        forge(world, "rm", f"det{i}", check=0)
    assert digests[0] == digests[1]


@pytest.mark.root
@needs_root
def test_layer_entries_turn_overlay_whiteouts_into_oci_entries(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "new.conf").write_text("x")
    os.mknod(upper / "etc" / "gone", stat.S_IFCHR, os.makedev(0, 0))
    (upper / "opaque").mkdir()
    os.setxattr(upper / "opaque", "trusted.overlay.opaque", b"y")
    (upper / "opaque" / "f").write_text("y")
    for d in ("proc", "dev", "tmp"):
        (upper / d).mkdir()
    (upper / "etc" / "hosts").write_text("")  # a mount point forge made
    (upper / "etc" / "resolv.conf").write_text("nameserver 1.1.1.1\n")  # not empty: the user's
    got = [(e.path, e.kind) for e in commit_mod.layer_entries(str(upper))]
    assert got == [("etc", "copy"), ("etc/.wh.gone", "whiteout"), ("etc/new.conf", "copy"),
                   ("etc/resolv.conf", "copy"), ("opaque", "copy"), ("opaque/.wh..wh..opq", "opaque"),
                   ("opaque/f", "copy")]


def test_commit_copies_a_blob_it_cannot_hard_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"layer bytes"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "blobs" / "sha256").mkdir(parents=True)
    (dst / "blobs" / "sha256").mkdir(parents=True)
    (src / "blobs" / "sha256" / digest[7:]).write_bytes(data)

    def no_link(a: object, b: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    commit_mod._copy_blob(str(src), str(dst), digest)
    assert (dst / "blobs" / "sha256" / digest[7:]).read_bytes() == data
    assert sorted(p.name for p in (dst / "blobs" / "sha256").iterdir()) == [digest[7:]]  # no temp file left


# ------------------------------------------------------------------------------------------------------------
# nothing left behind
# ------------------------------------------------------------------------------------------------------------

def _cgroup_children() -> set[str]:
    own = parse_proc_cgroup(Path("/proc/self/cgroup").read_text())
    out = set()
    for ctrl in ("memory", "pids", "cpu"):
        base = Path("/sys/fs/cgroup") / ctrl / own.get(ctrl, "/").lstrip("/")
        if base.is_dir():
            out |= {str(p) for p in base.iterdir() if p.is_dir() and not _of_live_launcher(p.name)}
    return out


def _of_live_launcher(name: str) -> bool:
    """``forge-<pid>-<id>`` of a launcher still running: a container of a test running in parallel (-n 2), not
    one left behind."""
    parts = name.split("-")
    return len(parts) == 3 and parts[0] == "forge" and parts[1].isdigit() and os.path.exists(f"/proc/{parts[1]}")


@pytest.mark.root
def test_nothing_left_on_host(world: dict[str, Path]) -> None:
    """Only what belongs to this test's own runs counts (other workers run containers at the same time): host
    mounts naming the runtime dir or the test's paths, and cgroup dirs and runtime-dir entries named after the
    pids of its forge processes (recorded as each starts)."""
    rt = Path("/run/forge")
    pids_r, pids_w = os.pipe()
    record = {"preexec_fn": lambda: os.write(pids_w, b"%d\n" % os.getpid())}

    def mounts() -> list[str]:
        return [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                if str(rt) in line or str(world["base"]) in line]

    before = (mounts(), sorted(world["state"].iterdir()) if world["state"].exists() else [])
    root = str(world["rootfs"])
    forge(world, "run", root, "true", check=0, **record)
    forge(world, "run", "--memory", "32m", "--pids", "20", "--cpus", "0.5", root, "sh", "-c",
          "head -c 100m /dev/zero | tail", check=137, **record)
    forge(world, "run", "--pids", "8", root, "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9; do sleep 9 & done", **record)
    forge(world, "run", root, "sh", "-c", "kill -KILL $$", check=137, **record)
    forge(world, "run", "--name", "tmp1", "--rm", f"{world['layout']}:base", "sh", "-c", "echo x > /y", check=0,
          **record)
    forge(world, "run", root, "/no/such", check=127, **record)
    os.close(pids_w)
    with os.fdopen(pids_r) as f:
        pids = {int(line) for line in f.read().split()}
    assert len(pids) == 6
    after = (mounts(), sorted(world["state"].iterdir()) if world["state"].exists() else [])
    assert after == before
    owned = [p for p in [*map(Path, _cgroup_children()), *(rt.iterdir() if rt.exists() else [])]
             if p.name.startswith(tuple(f"{kind}-{pid}-" for pid in pids for kind in ("forge", "archive")))]
    assert owned == []




@pytest.mark.root
@pytest.mark.skipif(not (os.path.exists(SYSTEM_PYTHON) and shutil.which("setpriv")),
                    reason="needs /usr/bin/python3 and setpriv to run as an unprivileged user")
def test_rootless_maps_caller_to_root_in_user_namespace(world: dict[str, Path]) -> None:
    """As uid 65534: a user namespace maps the caller to root inside; overlay, /proc, /dev, lo all work."""
    base = Path(tempfile.mkdtemp(prefix="forge-rootless-"))  # outside pytest's 0700 tree, so nobody can enter
    try:
        cache, layout, env = rootless_setup(world, base)
        proc = subprocess.run(
            [*AS_NOBODY, "run", "--cache-dir", str(cache), f"{layout}:base", "sh", "-c",
             "id -u; cat /proc/self/uid_map; echo $$; touch /new && echo wrote; ls /data; cat /proc/net/dev | wc -l"],
            capture_output=True, text=True, env=env, timeout=60, cwd=base)
    finally:
        shutil.rmtree(base)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert lines[0] == "0" and lines[1].split() == ["0", "65534", "1"]
    assert lines[2:6] == ["2", "wrote", "new", "3"]  # /proc/net/dev: 2 header lines + lo


@pytest.mark.root
def test_run_path_imports_stay_lean(world: dict[str, Path]) -> None:
    """``forge run ROOTFS`` must start fast: beyond what a bare interpreter loads, none of the heavy libraries may
    load on its path. Both run with -S: a site hook of this machine (a .pth importing certifi, an editable
    install's finder) would load shutil, pathlib and more before forge runs and hide them from the comparison."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    bare = subprocess.run([sys.executable, "-S", "-c", "import sys; print(' '.join(sys.modules))"],
                          capture_output=True, text=True, cwd=REPO, env=env, check=True).stdout.split()
    code = ("import sys; from rootfs_forge.cli import main; rc = main(sys.argv[1:]); "
            "print(' '.join(sorted(sys.modules)), file=sys.stderr); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-S", "-c", code, "run", "--cache-dir", str(world["cache"]),
                           str(world["rootfs"]), "true"], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    added = set(proc.stderr.split()) - set(bare)
    assert "rootfs_forge.run.launcher" in added
    heavy = {"requests", "debian", "libarchive", "tqdm", "dataclasses", "inspect", "json", "shutil", "tempfile",
             "typing", "socket", "rootfs_forge.image.oci", "rootfs_forge.image.layer", "rootfs_forge.run.image",
             # argparse's help formatter asks shutil for the terminal size (cli.py asks os once instead)
             "bz2", "lzma", "zlib", "fnmatch", "pathlib", "importlib.util", "threading",
             # the common forms of `forge run` are parsed by hand (commands/run_argv.py); argparse loads only
             # for errors, help and rare spellings
             "argparse",
             # signal's enums (run/ uses _signal) and contextlib would load enum, functools and collections
             "signal", "enum", "functools", "collections", "contextlib"}
    assert heavy & added == set()


def test_choose_platform_picks_this_machine_from_an_index() -> None:
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    other = "s390x" if arch != "s390x" else "riscv64"
    index = {"manifests": [{"digest": "sha256:" + "a" * 64, "platform": {"architecture": other, "os": "linux"}},
                           {"digest": "sha256:" + "b" * 64, "platform": {"architecture": arch, "os": "linux"}}]}
    assert select_manifest(index, None, None, lambda d: {"layers": []}, "x")[0]["digest"] == "sha256:" + "b" * 64
    with pytest.raises(ImageError, match=f"no image for linux/{arch}"):
        select_manifest({"manifests": index["manifests"][:1] * 2}, None, None, lambda d: {"layers": []}, "x")


@pytest.mark.root
def test_cgroup_left_by_a_killed_run_is_removed_by_the_next(world: dict[str, Path]) -> None:
    own = parse_proc_cgroup(Path("/proc/self/cgroup").read_text())
    base = Path("/sys/fs/cgroup") / "memory" / own.get("memory", "/").lstrip("/")
    if not (Path("/sys/fs/cgroup/memory").is_dir()):  # pure v2: the unified hierarchy
        base = Path("/sys/fs/cgroup") / own.get("", "/").lstrip("/")
    stale = base / "forge-4000001-0123456789ab"  # as `forge run` (pid 4000001, long gone) would have named it
    stale.mkdir()
    try:
        forge(world, "run", "--memory", "32m", str(world["rootfs"]), "true", check=0)
        assert not stale.exists()
    finally:
        if stale.exists():
            stale.rmdir()
