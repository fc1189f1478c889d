"""``forge run``'s runtime directory and cleanup (issue #13): a runtime dir another user planted is refused,
removal never follows a symlink, and whatever a SIGKILLed run left behind (cgroup dirs in every hierarchy, an
unpacked oci-archive, partial layer unpacks, ``--rm`` containers) is removed by the next ``forge run``, ``forge
ps`` or ``forge rm``.

The attacker and victim users are numeric uids without passwd entries (one victim per test, so that parallel
workers never share a ``/tmp/forge-UID``). Killed runs use a private ``/run/forge``: each forge process runs in its
own mount namespace (``unshare -m``) with a test-owned directory bound over ``/run/forge``.
"""

from __future__ import annotations

import io
import os
import select
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rootfs_forge.errors import RunError
from rootfs_forge.run import cgroups, paths, runtime, sweep
from rootfs_forge.run import image as img
from rootfs_forge.run.rmtree import remove_tree
from rootfs_forge.run.runtime import ARCHIVE_PREFIX
from rootfs_forge.util import pids
from rootfs_forge.util.pids import parse_owner
from tests.support.images import BUSYBOX, busybox_root, tar_of_tree, write_layout

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"
ATTACKER = 65533
ROOT = os.geteuid() == 0
CGROUP_ROOT = Path("/sys/fs/cgroup")


# ------------------------------------------------------------------------------------------------------------
# fixtures: a busybox rootfs, an OCI layout and an oci-archive of it
# ------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not (ROOT and os.path.exists(BUSYBOX)):
        pytest.skip("needs root and busybox-static")
    base = tmp_path_factory.mktemp("forge-cleanup")
    rootfs = busybox_root(base / "rootfs")
    layout = base / "image"
    write_layout(layout, [tar_of_tree(rootfs)], "base")
    archive = base / "image.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layout, arcname=".")
    return {"base": base, "rootfs": rootfs, "layout": layout, "archive": archive}


# ------------------------------------------------------------------------------------------------------------
# attack 7: the rootless runtime directory
# ------------------------------------------------------------------------------------------------------------

needs_setpriv = pytest.mark.skipif(not (os.path.exists(SYSTEM_PYTHON) and shutil.which("setpriv")),
                                   reason="needs /usr/bin/python3 and setpriv to run as an unprivileged user")


@pytest.fixture
def victim_home(world: dict[str, Path]) -> Iterator[Path]:
    """A directory outside pytest's 0700 tree holding a copy of the package (the system Python runs it: the
    test interpreter may not be readable by other users) and a busybox rootfs; chowned to the victim later."""
    base = Path(tempfile.mkdtemp(prefix="forge-victim-"))
    try:
        shutil.copytree(REPO / "rootfs_forge", base / "pkg" / "rootfs_forge")
        shutil.copytree(world["rootfs"], base / "rootfs", symlinks=True)
        (base / "data").mkdir()
        (base / "data" / "precious").write_text("the victim's file\n")
        yield base
    finally:
        shutil.rmtree(base)


def give(base: Path, uid: int) -> None:
    for p in [base, *base.rglob("*")]:
        os.lchown(p, uid, uid)


def user_argv(uid: int, base: Path, *args: str, xdg: str | None = None) -> tuple[list[str], dict[str, str]]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(base), "XDG_STATE_HOME": str(base / "state"),
           "PYTHONPATH": str(base / "pkg"), "PYTHONDONTWRITEBYTECODE": "1"}
    if xdg is not None:
        env["XDG_RUNTIME_DIR"] = xdg
    return ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups", SYSTEM_PYTHON, "-m",
            "rootfs_forge", *args], env


def as_user(uid: int, base: Path, *args: str, xdg: str | None = None) -> subprocess.CompletedProcess[str]:
    argv, env = user_argv(uid, base, *args, xdg=xdg)
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, cwd=base)


