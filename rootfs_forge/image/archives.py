"""An OCI image layout as one tar: ``oci-archive:`` (the layout itself) and ``docker-archive:`` (what
``docker load`` reads). Deterministic: sorted entries, fixed owners and modes, every time the epoch; each
archive is written under a temporary name and renamed only when complete (fsynced)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from rootfs_forge.errors import ImageError
from rootfs_forge.image.oci import canonical, open_layer, read_image
from rootfs_forge.util.files import atomic_file


def _staged_file(dest: Path) -> contextlib.AbstractContextManager[IO[bytes]]:
    return atomic_file(dest, fsync=True)


def _entry(name: str, *, size: int = 0, directory: bool = False, mtime: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.size = size
    info.mtime = mtime
    info.uname = info.gname = ""
    return info


def _tar_writer(fh: IO[bytes]) -> tarfile.TarFile:
    return tarfile.TarFile(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT, copybufsize=1 << 20)


def write_oci_archive(layout_dir: Path, dest: Path, *, epoch: int = 0) -> None:
    """The layout as one deterministic tar (``oci-archive:``): sorted entries, fixed owners and times."""
    names: list[str] = []
    for dirpath, dirnames, filenames in os.walk(layout_dir):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in dirnames + [f for f in filenames if not f.startswith(".")]:
            names.append(os.path.relpath(os.path.join(dirpath, name), layout_dir))
    with _staged_file(dest) as fh, _tar_writer(fh) as tar:
        for name in sorted(names, key=lambda n: n.split("/")):
            full = layout_dir / name
            if full.is_dir():
                tar.addfile(_entry(name, directory=True, mtime=epoch))
            else:
                with open(full, "rb") as src:
                    tar.addfile(_entry(name, size=full.stat().st_size, mtime=epoch), src)


def write_docker_archive(
    layout_dir: Path, dest: Path, *, tag: str | None = None, repo_tags: Sequence[str] = (), epoch: int = 0
) -> None:
    """A ``docker load`` / ``docker-archive:`` tar: manifest.json, repositories, config, layers.

    Layers are stored uncompressed as ``<diff_id hex>/layer.tar`` (the classic ``docker save`` form, which
    every ``docker load`` and ``skopeo`` accept), so a zstd image can still be loaded by an old docker.
    """
    image = read_image(layout_dir, tag)
    dest.parent.mkdir(parents=True, exist_ok=True)
    cfg_hex = image.manifest["config"]["digest"].split(":", 1)[1]
    diff_ids = [d.split(":", 1)[1] for d in image.config["rootfs"]["diff_ids"]]
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}.layers-", dir=dest.parent) as scratch:
        plain: dict[str, Path] = {}
        for diff_hex, (layer_path, media_type) in zip(diff_ids, image.layers(), strict=True):
            if diff_hex in plain:
                continue
            out = Path(scratch) / diff_hex
            sha = hashlib.sha256()
            with open_layer(layer_path, media_type) as src, open(out, "wb") as dst:
                while chunk := src.read(1 << 20):
                    sha.update(chunk)
                    dst.write(chunk)
            if sha.hexdigest() != diff_hex:
                raise ImageError("write docker archive", str(layer_path), "layer does not match its diff_id")
            plain[diff_hex] = out
        top = diff_ids[-1] if diff_ids else ""
        manifest = [
            {
                "Config": f"{cfg_hex}.json",
                "RepoTags": list(repo_tags),
                "Layers": [f"{d}/layer.tar" for d in diff_ids],
            }
        ]
        repositories: dict[str, dict[str, str]] = {}
        for rt in repo_tags:
            repo, _, t = rt.rpartition(":")
            repositories.setdefault(repo or rt, {})[t if repo else "latest"] = top
        members: list[tuple[str, bytes | Path | None]] = [(f"{cfg_hex}.json", canonical(image.config))]
        for d, p in plain.items():
            members += [(d, None), (f"{d}/VERSION", b"1.0"), (f"{d}/layer.tar", p)]
        members += [("manifest.json", canonical(manifest)), ("repositories", canonical(repositories))]
        members.sort(key=lambda m: m[0].split("/"))
        with _staged_file(dest) as fh, _tar_writer(fh) as tar:
            for name, content in members:
                if content is None:
                    tar.addfile(_entry(name, directory=True, mtime=epoch))
                elif isinstance(content, bytes):
                    import io

                    tar.addfile(_entry(name, size=len(content), mtime=epoch), io.BytesIO(content))
                else:
                    with open(content, "rb") as src:
                        tar.addfile(_entry(name, size=content.stat().st_size, mtime=epoch), src)
