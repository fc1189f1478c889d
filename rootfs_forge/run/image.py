"""An OCI image (layout dir with optional ``:tag``, or an oci-archive tar) -> read-only layer dirs + defaults.

index.json -> manifest -> config is read by ``image/layout.py``, the one layout reader (lean: ``forge run`` does
not import the image writer).
Each layer blob is verified against its digest and unpacked once into ``<cache>/layers/sha256/<diff_id hex>``
(written under a temp name, then renamed). OCI whiteouts become overlayfs whiteouts: ``.wh.NAME`` -> a 0:0
character device ``NAME``; ``.wh..wh..opq`` -> the ``trusted.overlay.opaque=y`` xattr on its directory.
Only the unpack path imports libarchive (and only on a cache miss).
"""

from __future__ import annotations

import contextlib
import os
import stat

from rootfs_forge.errors import ImageError
from rootfs_forge.image.layout import blob_path, check_digest, read_layout
from rootfs_forge.run.rmtree import remove_tree
from rootfs_forge.run.spec import ProcessDefaults
from rootfs_forge.util.pids import owner_tag

REF_NAME = "org.opencontainers.image.ref.name"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class Image:
    """A resolved image: its layout dir, manifest digest, config defaults and layers (bottom first)."""

    __slots__ = ("config", "config_json", "layers", "layout", "manifest", "manifest_digest", "note", "platform",
                 "tag")

    def __init__(self, layout: str, tag: str | None, manifest_digest: str, manifest: dict,
                 config_json: dict) -> None:
        self.layout = layout
        self.tag = tag
        self.manifest_digest = manifest_digest
        self.manifest = manifest
        self.config_json = config_json
        self.config = image_config(config_json)
        diff_ids = list((config_json.get("rootfs") or {}).get("diff_ids") or [])
        layers = manifest.get("layers") or []
        if len(diff_ids) != len(layers):
            raise ImageError("read image", layout, f"{len(layers)} layers but {len(diff_ids)} diff_ids in config")
        self.layers: list[tuple[dict, str]] = list(zip(layers, diff_ids, strict=True))
        self.note = ""  # one line for the user: which of several platforms was taken
        self.platform = ""  # linux/amd64 ... as the index or the config names it


def split_ref(ref: str) -> tuple[str, str | None]:
    """``dir:tag`` -> (dir, tag); a ref that exists as written has no tag."""
    if os.path.exists(ref):
        return ref, None
    head, sep, tag = ref.rpartition(":")
    if sep and head and tag and "/" not in tag:
        return head, tag
    return ref, None


def is_layout(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "oci-layout")) and os.path.isfile(os.path.join(path, "index.json"))


def open_layout(layout: str, tag: str | None, platform: tuple[str, str, str] | None = None) -> Image:
    """The image ``tag`` of a layout, for ``platform`` (the host's when None; ``Image.note`` then says which
    was taken when there were several), read by the one layout reader (``image/layout.py``)."""
    opened = read_layout(layout, tag, platform)
    image = Image(layout, tag, opened.manifest_digest, opened.manifest, opened.config)
    image.note = opened.note
    image.platform = opened.platform
    return image


def image_config(config_json: dict) -> ProcessDefaults:
    c = config_json.get("config") or {}

    def strs(key: str) -> tuple[str, ...]:
        v = c.get(key) or []
        return tuple(str(x) for x in v) if isinstance(v, list) else ()

    return ProcessDefaults(entrypoint=strs("Entrypoint"), cmd=strs("Cmd"), env=strs("Env"),
                       workdir=str(c.get("WorkingDir") or ""), user=str(c.get("User") or ""))


def extract_archive(archive: str, dest: str) -> None:
    """Unpack an oci-archive tar into ``dest`` (an empty dir) so it can be read as a layout."""
    import libarchive
    import libarchive.extract as lx

    flags = (lx.EXTRACT_SECURE_NODOTDOT | lx.EXTRACT_SECURE_SYMLINKS | lx.EXTRACT_SECURE_NOABSOLUTEPATHS)
    archive = os.path.abspath(archive)  # read after the chdir below
    cwd = os.getcwd()
    try:
        os.chdir(dest)
        with libarchive.file_reader(archive) as entries:
            lx.extract_entries((e for e in entries if e.isreg or e.isdir), flags)
    except libarchive.ArchiveError as exc:
        raise ImageError("read image archive", archive, str(exc)) from None
    finally:
        os.chdir(cwd)


