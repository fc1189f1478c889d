"""TOML recipe → frozen ``Recipe``. Every problem is collected and reported at once, naming file and key.

Unknown keys are errors: a typo such as ``pakages`` must not silently produce an empty image.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rootfs_forge.errors import RecipeError
from rootfs_forge.recipe_check import Checker, type_name
from rootfs_forge.util.arch import KNOWN_ARCHES
from rootfs_forge.util.canonical import canonical_json

# Debian policy §5.6.1 package names, optional :arch qualifier, optional =version
PKG_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?(=[A-Za-z0-9.+~:-]+)?$")
ARCH_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._/-]*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
PROFILES = ("minimal", "full")
FORMATS = ("oci", "oci-archive", "docker-archive", "rootfs", "tar", "lxc")


@dataclass(frozen=True, slots=True)
class Source:
    url: str
    suites: tuple[str, ...]
    components: tuple[str, ...] = ("main",)
    keyring: str | None = None
    architectures: tuple[str, ...] = ()
    mirrors: tuple[str, ...] = ()
    priority: int = 500
    allow_insecure: bool = False
    snapshot: str = ""  # a timestamp of the snapshot archive, e.g. 20261201T000000Z
    snapshot_url: str = ""  # pattern with {archive} and {snapshot}; required with snapshot
    check_valid_until: bool = True


@dataclass(frozen=True, slots=True)
class Account:
    """An ``[[account]]``: a user, its primary group (created when missing) and its home. The one account type:
    the recipe parser fills every field, the effects take it as it is."""

    name: str
    uid: int
    gid: int | None = None  # None: same as uid
    home: str | None = None  # None: /home/<name>
    shell: str = "/usr/sbin/nologin"

    @property
    def group_id(self) -> int:
        return self.uid if self.gid is None else self.gid

    @property
    def home_dir(self) -> str:
        return self.home or f"/home/{self.name}"


@dataclass(frozen=True, slots=True)
class LayerGroup:
    name: str
    packages: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LocalFile:
    src: str  # resolved absolute path
    dest: str
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True, slots=True)
class ImageConfigSpec:
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str = ""
    user: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    exposed_ports: tuple[str, ...] = ()
    stop_signal: str = ""


@dataclass(frozen=True, slots=True)
class Recipe:
    path: Path
    name: str
    tag: str
    architectures: tuple[str, ...]
    packages: tuple[str, ...]
    sources: tuple[Source, ...] = ()
    recommends: bool = False
    essential: bool = False
    prefer: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    strategy: str = "apt"
    merged_usr: bool = True
    profile: str = "minimal"
    path_exclude: tuple[str, ...] = ()
    path_include: tuple[str, ...] = ()
    locales: tuple[str, ...] = ()
    slices: tuple[tuple[str, tuple[str, ...]], ...] = ()
    conflicts_prefer: tuple[tuple[str, str], ...] = ()  # path glob -> winning package
    allow_devices: bool = False
    accounts: tuple[Account, ...] = ()
    sh: str = ""  # "", "dash" or "bash"
    alternatives: tuple[tuple[str, str], ...] = ()
    timezone: str = "UTC"
    hostname: str = ""
    busybox_links: bool = False
    control_files: str = "auto"  # keep | drop | auto: the maintainer scripts etc. in /var/lib/dpkg/info
    literal_scripts: bool = True
    bytecode: bool = True  # [effects] bytecode: compile Python modules as the python3 postinsts do
    config: ImageConfigSpec = field(default_factory=ImageConfigSpec)
    layers: tuple[LayerGroup, ...] = ()
    layering: str = "single"  # single | groups | origin
    layer_budget: int = 1
    compression: str = "gzip"
    files: tuple[LocalFile, ...] = ()
    slim_keep: tuple[str, ...] = ()
    slim_data: tuple[str, ...] = ()
    slim: bool = False
    sliced_packages: str = "omit"  # "omit": a package that keeps no file is not in the dpkg database; "installed"
    vendor: tuple[str, ...] = ()  # vendor stores (oci://HOST/REPO, file:///DIR) in the chain of places

    @property
    def architecture(self) -> str:
        return self.architectures[0]

    @property
    def suite_priorities(self) -> dict[str, int]:
        """Each suite of the recipe's sources -> the priority (apt's pin) of its source."""
        return {s: src.priority for src in self.sources for s in src.suites}

    def resolution_digest(self) -> str:
        """SHA256 of everything that influences the resolution; a lock records it to detect staleness."""
        doc = {
            "architectures": list(self.architectures),
            "packages": list(self.packages),
            "sources": [
                {"url": s.url, "suites": list(s.suites), "components": list(s.components),
                 "architectures": list(s.architectures), "priority": s.priority,
                 **({"snapshot": s.snapshot} if s.snapshot else {})}
                for s in self.sources
            ],
            "recommends": self.recommends,
            "essential": self.essential,
            "prefer": list(self.prefer),
            "exclude": list(self.exclude),
            "strategy": self.strategy,
            "merged_usr": self.merged_usr,
        }
        return hashlib.sha256(canonical_json(doc, ensure_ascii=True)).hexdigest()


TOP_KEYS = {
    "image", "packages", "source", "recommends", "essential", "prefer", "exclude", "strategy", "merged_usr",
    "paths", "slice", "conflicts", "allow_devices", "account", "effects", "config", "layer", "file", "slim",
    "vendor", "sliced_packages",
}
IMAGE_KEYS = {"name", "tag", "architecture", "architectures", "layering", "layer_budget", "compression"}
SOURCE_KEYS = {"url", "suites", "components", "keyring", "architectures", "mirrors", "priority", "allow_insecure",
               "snapshot", "snapshot_url", "check_valid_until"}
SNAPSHOT_RE = re.compile(r"^\d{8}T\d{6}Z$")
VENDOR_RE = re.compile(r"^(oci://[^/\s]+/[a-z0-9][a-z0-9._/-]*|file:///\S*)$")
PATHS_KEYS = {"profile", "exclude", "include", "locales"}
EFFECT_KEYS = {"sh", "alternatives", "timezone", "hostname", "busybox_links", "control_files", "literal_scripts",
               "bytecode"}
CONFIG_KEYS = {"entrypoint", "cmd", "env", "working_dir", "user", "labels", "exposed_ports", "stop_signal"}
ACCOUNT_KEYS = {"name", "uid", "gid", "home", "shell"}
FILE_KEYS = {"src", "dest", "mode", "owner"}
SLIM_KEYS = {"keep", "data", "enabled"}


def parse_recipe(text: str, path: Path, host_arch: str) -> Recipe:
    """Validate a recipe's text. Raises RecipeError listing every problem found (one parser per table, each
    adding its problems in the order of this list)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(str(path), [f"invalid TOML: {exc}"]) from None
    c = Checker()
    c.unknown("", doc, TOP_KEYS)
    image = c.get(doc, "", "image", dict, {})
    fields: dict[str, Any] = {"path": path}
    fields |= _image_table(c, image, path, host_arch)
    fields |= _packages(c, doc)
    fields["sources"] = _source_tables(c, doc)
    fields |= _top_flags(c, doc)
    fields |= _paths_table(c, doc)
    fields["slices"] = _slice_tables(c, doc)
    fields["conflicts_prefer"] = c.string_map(doc, "", "conflicts")
    fields["accounts"] = _account_tables(c, doc)
    fields |= _effects_table(c, doc)
    fields["config"] = _config_table(c, doc)
    fields["layers"] = _layer_tables(c, doc)
    if fields["layers"] and fields["layering"] == "single" and "layering" not in image:
        fields["layering"] = "groups"
    fields["files"] = _file_tables(c, doc, path)
    fields |= _slim_table(c, doc)
    fields["vendor"] = _vendor_list(c, doc)
    fields["sliced_packages"] = c.choice(doc, "", "sliced_packages", ("omit", "installed"), "omit")
    if c.problems:
        raise RecipeError(str(path), c.problems)
    return Recipe(**fields)


