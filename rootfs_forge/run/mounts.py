"""The container's filesystem, built inside its own mount namespace by PID 1 before ``pivot_root``.

Layers are mounted read-only with overlayfs under a writable upper (tmpfs, or a kept dir for named containers);
without overlayfs the layers are copied into a tmpfs instead. Every mount target is resolved *inside* the new
root (an image's symlinks cannot point a mount at the host), then /proc, a minimal /dev, a read-only /sys, /tmp,
the generated /etc files and volumes are mounted, and the root is switched with ``pivot_root``.

Every mount is nodev except forge's own device nodes (bound from the host's /dev) and /dev/pts (devpts, whose
nodes cannot be made with mknod): a device node shipped in an image, found on a volume or made inside cannot be
opened. nosuid is where Docker has it (/proc, /dev, /dev/pts, /dev/shm, /sys) plus /tmp and volumes; the root
keeps setuid programs working. /proc and /sys have Docker's masked and read-only paths (see ``mountsec``). The
writable layer and /tmp are tmpfs of a bounded size (``plan.upper_size``, ``plan.tmp_size``): filling them is
ENOSPC inside the container.
"""

from __future__ import annotations

import os
import stat

from rootfs_forge.errors import RunError
from rootfs_forge.run import mountsec
from rootfs_forge.run import syscalls as sc
from rootfs_forge.run.spec import ContainerSetup
from rootfs_forge.util.inroot import SymlinkLoop, resolve_in_root

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
             ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"), ("core", "/proc/kcore"))
OPAQUE_XATTR = "trusted.overlay.opaque"


class _OnDisk:
    """An entry of the image on disk, as ``util.inroot`` reads a tree."""

    __slots__ = ("kind", "target")

    def __init__(self, kind: str, target: str = "") -> None:
        self.kind = kind
        self.target = target


def host_path_in_root(root: str, path: str) -> str:
    """``path`` as seen from inside ``root``, as a host path: symlinks are followed relative to ``root`` and
    ``..`` stops at it (the project's one in-root resolver, reading the live filesystem with lstat/readlink).

    Missing trailing components are kept as written, so the result can be created with ``os.makedirs``."""

    def lookup(key: str) -> _OnDisk | None:
        host = root + key
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return _OnDisk("symlink", os.readlink(host))
        return _OnDisk("dir" if stat.S_ISDIR(st.st_mode) else "other")

    try:
        key = resolve_in_root(lookup, path)
    except SymlinkLoop:
        raise RunError("resolve", path, "too many levels of symbolic links in the image") from None
    return root if key in (None, "/") else os.path.join(root, key[1:])


