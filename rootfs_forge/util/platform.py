"""The one ``--platform`` parser and the one choice of a manifest by platform.

Docker's spelling: ``OS/ARCH[/VARIANT]`` (``linux/amd64``, ``linux/arm64``, ``linux/arm64/v8``, ``linux/arm/v7``);
a bare architecture (``arm64``, ``amd64``) or a Debian name (``armhf``, ``ppc64el``) is accepted too, as the
older ``--arch`` was. A platform is a plain ``(os, architecture, variant)`` tuple of OCI names; an empty variant
matches any (``linux/arm64`` matches ``linux/arm64/v8``), as in Docker.

Pure and light (only ``util.arch``, which imports nothing): the launcher reads images with it on its start path.
"""

from __future__ import annotations

from rootfs_forge.util.arch import DEBIAN_TO_OCI, MACHINE_TO_DEBIAN, oci_platform

# OCI (architecture, variant) -> Debian architecture; the variantless entry is the default
_OCI_TO_DEBIAN = {oci: deb for deb, oci in DEBIAN_TO_OCI.items()}
_OCI_TO_DEBIAN.update({(arch, ""): deb for deb, (arch, _v) in DEBIAN_TO_OCI.items() if (arch, "") not in
                       _OCI_TO_DEBIAN and deb != "armel"})
_OCI_TO_DEBIAN[("arm", "v6")] = "armel"


class PlatformError(ValueError):
    """A ``--platform`` value that is not ``OS/ARCH[/VARIANT]``; the caller turns it into its own error."""


def parse_platform(text: str) -> tuple[str, str, str]:
    """``linux/arm64/v8`` -> ("linux", "arm64", "v8"); ``linux/arm64`` -> ("linux", "arm64", ""); a bare
    architecture (OCI, Debian or machine name) is a Linux one, without a variant."""
    parts = text.strip().lower().split("/")
    if any(not p for p in parts) or len(parts) > 3:
        raise PlatformError(f"{text!r} is not OS/ARCH[/VARIANT] (e.g. linux/amd64, linux/arm64/v8)")
    if len(parts) == 1:  # a bare architecture; armhf/armel keep the variant that tells them apart
        arch, variant = oci_platform(parts[0])
        return ("linux", arch, variant if arch == "arm" else "")
    os_name, arch = parts[0], oci_platform(parts[1])[0]
    if os_name != "linux":
        raise PlatformError(f"{text!r}: only linux images are composed and run")
    return (os_name, arch, parts[2] if len(parts) == 3 else "")


def host_platform() -> tuple[str, str, str]:
    """This machine's platform (from the kernel's machine name), with the variant Debian's port uses."""
    import os

    machine = os.uname().machine
    arch, variant = oci_platform(MACHINE_TO_DEBIAN.get(machine, machine))
    return ("linux", arch, variant)


def label(platform: tuple[str, str, str]) -> str:
    """``("linux", "arm64", "v8")`` -> ``linux/arm64/v8``."""
    return "/".join(p for p in platform if p)


def of_descriptor(desc: dict) -> tuple[str, str, str]:
    """The platform an index entry names (os defaults to linux; ``("", "", "")`` parts when absent)."""
    plat = desc.get("platform")
    if not isinstance(plat, dict):
        return ("", "", "")
    return (str(plat.get("os") or "linux"), str(plat.get("architecture") or ""), str(plat.get("variant") or ""))


def matches(have: tuple[str, str, str], want: tuple[str, str, str]) -> bool:
    """Does an entry of platform ``have`` satisfy ``want``? An empty variant on either side matches any."""
    return (have[0] == want[0] and have[1] == want[1]
            and (not want[2] or not have[2] or have[2] == want[2]))


def debian_arch(platform: tuple[str, str, str]) -> str:
    """The Debian architecture of a platform (``linux/arm/v7`` -> armhf, ``linux/amd64`` -> amd64)."""
    _os, arch, variant = platform
    return _OCI_TO_DEBIAN.get((arch, variant)) or _OCI_TO_DEBIAN.get((arch, "")) or arch


def choose(entries: list, want: tuple[str, str, str] | None) -> tuple[dict | None, str]:
    """The entry of ``entries`` (index descriptors) for ``want``, or for the host when ``want`` is None.

    Returns (entry, note): the entry is None when nothing matches (the note then lists what there is); the
    note is non-empty when the choice was made for the caller among several platforms (say it, in one line).
    Entries without a platform only match when they are alone.
    """
    entries = [e for e in entries if isinstance(e, dict)]
    have = sorted({label(of_descriptor(e)) for e in entries if of_descriptor(e)[1]})
    if want is None and len(entries) == 1:
        return entries[0], ""
    target = want or host_platform()
    hits = [e for e in entries if of_descriptor(e)[1] and matches(of_descriptor(e), target)]
    if not hits:
        return None, f"no image for {label(target)} (the index has: {', '.join(have) or 'no platforms'})"
    exact = [e for e in hits if of_descriptor(e)[2] == target[2]]
    hit = (exact or hits)[0]
    if want is None:
        return hit, (f"{len(entries)} platforms ({', '.join(have)}): reading {label(of_descriptor(hit))}, the "
                     f"host's (choose with --platform)")
    return hit, ""


def of_debian(arch: str) -> tuple[str, str, str]:
    """The platform of a Debian architecture: amd64 -> linux/amd64, arm64 -> linux/arm64/v8."""
    oci_arch, variant = oci_platform(arch)
    return ("linux", oci_arch, variant)


def debian_label(arch: str) -> str:
    """How a user names a Debian architecture with ``--platform``: amd64 -> linux/amd64, armhf -> linux/arm/v7
    (arm64's v8 is left out, as Docker prints it)."""
    plat = of_debian(arch)
    return label(plat if plat[1] == "arm" else (plat[0], plat[1], ""))


def select_architectures(available: tuple[str, ...], wanted: list[tuple[str, str, str]],
                         where: str) -> tuple[str, ...]:
    """The Debian architectures of ``available`` (a recipe's, in its order) that ``wanted`` platforms name.
    Raises PlatformError naming the recipe's platforms when one names none of them."""
    chosen: list[str] = []
    for want in wanted:
        hits = [a for a in available if matches(of_debian(a), want)]
        if not hits:
            have = ", ".join(debian_label(a) for a in available)
            raise PlatformError(f"{where} is not built for {label(want)} (it has {have})")
        chosen += [a for a in hits if a not in chosen]
    return tuple(a for a in available if a in chosen)