def layer_dirs(image: Image, cache_dir: str, rootless: bool = False) -> tuple[str, ...]:
    """Every layer unpacked (once) in the cache; returned top first, ready for ``lowerdir=``."""
    top = os.path.join(cache_dir, "layers-userns" if rootless else "layers")
    _private_dir(top)
    base = os.path.join(top, "sha256")
    out: list[str] = []
    for desc, diff_id in image.layers:
        final = os.path.join(base, check_digest(diff_id, image.layout)[7:])
        if not os.path.isdir(final):
            unpack_layer(blob_path(image.layout, str(desc.get("digest"))), str(desc.get("digest")), final,
                         rootless)
        out.append(final)
    return tuple(reversed(out))


def _private_dir(path: str) -> None:
    """The unpacked layers hold whatever an image ships, setuid-root programs included: only their owner may
    reach them (as Docker keeps /var/lib/docker). Created 0700; an existing one of ours is narrowed to 0700."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def _verify_blob(path: str, digest: str) -> None:
    import hashlib

    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError as exc:
        raise ImageError("read layer", digest, exc.strerror or str(exc)) from None
    if "sha256:" + h.hexdigest() != digest:
        raise ImageError("verify layer", digest, f"blob content has sha256:{h.hexdigest()}")


def _safe_dir(root: str, rel: str) -> str:
    """``root/rel`` as a real directory, created if missing; no component may be a symlink (no escape)."""
    cur = root
    for part in rel.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise ImageError("unpack layer", rel, "path leaves the layer")
        cur = os.path.join(cur, part)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise ImageError("unpack layer", rel, "a whiteout's parent is not a directory")
    return cur


def unpack_layer(blob: str, digest: str, final: str, rootless: bool = False) -> None:
    """Verify ``blob`` and unpack it into ``final`` through a temp dir renamed into place. The temp dir's name
    carries this process's owner tag, so that a later run can remove it if this one is killed."""
    import libarchive
    import libarchive.extract as lx

    blob, final = os.path.abspath(blob), os.path.abspath(final)  # both are used after the chdir below
    _verify_blob(blob, digest)
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = f"{final}.tmp-{owner_tag()}-{os.urandom(4).hex()}"
    os.mkdir(tmp, 0o755)
    opaque_attr = "user.overlay.opaque" if rootless else "trusted.overlay.opaque"
    flags = (lx.EXTRACT_PERM | lx.EXTRACT_TIME | lx.EXTRACT_XATTR | lx.EXTRACT_SECURE_NODOTDOT
             | lx.EXTRACT_SECURE_SYMLINKS | lx.EXTRACT_SECURE_NOABSOLUTEPATHS)
    if not rootless:
        flags |= lx.EXTRACT_OWNER
    cwd = os.getcwd()

    def regular(entries: libarchive.read.ArchiveRead) -> object:
        for entry in entries:
            name = entry.pathname.lstrip("/")
            while name.startswith("./"):
                name = name[2:]
            head, _, base = name.rstrip("/").rpartition("/")
            if entry.ischr or entry.isblk:
                continue  # a host device on the host's disk, unusable inside (nodev): never made
            if base == OPAQUE:
                os.setxattr(_safe_dir(tmp, head), opaque_attr, b"y")
            elif base.startswith(WHITEOUT):
                target = os.path.join(_safe_dir(tmp, head), base[len(WHITEOUT):])
                if os.path.lexists(target):
                    raise ImageError("unpack layer", name, "whiteout for a path the same layer creates")
                os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))
            else:
                yield entry

    try:
        os.chdir(tmp)
        with libarchive.file_reader(blob) as entries:
            lx.extract_entries(regular(entries), flags)
        os.chdir(cwd)
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isdir(final):  # lost a race with another run: theirs is as good as ours
                raise
            remove_tree(tmp)
    except BaseException as exc:
        os.chdir(cwd)
        with contextlib.suppress(OSError):
            remove_tree(tmp)
        if isinstance(exc, libarchive.ArchiveError):
            raise ImageError("unpack layer", digest, str(exc)) from None
        if isinstance(exc, OSError) and not isinstance(exc, ImageError):
            raise ImageError("unpack layer", digest, exc.strerror or str(exc)) from None
        raise
