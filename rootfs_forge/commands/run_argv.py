"""The common forms of ``forge run``'s arguments, parsed without argparse (whose import and parser building cost
``forge run`` about 18 ms of CPU, more than the container's own set-up).

:func:`parse_run` gives exactly the namespace ``forge run ...`` gets from argparse (``commands/run.py`` declares
the options, this module mirrors them), or None whenever it is not certain: an unknown or abbreviated option,
``-h``/``--help``, a missing or dash-led value, a bad choice or number, a ``--`` anywhere, no image. Then the
caller runs argparse, which stays the one authority on errors, help and every rarer spelling.
``tests/test_run_argv.py`` holds the two to the same result over a corpus of command lines.

Imports nothing: it is on the start path of ``forge run``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing stays off the start path; mypy reads this as typing.TYPE_CHECKING
if TYPE_CHECKING:
    from typing import Any

# option string -> (dest, action): "store" takes a value, "append" adds one to a list, "true" is a flag.
# Keep in step with commands/run.py's register() (tests/test_run_argv.py compares the two).
_OPTIONS: dict[str, tuple[str, str]] = {
    "-e": ("env", "append"), "--env": ("env", "append"),
    "-w": ("workdir", "store"), "--workdir": ("workdir", "store"),
    "--entrypoint": ("entrypoint", "store"),
    "-u": ("user", "store"), "--user": ("user", "store"),
    "--hostname": ("hostname", "store"),
    "-v": ("volume", "append"), "--volume": ("volume", "append"),
    "--network": ("network", "store"),
    "-m": ("memory", "store"), "--memory": ("memory", "store"),
    "--pids": ("pids", "store"),
    "--cpus": ("cpus", "store"),
    "--name": ("name", "store"),
    "--rm": ("rm", "true"),
    "-i": ("interactive", "true"), "--interactive": ("interactive", "true"),
    "-t": ("tty", "true"), "--tty": ("tty", "true"),
    "--read-only": ("read_only", "true"),
    "--platform": ("platform", "store"), "--arch": ("platform", "store"),
    "--cache-dir": ("cache_dir", "store"),
    "--state-dir": ("state_dir", "store"),
    "--storage": ("storage", "store"),
    "--no-init": ("no_init", "true"),
    "--tmp-size": ("tmp_size", "store"),
    "--stop-timeout": ("stop_timeout", "store"),
    "--upper-size": ("upper_size", "store"),
    "--cap-add": ("cap_add", "append"),
    "--cap-drop": ("cap_drop", "append"),
    "--security-opt": ("security_opt", "append"),
}
# what argparse also knows: an abbreviation matching two of these is an error wherever it stands
_LONG = [o for o in _OPTIONS if o.startswith("--")] + ["--help"]
_CHOICES = {"network": ("none", "host"), "storage": ("auto", "overlay", "copy")}
_FLAG_CLUSTER = frozenset("it")  # -it, -ti: the short flags argparse splits one by one


class RunArgs:
    """What argparse's Namespace is to ``_run``: the options as attributes (``vars()`` gives them all)."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)

    def __repr__(self) -> str:
        return f"RunArgs({self.__dict__!r})"


def defaults() -> dict[str, Any]:
    """The namespace of ``forge run IMAGE`` before any option: command, func aside."""
    return {
        "target": None, "cmd": None, "env": [], "workdir": None, "entrypoint": None, "user": None,
        "hostname": None, "volume": [], "network": "none", "memory": None, "pids": None, "cpus": None,
        "name": None, "rm": False, "interactive": False, "tty": False, "read_only": False, "platform": "",
        "cache_dir": None, "state_dir": None, "storage": "auto", "no_init": False, "tmp_size": None,
        "stop_timeout": 10.0, "upper_size": None, "cap_add": [], "cap_drop": [], "security_opt": [],
    }


def parse(argv: list[str]) -> dict[str, Any] | None:
    """The arguments after ``run`` as argparse's dict of them (without ``command`` and ``func``), or None."""
    if "--" in argv or any(_ambiguous(a) for a in argv):
        return None
    ns = defaults()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-"):  # the image: everything after it is the command, options or not
            ns["target"] = arg
            ns["cmd"] = argv[i + 1:]
            return ns
        if len(arg) > 2 and arg[1] != "-" and set(arg[1:]) <= _FLAG_CLUSTER:  # -it
            for c in arg[1:]:
                ns[_OPTIONS["-" + c][0]] = True
            i += 1
            continue
        name, eq, explicit = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name not in _OPTIONS:
            return None
        dest, action = _OPTIONS[name]
        if action == "true":
            if eq:
                return None
            ns[dest] = True
            i += 1
            continue
        if eq:
            value = explicit
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            value = argv[i + 1]
            i += 2
        else:
            return None
        if action == "append":
            ns[dest] = [*ns[dest], value]
        elif dest == "stop_timeout":
            try:
                ns[dest] = float(value)
            except ValueError:
                return None
        elif dest in _CHOICES and value not in _CHOICES[dest]:
            return None
        else:
            ns[dest] = value
    return None  # no image


def _ambiguous(arg: str) -> bool:
    """Whether argparse would stop at ``arg`` as an ambiguous abbreviation (it checks every argument, the
    command's too): a ``--`` word that is not an option but the start of two."""
    if not arg.startswith("--") or len(arg) == 2:
        return False
    prefix = arg.partition("=")[0]
    return prefix not in _OPTIONS and sum(o.startswith(prefix) for o in _LONG) > 1


def parse_run(argv: list[str]) -> RunArgs | None:
    """``forge run`` 's namespace for ``argv`` (the arguments after ``run``), ready for its handler, or None."""
    ns = parse(argv)
    if ns is None:
        return None
    from rootfs_forge.commands.run import _run

    return RunArgs(command="run", func=_run, **ns)
