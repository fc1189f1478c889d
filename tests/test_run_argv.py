"""``commands/run_argv.py``, the argparse-free parser of ``forge run``'s common forms: over a corpus of command
lines it either declines (None, argparse decides) or gives exactly argparse's namespace, and it does accept the
forms people type. No root needed: nothing is run."""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
from typing import Any

import pytest

from rootfs_forge import cli
from rootfs_forge.commands import run_argv

IMAGES = ["ROOTFS", "/srv/rootfs", "img:latest", "./layout:v1.2", "oci.tar", "", "a b"]
CMDS: list[list[str]] = [
    [], ["true"], ["/bin/true"], ["sh", "-c", "echo hi; exit 3"], ["ls", "-la", "--color=auto"],
    ["echo", "--rm", "-e", "X=1", "-it"], ["--rm"], ["-e", "A=1", "true"], ["-h"], ["--help"], ["--version"],
    ["cmd", "-1"], ["x", "--", "y"], ["--", "x"], ["grep", "--h"], ["ls", "--ca=x"], ["ls", "--cap"],
    ["ls", "--cap-add"], ["tool", "--name=a", "--stop-timeout", "x"], ["-"], ["a b", ""],
]
# every option, in each spelling argparse accepts, with good and bad values
VALUED = {
    "-e": ["A=1", "PATH=/x:/y", ""], "--env": ["B=2"], "-w": ["/tmp"], "--workdir": ["/"],
    "--entrypoint": ["", "/bin/sh"], "-u": ["1000:1000"], "--user": ["nobody"], "--hostname": ["box"],
    "-v": ["/h:/c:ro"], "--volume": ["/a:/b"], "--network": ["none", "host", "bridge"], "-m": ["64m"],
    "--memory": ["1g"], "--pids": ["10"], "--cpus": ["0.5"], "--name": ["keep"], "--platform": ["linux/amd64"],
    "--arch": ["arm64"], "--cache-dir": ["/c"], "--state-dir": ["/s"], "--storage": ["auto", "copy", "overlay",
    "zfs"], "--tmp-size": ["16m"], "--stop-timeout": ["2.5", "-1", "0", "x", "1e3"], "--upper-size": ["8m"],
    "--cap-add": ["NET_ADMIN", "ALL"], "--cap-drop": ["ALL"], "--security-opt": ["seccomp=unconfined"],
}
FLAGS = ["--rm", "-i", "--interactive", "-t", "--tty", "--read-only", "--no-init"]
ODD = [  # spellings the fast parser leaves to argparse (or argparse refuses)
    ["-h"], ["--help"], ["--work", "/x"], ["--ent=/x"], ["--h"], ["-it"], ["-ti"], ["-iti"], ["-itv", "/a:/b"],
    ["-eA=1"], ["-e=A=1"], ["-wx"], ["--rm=1"], ["-i=1"], ["--"], ["--env", "-x"], ["-e", "--rm"], ["-v", "-1"],
    ["--bogus"], ["-x"], ["--stop-timeout="], ["--network="], ["--env="], ["--name", ""], ["-"],
]


def option_forms() -> list[list[str]]:
    forms: list[list[str]] = [[f] for f in FLAGS]
    for opt, values in VALUED.items():
        for value in values:
            forms.append([opt, value])
            if opt.startswith("--"):
                forms.append([f"{opt}={value}"])
    return forms + ODD


def corpus() -> list[list[str]]:
    forms = option_forms()
    lines: list[list[str]] = [[]]
    for form in forms:  # every option alone, before an image and command, and with nothing after it
        lines.append(form)
        for image, cmd in itertools.product(IMAGES[:3], CMDS[:4]):
            lines.append([*form, image, *cmd])
        lines.append([*form, "--", "ROOTFS", "true"])
        lines.append(["ROOTFS", *form])  # after the image: the command's
    for image, cmd in itertools.product(IMAGES, CMDS):
        lines.append([image, *cmd])
        lines.append(["--rm", image, *cmd])
        lines.append(["-e", "A=1", image, "--", *cmd])
    for a, b in itertools.product(forms, repeat=2):  # pairs: repeated options, last one wins, lists add up
        lines.append([*a, *b, "ROOTFS", "true"])
    lines.append([t for f in forms[:60] for t in f] + ["img:tag", "sh", "-c", "x"])
    return lines


def argparse_namespace(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, Any] | None:
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            return vars(parser.parse_args(["run", *argv]))
    except SystemExit:
        return None


def test_fast_parser_agrees_with_argparse_over_the_corpus() -> None:
    parser = cli._build_parser("run")
    lines = corpus()
    accepted = 0
    for argv in lines:
        fast = run_argv.parse_run(argv)
        if fast is None:
            continue
        accepted += 1
        assert vars(fast) == argparse_namespace(parser, argv), argv
    assert len(lines) > 3000
    assert accepted > len(lines) // 3  # it declines the odd, not everything


COMMON = [
    ["ROOTFS", "/bin/true"], ["ROOTFS", "true"], ["ROOTFS"], ["img:latest", "sh", "-c", "echo $A"],
    ["--rm", "--name", "web", "img", "httpd", "-f", "-p", "8080"], ["-e", "A=1", "--env=B=2", "img", "env"],
    ["-v", "/srv:/srv:ro", "--volume=/a:/b", "-w", "/srv", "img", "ls", "-l"], ["-i", "-t", "img", "sh"],
    ["-it", "img", "sh"], ["--network", "host", "--storage=copy", "img", "true"], ["-m", "64m", "--pids", "10",
    "--cpus", "0.5", "img", "true"], ["--stop-timeout", "2", "--tmp-size", "16m", "--upper-size=8m", "img"],
    ["--cap-add", "NET_ADMIN", "--cap-drop=ALL", "--security-opt", "seccomp=unconfined", "img", "true"],
    ["--read-only", "--no-init", "--entrypoint", "", "-u", "1000", "--hostname", "h", "img", "id"],
    ["--platform", "linux/arm64", "--cache-dir", "/c", "--state-dir=/s", "img", "true"],
    ["ROOTFS", "ls", "--rm", "-e", "x", "-it"],
]


@pytest.mark.parametrize("argv", COMMON, ids=" ".join)
def test_fast_parser_accepts_the_common_forms(argv: list[str]) -> None:
    fast = run_argv.parse_run(argv)
    assert fast is not None
    assert vars(fast) == argparse_namespace(cli._build_parser("run"), argv)


@pytest.mark.parametrize("argv", [[], ["-h"], ["--help"], ["-e"], ["--rm"], ["--network", "bridge", "img"],
                                  ["--stop-timeout", "soon", "img"], ["--work", "/x", "img"], ["img", "ls", "--ca"],
                                  ["--bogus", "img"], ["-e", "-x", "img"], ["--", "img"]])
def test_fast_parser_leaves_errors_help_and_doubt_to_argparse(argv: list[str]) -> None:
    assert run_argv.parse_run(argv) is None


def test_fast_parser_knows_every_option_of_forge_run() -> None:
    """An option added to commands/run.py but not to run_argv.py would be refused there: caught here at once."""
    parser = cli._build_parser("run")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    strings = {s for a in sub._actions for s in a.option_strings} - {"-h", "--help"}
    assert strings == set(run_argv._OPTIONS)
    assert {a.dest: a.default for a in sub._actions if a.dest != "help"} == run_argv.defaults()


def test_cli_main_still_prints_argparse_help_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--help"])
    assert exc.value.code == 0
    assert "--stop-timeout" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--network", "bridge", "img"])
    assert exc.value.code == 2
    assert "invalid choice: 'bridge'" in capsys.readouterr().err