def processes_of(uid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        try:
            status = Path(f"/proc/{entry}/status").read_text() if entry.isdigit() else ""
        except OSError:
            continue
        if any(line.split()[1:2] == [str(uid)] for line in status.splitlines() if line.startswith("Uid:")):
            out.append(int(entry))
    return out


def remove_planted(path: str) -> None:
    """Remove what a test planted at ``path`` without following a symlink."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


@pytest.mark.root
@needs_setpriv
def test_runtime_dir_symlink_swap_is_refused(victim_home: Path) -> None:
    """Another user points the victim's predictable /tmp/forge-UID at the victim's own files: forge must refuse
    with one line and touch nothing there (the old code created its dirs there and removed trees through it)."""
    victim = 65531
    planted = f"/tmp/forge-{victim}"
    remove_planted(planted)
    give(victim_home, victim)
    os.symlink(victim_home / "data", planted)
    os.lchown(planted, ATTACKER, ATTACKER)
    try:
        before = listing(victim_home / "data")
        proc = as_user(victim, victim_home, "run", str(victim_home / "rootfs"), "true")
        after = listing(victim_home / "data")
    finally:
        remove_planted(planted)
    assert after == before == ["precious"]
    assert proc.returncode == 125, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"forge: cannot use runtime dir {planted}: ")
    assert "symlink" in proc.stderr


@pytest.mark.root
@needs_setpriv
@pytest.mark.parametrize(("victim", "owner", "mode", "problem"), [
    (65530, ATTACKER, 0o700, "owned by uid 65533"),
    (65529, ATTACKER, 0o777, "owned by uid 65533"),
    (65528, None, 0o777, "writable by"),
    (65527, None, 0o770, "writable by"),
])
def test_planted_runtime_dir_is_refused(victim_home: Path, victim: int, owner: int | None, mode: int,
                                        problem: str) -> None:
    """A pre-created /tmp/forge-UID that another user owns, or that others can write to, may already hold the
    attacker's symlinks: forge refuses it and creates nothing inside."""
    planted = Path(f"/tmp/forge-{victim}")
    remove_planted(str(planted))
    give(victim_home, victim)
    planted.mkdir()
    os.chown(planted, owner if owner is not None else victim, victim)
    planted.chmod(mode)
    try:
        proc = as_user(victim, victim_home, "run", str(victim_home / "rootfs"), "true")
        inside = listing(planted)
        st = planted.stat()
    finally:
        remove_planted(str(planted))
    assert inside == []
    assert (st.st_mode & 0o7777, st.st_uid) == (mode, owner if owner is not None else victim)
    assert proc.returncode == 125, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"forge: cannot use runtime dir {planted}: ")
    assert problem in proc.stderr


@pytest.mark.root
@needs_setpriv
def test_xdg_runtime_dir_of_another_user_is_not_used(victim_home: Path) -> None:
    """XDG_RUNTIME_DIR pointing at a directory another user controls is ignored: forge falls back to a 0700
    directory of its own and runs (the old code created ``forge/`` in the attacker's directory)."""
    victim = 65526
    fallback = f"/tmp/forge-{victim}"
    remove_planted(fallback)
    give(victim_home, victim)
    xdg = Path(tempfile.mkdtemp(prefix="forge-attacker-xdg-"))
    os.chown(xdg, ATTACKER, ATTACKER)
    xdg.chmod(0o777)
    try:
        proc = as_user(victim, victim_home, "run", str(victim_home / "rootfs"), "echo", "ran", xdg=str(xdg))
        inside = listing(xdg)
        st = os.lstat(fallback) if os.path.lexists(fallback) else None
    finally:
        shutil.rmtree(xdg)
        remove_planted(fallback)
    assert inside == []
    assert (proc.returncode, proc.stdout) == (0, "ran\n"), proc.stderr
    assert st is not None and (st.st_uid, st.st_mode & 0o7777) == (victim, 0o700)


class _Listing:
    """What ``os.scandir`` returns, from a list (supports ``with`` and iteration)."""

    def __init__(self, entries: list[os.DirEntry[str]]) -> None:
        self.entries = iter(entries)

    def __iter__(self) -> _Listing:
        return self

    def __next__(self) -> os.DirEntry[str]:
        return next(self.entries)

    def __enter__(self) -> _Listing:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def close(self) -> None:
        return None


