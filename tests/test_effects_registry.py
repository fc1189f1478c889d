"""The effects registry: each effect module declares its effect with ``@effect``; ``ORDER`` says when it runs."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import rootfs_forge.configure.effects as effects_pkg
from rootfs_forge.configure.effects import EFFECTS, ORDER, EffectContext, EffectResult
from rootfs_forge.configure.effects.base import Registry


def _noop(ctx: EffectContext) -> EffectResult:
    return EffectResult()


def _other(ctx: EffectContext) -> EffectResult:
    return EffectResult(messages=("other",))


def test_effects_run_in_the_declared_order() -> None:
    assert tuple(e.name for e in EFFECTS) == ORDER
    assert ORDER[0] == "accounts" and ORDER[-1] == "ldconfig"  # later effects read /etc/group; ld.so.cache last


def test_every_effect_module_is_registered() -> None:
    """A module with an ``apply`` that the package does not import would never run: each one is in EFFECTS."""
    registered = {(e.apply.__module__, e.apply.__qualname__) for e in EFFECTS}
    modules = [m.name for m in pkgutil.iter_modules(effects_pkg.__path__)]
    with_apply = set()
    for name in modules:
        mod = importlib.import_module(f"{effects_pkg.__name__}.{name}")
        if callable(getattr(mod, "apply", None)):
            with_apply.add((mod.__name__, "apply"))
    assert with_apply == registered


def test_decorator_builds_the_effect_and_returns_the_function() -> None:
    reg = Registry()
    declared = reg.effect("noop", "does nothing", packages=("p",), scripts=("p/postinst",), commands=("c",))(_noop)
    assert declared is _noop
    (eff,) = reg.ordered(["noop"])
    assert (eff.name, eff.summary, eff.apply, eff.packages, eff.scripts, eff.commands) == (
        "noop", "does nothing", _noop, ("p",), ("p/postinst",), ("c",)
    )


def test_order_is_the_one_given_not_the_declaration_order() -> None:
    reg = Registry()
    reg.effect("a", "first declared")(_noop)
    reg.effect("b", "second declared")(_other)
    assert [e.name for e in reg.ordered(("b", "a"))] == ["b", "a"]


@pytest.mark.parametrize(
    ("order", "reason"),
    [
        (("a",), "not ordered ['b']"),
        (("a", "b", "c"), "unknown ['c']"),
        (("a", "b", "a"), "named twice ['a']"),
    ],
)
def test_an_order_that_misses_or_repeats_an_effect_is_refused(order: tuple[str, ...], reason: str) -> None:
    reg = Registry()
    reg.effect("a", "")(_noop)
    reg.effect("b", "")(_other)
    with pytest.raises(ValueError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        reg.ordered(order)


def test_two_effects_of_one_name_are_refused() -> None:
    reg = Registry()
    reg.effect("a", "")(_noop)
    reg.effect("a", "again")(_noop)  # the same function again: its module was reloaded
    assert reg.ordered(["a"])[0].summary == "again"
    with pytest.raises(ValueError, match="declared twice"):
        reg.effect("a", "")(_other)


@pytest.mark.parametrize("key", ["postinst", "dash/postints", "dash/postinst/x"])
def test_a_script_that_is_not_package_slash_maintainer_script_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="not package/<maintainer script>"):
        Registry().effect("a", "", scripts=(key,))
