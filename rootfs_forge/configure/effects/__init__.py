"""Emulated maintainer-script effects: the registry, the runner and the report of skipped scripts.

forge never runs maintainer scripts. After extraction, :func:`apply_effects` runs each registered effect whose
packages are installed, in registry order (accounts first: later effects read /etc/group; ldconfig last), and
:func:`classify_scripts` says of every maintainer script whether an effect stood in for it, whether an image
does not need it, or that it was ignored and why.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from rootfs_forge.configure.effects import (  # noqa: F401 (each module declares its effect with @effect)
    accounts,
    alternatives,
    binsh,
    busybox,
    bytecode,
    cacerts,
    debconf,
    defaults,
    dirs,
    dpkginfo,
    fcaps,
    identity,
    ldconfig,
    literal,
    nginxmods,
    pam,
    shells,
    sshdconfig,
    timezone,
    triggers,
)
from rootfs_forge.configure.effects.base import (
    REGISTRY,
    SCRIPT_NAMES,
    Account,
    Effect,
    EffectContext,
    EffectOptions,
    EffectResult,
    HostTools,
    PackageInfo,
)
from rootfs_forge.configure.effects.scripts import ScriptVerdict, classify_script
from rootfs_forge.configure.effects.tree import Change, RootDir

__all__ = [
    "EFFECTS",
    "ORDER",
    "Account",
    "Change",
    "Effect",
    "EffectContext",
    "EffectOptions",
    "EffectOutcome",
    "EffectResult",
    "EffectsRun",
    "HostTools",
    "PackageInfo",
    "RootDir",
    "ScriptVerdict",
    "apply_effects",
    "classify_script",
    "classify_scripts",
]

# The order effects run in, by name: accounts first (later effects read /etc/group), ldconfig last. Every effect
# a module above declares with @effect must be named here exactly once.
ORDER = (
    "accounts",
    "base-files",
    "identity",
    "binsh",
    "alternatives",
    "timezone",
    "ca-certificates",
    "sshd-config",
    "nginx-modules",
    "busybox",
    "defaults",
    "shells",
    "pam",
    "dpkg-info",
    "debconf",
    "triggers",
    "literal-scripts",
    "file-capabilities",
    "bytecode",
    "ldconfig",
)
EFFECTS: tuple[Effect, ...] = REGISTRY.ordered(ORDER)


@dataclass(frozen=True, slots=True)
class EffectOutcome:
    """One effect's run. ``status``: applied | skipped | not-applicable (none of its packages installed)."""

    effect: Effect
    status: str
    result: EffectResult

    def as_dict(self) -> dict[str, object]:
        return {
            "effect": self.effect.name,
            "status": self.status,
            "skipped": self.result.skipped,
            "messages": list(self.result.messages),
            "changed": [c.path for c in self.result.changed],
        }


@dataclass(frozen=True, slots=True)
class EffectsRun:
    """All outcomes and the verdict on every maintainer script."""

    outcomes: tuple[EffectOutcome, ...]
    scripts: tuple[ScriptVerdict, ...]

    @property
    def changed(self) -> list[Change]:
        """Every path the effects created or changed, the last change of a path winning, sorted by path."""
        last: dict[str, Change] = {}
        for o in self.outcomes:
            for c in o.result.changed:
                last[c.path] = c
        return [last[p] for p in sorted(last)]

    def report(self) -> list[dict[str, object]]:
        """The script verdicts as plain dicts, sorted by package then script, for text and --json output."""
        return [v.as_dict() for v in self.scripts]

    def effects_report(self) -> list[dict[str, object]]:
        return [o.as_dict() for o in self.outcomes]


def _script_order(script: str) -> tuple[int, str]:
    return (SCRIPT_NAMES.index(script) if script in SCRIPT_NAMES else len(SCRIPT_NAMES), script)


def classify_scripts(
    packages: dict[str, PackageInfo] | EffectContext,
    applied: Sequence[Effect],
    known: Sequence[Effect] = EFFECTS,
    unhandled: Collection[str] = (),
) -> tuple[ScriptVerdict, ...]:
    """A verdict for every maintainer script of every package, sorted by package then script (in the order
    dpkg would run them: preinst, postinst, prerm, postrm, config)."""
    pkgs = packages.packages if isinstance(packages, EffectContext) else packages
    out = []
    for name in sorted(pkgs):
        for script in sorted(pkgs[name].scripts, key=_script_order):
            text = pkgs[name].scripts[script]
            out.append(classify_script(name, script, text, applied, known, unhandled))
    return tuple(out)


def apply_effects(ctx: EffectContext, effects: Sequence[Effect] = EFFECTS) -> EffectsRun:
    """Run every applicable effect in order and classify every maintainer script."""
    outcomes = []
    own = ctx.fs is None
    if own:  # one record for every effect: what one writes, the next one reads
        ctx = replace(ctx, fs=ctx.tree().fs)
    for effect in effects:
        if not effect.applies(ctx):
            outcomes.append(EffectOutcome(effect, "not-applicable", EffectResult()))
            continue
        result = effect.apply(ctx)
        outcomes.append(EffectOutcome(effect, "skipped" if result.skipped else "applied", result))
    if own and ctx.fs is not None:  # a writer of our own: its directories get their recorded metadata
        ctx.fs.finish()
    applied = [o.effect for o in outcomes if o.status == "applied"]
    unhandled = {key for o in outcomes for key in o.result.unhandled}
    return EffectsRun(tuple(outcomes), classify_scripts(dict(ctx.packages), applied, effects, unhandled))