def test_removal_does_not_follow_a_directory_swapped_for_a_symlink(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Between listing a directory and descending into a subdirectory, the subdirectory is replaced by a symlink
    to a directory outside: removal must unlink the symlink, and the outside files survive."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("not forge's\n")
    tree = tmp_path / "rt" / "leftover"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "file").write_text("x")
    (tree / "file").write_text("y")
    real = os.scandir
    swapped: list[bool] = []

    def scandir(arg: object = ".") -> _Listing:
        with real(arg) as it:  # type: ignore[call-overload]
            entries = list(it)
        if not swapped and any(e.name == "sub" for e in entries):
            swapped.append(True)
            os.rename(tree / "sub", tmp_path / "moved")
            os.symlink(outside, tree / "sub")
        return _Listing(entries)

    monkeypatch.setattr(os, "scandir", scandir)
    error = None
    try:
        remove_tree(str(tree))
    except OSError as exc:
        error = exc
    monkeypatch.undo()
    assert swapped
    assert (outside / "keep").read_text() == "not forge's\n"
    assert error is None and not os.path.lexists(tree)


def test_removal_of_a_symlink_removes_only_the_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("not forge's\n")
    link = tmp_path / "leftover"
    link.symlink_to(outside)
    error = None
    try:
        remove_tree(str(link))
    except OSError as exc:
        error = exc
    assert (outside / "keep").read_text() == "not forge's\n"
    assert error is None and not os.path.lexists(link)


def test_removal_of_a_deep_tree(tmp_path: Path) -> None:
    """Deeper than Python's recursion limit: the remover keeps its own stack."""
    top = tmp_path / "deep"
    os.mkdir(top)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(1500):
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
    finally:
        os.close(fd)
    remove_tree(str(top))
    assert not os.path.lexists(top)


# ------------------------------------------------------------------------------------------------------------
# attack 8: leftovers of a killed run
# ------------------------------------------------------------------------------------------------------------

def hierarchies() -> list[Path]:
    """The caller's cgroup dir in every mounted hierarchy (v1 controllers, named ones, v2)."""
    out = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if ctrls == "":
            mount = CGROUP_ROOT / "unified" if (CGROUP_ROOT / "unified").is_dir() else CGROUP_ROOT
        else:
            name = ctrls.removeprefix("name=")
            mount = CGROUP_ROOT / name if (CGROUP_ROOT / name).is_dir() else CGROUP_ROOT / ctrls.split(",")[0]
        d = mount / path.lstrip("/")
        if d.is_dir():
            out.append(d)
    return out


def run_cgroups(pid: int) -> list[Path]:
    """Every cgroup dir named after ``forge run`` process ``pid``, in any hierarchy."""
    return sorted(p for h in hierarchies() for p in h.glob(f"forge-{pid}-*") if p.is_dir())


class Isolated:
    """forge commands sharing a test-owned /run/forge (bound over the real one in a private mount namespace),
    a layer cache and a state dir."""

    def __init__(self, world: dict[str, Path], tmp: Path) -> None:
        self.world = world
        self.rt = Path(tempfile.mkdtemp(prefix="forge-rt-", dir=tmp))
        self.cache = tmp / "cache"
        self.state = tmp / "state"
        os.makedirs("/run/forge", mode=0o700, exist_ok=True)  # the bind mount's target

    def argv(self, *args: str) -> list[str]:
        forge = [sys.executable, "-m", "rootfs_forge", args[0]]
        if args[0] == "run":
            forge += ["--cache-dir", str(self.cache)]
        forge += ["--state-dir", str(self.state), *args[1:]]
        return ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /run/forge && exec "$@"', str(self.rt), *forge]

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(REPO), "FORGE_CACHE": str(self.cache)}

    def __call__(self, *args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=60, env=self.env())
        if check is not None:
            assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
        return proc

    def killed_run(self, name: str) -> tuple[int, list[Path]]:
        """Start a limited ``--rm`` run of the oci-archive, wait until its command runs, SIGKILL forge alone
        (nothing of forge's own cleanup runs); once the container's processes are gone, returns its pid and the
        cgroup dirs it had while running (a concurrent test's forge run may sweep them as soon as it is dead)."""
        argv = self.argv("run", "--memory", "64m", "--pids", "50", "--cpus", "0.5", "--name", name, "--rm",
                         f"{self.world['archive']}:base", "sh", "-c", "echo ready; exec sleep 60")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env())
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready and proc.stdout is not None and proc.stdout.readline() == b"ready\n", proc.stderr
            made = run_cgroups(proc.pid)
        finally:
            os.kill(proc.pid, signal.SIGKILL)  # unshare and sh exec'd: this is the forge process
            proc.wait()
            assert proc.stdout is not None and proc.stderr is not None
            proc.stdout.close()
            proc.stderr.close()
        deadline = time.monotonic() + 10
        while any((d / "cgroup.procs").read_text().strip() for d in run_cgroups(proc.pid)):
            assert time.monotonic() < deadline, "the container outlived its killed launcher"
            time.sleep(0.05)
        return proc.pid, made

    def cleanup(self, pid: int) -> None:
        for d in run_cgroups(pid):
            d.rmdir()


