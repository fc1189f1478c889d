"""Named containers: ``<state>/<name>/`` holds ``upper/``, ``work/`` and ``container.json`` (what it was run
from). Written with temp names and renames; ``forge ps`` lists them, ``forge rm`` removes them.

Entries starting with a dot are forge's own (a container name starts with a letter or digit):
``.autorm-OWNER-NAME`` marks a ``--rm`` container of a running ``forge run`` (OWNER: its owner tag, see ``pids``;
also in the container's metadata), ``.trash-OWNER-RANDOM`` is a container being removed (renamed first, so the
name is free at once).
``sweep`` removes both once their owner is gone: a SIGKILLed run never reaches its ``finally``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from rootfs_forge.errors import RunError
from rootfs_forge.util.pids import Owner, owner_tag, parse_owner

META = "container.json"
AUTORM = ".autorm-"
TRASH = ".trash-"
OLD_TRASH = ".rm-"  # .rm-NAME-PID, from older versions


def check_name(name: str) -> str:
    ok = name and len(name) <= 64 and name[0].isalnum() and all(c.isalnum() or c in "._-" for c in name)
    if not ok:
        raise RunError("use", f"container name {name!r}", "use letters, digits, '.', '_' and '-' (max 64)")
    return name


def container_dir(state_dir: str, name: str) -> str:
    return os.path.join(state_dir, check_name(name))


def create(state_dir: str, name: str, meta: dict, owner: str | None = None) -> tuple[str, str]:
    """Reserve ``name`` (atomic mkdir) and write its metadata; returns (upper, work). ``owner`` (an owner tag,
    for ``--rm``) is recorded in the metadata and as a marker next to it, before the name is taken."""
    import json

    d = container_dir(state_dir, name)
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    marker = None
    if owner:
        marker = os.path.join(state_dir, f"{AUTORM}{owner}-{name}")
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        meta = {**meta, "owner": owner}
    try:
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            raise RunError("create container", name, f"the name is in use (forge rm {name})") from None
        try:
            upper, work = os.path.join(d, "upper"), os.path.join(d, "work")
            os.mkdir(upper, 0o755)
            os.mkdir(work, 0o700)
            tmp = os.path.join(d, f".{META}.tmp")
            with open(tmp, "w") as f:
                f.write(json.dumps(meta, sort_keys=True, separators=(",", ":")))
            os.rename(tmp, os.path.join(d, META))
        except BaseException:
            _remove_dir(state_dir, name)
            raise
    except BaseException:
        if marker:
            os.unlink(marker)
        raise
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


def _remove_dir(state_dir: str, name: str) -> None:
    """Rename ``name`` to a trash name carrying this process's owner tag (the name is free at once; if this
    process dies, ``sweep`` finishes the job), then remove it without following symlinks."""
    from rootfs_forge.run.rmtree import remove_at

    trash = f"{TRASH}{owner_tag()}-{os.urandom(4).hex()}"
    fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.rename(name, trash, src_dir_fd=fd, dst_dir_fd=fd)
        remove_at(fd, trash)
    finally:
        os.close(fd)


def remove(state_dir: str, name: str) -> None:
    d = container_dir(state_dir, name)
    if not os.path.isfile(os.path.join(d, META)):
        raise RunError("remove container", name, f"no such container in {state_dir}")
    _remove_dir(state_dir, name)


def release(state_dir: str, name: str, owner: str) -> None:
    """The end of a ``--rm`` run by ``owner``: remove its container (only if it is still the one that owner
    made) and the marker."""
    import json

    try:
        with open(os.path.join(container_dir(state_dir, name), META)) as f:
            mine = json.load(f).get("owner") == owner
    except (OSError, ValueError, AttributeError):
        mine = False  # gone (forge rm), or not finished: never remove what may be someone else's
    if mine:
        _remove_dir(state_dir, name)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(state_dir, f"{AUTORM}{owner}-{name}"))


def sweep(state_dir: str, alive: Callable[[Owner], bool]) -> None:
    """Remove what dead forge processes left in ``state_dir``: ``--rm`` containers and half-removed ones.
    Best effort: a leftover that cannot be removed now stays for the next sweep."""
    try:
        with os.scandir(state_dir) as entries:
            names = [e.name for e in entries if e.name.startswith(".")]
    except OSError:
        return
    for entry in names:
        for prefix in (AUTORM, TRASH):
            parsed = parse_owner(entry[len(prefix):]) if entry.startswith(prefix) else None
            if parsed is None or parsed[0][1] is None or alive(parsed[0]):
                continue
            try:
                if prefix == AUTORM:
                    rest = parsed[1]
                    release(state_dir, rest, entry[len(prefix):-len(rest) - 1])
                else:
                    _remove_trash(state_dir, entry)
            except (OSError, RunError):
                pass
        if entry.startswith(OLD_TRASH):
            pid = entry.rpartition("-")[2]
            if pid.isdigit() and not alive((int(pid), None, None)):
                with contextlib.suppress(OSError):
                    _remove_trash(state_dir, entry)


def _remove_trash(state_dir: str, name: str) -> None:
    from rootfs_forge.run.rmtree import remove_at

    fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        remove_at(fd, name)
    finally:
        os.close(fd)
