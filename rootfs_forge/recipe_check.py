"""Reading a parsed TOML document while collecting every problem, each naming its key (for ``recipe.py``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


class Checker:
    """Collects problems while reading a parsed TOML document."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, key: str, msg: str) -> None:
        self.problems.append(f"{key}: {msg}")

    def table(self, doc: Mapping[str, Any], key: str, allowed: set[str]) -> Mapping[str, Any]:
        value = doc.get(key.rsplit(".", 1)[-1], {}) if "." not in key else doc
        if not isinstance(value, Mapping):
            self.fail(key, f"expected a table, got {type_name(value)}")
            return {}
        for unknown in sorted(set(value) - allowed):
            self.fail(f"{key}.{unknown}" if key else unknown, "unknown key")
        return value

    def unknown(self, prefix: str, value: Mapping[str, Any], allowed: set[str]) -> None:
        for unknown in sorted(set(value) - allowed):
            self.fail(f"{prefix}{unknown}", "unknown key")

    def get(self, tbl: Mapping[str, Any], prefix: str, key: str, typ: type | tuple[type, ...], default: Any) -> Any:
        if key not in tbl:
            return default
        value = tbl[key]
        # bool is an int in Python; a TOML boolean is never an acceptable integer
        if (isinstance(value, bool) and typ is int) or not isinstance(value, typ):
            self.fail(f"{prefix}{key}", f"expected {_tname_of(typ)}, got {type_name(value)}")
            return default
        return value

    def strings(self, tbl: Mapping[str, Any], prefix: str, key: str,
                pattern: re.Pattern[str] | None = None, what: str = "value") -> tuple[str, ...]:
        value = self.get(tbl, prefix, key, list, [])
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"{prefix}{key}[{i}]", f"expected a string, got {type_name(item)}")
            elif pattern is not None and not pattern.match(item):
                self.fail(f"{prefix}{key}[{i}]", f"not a valid {what}: {item!r}")
            else:
                out.append(item)
        return tuple(out)

    def choice(self, tbl: Mapping[str, Any], prefix: str, key: str, options: tuple[str, ...], default: str) -> str:
        value = self.get(tbl, prefix, key, str, default)
        if value not in options:
            self.fail(f"{prefix}{key}", f"must be one of {', '.join(options)}, got {value!r}")
            return default
        return str(value)

    def string_map(self, tbl: Mapping[str, Any], prefix: str, key: str) -> tuple[tuple[str, str], ...]:
        value = self.get(tbl, prefix, key, dict, {})
        out = []
        for k in sorted(value):
            if not isinstance(value[k], str):
                self.fail(f"{prefix}{key}.{k}", f"expected a string, got {type_name(value[k])}")
            else:
                out.append((k, value[k]))
        return tuple(out)


def type_name(value: Any) -> str:
    """The TOML name of the type of ``value`` (for messages)."""
    return {
        bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table",
    }.get(type(value), type(value).__name__)


def _tname_of(typ: type | tuple[type, ...]) -> str:
    if isinstance(typ, tuple):
        return " or ".join(_tname_of(t) for t in typ)
    return {bool: "a boolean", int: "an integer", str: "a string", list: "an array", dict: "a table"}.get(
        typ, typ.__name__
    )
