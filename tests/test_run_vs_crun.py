"""``forge run`` is never weaker than crun with its default spec (``crun spec``): the same attack probes from
tests/support/hostile.py run in the same hostile rootfs under both; whatever crun blocks, forge must block.

crun refuses this host's hybrid cgroup layout, so it runs inside ``unshare -m`` with /sys/fs/cgroup/unified
unmounted (as bench/run.py does).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.hostile import PRELUDE, PROBES, HostileImage, results

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("crun"), reason="needs root and crun")


def crun_run(img: HostileImage, bundle: Path, code: str) -> subprocess.CompletedProcess[str]:
    bundle.mkdir()
    subprocess.run(["crun", "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["root"] = {"path": str(img.root), "readonly": False}
    spec["process"]["terminal"] = False
    spec["process"]["args"] = [img.python, "-I", "-S", "-c", PRELUDE + code]
    for vol in img.volumes:
        host, target, _ = vol.split(":")
        spec["mounts"].append({"destination": target, "type": "bind", "source": host,
                               "options": ["rbind", "ro", "nosuid", "nodev"]})
    spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", "mode=1777"]})
    (bundle / "config.json").write_text(json.dumps(spec))
    name = f"forge-vs-crun-{os.getpid()}-{bundle.name}"
    try:
        return subprocess.run(["unshare", "-m", "sh", "-c", "umount /sys/fs/cgroup/unified 2>/dev/null; "
                               f"exec crun run -b {bundle} {name}"],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run(["crun", "delete", "-f", name], capture_output=True)


def test_forge_blocks_every_attack_crun_blocks(tmp_path: Path) -> None:
    img = HostileImage.build(tmp_path)
    code = "".join(PROBES.values())
    under_crun = crun_run(img, tmp_path / "bundle", code)
    assert under_crun.returncode == 0, under_crun.stderr
    under_forge = img.run([], code)
    assert under_forge.returncode == 0, under_forge.stderr
    crun, forge = results(under_crun), results(under_forge)
    assert set(crun) == set(forge) == set(PROBES), (crun, forge)
    weaker = sorted(name for name in PROBES if crun[name] == "blocked" and forge[name] != "blocked")
    print("probe", "crun", "forge", sep="\t", file=sys.stderr)
    for name in sorted(PROBES):
        print(name, crun[name], forge[name], sep="\t", file=sys.stderr)
    assert weaker == [], f"forge lets through what crun blocks: {weaker} (crun {crun}, forge {forge})"


def test_forge_blocks_every_attack(tmp_path: Path) -> None:
    """Docker's default confinement, which forge's default must reach, blocks every probe."""
    img = HostileImage.build(tmp_path)
    got = results(img.run([], "".join(PROBES.values())))
    assert got == dict.fromkeys(PROBES, "blocked"), got
