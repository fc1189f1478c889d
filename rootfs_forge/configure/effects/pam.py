"""/etc/pam.d/common-* and /var/lib/pam as ``pam-auth-update --package --force`` writes them on a first install.

libpam-runtime's postinst runs pam-auth-update, which reads the profiles in /usr/share/pam-configs, enables the
ones marked ``Default: yes`` (highest ``Priority`` first, then name, both descending), and fills the "Primary"
and "Additional" blocks of the templates in /usr/share/pam: ``end`` in a jump becomes the number of lines left in
the block, a profile's ``*-Initial`` lines are used when it comes first in its block. The same algorithm here,
so the output is byte for byte pam-auth-update's. Without these files ``su``, ``runuser``, ``chsh`` and
``chpasswd`` abort. Rendering is pure (:func:`parse_profile`, :func:`render`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from rootfs_forge.configure.effects.base import EffectContext, EffectResult, effect
from rootfs_forge.configure.effects.tree import Change

CONFIGS = "/usr/share/pam-configs"
TEMPLATES = "/usr/share/pam"
SAVEDIR = "/var/lib/pam"
TYPES = ("auth", "account", "password", "session", "session-noninteractive")
_FIELD = re.compile(r"^(\S+):\s+(.*?)\s*$", re.S)
_INVALID = ("pam_tally",)
_LINE = re.compile(r"^((\[[^]]+\]|\w+)\s+\S+)\s*(.*)", re.S)
_PRIMARY = re.compile(r'^# here are the per-package modules \(the "Primary" block\)')
_FALLBACK = re.compile(r"^# here's the fallback if no module succeeds")
_ADDITIONAL = re.compile(r'^# and here are more per-package modules \(the "Additional" block\)')
_END = re.compile(r"^# end of pam-auth-update config")

Profile = dict[str, str]


def parse_profile(text: str) -> Profile | None:
    """A pam-configs profile as pam-auth-update's parse_pam_profile reads it; None when it is disabled (pure)."""
    profile: Profile = {}
    name = ""
    for raw in text.splitlines(keepends=True):
        m = _FIELD.match(raw)
        if m:
            name = m.group(1).removesuffix("-Final")
            if name != "Conflicts":
                profile[name] = m.group(2).rstrip("\n")
            continue
        line = raw.rstrip("\n").strip()
        if line:
            profile[name] = profile.get(name, "") + "\n" + line
        if any(bad in profile.get(name, "") for bad in _INVALID):
            return None
        profile[name] = profile.get(name, "").lstrip("\n \t")
    if "Session-Interactive-Only" not in profile:
        for key in ("-Type", "", "-Initial"):
            if f"Session{key}" in profile:
                profile[f"Session-noninteractive{key}"] = profile[f"Session{key}"]
    return profile


def _priority(p: Profile) -> int:
    m = re.match(r"\s*[+-]?\d+", p.get("Priority", "0"))
    return int(m.group(0)) if m else 0


def enabled_profiles(profiles: Mapping[str, Profile]) -> tuple[list[str], list[str]]:
    """(every profile, the enabled ones), each sorted as pam-auth-update sorts them (pure)."""
    ordered = sorted(profiles, key=lambda n: (_priority(profiles[n]), n), reverse=True)
    return ordered, [n for n in ordered if profiles[n].get("Default") == "yes"]


def _lines(p: Profile, uctype: str, pos: int) -> str:
    if pos == 0 and p.get(f"{uctype}-Initial"):
        return p[f"{uctype}-Initial"]
    return p.get(uctype, "")


def _merge_line(line: str, count: int) -> str:
    m = _LINE.match(line)
    if m is None:  # pam-auth-update would print a stale line; a profile this broken is not ours to fix
        return line + "\n"
    return m.group(1).replace("end", str(count)) + " " + " ".join(m.group(3).split()) + "\n"


def _block(profiles: Mapping[str, Profile], enabled: Sequence[str], ptype: str, which: str) -> list[str]:
    uctype = ptype[:1].upper() + ptype[1:]
    prefix = ptype.replace("-noninteractive", "")
    mods = [m for m in enabled if profiles[m].get(f"{uctype}-Type") == which]
    chunks = [_lines(profiles[m], uctype, i) for i, m in enumerate(mods)]
    count = sum(len([x for x in re.split(r"\n+", c) if x]) if c else 0 for c in chunks)
    if which == "Additional":
        count -= 1
    out = []
    if which == "Primary" and count == 0:
        out.append(f"{prefix}\t[default=1]\t\t\tpam_permit.so\n")
    for chunk in chunks:
        for line in chunk.split("\n") if chunk else []:
            out.append(f"{prefix}\t" + _merge_line(line, count))
            count -= 1
    return out


