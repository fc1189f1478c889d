"""The one architecture map: kernel machine names, GNU triplets, Debian and OCI architecture names.

Pure and light (no imports): the launcher may use it on its start path.
"""

from __future__ import annotations

# every Debian architecture name a recipe may ask for (release and ports), and "all"
KNOWN_ARCHES = frozenset({
    "amd64", "arm64", "armel", "armhf", "i386", "mips64el", "mipsel", "ppc64el", "s390x", "riscv64", "loong64",
    "alpha", "hppa", "ia64", "m68k", "powerpc", "ppc64", "sh4", "sparc64", "x32", "all",
})

# uname machine -> Debian architecture
MACHINE_TO_DEBIAN = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf", "armv6l": "armel", "i686": "i386",
                     "i386": "i386", "ppc64le": "ppc64el", "s390x": "s390x", "riscv64": "riscv64",
                     "loongarch64": "loong64", "mips64": "mips64el"}

# Debian architecture -> the kernel machine name it runs as (LXC's lxc.arch; armel as armv7l, which runs it)
DEBIAN_TO_MACHINE = {"amd64": "x86_64", "i386": "i686", "arm64": "aarch64", "armhf": "armv7l", "armel": "armv7l",
                     "ppc64el": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "mips64el": "mips64",
                     "loong64": "loongarch64"}

# GNU multiarch triplet -> Debian architecture
TRIPLET_TO_DEBIAN = {"x86_64-linux-gnu": "amd64", "i386-linux-gnu": "i386", "aarch64-linux-gnu": "arm64",
                     "arm-linux-gnueabihf": "armhf", "arm-linux-gnueabi": "armel", "powerpc64le-linux-gnu": "ppc64el",
                     "s390x-linux-gnu": "s390x", "riscv64-linux-gnu": "riscv64", "mips64el-linux-gnuabi64": "mips64el",
                     "x86_64-linux-gnux32": "x32", "loongarch64-linux-gnu": "loong64"}

# Debian architecture -> (OCI architecture, OCI variant)
DEBIAN_TO_OCI: dict[str, tuple[str, str]] = {
    "amd64": ("amd64", ""),
    "arm64": ("arm64", "v8"),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v5"),
    "i386": ("386", ""),
    "ppc64el": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
    "mips64el": ("mips64le", ""),
    "loong64": ("loong64", ""),
}


def debian_arch(name: str) -> str:
    """The Debian architecture a machine name, triplet or Debian name stands for (unknown names as given)."""
    return MACHINE_TO_DEBIAN.get(name) or TRIPLET_TO_DEBIAN.get(name) or name


def oci_platform(name: str) -> tuple[str, str]:
    """(OCI architecture, variant) of a Debian, machine or OCI architecture name."""
    deb = debian_arch(name)
    return DEBIAN_TO_OCI.get(deb, (deb, ""))


def machine_debian_arch() -> str:
    """This machine's architecture in Debian's naming, from the kernel (``dpkg --print-architecture`` is the
    better answer where dpkg exists)."""
    import os

    machine = os.uname().machine
    return MACHINE_TO_DEBIAN.get(machine, machine)


# Debian architecture -> extra top-level library directories that merged /usr turns into symlinks
# (the table debootstrap and usrmerge use: only directories the architecture's toolchain may use).
MERGED_USR_LIBDIRS: dict[str, tuple[str, ...]] = {
    "amd64": ("lib32", "lib64", "libx32"),
    "i386": ("lib64", "libx32"),
    "x32": ("lib32", "lib64", "libx32"),
    "mips64el": ("lib32", "lib64", "libo32"),
    "mips": ("lib32", "lib64"),
    "mipsel": ("lib32", "lib64"),
    "powerpc": ("lib64",),
    "ppc64": ("lib32", "lib64"),
    "ppc64el": ("lib64",),
    "s390x": ("lib32",),
    "sparc": ("lib64",),
    "sparc64": ("lib32", "lib64"),
}  # arm64, armhf, armel, riscv64 …: none (their loaders live in /lib)