def _image_table(c: Checker, image: dict[str, Any], path: Path, host_arch: str) -> dict[str, Any]:
    c.unknown("image.", image, IMAGE_KEYS)
    name = c.get(image, "image.", "name", str, path.stem)
    if not NAME_RE.match(name):
        c.fail("image.name", f"not a valid image name: {name!r} (lower case letters, digits, . _ - /)")
    tag = c.get(image, "image.", "tag", str, "latest")
    if not TAG_RE.match(tag):
        c.fail("image.tag", f"not a valid tag: {tag!r}")
    archs = _architectures(c, image, host_arch)
    layering = c.choice(image, "image.", "layering", ("single", "groups", "origin"), "single")
    budget = c.get(image, "image.", "layer_budget", int, 1)
    if budget < 1 or budget > 127:
        c.fail("image.layer_budget", f"must be between 1 and 127, got {budget}")
    compression = c.choice(image, "image.", "compression", ("gzip", "zstd", "none"), "gzip")
    return {"name": name, "tag": tag, "architectures": archs, "layering": layering, "layer_budget": budget,
            "compression": compression}


def _architectures(c: Checker, image: dict[str, Any], host_arch: str) -> tuple[str, ...]:
    archs: tuple[str, ...]
    if "architecture" in image and "architectures" in image:
        c.fail("image.architectures", "give either architecture or architectures, not both")
    if "architectures" in image:
        archs = c.strings(image, "image.", "architectures", ARCH_RE, "architecture")
        if not archs and isinstance(image["architectures"], list):
            c.fail("image.architectures", "must name at least one architecture")
    else:
        archs = (c.get(image, "image.", "architecture", str, host_arch),)
    for i, arch in enumerate(archs):
        if arch not in KNOWN_ARCHES or arch == "all":
            key = f"image.architectures[{i}]" if "architectures" in image else "image.architecture"
            c.fail(key, f"unknown Debian architecture {arch!r}")
    if len(set(archs)) != len(archs):
        c.fail("image.architectures", "lists an architecture twice")
    return archs


