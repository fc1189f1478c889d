"""A seccomp profile in Docker's format, reduced to the rules that apply here. Pure logic, no I/O.

``resolve(profile, source, caps, arch, kernel)`` validates a profile (Docker's JSON structure, as a parsed
object) and returns the default action and the rules to compile for the native architecture, the
container's capability set and the running kernel: entries whose ``includes``/``excludes`` (``caps``,
``arches``, ``minKernel``) do not match are left out, as Docker does. Supported: ``defaultAction``,
``defaultErrnoRet``, ``architectures``/``archMap`` (accepted; forge compiles for the native ABI only),
``syscalls[]`` with ``names`` (or the old ``name``), ``action``, ``errnoRet``, ``args``
(``index``/``value``/``valueTwo``/``op``), ``includes``/``excludes`` and ``comment``. Anything else (a
``listenerPath``, filter ``flags``, ``SCMP_ACT_NOTIFY``, an unknown key) is refused with one line naming the
file and the problem.

Rules whose args use one index twice become one rule per condition (OR), as in runc; otherwise one rule with
all conditions (AND). Rules whose action equals the default action are dropped (libseccomp refuses them).
"""

from __future__ import annotations

from rootfs_forge.errors import RunError

ERROR_CODE = 125
EPERM = 1

ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_ERRNO = 0x00050000
ACT_TRACE = 0x7FF00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000

_ACTIONS = {
    "SCMP_ACT_KILL": ACT_KILL_THREAD, "SCMP_ACT_KILL_THREAD": ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": ACT_KILL_PROCESS, "SCMP_ACT_TRAP": ACT_TRAP, "SCMP_ACT_ERRNO": ACT_ERRNO,
    "SCMP_ACT_TRACE": ACT_TRACE, "SCMP_ACT_LOG": ACT_LOG, "SCMP_ACT_ALLOW": ACT_ALLOW,
}
# libseccomp's enum scmp_compare
OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
       "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
# uname -m -> the architecture names Docker profiles use in includes/excludes "arches"
DOCKER_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "x86", "i386": "x86", "armv7l": "arm",
               "armv6l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
               "mips64": "mips64", "loongarch64": "loong64"}

_TOP_KEYS = {"defaultAction", "defaultErrnoRet", "architectures", "archMap", "syscalls", "flags"}
_RULE_KEYS = {"names", "name", "action", "errnoRet", "args", "includes", "excludes", "comment", "comments"}
_FILTER_KEYS = {"caps", "arches", "minKernel"}
_ARG_KEYS = {"index", "value", "valueTwo", "op"}


class Rule:
    """One libseccomp rule: ``action`` for syscall ``name`` when every ``(index, op, a, b)`` holds."""

    __slots__ = ("action", "args", "name")

    def __init__(self, action: int, name: str, args: tuple[tuple[int, int, int, int], ...] = ()) -> None:
        self.action = action
        self.name = name
        self.args = args

    def __repr__(self) -> str:
        return f"Rule(0x{self.action:x}, {self.name!r}, {self.args!r})"


class Resolved:
    __slots__ = ("default_action", "rules")

    def __init__(self, default_action: int, rules: list[Rule]) -> None:
        self.default_action = default_action
        self.rules = rules


def _fail(source: str, reason: str) -> RunError:
    err = RunError("use seccomp profile", source, reason)
    err.exit_code = ERROR_CODE
    return err


def _obj(value: object, what: str, source: str, keys: set[str] | None = None) -> dict[str, object]:
    """``value`` as an object; with ``keys``, one that has no other key."""
    if not isinstance(value, dict):
        raise _fail(source, f"{what} must be an object")
    unknown = set(value) - keys if keys is not None else ()
    if unknown:
        raise _fail(source, f"{what}: unsupported key {sorted(unknown)[0]!r}")
    return value