def mountpoint(root: str, path: str, is_dir: bool = True) -> str:
    """Resolve ``path`` inside ``root`` and create it (a dir, or an empty file) if missing."""
    where = host_path_in_root(root, path)
    if not os.path.lexists(where):
        try:
            if is_dir:
                os.makedirs(where, 0o755, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(where), 0o755, exist_ok=True)
                os.close(os.open(where, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
        except OSError as exc:
            raise RunError("create mount point", path, exc.strerror or str(exc)) from None
    return where


def bind(source: str, target: str, read_only: bool = False, recursive: bool = True, flags: int = 0) -> None:
    """Bind ``source`` on ``target``; ``read_only`` and the MS_NOSUID/NODEV/NOEXEC ``flags`` are added to every
    mount of the bound tree when ``recursive`` (the default), else to the one bind mount."""
    sc.mount(source, target, None, sc.MS_BIND | (sc.MS_REC if recursive else 0))
    flags |= sc.MS_RDONLY if read_only else 0
    if flags and recursive:
        mountsec.add_flags_recursive(target, flags)
    elif flags:
        mountsec.remount_adding(target, flags)


def mount_layers(plan: ContainerSetup, scratch: str, merged: str) -> None:
    """Mount the read-only layers plus a writable upper at ``merged`` (overlayfs or copy fallback)."""
    if plan.storage == "copy":
        tree = os.path.join(scratch, "root")
        os.mkdir(tree, 0o755)
        copy_layers(plan.lowers, tree)
        if plan.upper_size > 0:  # the copy plus the writable space asked for
            st = os.statvfs(scratch)
            opts = mountsec.tmpfs_options(plan.upper_size, (st.f_blocks - st.f_bfree) * st.f_frsize,
                                          st.f_files - st.f_ffree)
            sc.mount(None, scratch, None, sc.MS_REMOUNT | sc.MS_NOSUID | sc.MS_NODEV, opts)
        bind(tree, merged, recursive=False)
        # the root is nodev, but not nosuid (the scratch tmpfs is): setuid programs work as on overlay
        sc.mount(None, merged, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_NODEV)
        return
    upper, work = plan.upper, plan.work
    if upper is None or work is None:
        upper, work = os.path.join(scratch, "upper"), os.path.join(scratch, "work")
        os.mkdir(upper, 0o755)
        os.mkdir(work, 0o700)
    fds = [os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for d in plan.lowers]
    try:
        # /proc/self/fd/N keeps the option string short and free of ':' and ',' from user paths
        lower = ":".join(f"/proc/self/fd/{fd}" for fd in fds)
        opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
        if plan.rootless:
            opts += ",userxattr"
        sc.mount("overlay", merged, "overlay", sc.MS_NODEV, opts)
    finally:
        for fd in fds:
            os.close(fd)


def mount_dev(root: str, rootless: bool) -> None:
    """A tmpfs /dev with the harmless devices, a devpts instance of the container's own (``-t`` allocates its
    terminal there, see terminal.attach) and no /dev/console: the caller's terminal is never bound in."""
    dev = mountpoint(root, "/dev")
    # nodev: forge's nodes below are bind mounts carrying the host devtmpfs's flags, so they still open
    sc.mount("tmpfs", dev, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_STRICTATIME, "mode=755,size=65536k")
    for name in DEVICES:
        target = os.path.join(dev, name)
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666))
        bind(f"/dev/{name}", target, recursive=False)
    pts = os.path.join(dev, "pts")
    os.mkdir(pts, 0o755)
    # not nodev (its pty nodes must open, as with runc/crun); devpts has no mknod, so no other node gets there
    sc.mount("devpts", pts, "devpts", sc.MS_NOSUID | sc.MS_NOEXEC,
             "newinstance,ptmxmode=0666,mode=0620" + ("" if rootless else ",gid=5"))
    shm = os.path.join(dev, "shm")
    os.mkdir(shm, 0o1777)
    sc.mount("shm", shm, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "mode=1777,size=65536k")
    for name, target in DEV_LINKS:
        os.symlink(target, os.path.join(dev, name))


def mount_sys(root: str) -> None:
    target = mountpoint(root, "/sys")
    flags = sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
    try:
        sc.mount("sysfs", target, "sysfs", flags)  # a fresh sysfs: no cgroup filesystems below it
    except RunError:
        # no sysfs of our own (rootless with the host's network): the host's, read-only all the way down (the
        # cgroup filesystems mounted below it included)
        bind("/sys", target, read_only=True, flags=flags)
    mountsec.harden_sys(target)


def write_etc_files(plan: ContainerSetup, scratch: str) -> dict[str, str]:
    """The generated /etc/hostname, hosts, resolv.conf as files in the scratch tmpfs (the image is not touched)."""
    etc = os.path.join(scratch, "etc")
    os.mkdir(etc, 0o755)
    out = {}
    for name, text in sorted(plan.etc_files.items()):
        path = os.path.join(etc, name)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        out[name] = path
    return out