def leftovers(iso: Isolated, pid: int, name: str) -> dict[str, object]:
    return {"cgroups": [str(d) for d in run_cgroups(pid)],
            "runtime dir": sorted(p.name for p in iso.rt.iterdir() if p.name != "mnt"),
            "container": (iso.state / name).exists()}


@pytest.mark.root
@pytest.mark.parametrize("next_command", ["run", "ps", "rm"])
def test_killed_run_leaves_nothing_after_next_run(world: dict[str, Path], tmp_path: Path,
                                                  next_command: str) -> None:
    """SIGKILL ``forge run --memory --pids --cpus --name X --rm ARCHIVE``: its cgroup dirs (three v1 controllers
    here), the unpacked archive and container X stay behind. The next ``forge run`` without any limit option,
    ``forge ps`` or ``forge rm`` removes them all; a kept named container stays."""
    iso = Isolated(world, tmp_path)
    iso("run", "--name", "kept", str(world["rootfs"]), "true")
    if next_command == "rm":
        iso("run", "--name", "other", str(world["rootfs"]), "true")
    pid, made = iso.killed_run("victim")
    try:
        assert made  # memory, pids and cpu (v1), or one v2 dir
        left = leftovers(iso, pid, "victim")
        assert left["runtime dir"] and left["container"], left  # what the kill left
        if next_command == "run":
            iso("run", str(world["rootfs"]), "true")
        elif next_command == "ps":
            assert "kept" in iso("ps").stdout
        else:
            assert iso("rm", "other").stdout == "other\n"
        assert leftovers(iso, pid, "victim") == {"cgroups": [], "runtime dir": [], "container": False}
        assert (iso.state / "kept" / "container.json").is_file()
    finally:
        iso.cleanup(pid)


@pytest.mark.root
@pytest.mark.parametrize("next_command", ["run", "ps"])
def test_partial_layer_unpack_of_a_dead_process_is_removed(world: dict[str, Path], tmp_path: Path,
                                                           next_command: str) -> None:
    """A run killed while unpacking a layer leaves ``<layer>.tmp-PID-*``: the next run that uses the cache (or
    ``forge ps``) removes it when PID is gone, and leaves the one of a live process alone."""
    iso = Isolated(world, tmp_path)
    iso("run", f"{world['layout']}:base", "true")
    child = subprocess.Popen(["true"])
    child.wait()
    dead_pid = child.pid
    planted = {}
    for kind, pid in (("dead", dead_pid), ("live", os.getpid())):
        for layers in ("layers", "layers-userns"):
            d = iso.cache / layers / "sha256" / f"{'0' * 63}{kind[0]}.tmp-{pid}-1a2b3c4d"
            (d / "usr").mkdir(parents=True)
            (d / "usr" / "file").write_text("partial\n")
            planted[(kind, layers)] = d
    if next_command == "run":
        iso("run", f"{world['layout']}:base", "true")
    else:
        iso("ps")
    assert {k: v.exists() for k, v in planted.items()} == {
        ("dead", "layers"): False, ("dead", "layers-userns"): False,
        ("live", "layers"): True, ("live", "layers-userns"): True}


# ------------------------------------------------------------------------------------------------------------
# the pieces: owner tags, runtime dir rules, hierarchies
# ------------------------------------------------------------------------------------------------------------

def test_owner_tags_parse_new_and_old_names() -> None:
    assert parse_owner("12-345-4026531836-0a1b2c") == ((12, 345, 4026531836), "0a1b2c")
    assert parse_owner("12-345-4026531836-my-box") == ((12, 345, 4026531836), "my-box")
    assert parse_owner("4000001-0123456789ab") == ((4000001, None, None), "0123456789ab")
    assert parse_owner("4000001-012345678901") == ((4000001, None, None), "012345678901")
    assert parse_owner("x-1-2-3") is None and parse_owner("123") is None