def _packages(c: Checker, doc: dict[str, Any]) -> dict[str, Any]:
    if "packages" not in doc:
        c.fail("packages", "missing: list the packages to install")
    packages = c.strings(doc, "", "packages", PKG_RE, "package (name, name=version or name:arch)")
    if "packages" in doc and isinstance(doc["packages"], list) and not doc["packages"] \
            and doc.get("essential") is not True:  # the essential set alone is an image (mmdebstrap's variant)
        c.fail("packages", "is empty: list at least one package (or set essential = true)")
    return {"packages": packages}


def _tables(c: Checker, doc: dict[str, Any], key: str) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """The tables of the array ``[[key]]``: index, problem prefix (``key[i].``), table; other items are
    problems."""
    for i, item in enumerate(c.get(doc, "", key, list, [])):
        if not isinstance(item, dict):
            c.fail(f"{key}[{i}]", f"expected a table, got {type_name(item)}")
            continue
        yield i, f"{key}[{i}].", item


def _source_tables(c: Checker, doc: dict[str, Any]) -> tuple[Source, ...]:
    sources = []
    for _, pre, s in _tables(c, doc, "source"):
        c.unknown(pre, s, SOURCE_KEYS)
        url = c.get(s, pre, "url", str, "")
        if not url:
            c.fail(pre + "url", "missing")
        elif not re.match(r"^(https?|file)://", url):
            c.fail(pre + "url", f"must be an http://, https:// or file:// URL, got {url!r}")
        suites = c.strings(s, pre, "suites")
        if not suites:
            c.fail(pre + "suites", "missing: name at least one suite")
        comps = c.strings(s, pre, "components") or ("main",)
        keyring = c.get(s, pre, "keyring", str, None)
        s_archs = c.strings(s, pre, "architectures", ARCH_RE, "architecture")
        mirrors = c.strings(s, pre, "mirrors")
        for j, m in enumerate(mirrors):
            if not re.match(r"^(https?|file)://", m):
                c.fail(f"{pre}mirrors[{j}]", f"must be an http://, https:// or file:// URL, got {m!r}")
        priority = c.get(s, pre, "priority", int, 500)
        insecure = c.get(s, pre, "allow_insecure", bool, False)
        snapshot = c.get(s, pre, "snapshot", str, "")
        if snapshot and not SNAPSHOT_RE.match(snapshot):
            c.fail(pre + "snapshot", f"must be a timestamp like 20261201T000000Z, got {snapshot!r}")
        snapshot_url = c.get(s, pre, "snapshot_url", str, "")
        if snapshot and not snapshot_url:
            c.fail(pre + "snapshot_url", "a snapshot needs the URL pattern of the snapshot archive to read it from, "
                                         "e.g. https://HOST/archive/{archive}/{snapshot} (Debian's layout)")
        elif snapshot_url and (not re.match(r"^(https?|file)://", snapshot_url) or "{snapshot}" not in snapshot_url):
            c.fail(pre + "snapshot_url", "must be an http://, https:// or file:// URL pattern with {snapshot} "
                                         f"(and optionally {{archive}}), got {snapshot_url!r}")
        check = c.get(s, pre, "check_valid_until", bool, True)
        sources.append(Source(url, suites, comps, keyring, s_archs, mirrors, priority, insecure, snapshot,
                              snapshot_url, check))
    return tuple(sources)


