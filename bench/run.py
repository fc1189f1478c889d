#!/usr/bin/env python3
"""Start-to-exit latency of ``/bin/true`` in the same rootfs: forge run (installed as users install it) vs bwrap,
crun and unshare+chroot.

Usage (as root): ``python3 bench/run.py [--runs N] [--rootfs DIR] [--venvs DIR]``. Without ``--rootfs`` a busybox
rootfs is built in a temp dir from /bin/busybox (apt package busybox-static).

forge is measured the way users start it: the ``forge`` console script of a fresh venv (no system site-packages,
so nothing the host's interpreter loads at start-up leaks in), once installed the README way (the ``pip install``
line of .ci/setup, an editable install of this checkout) and once with a plain ``pip install .``. ``--venvs DIR``
keeps the two venvs in DIR (made on first use, rebuilt with ``--reinstall``) instead of a temp dir. All launchers
run round-robin; it prints medians and minimums, ratios against crun, and forge's own cost: its median minus the
same venv's bare ``python -c pass`` (the interpreter start it cannot avoid), and where the plain install's
time goes: two more rows run what pip's console script runs before forge's code (``import re``), then that
and the modules ``forge run`` imports before it forks; the rest is the container's.

crun refuses this host's hybrid cgroup layout, so it runs as
``unshare -m sh -c 'umount /sys/fs/cgroup/unified && exec crun run ...'`` (the wrapper's cost is included).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

APPLETS = ("sh", "true", "echo", "cat")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# row name -> target ratio to crun (issue #18)
TARGETS = {"forge run (README install)": 1.5, "forge run (pip install .)": 1.2}
# forge run's start, cut where it can be: what pip's console script runs before forge's code, then that plus the
# modules forge run imports before its fork (both exit at once, as forge does, without the interpreter's teardown)
BASELINE = "python -c pass (venv)"
WRAPPER = "  python + pip wrapper (import re)"
WRAPPER_CODE = "import re, sys; sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])"
IMPORTS = "  + forge run's imports"
RUN_IMPORTS = ("from rootfs_forge.cli import entry; import rootfs_forge.commands.run_argv, rootfs_forge.commands.run, "
               "rootfs_forge.run.launcher")


def build_rootfs(dest: str) -> str:
    busybox = shutil.which("busybox") or "/bin/busybox"
    os.makedirs(os.path.join(dest, "bin"))
    shutil.copy2(busybox, os.path.join(dest, "bin", "busybox"))
    for applet in APPLETS:
        os.symlink("busybox", os.path.join(dest, "bin", applet))
    for d in ("proc", "dev", "sys", "tmp", "etc"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    return dest


def crun_bundle(rootfs: str, dest: str) -> str:
    subprocess.run(["crun", "spec"], cwd=dest, check=True, stdout=subprocess.DEVNULL)
    path = os.path.join(dest, "config.json")
    with open(path) as f:
        spec = json.load(f)
    spec["root"] = {"path": os.path.abspath(rootfs), "readonly": True}
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/true"]
    with open(path, "w") as f:
        json.dump(spec, f)
    return dest


def readme_install_args() -> list[str]:
    """The arguments after ``pip install`` in .ci/setup (what the README's quick start runs)."""
    with open(os.path.join(REPO, ".ci", "setup")) as f:
        for line in f:
            m = re.match(r"\s*python3 -m pip install (.*)$", line)
            if m:
                return shlex.split(m.group(1))
    raise SystemExit("bench: no 'python3 -m pip install' line in .ci/setup")


def make_venv(dest: str, install: list[str], reinstall: bool) -> str:
    """A fresh venv at ``dest`` with forge installed by ``pip install <install>`` run in the checkout."""
    forge = os.path.join(dest, "bin", "forge")
    if os.path.exists(forge) and not reinstall:
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", dest], check=True)
    proc = subprocess.run([os.path.join(dest, "bin", "python"), "-m", "pip", "install", "-q",
                           "--disable-pip-version-check", *install], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0 or not os.path.exists(forge):
        raise SystemExit(f"bench: pip install {' '.join(install)} failed: {proc.stderr[-600:]}")
    return dest


def once(argv: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bench: {argv[0]} failed ({proc.returncode}): {proc.stderr.decode()[-300:]}")
    return elapsed * 1000


def measure(cases: list[tuple[str, list[str]]], runs: int, warmup: int = 3) -> dict[str, list[float]]:
    """Round-robin over the launchers, so load from elsewhere on the machine hits all of them alike."""
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    for i in range(runs + warmup):
        for name, argv in cases:
            ms = once(argv)
            if i >= warmup:
                times[name].append(ms)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--rootfs")
    ap.add_argument("--venvs", help="keep the venvs here (default: a temp dir)")
    ap.add_argument("--reinstall", action="store_true", help="with --venvs: rebuild them")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (crun, unshare and forge limits need it)")
    # the venvs' own python, not this process's environment, decides what forge loads
    for var in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONHOME", "PYTHONSTARTUP"):
        os.environ.pop(var, None)
    with tempfile.TemporaryDirectory(prefix="forge-bench-") as tmp:
        venvs = args.venvs or tmp
        readme = make_venv(os.path.join(venvs, "readme"), readme_install_args(), args.reinstall)
        plain = make_venv(os.path.join(venvs, "plain"), ["."], args.reinstall)
        # an editable install runs the checkout's modules: give them the .pyc files an installed copy has
        subprocess.run([os.path.join(readme, "bin", "python"), "-m", "compileall", "-q",
                        os.path.join(REPO, "rootfs_forge")], check=True, stdout=subprocess.DEVNULL)
        rootfs = args.rootfs or build_rootfs(os.path.join(tmp, "rootfs"))
        bundle = crun_bundle(rootfs, tmp)
        py = os.path.join(plain, "bin", "python")
        cases: list[tuple[str, list[str]]] = [
            (BASELINE, [py, "-c", "pass"]),
            (WRAPPER, [py, "-c", f"{WRAPPER_CODE}; import os; os._exit(0)"]),
            (IMPORTS, [py, "-c", f"{WRAPPER_CODE}; {RUN_IMPORTS}; import os; os._exit(0)"]),
            ("forge run (README install)", [os.path.join(readme, "bin", "forge"), "run", rootfs, "/bin/true"]),
            ("forge run (pip install .)", [os.path.join(plain, "bin", "forge"), "run", rootfs, "/bin/true"]),
            ("bwrap", ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", rootfs, "/", "--proc", "/proc",
                       "--dev", "/dev", "--tmpfs", "/tmp", "/bin/true"]),
            ("crun run", ["unshare", "-m", "sh", "-c",
                          f"umount /sys/fs/cgroup/unified && exec crun run -b {bundle} forge-bench-{os.getpid()}"]),
            ("unshare+chroot", ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net",
                                f"--mount-proc={rootfs}/proc", "chroot", rootfs, "/bin/true"]),
        ]
        times = measure(cases, args.runs)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    low = {name: min(ts) for name, ts in times.items()}
    crun = med["crun run"]
    print(f"start-to-exit latency of /bin/true, {args.runs} runs each, round-robin (ms; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"{'launcher':<34}{'median':>9}{'min':>9}{'median/crun':>13}")
    for name in med:
        target = f"   (target: <= {TARGETS[name]}x)" if name in TARGETS else ""
        print(f"{name:<34}{med[name]:>9.1f}{low[name]:>9.1f}{med[name] / crun:>12.2f}x{target}")
    for name in TARGETS:
        own_med = med[name] - med[BASELINE]
        own_min = low[name] - low[BASELINE]
        label = name.replace("forge run", "forge") + " - python"
        print(f"{label:<34}{own_med:>9.1f}{own_min:>9.1f}{own_med / crun:>12.2f}x")
    pip = "forge run (pip install .)"
    print(f"where {pip} goes (medians, ms): the interpreter {med[BASELINE]:.1f}; pip's console-script "
          f"wrapper (import re) {med[WRAPPER] - med[BASELINE]:+.1f}; forge's imports for run "
          f"{med[IMPORTS] - med[WRAPPER]:+.1f}; the container (set-up, /bin/true, teardown) "
          f"{med[pip] - med[IMPORTS]:+.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