def test_reused_pid_or_other_namespace_is_judged_right(tmp_path: Path) -> None:
    """A leftover whose pid now belongs to another process (start time differs) is stale; one from another PID
    namespace is never judged by a pid that means something else here."""
    me, ns = os.getpid(), pids.pid_namespace()
    child = subprocess.Popen(["true"])
    child.wait()
    names = {
        "reused": f"{ARCHIVE_PREFIX}{me}-1-{ns}-aa",
        "mine": f"{ARCHIVE_PREFIX}{pids.owner_tag()}-bb",
        "dead": f"{ARCHIVE_PREFIX}{child.pid}-{pids.start_time(me)}-{ns}-cc",
        "old-dead": f"{ARCHIVE_PREFIX}{child.pid}-dd",
        "other-ns": f"{ARCHIVE_PREFIX}{child.pid}-1-{ns + 1}-ee",
        "not-ours": "something-else",
    }
    for name in names.values():
        (tmp_path / name / "sub").mkdir(parents=True)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        sweep.runtime_dir(fd)
    finally:
        os.close(fd)
    assert {k: (tmp_path / v).exists() for k, v in names.items()} == {
        "reused": False, "mine": True, "dead": False, "old-dead": False, "other-ns": True, "not-ours": True}


@pytest.mark.parametrize(("setup", "problem"), [
    ("symlink", "symlink"), ("file", "not a directory"), ("0777", "writable by group or others"),
    ("0755", None), ("0700", None)])
def test_runtime_dir_checks(tmp_path: Path, setup: str, problem: str | None) -> None:
    path = tmp_path / "rt"
    if setup == "symlink":
        (tmp_path / "elsewhere").mkdir()
        path.symlink_to(tmp_path / "elsewhere")
    elif setup == "file":
        path.write_text("")
    else:
        path.mkdir()
        path.chmod(int(setup, 8))
    if problem:
        with pytest.raises(RunError, match=f"cannot use runtime dir {path}: .*{problem}") as info:
            runtime.open_dir(str(path))
        assert info.value.exit_code == 125
        assert not (tmp_path / "elsewhere" / "mnt").exists()
    else:
        fd = runtime.open_dir(str(path))
        try:
            assert runtime.anchor(fd, str(path)) == str(path / "mnt")
        finally:
            os.close(fd)
        assert path.stat().st_mode & 0o7777 == 0o700 and (path / "mnt").is_dir()


def test_runtime_dir_is_created_0700(tmp_path: Path) -> None:
    os.close(runtime.open_dir(str(tmp_path / "new")))
    assert (tmp_path / "new").stat().st_mode & 0o7777 == 0o700


def test_xdg_runtime_dir_used_only_when_private(tmp_path: Path) -> None:
    uid = os.geteuid() or 1000
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    if ROOT:
        os.chown(xdg, uid, -1)
    assert paths.default_runtime_dir({"XDG_RUNTIME_DIR": str(xdg)}, uid) == str(xdg / "forge")
    xdg.chmod(0o777)
    assert paths.default_runtime_dir({"XDG_RUNTIME_DIR": str(xdg)}, uid) == f"/tmp/forge-{uid}"
    assert paths.default_runtime_dir({"XDG_RUNTIME_DIR": str(tmp_path / "missing")}, uid) == f"/tmp/forge-{uid}"
    assert paths.default_runtime_dir({"XDG_RUNTIME_DIR": "relative"}, uid) == f"/tmp/forge-{uid}"
    assert paths.default_runtime_dir({}, uid) == f"/tmp/forge-{uid}"
    assert paths.default_runtime_dir({"XDG_RUNTIME_DIR": str(xdg)}, 0) == "/run/forge"


def test_every_hierarchy_is_swept_not_only_the_limited_ones() -> None:
    hybrid = ("12:cpu,cpuacct:/a\n9:name=systemd:/user.slice\n4:memory:/m/x\n3:pids:/\n0::/user.slice\n")
    assert cgroups.hierarchies(hybrid, "/cg") == ["/cg/cpu,cpuacct/a", "/cg/systemd/user.slice", "/cg/memory/m/x",
                                                  "/cg/pids", "/cg/unified/user.slice"]
    assert cgroups.hierarchies("0::/user.slice/x\n", "/cg") == ["/cg/user.slice/x"]