def _vendor_list(c: Checker, doc: dict[str, Any]) -> tuple[str, ...]:
    stores = c.strings(doc, "", "vendor")
    for i, v in enumerate(stores):
        if not VENDOR_RE.match(v):
            c.fail(f"vendor[{i}]", f"must be oci://HOST[:PORT]/REPO or file:///DIR, got {v!r}")
    return stores


def _top_flags(c: Checker, doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "recommends": c.get(doc, "", "recommends", bool, False),
        "essential": c.get(doc, "", "essential", bool, False),
        "prefer": c.strings(doc, "", "prefer", PKG_RE, "package name"),
        "exclude": c.strings(doc, "", "exclude", PKG_RE, "package name"),
        "strategy": c.choice(doc, "", "strategy", ("apt", "smallest"), "apt"),
        "merged_usr": c.get(doc, "", "merged_usr", bool, True),
        "allow_devices": c.get(doc, "", "allow_devices", bool, False),
    }


def _paths_table(c: Checker, doc: dict[str, Any]) -> dict[str, Any]:
    paths = c.get(doc, "", "paths", dict, {})
    c.unknown("paths.", paths, PATHS_KEYS)
    return {
        "profile": c.choice(paths, "paths.", "profile", PROFILES, "minimal"),
        "path_exclude": c.strings(paths, "paths.", "exclude"),
        "path_include": c.strings(paths, "paths.", "include"),
        "locales": c.strings(paths, "paths.", "locales"),
    }