def setup_root(plan: ContainerSetup) -> str:
    """Build the container's tree in the current (new) mount namespace and return its root.

    ``plan.rt`` is a fixed, empty host directory used only as an anchor: a tmpfs is mounted on it *inside this
    namespace*, and the upper dir, work dir, generated files and the merged root all live in that tmpfs. The host
    sees none of it and nothing has to be removed afterwards (removing mount points on the host would also cost an
    RCU grace period per directory)."""
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    scratch = plan.rt
    size = "" if plan.storage == "copy" else mountsec.tmpfs_options(plan.upper_size)  # copy: sized after copying
    sc.mount("tmpfs", scratch, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "mode=0755" + (size and "," + size))
    merged = os.path.join(scratch, "merged")
    os.mkdir(merged, 0o755)
    etc_files = write_etc_files(plan, scratch)
    mount_layers(plan, scratch, merged)
    proc = mountpoint(merged, "/proc")
    sc.mount("proc", proc, "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    mountsec.harden_proc(proc)  # masks /proc/keys too: it lists the keys of the same uid
    mount_dev(merged, plan.rootless)
    mount_sys(merged)
    tmp = mountpoint(merged, "/tmp")
    size = mountsec.tmpfs_options(plan.tmp_size)
    sc.mount("tmpfs", tmp, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "mode=1777" + (size and "," + size))
    for name, source in sorted(etc_files.items()):  # nosuid,nodev like the scratch tmpfs they are bound from
        bind(source, mountpoint(merged, f"/etc/{name}", is_dir=False), recursive=False)
    for vol in plan.volumes:
        if not os.path.exists(vol.host):
            raise RunError("mount volume", vol.host, "no such file or directory on the host")
        flags = ((0 if vol.suid else sc.MS_NOSUID) | (0 if vol.dev else sc.MS_NODEV)
                 | (sc.MS_NOEXEC if vol.noexec else 0))
        bind(vol.host, mountpoint(merged, vol.target, is_dir=os.path.isdir(vol.host)), read_only=vol.read_only,
             flags=flags)
    if plan.read_only:
        mountsec.remount_adding(merged, sc.MS_RDONLY)
    return merged


def pivot(new_root: str) -> None:
    """Switch to ``new_root`` with pivot_root(".", ".") and detach the old root (no put_old dir needed)."""
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.chdir(new_root)
        sc.pivot_root(".", ".")
        os.fchdir(old)
        sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
        sc.umount2(".", sc.MNT_DETACH)
    finally:
        os.close(old)
    os.chdir("/")


def copy_layers(lowers: tuple[str, ...], dest: str) -> None:
    """Copy-on-start fallback: merge ``lowers`` (top first) into ``dest`` applying overlay whiteouts
    (char 0:0 deletes, ``trusted.overlay.opaque=y`` hides lower contents)."""
    import shutil  # only on this slow path

    for layer in reversed(lowers):
        seen: dict[tuple[int, int], str] = {}
        for dirpath, dirnames, filenames in os.walk(layer):
            rel = os.path.relpath(dirpath, layer)
            out_dir = dest if rel == "." else os.path.join(dest, rel)
            for name in sorted(dirnames + filenames):
                src, dst = os.path.join(dirpath, name), os.path.join(out_dir, name)
                st = os.lstat(src)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    _remove(dst)
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if os.path.lexists(dst) and (not os.path.isdir(dst) or os.path.islink(dst) or _opaque(src)):
                        _remove(dst)
                    if not os.path.lexists(dst):
                        os.mkdir(dst)
                    os.chown(dst, st.st_uid, st.st_gid)
                    os.chmod(dst, stat.S_IMODE(st.st_mode))
                    continue
                _remove(dst)
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in seen:
                    os.link(seen[key], dst)
                    continue
                if stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(src), dst)
                elif stat.S_ISREG(st.st_mode):
                    shutil.copy2(src, dst, follow_symlinks=False)
                else:
                    os.mknod(dst, st.st_mode, st.st_rdev)
                os.lchown(dst, st.st_uid, st.st_gid)
                if not stat.S_ISLNK(st.st_mode):
                    os.chmod(dst, stat.S_IMODE(st.st_mode))
                seen[key] = dst
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        import shutil

        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def loopback_up() -> None:
    """Bring ``lo`` up in a fresh network namespace (SIOCGIFFLAGS/SIOCSIFFLAGS through libc), and let every
    group open ICMP echo sockets there (``net.ipv4.ping_group_range``, a per-namespace setting), as Docker does
    for a container's own network: no_new_privs keeps file capabilities and setuid bits from taking effect, so
    this is how an unprivileged ``ping`` works without CAP_NET_RAW. Best effort: a user namespace may not own
    the setting."""
    sc.interface_up("lo")
    try:
        fd = os.open("/proc/sys/net/ipv4/ping_group_range", os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        os.write(fd, b"0 2147483647")
    except OSError:
        pass
    finally:
        os.close(fd)
