#!/usr/bin/env python3
"""Start-to-exit latency of ``/bin/true`` in the same rootfs: forge run vs bwrap, crun and unshare+chroot.

Usage (as root): ``python3 bench/run.py [--runs N] [--rootfs DIR]``. Without ``--rootfs`` a busybox rootfs is
built in a temp dir from /bin/busybox (apt package busybox-static). Prints medians per launcher, ratios against
crun, and forge's own cost: its median minus a bare ``python3 -c pass`` (the interpreter start it cannot avoid).

crun refuses this host's hybrid cgroup layout, so it runs as
``unshare -m sh -c 'umount /sys/fs/cgroup/unified && exec crun run ...'`` (the wrapper's cost is included).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

APPLETS = ("sh", "true", "echo", "cat")
FORGE_MAIN = "import sys; from rootfs_forge.cli import main; sys.exit(main())"  # what the console script does


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
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (crun, unshare and forge limits need it)")
    py = sys.executable
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory(prefix="forge-bench-") as tmp:
        rootfs = args.rootfs or build_rootfs(os.path.join(tmp, "rootfs"))
        bundle = crun_bundle(rootfs, tmp)
        env_py = [py]
        cases: list[tuple[str, list[str]]] = [
            ("python3 -c pass", [*env_py, "-c", "pass"]),
            ("forge run", [*env_py, "-c", FORGE_MAIN, "run", rootfs, "/bin/true"]),
            ("bwrap", ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", rootfs, "/", "--proc", "/proc",
                       "--dev", "/dev", "--tmpfs", "/tmp", "/bin/true"]),
            ("crun run", ["unshare", "-m", "sh", "-c",
                          f"umount /sys/fs/cgroup/unified && exec crun run -b {bundle} forge-bench-{os.getpid()}"]),
            ("unshare+chroot", ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net",
                                f"--mount-proc={rootfs}/proc", "chroot", rootfs, "/bin/true"]),
        ]
        os.environ["PYTHONPATH"] = repo + os.pathsep + os.environ.get("PYTHONPATH", "")
        if os.environ.get("PYTHONDONTWRITEBYTECODE"):
            # an installed forge has .pyc files; without them every run would compile the modules again
            subprocess.run([py, "-m", "compileall", "-q", os.path.join(repo, "rootfs_forge")], check=True,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
                           stdout=subprocess.DEVNULL)
        times = measure(cases, args.runs)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    low = {name: min(ts) for name, ts in times.items()}
    print(f"start-to-exit latency of /bin/true, {args.runs} runs each, round-robin (ms; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"{'launcher':<22}{'median':>9}{'min':>9}{'median/crun':>13}")
    for name in med:
        print(f"{name:<22}{med[name]:>9.1f}{low[name]:>9.1f}{med[name] / med['crun run']:>12.2f}x")
    own_med = med["forge run"] - med["python3 -c pass"]
    own_min = low["forge run"] - low["python3 -c pass"]
    print(f"{'forge run - python':<22}{own_med:>9.1f}{own_min:>9.1f}{own_med / med['crun run']:>12.2f}x"
          "   (target: <= crun)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
