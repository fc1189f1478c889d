"""The control files dpkg keeps in /var/lib/dpkg/info, and the diversions dash registers.

dpkg keeps every member of a package's control.tar but ``control`` (its fields go to ``status``), ``conffiles``
and ``md5sums`` (the dpkg database writes those for the kept files) as ``<pkg>[:arch].<part>``: the
maintainer scripts (0755), ``config``, ``templates``, ``shlibs``, ``symbols``, ``triggers`` … (0644). With
them, upgrades and removals on top of the image run the packages' scripts and dpkg-shlibdeps finds symbols.
The recipe's ``control_files``: ``keep``, ``drop``, or ``auto`` (keep when dpkg is in the image: nothing else
reads them). dash's postinst diverts /bin/sh and sh(1) (``/var/lib/dpkg/diversions``, dpkg's format:
from, to, package per diversion, the latest added first).
"""

from __future__ import annotations

from collections.abc import Mapping

from rootfs_forge.configure.effects.base import EffectContext, EffectResult, effect
from rootfs_forge.configure.effects.tree import Change

INFO = "/var/lib/dpkg/info"
DIVERSIONS = "/var/lib/dpkg/diversions"
NOT_KEPT = frozenset({"control", "conffiles", "md5sums"})
EXECUTABLE = frozenset({"preinst", "postinst", "prerm", "postrm", "config"})
# dash's postinst: claim_binsh /bin/sh, then the manual page; dpkg lists the latest diversion first
DASH_DIVERSIONS = (
    ("/usr/share/man/man1/sh.1.gz", "/usr/share/man/man1/sh.distrib.1.gz"),
    ("/bin/sh", "/bin/sh.distrib"),
)


def db_name(control: Mapping[str, str]) -> str:
    """``name:arch`` for a ``Multi-Arch: same`` package, else ``name`` (as dpkg names its info files)."""
    name = str(control.get("Package", "")).strip()
    if str(control.get("Multi-Arch", "")).strip().lower() == "same":
        return f"{name}:{str(control.get('Architecture', '')).strip()}"
    return name


def keeps(ctx: EffectContext) -> tuple[bool, str]:
    """Whether the control files are kept, and why (the recipe's ``control_files``)."""
    choice = ctx.options.control_files
    if choice == "keep":
        return True, "control_files = keep"
    if choice == "drop":
        return False, "control_files = drop"
    if ctx.has("dpkg"):
        return True, "dpkg is in the image"
    return False, "dpkg is not in the image; control_files = \"keep\" keeps them"


def diversions(ctx: EffectContext) -> str:
    """The diversions file: dash's when /bin/sh is dash's link (pure over the context's tree)."""
    if not ctx.has("dash"):
        return ""
    tree = ctx.tree()
    if tree.readlink(tree.resolve("/bin/sh", follow_last=False)) != "dash":
        return ""
    if "claim_binsh" not in ctx.packages["dash"].scripts.get("postinst", ""):
        return ""
    return "".join(f"{src}\n{dest}\ndash\n" for src, dest in DASH_DIVERSIONS)


@effect("dpkg-info", "maintainer scripts, templates, shlibs, symbols, triggers kept in /var/lib/dpkg/info; diversions",
        commands=("dpkg-divert",))
def apply(ctx: EffectContext) -> EffectResult:
    keep, why = keeps(ctx)
    if not keep:
        return EffectResult(skipped=why)
    tree = ctx.tree()
    changed: list[Change] = []
    parts = 0
    for name in sorted(ctx.packages):
        info = ctx.packages[name]
        base = db_name(info.control) or name
        for part, data in sorted(info.control_files.items()):
            if part in NOT_KEPT or "/" in part or not part:
                continue
            mode = 0o755 if part in EXECUTABLE else 0o644
            changed.append(tree.write_file(f"{INFO}/{base}.{part}", data, mode))
            parts += 1
    divert = diversions(ctx)
    if divert:
        changed.append(tree.write_file(DIVERSIONS, divert.encode()))
    messages = [f"{parts} control files kept ({why})"]
    if divert:
        messages.append("dash's diversions of /bin/sh and sh.1.gz recorded")
    return EffectResult(tuple(changed), tuple(messages))