def _strings(value: object, what: str, source: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise _fail(source, f"{what} must be a list of strings")
    return list(value)


def _int(value: object, what: str, source: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
        raise _fail(source, f"{what} must be a whole number from 0 to {limit - 1}")
    return value


def _action(name: object, errno: object, what: str, source: str, default_errno: int = EPERM) -> int:
    if name == "SCMP_ACT_NOTIFY":
        raise _fail(source, f"{what}: SCMP_ACT_NOTIFY is not supported (it needs a listener)")
    if not isinstance(name, str) or name not in _ACTIONS:
        raise _fail(source, f"{what}: unknown action {name!r}")
    act = _ACTIONS[name]
    if act in (ACT_ERRNO, ACT_TRACE):
        ret = default_errno if errno is None else _int(errno, f"{what} errnoRet", source, 1 << 16)
        return act | ret
    if errno is not None:
        raise _fail(source, f"{what}: errnoRet is only allowed with SCMP_ACT_ERRNO or SCMP_ACT_TRACE")
    return act


def _kernel(text: str) -> tuple[int, int]:
    """'6.18.0-1-amd64' -> (6, 18); unparsable parts count as 0."""
    parts = [*text.split("-", 1)[0].split("."), "0", "0"][:2]
    return (int(parts[0]) if parts[0].isdigit() else 0, int(parts[1]) if parts[1].isdigit() else 0)


def _applies(entry: dict[str, object], idx: str, source: str, caps: frozenset[str], arch: str,
             kernel: tuple[int, int]) -> bool:
    for key, include in (("includes", True), ("excludes", False)):
        cond = _obj(entry.get(key) or {}, f"{idx}.{key}", source, _FILTER_KEYS)
        want_caps = {c.upper() if c.upper().startswith("CAP_") else "CAP_" + c.upper()
                     for c in _strings(cond.get("caps"), f"{idx}.{key}.caps", source)}
        arches = _strings(cond.get("arches"), f"{idx}.{key}.arches", source)
        min_kernel = cond.get("minKernel")
        if min_kernel is not None and (not isinstance(min_kernel, str) or not min_kernel.replace(".", "").isdigit()):
            raise _fail(source, f"{idx}.{key}.minKernel must be a version like \"4.8\"")
        if include:
            if want_caps and not want_caps <= caps:
                return False
            if arches and arch not in arches:
                return False
            if min_kernel and kernel < _kernel(min_kernel):
                return False
        else:
            if want_caps and want_caps & caps:
                return False
            if arches and arch in arches:
                return False
            if min_kernel and kernel >= _kernel(min_kernel):
                return False
    return True


def _conditions(value: object, idx: str, source: str) -> list[tuple[int, int, int, int]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(source, f"{idx}.args must be a list")
    out = []
    for j, raw in enumerate(value):
        what = f"{idx}.args[{j}]"
        arg = _obj(raw, what, source, _ARG_KEYS)
        op = arg.get("op")
        if not isinstance(op, str) or op not in OPS:
            raise _fail(source, f"{what}: unknown op {op!r}")
        index = _int(arg.get("index"), f"{what}.index", source, 6)
        a = _int(arg.get("value", 0), f"{what}.value", source, 1 << 64)
        b = _int(arg.get("valueTwo", 0), f"{what}.valueTwo", source, 1 << 64)
        out.append((index, OPS[op], a, b))
    return out


def resolve(profile: object, source: str, caps: frozenset[str], machine: str, kernel: str) -> Resolved:
    """Validate ``profile`` and keep the rules for this machine, capability names and kernel release."""
    top = _obj(profile, "the profile", source)
    unknown = set(top) - _TOP_KEYS
    if unknown:
        key = sorted(unknown)[0]
        reason = "not supported" if key in ("listenerPath", "listenerMetadata") else "unknown key"
        raise _fail(source, f"{key!r}: {reason}")
    if top.get("flags"):
        raise _fail(source, "'flags': seccomp filter flags are not supported")
    _strings(top.get("architectures"), "architectures", source)
    if not isinstance(top.get("archMap") or [], list):
        raise _fail(source, "archMap must be a list")
    default_errno = top.get("defaultErrnoRet")
    default = _action(top.get("defaultAction"), default_errno, "defaultAction", source)
    entries = top.get("syscalls") or []
    if not isinstance(entries, list):
        raise _fail(source, "syscalls must be a list")
    arch = DOCKER_ARCH.get(machine, machine)
    release = _kernel(kernel)
    rules: list[Rule] = []
    for i, raw in enumerate(entries):
        idx = f"syscalls[{i}]"
        entry = _obj(raw, idx, source, _RULE_KEYS)
        names = _strings(entry.get("names"), f"{idx}.names", source)
        if isinstance(entry.get("name"), str):
            names = [*names, str(entry["name"])]
        if not names:
            raise _fail(source, f"{idx}: no syscall names")
        action = _action(entry.get("action"), entry.get("errnoRet"), idx, source)
        conds = _conditions(entry.get("args"), idx, source)
        if not _applies(entry, idx, source, caps, arch, release) or action == default:
            continue
        indexes = [c[0] for c in conds]
        groups = [(c,) for c in conds] if len(set(indexes)) < len(indexes) else [tuple(conds)]
        rules.extend(Rule(action, name, group) for name in names for group in groups)
    return Resolved(default, rules)
