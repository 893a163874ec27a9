"""``%%abaco actor NAME``: turn a cell that defines a handler function into an actor, no image to build.

The cell's source travels in the actor's default environment and runs under
``abaco_nb.cell_actor_runner`` inside the executor image (Docker runtime) or as a local process (process
runtime): both map ``abaco-nb/py3-func`` to the function runner, which hands over to the cell runner.
The source is checked here (syntax, a handler to call) so mistakes are one line in the notebook rather
than an ERROR execution later.
"""

from __future__ import annotations

import ast

from ..cell_actor_runner import ENV_NAME, ENV_SOURCE
from .parsing import MagicError

CELL_IMAGE = "abaco-nb/py3-func"
# One environment string may hold at most 128 KiB on Linux (MAX_ARG_STRLEN); keep well below.
MAX_SOURCE = 100_000


def handler_name(source: str, requested: str | None = None) -> str:
    """The function the actor will call, found from the cell's top-level definitions."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise MagicError(f"the cell has a syntax error on line {exc.lineno}: {exc.msg}") from None
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if requested:
        if requested not in names:
            raise MagicError(
                f"the cell defines no function {requested!r} (it defines: {', '.join(names) or 'none'})"
            )
        return requested
    if "handler" in names:
        return "handler"
    if len(set(names)) == 1:
        return names[0]
    if not names:
        raise MagicError("the cell must define a handler function, e.g. def handler(message, context): ...")
    raise MagicError(f"the cell defines several functions ({', '.join(names)}): name one with --handler")


def cell_environment(source: str, handler: str, extra: dict[str, str]) -> dict[str, str]:
    """The actor's default environment: the user's variables plus the cell's source and handler name."""
    if len(source.encode()) > MAX_SOURCE:
        raise MagicError(
            f"the cell is {len(source.encode())} bytes; an actor cell may hold at most {MAX_SOURCE} "
            "(put larger code in an image)"
        )
    clash = {ENV_SOURCE, ENV_NAME} & set(extra)
    if clash:
        raise MagicError(f"-e may not set {', '.join(sorted(clash))}")
    return {**extra, ENV_SOURCE: source, ENV_NAME: handler}
