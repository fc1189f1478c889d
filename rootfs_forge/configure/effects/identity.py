"""/etc/hostname, /etc/hosts, the placeholder /etc/fstab and the OS identification files scanners read.

No package ships /etc/fstab: debootstrap and mmdebstrap write ``# UNCONFIGURED FSTAB FOR BASE SYSTEM`` into
every tree they make (Debian's images have it); forge writes the same line when the file is absent.

base-files ships /etc/os-release (a link to ../usr/lib/os-release) and /etc/debian_version; they are checked,
not rewritten. Without base-files a minimal os-release is written from the suite's Release (its Codename, and
its Version's major number as VERSION_ID; a codename table when the Release was not read) so syft and trivy
still recognise a Debian image; /etc/debian_version is not invented (its number is not in the suite name).
"""

from __future__ import annotations

import re

from rootfs_forge.configure.effects.base import EffectContext, EffectResult, effect
from rootfs_forge.configure.effects.tree import Change
from rootfs_forge.errors import RootfsError

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)*$"
)
FSTAB = "/etc/fstab"
FSTAB_TEXT = b"# UNCONFIGURED FSTAB FOR BASE SYSTEM\n"
_SUITE = re.compile(r"^[a-z][a-z0-9-]*$")


def hosts_file(hostname: str) -> str:
    """The localhost lines netbase/debootstrap write, plus the 127.0.1.1 line for a hostname (pure)."""
    lines = ["127.0.0.1\tlocalhost"]
    if hostname != "localhost":
        lines.append(f"127.0.1.1\t{hostname}")
    lines += [
        "::1\t\tlocalhost ip6-localhost ip6-loopback",
        "ff02::1\t\tip6-allnodes",
        "ff02::2\t\tip6-allrouters",
    ]
    return "\n".join(lines) + "\n"


# Debian's release numbers by codename (base-files' VERSION_ID is the major number): the fallback when the
# suite's Release file gave no ``Version`` (12.12, whose major number is used: a point release changes nothing).
RELEASES = {"buster": "10", "bullseye": "11", "bookworm": "12", "trixie": "13", "forky": "14", "duke": "15"}


def os_release(suite: str, version: str = "") -> str:
    """A minimal os-release for a Debian suite, in base-files' field order (pure); ``version`` (a Release file's
    ``Version``, e.g. 12.12) overrides the table; VERSION_ID is its major number."""
    number = (version.split(".", 1)[0] if version else "") or RELEASES.get(suite, "")
    if not number:
        return (
            f'PRETTY_NAME="Debian GNU/Linux ({suite})"\nNAME="Debian GNU/Linux"\n'
            f"VERSION_CODENAME={suite}\nID=debian\n"
        )
    return (
        f'PRETTY_NAME="Debian GNU/Linux {number} ({suite})"\nNAME="Debian GNU/Linux"\nVERSION_ID="{number}"\n'
        f'VERSION="{number} ({suite})"\nVERSION_CODENAME={suite}\nID=debian\n'
        'HOME_URL="https://www.debian.org/"\nSUPPORT_URL="https://www.debian.org/support"\n'
        'BUG_REPORT_URL="https://bugs.debian.org/"\n'
    )


@effect("identity", "/etc/hostname, /etc/hosts; os-release and debian_version checked")
def apply(ctx: EffectContext) -> EffectResult:
    tree = ctx.tree()
    opts = ctx.options
    changed: list[Change] = []
    messages: list[str] = []
    hostname = opts.hostname or "localhost"
    if not _HOSTNAME.match(hostname):
        raise RootfsError("set hostname", repr(hostname), "not a valid host name")
    if opts.hostname is not None or not tree.lexists("/etc/hostname"):
        changed.append(tree.write_file("/etc/hostname", f"{hostname}\n".encode()))
    if opts.hostname is not None or not tree.lexists("/etc/hosts"):
        changed.append(tree.write_file("/etc/hosts", hosts_file(hostname).encode()))
    if not tree.lexists(FSTAB):
        changed.append(tree.write_file(FSTAB, FSTAB_TEXT, 0o644))
    if tree.is_file("/etc/os-release") or tree.is_file("/usr/lib/os-release"):
        messages.append("os-release: kept as shipped")
    elif opts.suite:
        if not _SUITE.match(opts.suite):
            raise RootfsError("write", "/etc/os-release", f"suite {opts.suite!r} is not a codename")
        changed.append(tree.write_file("/etc/os-release", os_release(opts.suite, opts.release_version).encode()))
        messages.append(f"os-release: written for {opts.suite} (base-files is not installed)")
    else:
        messages.append("os-release: missing and no suite known: not written")
    if tree.is_file("/etc/debian_version"):
        messages.append("debian_version: kept as shipped")
    else:
        messages.append("debian_version: missing (install base-files to ship it)")
    return EffectResult(tuple(changed), tuple(messages))
