"""Python bytecode, as the postinsts of python3.X, python3.X-minimal and every dh_python3 package make it.

Which sources (what the scripts would compile): the ``/usr/lib/python3.X/**.py`` files of libpython3.X-minimal
and libpython3.X-stdlib (the postinsts of python3.X-minimal and python3.X run ``py_compile`` on them) and of the
stdlib's split-off packages whose postinsts do the same (python3-distutils, python3-lib2to3), and for
each ``py3compile -p PKG [DIR…]`` in a postinst (when py3compile is installed, as the scripts check), PKG's
``.py`` files below DIR, or its public modules (``/usr/lib/python3/dist-packages``) without one. The pycs are
``unchecked-hash`` ones (reproducible: no timestamp), made by the image's own interpreter in a sandbox
(:mod:`.pycompile`) when the image architecture is the host's (skipped for a foreign one), cached per package
and interpreter, and written through the tree's writer (root, 0644, mtime clamped). ``bytecode = false`` in
``[effects]`` turns it off.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping

from rootfs_forge.configure.effects import pycompile
from rootfs_forge.configure.effects.base import EffectContext, EffectResult, PackageInfo, effect
from rootfs_forge.configure.effects.scripts import simple_commands
from rootfs_forge.configure.effects.tree import Change
from rootfs_forge.errors import RootfsError

_MINIMAL = re.compile(r"^python3\.(\d+)-minimal$")
PUBLIC = "/usr/lib/python3/dist-packages/"


def interpreter_of(packages: Mapping[str, PackageInfo]) -> tuple[str, str] | None:
    """(``3.11``, the python3.11-minimal version) of the newest interpreter installed, or None (pure)."""
    found = sorted((int(m.group(1)), name) for name in packages if (m := _MINIMAL.match(name)))
    if not found:
        return None
    minor, name = found[-1]
    return f"3.{minor}", packages[name].control.get("Version", "")


def cache_from_source(path: str, tag: str) -> str:
    """``/a/b.py`` → ``/a/__pycache__/b.TAG.pyc`` (importlib.util.cache_from_source, pure)."""
    head, tail = posixpath.split(path)
    return posixpath.join(head, "__pycache__", f"{tail[:-3]}.{tag}.pyc")


def _py_files(info: PackageInfo, prefix: str) -> list[str]:
    return [p for p in info.files if p.endswith(".py") and p.startswith(prefix)]


def selection(packages: Mapping[str, PackageInfo], version: str,
              has_py3compile: bool) -> tuple[dict[str, list[str]], list[str]]:
    """Package → the sources its install would have compiled; ``pkg/postinst`` keys whose py3compile calls
    could not be read (pure)."""
    out: dict[str, list[str]] = {}
    stdlib = f"/usr/lib/python{version}/"
    for runner, owner in ((f"python{version}-minimal", f"libpython{version}-minimal"),
                          (f"python{version}", f"libpython{version}-stdlib")):
        if runner in packages and owner in packages:
            out.setdefault(owner, []).extend(_py_files(packages[owner], stdlib))
    for name in sorted(packages):  # the standard library's own split-off packages (python3-distutils,
        # python3-lib2to3 …) compile their files the same way: py_compile.py on their dpkg -L list
        if name.startswith("python3") and "py_compile.py" in packages[name].scripts.get("postinst", "") \
                and name not in (f"python{version}-minimal", f"python{version}"):
            out.setdefault(name, []).extend(_py_files(packages[name], stdlib))
    unhandled: list[str] = []
    if not has_py3compile:
        return {k: sorted(set(v)) for k, v in out.items() if v}, unhandled
    for name in sorted(packages):
        text = packages[name].scripts.get("postinst", "")
        if "py3compile" not in text:
            continue
        for words in simple_commands(text):
            if words[0] != "py3compile":
                continue
            args = words[1:]
            if len(args) < 2 or args[0] != "-p" or any(a.startswith("-") or "$" in a for a in args[1:]):
                unhandled.append(f"{name}/postinst")
                continue
            owner, dirs = args[1], args[2:]
            if owner not in packages:
                continue
            if dirs:
                files = [p for d in dirs for p in _py_files(packages[owner], d.rstrip("/") + "/")]
            else:
                files = _py_files(packages[owner], PUBLIC)
            out.setdefault(owner, []).extend(files)
    return {k: sorted(set(v)) for k, v in out.items() if v}, unhandled


@effect("bytecode", "Python bytecode (unchecked-hash pycs) as python3's postinsts compile it",
        packages=tuple(f"python3.{minor}-minimal" for minor in range(5, 30)),  # any interpreter
        commands=("py3compile", "py_compile.py"))
def apply(ctx: EffectContext) -> EffectResult:
    if not ctx.options.bytecode:
        return EffectResult(skipped="the recipe turned it off (bytecode = false)")
    found = interpreter_of(ctx.packages)
    if found is None:
        return EffectResult(skipped="no Python interpreter in the image")
    version, interp_version = found
    interpreter = f"/usr/bin/python{version}"
    tree = ctx.tree()
    if not tree.is_file(interpreter):
        return EffectResult(skipped=f"no {interpreter} in the image")
    if ctx.host.architecture != ctx.architecture:
        return EffectResult(skipped=f"image architecture {ctx.architecture} is not the host's "
                                    f"({ctx.host.architecture or 'unknown'}): its interpreter cannot run here")
    groups, unhandled = selection(ctx.packages, version, tree.is_file("/usr/bin/py3compile"))
    tag = "cpython-" + version.replace(".", "")
    pycs: dict[str, dict[str, bytes]] = {}
    missing: dict[str, list[str]] = {}
    for name, sources in groups.items():
        sources = [s for s in sources if tree.is_file(s)]
        sha = ctx.packages[name].sha256
        have = (pycompile.read_cached(pycompile.cache_path(ctx.cache_dir, sha, interp_version, tag))
                if ctx.cache_dir is not None and sha else None) or {}
        pycs[name] = {s: have[s] for s in sources if s in have}
        todo = [s for s in sources if s not in have]
        if todo:
            missing[name] = todo
    if missing:
        if not ctx.host.bwrap:
            return EffectResult(skipped="no bwrap on the host to run the image's interpreter sandboxed")
        try:
            got_tag, made = pycompile.compile_in_image(ctx.host.bwrap, ctx.root, interpreter,
                                                       [s for todo in missing.values() for s in todo])
        except RootfsError as exc:  # the sandbox could not start here (no user namespaces …): no pycs
            return EffectResult(skipped=str(exc))
        if got_tag != tag:
            return EffectResult(skipped=f"{interpreter} reports cache tag {got_tag!r}, not {tag!r}")
        for name, todo in missing.items():
            pycs[name].update({s: made.get(s, b"") for s in todo})
            sha = ctx.packages[name].sha256
            if ctx.cache_dir is not None and sha:
                old = pycompile.read_cached(pycompile.cache_path(ctx.cache_dir, sha, interp_version, tag)) or {}
                pycompile.write_cached(pycompile.cache_path(ctx.cache_dir, sha, interp_version, tag),
                                       {**old, **pycs[name]})
    changed: list[Change] = []
    failed = 0
    for name in sorted(pycs):
        for source, data in sorted(pycs[name].items()):
            if not data:
                failed += 1  # py_compile would have written nothing for a source that does not compile
                continue
            target = cache_from_source(source, tag)  # as py_compile names it: beside the link, not its target
            folder = posixpath.dirname(target)
            if not tree.is_dir(folder):
                changed.append(tree.mkdir(folder))
            changed.append(tree.write_file(target, data))
    written = sum(1 for c in changed if c.kind == "file")
    # the same words cold and warm: the note goes into forge's manifest, so into the image digest (how many came
    # from the cache is a fact of this machine, not of the image)
    note = f"{written} unchecked-hash pycs by {interpreter} ({interp_version})"
    if failed:
        note += f", {failed} sources that do not compile left out"
    return EffectResult(tuple(changed), (note,), unhandled=tuple(unhandled))
