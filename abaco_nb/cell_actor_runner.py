"""Runs a ``%%abaco actor`` cell as an actor: the entry point for actors with no image of their own.

The magic registers the executor image (``abaco-nb/py3-func``) with the cell's source in the default
environment (``ABACO_NB_HANDLER_SOURCE``, the handler's name in ``ABACO_NB_HANDLER``); the function runner
hands over to ``main`` here when that variable is set. The handler sees exactly what any actor sees:
``abaco_nb.actors.get_context()`` (message, ids, state) and the same helpers (``update_state``, ...).

Like ``actors.py`` this file is copied alone into the executor image, so it imports only the standard
library and ``abaco_nb.actors``.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from abaco_nb.actors import get_context, send_python_result

ENV_SOURCE = "ABACO_NB_HANDLER_SOURCE"
ENV_NAME = "ABACO_NB_HANDLER"
CELL_MODULE = "__abaco_cell__"


def load_handler(source: str, name: str | None = None) -> Callable[..., Any]:
    """Execute the cell's source in a fresh module namespace and pick its handler: ``name``, else a
    function called ``handler``, else the only function the cell defines."""
    namespace: dict[str, Any] = {"__name__": CELL_MODULE}
    exec(compile(source, "<%%abaco actor cell>", "exec"), namespace)
    if name:
        named: object = namespace.get(name)
        if not callable(named):
            raise LookupError(f"the cell defines no function {name!r}")
        return named
    handler: object = namespace.get("handler")
    if callable(handler):
        return handler
    functions = [
        v for v in namespace.values() if inspect.isfunction(v) and getattr(v, "__module__", "") == CELL_MODULE
    ]
    if len(functions) != 1:
        raise LookupError("the cell must define one function, or one called 'handler'")
    return functions[0]


def message_of(context: dict[str, Any]) -> Any:
    """The message as a value: the dict for JSON objects, a list for JSON arrays, else the string."""
    if context.get("message_dict"):
        return dict(context["message_dict"])
    raw = context.get("raw_message")
    if isinstance(raw, str) and raw.strip()[:1] == "[":
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return raw


def call(handler: Callable[..., Any], context: dict[str, Any]) -> Any:
    """``handler()``, ``handler(context)`` or ``handler(message, context)``, by its parameter count."""
    try:
        params = [
            p
            for p in inspect.signature(handler).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    if len(params) >= 2:
        return handler(message_of(context), context)
    if len(params) == 1:
        return handler(context)
    return handler()


def main() -> int:
    """Load the cell, call its handler; a non-None return value becomes the execution's result."""
    source = os.environ.get(ENV_SOURCE, "")
    try:
        handler = load_handler(source, os.environ.get(ENV_NAME) or None)
    except BaseException:
        print("Could not load the %%abaco actor cell:", file=sys.stderr)
        traceback.print_exc()
        return 1
    try:
        result = call(handler, get_context())
        if result is not None:
            send_python_result(result)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
