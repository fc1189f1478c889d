"""The debconf database (/var/cache/debconf): every installed template, and a question for each, unanswered.

apt's dpkg-preconfigure loads the templates of every package that has them before it is unpacked, so the
database of a dpkg-built system holds all of them. ``templates.dat`` is written as debconf writes it
(Debconf::Template's parser: field names lower-cased, extended descriptions joined, ``\\n`` escaped; records
sorted by name, fields sorted, ``Owners`` the question). ``config.dat`` registers one question per template,
owned as :func:`owners_of` says; a question a config script asks unconditionally gets its default as its value
(what the noninteractive frontend stores), pam-auth-update's questions get what it sets (the pam effect's
profiles). Other values the scripts would set at run time are not invented. Written only when debconf is in
the image.
Parsing and rendering are pure (:func:`parse_templates`, :func:`render_templates`, :func:`render_config`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from rootfs_forge.configure.effects.base import EffectContext, EffectResult, effect
from rootfs_forge.configure.effects.dpkginfo import db_name
from rootfs_forge.configure.effects.tree import Change

CACHE = "/var/cache/debconf"
_FIELD = re.compile(r"^([-_@.A-Za-z0-9]*):\s?(.*)")
_CONFMODULE = re.compile(r"/usr/share/debconf/confmodule")


def parse_templates(text: str) -> list[dict[str, str]]:
    """The templates of a ``templates`` control file, as Debconf::Template->load reads them (pure)."""
    out: list[dict[str, str]] = []
    for record in text.split("\n\n"):
        record = record.strip("\n")
        if not record:
            continue
        data: dict[str, str] = {}
        field, value, extended = "", "", ""

        def save(field: str, value: str, extended: str, data: dict[str, str] = data) -> None:
            extended = extended.rstrip("\n")
            if field:
                data[field] = value
                if extended:
                    data[f"extended_{field}"] = extended

        for line in record.split("\n"):
            m = _FIELD.match(line)
            if m:
                save(field, value, extended)
                field, value, extended = m.group(1).lower(), m.group(2).rstrip(), ""
            elif re.match(r"^\s\.$", line):
                extended += "\n\n"
            elif (m2 := re.match(r"^\s(\s+.*)", line)) is not None:
                bit = m2.group(1).rstrip()
                if extended and not extended.endswith(("\n", " ")):
                    extended += "\n"
                extended += bit + "\n"
            elif (m3 := re.match(r"^\s(.*)", line)) is not None:
                bit = m3.group(1).rstrip()
                if extended and not extended.endswith(("\n", " ")):
                    extended += " "
                extended += bit
        save(field, value, extended)
        if data.get("template"):
            out.append(data)
    return out


def _escape(value: str) -> str:
    return value.replace("\n", "\\n")


def render_templates(templates: Mapping[str, Mapping[str, str]]) -> str:
    """templates.dat (pure): name → fields (without ``template``)."""
    out = []
    for name in sorted(templates, key=lambda s: s.encode()):
        fields = templates[name]
        lines = [f"Name: {name}"]
        lines += [f"{k[:1].upper()}{k[1:]}: {_escape(fields[k])}" for k in sorted(fields, key=lambda s: s.encode())]
        lines.append(f"Owners: {name}")
        out.append("\n".join(lines) + "\n\n")
    return "".join(out)


def render_config(owners: Mapping[str, Sequence[str]], values: Mapping[str, str] | None = None,
                  variables: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """config.dat (pure): question → owning packages, with the values and variables set."""
    values = values or {}
    variables = variables or {}
    out = []
    for name in sorted(owners, key=lambda s: s.encode()):
        who = ", ".join(sorted(set(owners[name]), key=lambda s: s.encode()))
        lines = [f"Name: {name}", f"Template: {name}"]
        if name in values:
            lines.append(f"Value: {_escape(values[name])}")
        lines.append(f"Owners: {who}")
        if variables.get(name):
            lines.append("Variables:")
            lines += [f" {k} = {_escape(v)}" for k, v in sorted(variables[name].items())]
        out.append("\n".join(lines) + "\n\n")
    return "".join(out)


def asked(config_script: str) -> list[str]:
    """Questions a config script asks unconditionally (``db_input PRIORITY NAME`` at its top level): with the
    noninteractive frontend their value becomes the template's default (pure)."""
    return re.findall(r"^db_input\s+\S+\s+([A-Za-z0-9][\w.+-]*/[\w.+/-]+)", config_script, re.M)


def owners_of(name: str, base: str, scripts: Mapping[str, str]) -> list[str]:
    """Who owns a package's questions: the package name when its preinst or config loads the confmodule (dpkg
    runs those with the plain name), ``base`` (``pkg:arch`` for Multi-Arch: same) when its postinst does (run
    from /var/lib/dpkg/info/<base>.postinst); the plain name when no script does (apt's preconfiguring)."""
    who = [name] if any(_CONFMODULE.search(scripts.get(s, "")) for s in ("preinst", "config")) else []
    if _CONFMODULE.search(scripts.get("postinst", "")):
        who.append(base)
    return who or [name]


def _pam_answers(ctx: EffectContext) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """What pam-auth-update sets: the enabled profiles and the names it shows (see the pam effect)."""
    from rootfs_forge.configure.effects import pam

    tree = ctx.tree()
    if not ctx.has("libpam-runtime") or not tree.is_dir(pam.CONFIGS):
        return {}, {}
    profiles = {n: p for n in tree.listdir(pam.CONFIGS) if tree.is_file(f"{pam.CONFIGS}/{n}")
                and (p := pam.parse_profile(tree.read_bytes(f"{pam.CONFIGS}/{n}").decode("utf-8", "replace")))}
    ordered, enabled = pam.enabled_profiles(profiles)
    values = {"libpam-runtime/profiles": ", ".join(enabled), "libpam-runtime/override": "false"}
    variables = {"libpam-runtime/profiles": {"profile_names": ", ".join(ordered),
                                             "profiles": ", ".join(profiles[n].get("Name", "") for n in ordered)}}
    return values, variables


@effect("debconf", "the debconf database: the installed packages' templates, their questions unanswered",
        packages=("debconf",))
def apply(ctx: EffectContext) -> EffectResult:
    tree = ctx.tree()
    templates: dict[str, dict[str, str]] = {}
    owners: dict[str, list[str]] = {}
    wanted: list[str] = []
    for name in sorted(ctx.packages):
        info = ctx.packages[name]
        data = info.control_files.get("templates")
        if data is None:
            continue
        who = owners_of(name, db_name(info.control) or name, info.scripts)
        for t in parse_templates(data.decode("utf-8", "surrogateescape")):
            tname = t.pop("template")
            templates[tname] = t
            owners.setdefault(tname, []).extend(who)
        for question in asked(info.scripts.get("config", "")):
            wanted.append(question)
    values, variables = _pam_answers(ctx)
    for question in wanted:
        if question in templates and "default" in templates[question]:
            values.setdefault(question, templates[question]["default"])
    changed: list[Change] = [tree.mkdir(CACHE, 0o755)]
    changed.append(tree.write_file(f"{CACHE}/templates.dat",
                                   render_templates(templates).encode("utf-8", "surrogateescape")))
    config = render_config(owners, values, variables)
    changed.append(tree.write_file(f"{CACHE}/config.dat", config.encode("utf-8", "surrogateescape")))
    if not tree.lexists(f"{CACHE}/passwords.dat"):
        changed.append(tree.write_file(f"{CACHE}/passwords.dat", b"", 0o600))
    return EffectResult(tuple(changed), (f"{len(templates)} templates registered, {len(values)} answers set",))
