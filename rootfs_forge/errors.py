"""Every error forge raises on bad input. Only the CLI prints them.

Messages read ``cannot <verb> <object>: <reason>`` and fit on one line; the CLI prints ``forge: <message>``
and exits non-zero without a traceback.
"""

from __future__ import annotations


class ForgeError(Exception):
    """Base of all expected failures: bad input, a broken mirror, a hostile archive."""

    exit_code = 1

    def __init__(self, verb: str, obj: str, reason: str) -> None:
        self.verb = verb
        self.obj = obj
        self.reason = reason
        super().__init__(f"cannot {verb} {obj}: {reason}")


class CacheError(ForgeError):
    """The download cache cannot be created or used (a path that is a file, no permission, a full disk)."""

    exit_code = 5


class RecipeError(ForgeError):
    """A recipe (or lock) that does not parse or validate. ``problems`` holds every problem found."""

    exit_code = 2

    def __init__(self, path: str, problems: list[str], verb: str = "read recipe") -> None:
        self.path = path
        self.problems = list(problems)
        reason = problems[0] if len(problems) == 1 else f"{len(problems)} problems: " + "; ".join(problems)
        super().__init__(verb, path, reason)


class SourceError(ForgeError):
    """The host's apt sources or a recipe source cannot be used."""


class ArchiveError(ForgeError):
    """A Release/InRelease/Packages file that cannot be fetched or fails verification."""

    exit_code = 3


class IndexError_(ForgeError):
    """A Packages index that does not parse. (Named so as not to shadow the builtin IndexError.)"""

    exit_code = 3


class ResolveError(ForgeError):
    """A request that cannot be satisfied; ``problems`` lists every conflict or missing dependency."""

    exit_code = 4

    def __init__(self, obj: str, problems: list[str]) -> None:
        self.problems = list(problems)
        reason = problems[0] if len(problems) == 1 else "; ".join(problems)
        super().__init__("install", obj, reason)


class FetchError(ForgeError):
    """A download that failed after retries, or whose digest did not match."""

    exit_code = 5


class DebError(ForgeError):
    """A .deb that is malformed or hostile."""

    exit_code = 6


class RootfsError(ForgeError):
    """A tree that cannot be written safely (escape attempt, file conflict …)."""

    exit_code = 6


class ImageError(ForgeError):
    """An OCI image that cannot be written, read or pushed."""

    exit_code = 7


class RunError(ForgeError):
    """The launcher cannot set up or run a container."""

    exit_code = 8


class AuditError(ForgeError):
    """A target that cannot be audited."""

    exit_code = 9