@pytest.mark.root
@needs_setpriv
def test_killed_rootless_run_leaves_nothing_after_next_run(world: dict[str, Path], victim_home: Path) -> None:
    """Rootless (no cgroups): a SIGKILLed ``--rm`` run leaves its container in $XDG_STATE_HOME/forge; the next
    run of that user removes it, and the dead owners' archive dir and partial layer unpack too."""
    victim = 65525
    cache = victim_home / "cache"
    img.layer_dirs(img.open_layout(str(world["layout"]), "base"), str(cache), rootless=True)  # no libarchive
    shutil.copytree(world["layout"], victim_home / "layout")
    xdg = victim_home / "xdg"
    xdg.mkdir(mode=0o700)
    rt = xdg / "forge"
    give(victim_home, victim)
    argv, env = user_argv(victim, victim_home, "run", "--cache-dir", str(cache), "--name", "gone", "--rm",
                          f"{victim_home / 'layout'}:base", "sh", "-c", "echo ready; exec sleep 60", xdg=str(xdg))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=victim_home)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready and proc.stdout is not None and proc.stdout.readline() == b"ready\n", proc.stderr
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # setpriv exec'd: this is the forge process
        proc.wait()
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    deadline = time.monotonic() + 10
    while processes_of(victim):
        assert time.monotonic() < deadline, "the container outlived its killed launcher"
        time.sleep(0.05)
    container = victim_home / "state" / "forge" / "gone"
    assert container.is_dir()
    planted = [rt / f"{ARCHIVE_PREFIX}{proc.pid}-1-{pids.pid_namespace()}-0a1b",
               next((cache / "layers-userns" / "sha256").iterdir()).with_name(f"{'0' * 64}.tmp-{proc.pid}-0a1b")]
    for d in planted:
        (d / "etc").mkdir(parents=True)
        give(d, victim)
    done = as_user(victim, victim_home, "run", "--cache-dir", str(cache), f"{victim_home / 'layout'}:base", "true",
                   xdg=str(xdg))
    assert done.returncode == 0, done.stderr
    assert (container.exists(), [d.exists() for d in planted]) == (False, [False, False])


@pytest.mark.root
def test_removal_does_not_cross_into_a_mount(tmp_path: Path) -> None:
    """A directory mounted inside a leftover (a bind mount of host files) is not emptied: removal stops there."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("not forge's\n")
    tree = tmp_path / "leftover"
    (tree / "mnt").mkdir(parents=True)
    (tree / "file").write_text("x")
    script = f'mount --bind "{outside}" "{tree}/mnt" && exec "$0" -c "$1" "{tree}"'
    code = ("import sys\nfrom rootfs_forge.run.rmtree import remove_tree\ntry:\n    remove_tree(sys.argv[1])\n"
            "except OSError as exc:\n    print(exc.errno)\n")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script, sys.executable, code], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert (outside / "keep").read_text() == "not forge's\n"
    assert proc.stdout == "18\n", proc.stderr  # EXDEV


@pytest.mark.root
@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs setpriv")
def test_setuid_program_from_an_image_is_not_reachable_from_the_host_cache(tmp_path: Path) -> None:
    """A hostile image ships a setuid-root copy of a shell. Unpacked as root into the layer cache it is a real
    setuid-root file on the host: no other local user may reach it (the layers dir is the owner's only)."""

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("rootshell")
        payload = b"#!/bin/sh\nid -u\n"
        info.size, info.mode, info.uid, info.gid = len(payload), 0o4755, 0, 0
        tar.addfile(info, io.BytesIO(payload))
    write_layout(tmp_path / "layout", [buf.getvalue()], "t")
    base = Path(tempfile.mkdtemp(prefix="forge-cache-"))  # outside pytest's 0700 tree: others may enter
    try:
        base.chmod(0o755)
        cache = base / "cache"
        cache.mkdir(mode=0o755)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        subprocess.run([sys.executable, "-m", "rootfs_forge", "run", "--cache-dir", str(cache),
                        f"{tmp_path / 'layout'}:t", "/rootshell"], capture_output=True, text=True, timeout=60, env=env)
        unpacked = list(cache.glob("layers/sha256/*/rootshell"))
        assert unpacked and unpacked[0].stat().st_mode & 0o4000  # it is there, setuid root, on the host
        other = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "stat",
                                str(unpacked[0])], capture_output=True, text=True)
    finally:
        shutil.rmtree(base)
    assert other.returncode != 0 and "Permission denied" in other.stderr, other.stdout