def _slice_tables(c: Checker, doc: dict[str, Any]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    slices = []
    for pkg, spec in sorted(c.get(doc, "", "slice", dict, {}).items()):
        if not isinstance(spec, dict):
            c.fail(f"slice.{pkg}", f"expected a table, got {type_name(spec)}")
            continue
        c.unknown(f"slice.{pkg}.", spec, {"include"})
        slices.append((pkg, c.strings(spec, f"slice.{pkg}.", "include")))
    return tuple(slices)


def _account_tables(c: Checker, doc: dict[str, Any]) -> tuple[Account, ...]:
    accounts = []
    for _, pre, a in _tables(c, doc, "account"):
        c.unknown(pre, a, ACCOUNT_KEYS)
        aname = c.get(a, pre, "name", str, "")
        if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", aname):
            c.fail(pre + "name", f"not a valid user name: {aname!r}")
        uid = c.get(a, pre, "uid", int, 0)
        gid = c.get(a, pre, "gid", int, uid)
        for k, v in (("uid", uid), ("gid", gid)):
            if not 0 <= v < 2**31:
                c.fail(pre + k, f"out of range: {v}")
        home = c.get(a, pre, "home", str, f"/home/{aname}")
        shell = c.get(a, pre, "shell", str, "/usr/sbin/nologin")
        accounts.append(Account(aname, uid, gid, home, shell))
    return tuple(accounts)


def _effects_table(c: Checker, doc: dict[str, Any]) -> dict[str, Any]:
    effects = c.get(doc, "", "effects", dict, {})
    c.unknown("effects.", effects, EFFECT_KEYS)
    return {
        "sh": c.choice(effects, "effects.", "sh", ("", "dash", "bash"), ""),
        "alternatives": c.string_map(effects, "effects.", "alternatives"),
        "timezone": c.get(effects, "effects.", "timezone", str, "UTC"),
        "hostname": c.get(effects, "effects.", "hostname", str, ""),
        "busybox_links": c.get(effects, "effects.", "busybox_links", bool, False),
        "control_files": c.choice(effects, "effects.", "control_files", ("auto", "keep", "drop"), "auto"),
        "literal_scripts": c.get(effects, "effects.", "literal_scripts", bool, True),
        "bytecode": c.get(effects, "effects.", "bytecode", bool, True),
    }


def _config_table(c: Checker, doc: dict[str, Any]) -> ImageConfigSpec:
    cfg = c.get(doc, "", "config", dict, {})
    c.unknown("config.", cfg, CONFIG_KEYS)

    def argv(key: str) -> tuple[str, ...]:
        if isinstance(cfg.get(key), str):
            return (cfg[key],)
        return c.strings(cfg, "config.", key)

    env = c.string_map(cfg, "config.", "env")
    return ImageConfigSpec(
        entrypoint=argv("entrypoint"),
        cmd=argv("cmd"),
        env=env,
        working_dir=c.get(cfg, "config.", "working_dir", str, ""),
        user=c.get(cfg, "config.", "user", str, ""),
        labels=c.string_map(cfg, "config.", "labels"),
        exposed_ports=c.strings(cfg, "config.", "exposed_ports", re.compile(r"^\d{1,5}(/(tcp|udp|sctp))?$"),
                                "port (e.g. 8080/tcp)"),
        stop_signal=c.get(cfg, "config.", "stop_signal", str, ""),
    )


def _layer_tables(c: Checker, doc: dict[str, Any]) -> tuple[LayerGroup, ...]:
    layers = []
    for i, pre, layer in _tables(c, doc, "layer"):
        c.unknown(pre, layer, {"name", "packages"})
        lname = c.get(layer, pre, "name", str, f"layer{i}")
        layers.append(LayerGroup(lname, c.strings(layer, pre, "packages", PKG_RE, "package name")))
    return tuple(layers)


def _file_tables(c: Checker, doc: dict[str, Any], path: Path) -> tuple[LocalFile, ...]:
    files = []
    for _, pre, f in _tables(c, doc, "file"):
        c.unknown(pre, f, FILE_KEYS)
        src = c.get(f, pre, "src", str, "")
        dest = c.get(f, pre, "dest", str, "")
        if not src:
            c.fail(pre + "src", "missing")
        if not dest.startswith("/"):
            c.fail(pre + "dest", f"must be an absolute path inside the image, got {dest!r}")
        elif ".." in dest.split("/"):
            c.fail(pre + "dest", f"must not contain '..', got {dest!r}")
        mode_v = c.get(f, pre, "mode", (str, int), "0644")
        mode = _parse_mode(mode_v)
        if mode is None:
            c.fail(pre + "mode", f"not an octal file mode: {mode_v!r}")
            mode = 0o644
        uid, gid = _owner(c, pre, c.get(f, pre, "owner", str, "0:0"))
        src_path = (path.parent / src).resolve() if src else path.parent
        if src and not src_path.is_file():
            c.fail(pre + "src", f"no such file: {src!r}")
        files.append(LocalFile(str(src_path), dest, mode, uid, gid))
    return tuple(files)


def _owner(c: Checker, pre: str, owner: str) -> tuple[int, int]:
    owner_m = re.match(r"^(\d+)(?::(\d+))?$", owner)
    if not owner_m:
        c.fail(pre + "owner", f"must be numeric uid[:gid], got {owner!r}")
        return 0, 0
    uid = int(owner_m.group(1))
    return uid, int(owner_m.group(2) or uid)


def _slim_table(c: Checker, doc: dict[str, Any]) -> dict[str, Any]:
    slim_tbl = c.get(doc, "", "slim", dict, {})
    c.unknown("slim.", slim_tbl, SLIM_KEYS)
    return {
        "slim_keep": c.strings(slim_tbl, "slim.", "keep"),
        "slim_data": c.strings(slim_tbl, "slim.", "data"),
        "slim": bool(slim_tbl) and c.get(slim_tbl, "slim.", "enabled", bool, True),
    }


def _parse_mode(value: str | int) -> int | None:
    if isinstance(value, int):
        return value if 0 <= value <= 0o7777 else None
    if re.match(r"^0?[0-7]{3,4}$", value):
        return int(value, 8)
    return None


def load_recipe(path: Path, host_arch: str, reader: Callable[[Path], str] | None = None) -> Recipe:
    """Read and validate the recipe at ``path``."""
    try:
        text = reader(path) if reader else path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(str(path), ["no such file"]) from None
    except IsADirectoryError:
        raise RecipeError(str(path), ["is a directory: name the recipe's .toml file"]) from None
    except OSError as exc:
        raise RecipeError(str(path), [exc.strerror or str(exc)]) from None
    except UnicodeDecodeError as exc:
        raise RecipeError(str(path), [str(exc)]) from None
    return parse_recipe(text, path, host_arch)
