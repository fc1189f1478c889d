"""The recipe's ``[config]`` against the composed tree: the program it starts, its working directory and its
user must exist in the image, so that a typo fails the compose (exit 2, before anything is written) instead
of the first run. Answers come from the tree's record (``TreeWriter``), never from the host.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from rootfs_forge.configure.effects.tree import RootDir
from rootfs_forge.errors import RecipeError
from rootfs_forge.image import DEFAULT_ENV
from rootfs_forge.recipe import Recipe
from rootfs_forge.util.passwd import table

if TYPE_CHECKING:
    from rootfs_forge.build import Tree


def _search_path(recipe: Recipe) -> list[str]:
    env = dict(e.split("=", 1) for e in DEFAULT_ENV)
    env.update(dict(recipe.config.env))
    return [d for d in env.get("PATH", "").split(":") if d.startswith("/")]


def _program_problem(rd: RootDir, program: str, recipe: Recipe) -> str | None:
    """Why ``program`` (argv[0]) cannot start in the image, or None."""
    if "/" in program:
        where = posixpath.normpath(posixpath.join(recipe.config.working_dir or "/", program))
        if rd.is_file(where):
            return None
        return f"{program} is not a file in the image" if not rd.is_dir(where) else f"{program} is a directory"
    dirs = _search_path(recipe)
    if any(rd.is_file(posixpath.join(d, program)) for d in dirs):
        return None
    return f"{program} is not in the image's PATH ({':'.join(dirs)})"


def user_problem(rd: RootDir, user: str) -> str | None:
    """A configured user must be in the image's /etc/passwd (numeric uid[:gid] is taken as is)."""
    name = user.split(":")[0]
    if not name or name.isdigit():
        return None
    data = rd.read_bytes("/etc/passwd") if rd.is_file("/etc/passwd") else b""
    if name in {fields[0] for _, fields in table(data.decode("utf-8", "replace"))}:
        return None
    return (f"no user {name!r} in the image's /etc/passwd (add an [[account]] or the package that "
            "creates it)")


def config_problems(tree: Tree, recipe: Recipe) -> list[str]:
    """Every problem of ``recipe.config`` in ``tree``, each ``key: what``."""
    rd = RootDir(tree.writer)
    spec = recipe.config
    problems: list[str] = []
    if spec.entrypoint:
        why = _program_problem(rd, spec.entrypoint[0], recipe)
        if why:
            problems.append(f"config.entrypoint: {why}")
    elif spec.cmd:  # without an entrypoint, cmd's first word is the program
        why = _program_problem(rd, spec.cmd[0], recipe)
        if why:
            problems.append(f"config.cmd: {why}")
    if spec.working_dir and not rd.is_dir(spec.working_dir):
        problems.append(f"config.working_dir: {spec.working_dir} is not a directory in the image")
    why = user_problem(rd, spec.user)
    if why:
        problems.append(f"config.user: {why}")
    return problems


def check_config(trees: list[Tree], recipe: Recipe) -> None:
    """Raise one :class:`RecipeError` (exit 2) for every problem of ``recipe.config`` in any of ``trees``."""
    problems: list[str] = []
    for tree in trees:
        for p in config_problems(tree, recipe):
            text = p if len(trees) == 1 else f"{p} ({tree.arch})"
            if text not in problems:
                problems.append(text)
    if problems:
        raise RecipeError(str(recipe.path), problems, verb="use recipe")
