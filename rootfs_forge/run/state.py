"""Named containers: ``<state>/<name>/`` holds ``upper/``, ``work/`` and ``container.json`` (what it was run
from). Written with temp names and renames; ``forge ps`` lists them, ``forge rm`` removes them."""

from __future__ import annotations

import os

from rootfs_forge.errors import RunError

META = "container.json"


def check_name(name: str) -> str:
    ok = name and len(name) <= 64 and name[0].isalnum() and all(c.isalnum() or c in "._-" for c in name)
    if not ok:
        raise RunError("use", f"container name {name!r}", "use letters, digits, '.', '_' and '-' (max 64)")
    return name


def container_dir(state_dir: str, name: str) -> str:
    return os.path.join(state_dir, check_name(name))


def create(state_dir: str, name: str, meta: dict) -> tuple[str, str]:
    """Reserve ``name`` (atomic mkdir) and write its metadata; returns (upper, work)."""
    import json

    d = container_dir(state_dir, name)
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    try:
        os.mkdir(d, 0o700)
    except FileExistsError:
        raise RunError("create container", name, f"the name is in use (forge rm {name})") from None
    upper, work = os.path.join(d, "upper"), os.path.join(d, "work")
    os.mkdir(upper, 0o755)
    os.mkdir(work, 0o700)
    tmp = os.path.join(d, f".{META}.tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(meta, sort_keys=True, separators=(",", ":")))
    os.rename(tmp, os.path.join(d, META))
    return upper, work


def load(state_dir: str, name: str) -> dict:
    import json

    path = os.path.join(container_dir(state_dir, name), META)
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise RunError("find container", name, f"no such container in {state_dir}") from None
    except (OSError, ValueError) as exc:
        raise RunError("read container", name, str(exc)) from None
    if not isinstance(data, dict):
        raise RunError("read container", name, "metadata is not a JSON object")
    return data


def listing(state_dir: str) -> list[tuple[str, dict, int]]:
    """(name, metadata, size of upper in bytes) for every kept container, sorted by name."""
    out: list[tuple[str, dict, int]] = []
    try:
        names = sorted(os.listdir(state_dir))
    except FileNotFoundError:
        return out
    for name in names:
        if not os.path.isfile(os.path.join(state_dir, name, META)):
            continue
        out.append((name, load(state_dir, name), tree_size(os.path.join(state_dir, name, "upper"))))
    return out


def tree_size(root: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                continue  # removed while we walked
    return total


def remove(state_dir: str, name: str) -> None:
    import shutil

    d = container_dir(state_dir, name)
    if not os.path.isfile(os.path.join(d, META)):
        raise RunError("remove container", name, f"no such container in {state_dir}")
    trash = os.path.join(state_dir, f".rm-{name}-{os.getpid()}")
    os.rename(d, trash)  # the name is free at once; a crash leaves only a dot-dir behind
    shutil.rmtree(trash)