def render(template: str, profiles: Mapping[str, Profile], enabled: Sequence[str], ptype: str) -> str | None:
    """/etc/pam.d/common-``ptype`` from its template (create_from_template), or None if the template lacks a
    marker (pure)."""
    state = 0
    out: list[str] = []
    for line in template.splitlines(keepends=True):
        if state == 1:
            if _FALLBACK.match(line):
                out.append(line)
                state = 2
            continue
        if state == 3:
            if _END.match(line):
                out.append(line)
                state = 4
            continue
        out.append(line)
        if state == 0 and _PRIMARY.match(line):
            out += _block(profiles, enabled, ptype, "Primary")
            state = 1
        elif state == 2 and _ADDITIONAL.match(line):
            out += _block(profiles, enabled, ptype, "Additional")
            state = 3
    return "".join(out) if state == 4 else None


def saved_state(profiles: Mapping[str, Profile], enabled: Sequence[str], ptype: str) -> str:
    """/var/lib/pam/``ptype``: the enabled modules' lines, Primary then Additional (pure)."""
    uctype = ptype[:1].upper() + ptype[1:]
    out = []
    primary = [m for m in enabled if profiles[m].get(f"{uctype}-Type") not in (None, "Additional")]
    for i, m in enumerate(primary):
        if text := _lines(profiles[m], uctype, i):
            out.append(f"Module: {m}\n{text}\n")
    if not primary:
        out.append("Module: null\n[default=1]\t\t\tpam_permit.so\n")
    additional = [m for m in enabled if profiles[m].get(f"{uctype}-Type") not in (None, "Primary")]
    for i, m in enumerate(additional):
        if text := _lines(profiles[m], uctype, i):
            out.append(f"Module: {m}\n{text}\n")
    return "".join(out)


# libpam-runtime's postinst: pam-auth-update --force, then the .pam-old files a first install lacks
@effect("pam", "/etc/pam.d/common-* from /usr/share/pam-configs, as pam-auth-update writes them",
        packages=("libpam-runtime",), scripts=("libpam-runtime/postinst",), commands=("pam-auth-update", "pam-getenv"))
def apply(ctx: EffectContext) -> EffectResult:
    tree = ctx.tree()
    if not tree.is_dir(CONFIGS):
        return EffectResult(skipped=f"no {CONFIGS} in the image")
    profiles: dict[str, Profile] = {}
    for name in sorted(tree.listdir(CONFIGS)):
        if name.endswith("~") or re.match(r"^#.+#$", name) or not tree.is_file(f"{CONFIGS}/{name}"):
            continue
        parsed = parse_profile(tree.read_bytes(f"{CONFIGS}/{name}").decode("utf-8", "surrogateescape"))
        if parsed is not None:
            profiles[name] = parsed
    ordered, enabled = enabled_profiles(profiles)
    changed: list[Change] = []
    messages: list[str] = []
    for ptype in TYPES:
        dest = f"/etc/pam.d/common-{ptype}"
        if tree.lexists(dest):
            messages.append(f"{dest}: kept as shipped")
            continue
        src = f"{TEMPLATES}/common-{ptype}"
        if not tree.is_file(src):
            messages.append(f"{dest}: no template {src}")
            continue
        text = render(tree.read_bytes(src).decode("utf-8", "surrogateescape"), profiles, enabled, ptype)
        if text is None:
            messages.append(f"{dest}: template {src} lacks pam-auth-update's markers")
            continue
        changed.append(tree.write_file(dest, text.encode("utf-8", "surrogateescape"), 0o644))
        changed.append(tree.write_file(f"{SAVEDIR}/{ptype}",
                                       saved_state(profiles, enabled, ptype).encode("utf-8", "surrogateescape")))
    if changed:
        changed.append(tree.write_file(f"{SAVEDIR}/seen", "".join(f"{n}\n" for n in ordered).encode()))
        changed.append(tree.mkdir(SAVEDIR, 0o755))
    messages.insert(0, f"profiles enabled: {', '.join(enabled) or 'none'}")
    return EffectResult(tuple(changed), tuple(messages))
