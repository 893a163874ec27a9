"""``%%abaco map``: a parameter sweep through ``AbacoExecutor.map``.

The cell body becomes a function of one dict of parameters (its last expression is the return value),
compiled with the notebook's namespace as globals so cloudpickle ships the helpers and values it uses.
The grid is the product of the value lists given on the magic line. ``map`` returns at once; a progress
widget follows the futures and the ``Sweep`` fills in as executions finish, so the kernel stays free.
"""

from __future__ import annotations

import ast
import html
import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from typing import Any

from .parsing import MagicError

POINT_FUNCTION = "_abaco_sweep_point"
PARAMS_ARG = "_abaco_params"


def grid(axes: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the axes, in order: ``{"a": [1, 2], "b": [3]}`` -> two points."""
    names = list(axes)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(axes[n] for n in names))]


def point_function(
    body: str, names: Sequence[str], namespace: dict[str, Any]
) -> Callable[[dict[str, Any]], Any]:
    """``def f(params): <name> = params[<name>] ...; <body>; return <last expression>``."""
    try:
        tree = ast.parse(body)
    except SyntaxError as exc:
        raise MagicError(f"the cell has a syntax error on line {exc.lineno}: {exc.msg}") from None
    statements: list[ast.stmt] = list(tree.body)
    if not statements or not isinstance(statements[-1], ast.Expr):
        raise MagicError("the cell's last line must be an expression: the value computed for each point")
    statements[-1] = ast.Return(value=statements[-1].value)
    unpack = [
        ast.Assign(
            targets=[ast.Name(id=n, ctx=ast.Store())],
            value=ast.Subscript(
                value=ast.Name(id=PARAMS_ARG, ctx=ast.Load()), slice=ast.Constant(n), ctx=ast.Load()
            ),
        )
        for n in names
    ]
    template = ast.parse(f"def {POINT_FUNCTION}({PARAMS_ARG}):\n    pass\n")
    func = template.body[0]
    assert isinstance(func, ast.FunctionDef)
    func.body = [*unpack, *statements]
    module = ast.fix_missing_locations(ast.Module(body=[func], type_ignores=[]))
    scope = dict(namespace)  # the notebook's globals, without defining anything in them
    exec(compile(module, "<%%abaco map cell>", "exec"), scope)
    fn: Callable[[dict[str, Any]], Any] = scope[POINT_FUNCTION]
    return fn


def unwrap(value: Any) -> Any:
    """Executor results come as Abaco's list of results (``[14]``); a sweep point has one."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


class Sweep:
    """The points of a sweep and their futures. ``.results`` blocks; ``.table()`` lists params and
    results; the HTML repr shows what has finished so far without waiting."""

    def __init__(
        self, points: list[dict[str, Any]], futures: Sequence[Future[Any]], progress: Any = None
    ) -> None:
        self.points = points
        self.futures = list(futures)
        self.progress = progress

    def wait(self, timeout: float | None = None) -> Sweep:
        wait_futures(self.futures, timeout=timeout)
        return self

    @property
    def results(self) -> list[Any]:
        """Every point's result, in grid order (blocks; re-raises a failed point's exception)."""
        return [unwrap(f.result()) for f in self.futures]

    def table(self) -> list[dict[str, Any]]:
        """``[{**params, "result": ..., "status": ...}]`` for the points that have finished."""
        rows = []
        for point, f in zip(self.points, self.futures, strict=True):
            if not f.done():
                rows.append({**point, "result": None, "status": "pending"})
            elif f.cancelled():
                rows.append({**point, "result": None, "status": "cancelled"})
            elif f.exception() is not None:
                rows.append({**point, "result": None, "status": f"error: {f.exception()}"})
            else:
                rows.append({**point, "result": unwrap(f.result()), "status": "done"})
        return rows

    def __len__(self) -> int:
        return len(self.points)

    def __repr__(self) -> str:
        done = sum(f.done() for f in self.futures)
        lines = [f"<Sweep of {len(self)} points, {done} finished>"]
        for row in self.table()[:50]:
            lines.append("  " + ", ".join(f"{k}={v!r}" for k, v in row.items()))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = self.table()
        done = sum(f.done() for f in self.futures)
        if not rows:
            return "<i>empty sweep</i>"
        cols = list(rows[0])
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(repr(r[c]) if c != 'status' else r[c])}</td>" for c in cols)
            + "</tr>"
            for r in rows[:200]
        )
        return (
            f"<div class='abaco-sweep'><small>sweep: {done}/{len(self)} finished</small>"
            f"<table class='abaco-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
        )
