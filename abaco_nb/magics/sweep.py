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
    filename = _remember_source(body)
    exec(compile(module, filename, "exec"), scope)
    fn: Callable[[dict[str, Any]], Any] = scope[POINT_FUNCTION]
    return fn


_CELLS = itertools.count(1)


def _remember_source(body: str) -> str:
    """A file name for the cell's code, with its text in ``linecache``: a remote traceback through the
    sweep's function then shows the cell's lines (the executor looks them up in the kernel)."""
    import linecache

    filename = f"<%%abaco map cell {next(_CELLS)}>"
    linecache.cache[filename] = (len(body), None, body.splitlines(True), filename)
    return filename


def unwrap(value: Any) -> Any:
    """Executor results come as Abaco's list of results (``[14]``); a sweep point has one."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


class Sweep:
    """The points of a sweep and their futures. ``.results`` blocks; ``.table()`` lists params and
    results; ``.dataframe()`` is that table as a pandas DataFrame (parameters as columns) and ``.plot()``
    draws it in one line. Displayed in a cell, the table keeps itself current while points finish."""

    def __init__(
        self,
        points: list[dict[str, Any]],
        futures: Sequence[Future[Any]],
        progress: Any = None,
        executor: Any = None,
    ) -> None:
        self.points = points
        self.futures = list(futures)
        self.progress = progress
        self.executor = executor

    @property
    def parameters(self) -> list[str]:
        return list(self.points[0]) if self.points else []

    def wait(self, timeout: float | None = None) -> Sweep:
        wait_futures(self.futures, timeout=timeout)
        return self

    @property
    def results(self) -> list[Any]:
        """Every point's result, in grid order (blocks; re-raises a failed point's exception)."""
        return [unwrap(f.result()) for f in self.futures]

    def table(self) -> list[dict[str, Any]]:
        """``[{**params, "result": ..., "status": ...}]`` for every point, as it stands now."""
        rows = []
        for point, f in zip(self.points, self.futures, strict=True):
            if f.cancelled():
                rows.append({**point, "result": None, "status": "cancelled"})
            elif not f.done():
                running = getattr(f, "status", None) == "RUNNING"
                rows.append({**point, "result": None, "status": "running" if running else "pending"})
            elif f.exception() is not None:
                rows.append({**point, "result": None, "status": f"error: {f.exception()}"})
            else:
                rows.append({**point, "result": unwrap(f.result()), "status": "done"})
        return rows

    def dataframe(self, wait: bool = False) -> Any:
        """The table as a ``pandas.DataFrame``: one column per parameter, then ``result`` and ``status``
        (``wait=True`` first waits for every point). A result that is a dict becomes columns of its
        own (``result.<key>``), so a point returning several numbers plots directly."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Sweep.dataframe() needs pandas: pip install pandas") from None
        if wait:
            self.wait()
        frame = pd.DataFrame(self.table(), columns=[*self.parameters, "result", "status"])
        if (
            len(frame)
            and all(isinstance(v, dict) for v in frame["result"].dropna())
            and frame["result"].notna().any()
        ):
            expanded = pd.json_normalize([v if isinstance(v, dict) else {} for v in frame["result"]])
            expanded.columns = [f"result.{c}" for c in expanded.columns]
            frame = pd.concat([frame.drop(columns=["result"]), expanded], axis=1)
        return frame

    def plot(self, x: str | None = None, y: str = "result", ax: Any = None, **kwargs: Any) -> Any:
        """``sweep.plot()``: ``y`` against the first parameter (or ``x``), one line per combination of
        the other parameters; returns the matplotlib Axes. Waits for every point."""
        frame = self.dataframe(wait=True)
        x = x or (self.parameters[0] if self.parameters else None)
        if x is None:
            raise ValueError("a sweep without parameters has nothing to plot against")
        if y not in frame.columns:
            raise ValueError(f"no column {y!r}; the columns are {', '.join(map(str, frame.columns))}")
        others = [p for p in self.parameters if p != x]
        frame = frame[frame["status"] == "done"]
        if not others:
            return frame.plot(x=x, y=y, ax=ax, marker="o", **kwargs)
        for key, group in frame.groupby(others):
            label = ", ".join(
                f"{n}={v}" for n, v in zip(others, key if isinstance(key, tuple) else (key,), strict=True)
            )
            ax = group.plot(x=x, y=y, ax=ax, marker="o", label=label, **kwargs)
        return ax

    def live_finished(self) -> bool:
        return all(f.done() for f in self.futures)

    def _ipython_display_(self) -> None:
        from ..live import show_live

        show_live(self)

    def __len__(self) -> int:
        return len(self.points)

    def _summary(self) -> str:
        rows = self.table()
        done = sum(r["status"] == "done" for r in rows)
        failed = sum(str(r["status"]).startswith("error") for r in rows)
        cancelled = sum(r["status"] == "cancelled" for r in rows)
        running = sum(r["status"] == "running" for r in rows)
        parts = [f"{done + failed + cancelled}/{len(self)} finished"]
        parts += [
            f"{n} {what}"
            for n, what in ((running, "running"), (failed, "failed"), (cancelled, "cancelled"))
            if n
        ]
        return ", ".join(parts)

    def __repr__(self) -> str:
        lines = [f"<Sweep of {len(self)} points: {self._summary()}>"]
        for row in self.table()[:50]:
            lines.append("  " + ", ".join(f"{k}={v!r}" for k, v in row.items()))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from ..page import dashboard_link
        from ..records import MUTED, TEXT

        rows = self.table()
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
        more = (
            f"<small> (first 200 of {len(rows)} points; .dataframe() has all)</small>"
            if len(rows) > 200
            else ""
        )
        link = ""
        if self.executor is not None:
            link = " · " + dashboard_link(self.executor.client, "dashboard", actor=self.executor.actor_id)
        return (
            f"<div class='abaco-sweep' style='color:{TEXT}'><small class='abaco-sweep-summary' "
            f"style='color:{MUTED}'>sweep: {html.escape(self._summary())}{link}</small>"
            f"<table class='abaco-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}</div>"
        )
