"""JSON in and out under one rule: what a client sends is standard JSON of bounded depth, and what the
service sends is always valid JSON.

Python's ``json`` accepts ``NaN``, ``Infinity`` and ``-Infinity``, turns ``1e999`` into ``inf``, and its
decoder recurses once per nesting level (100,000 levels raised ``RecursionError``: a 500). Stored, a
non-finite number came back out as ``NaN``, which no JSON parser reads. So ``loads`` refuses all of
these with a 400 naming the problem, and ``dumps`` never writes them (``allow_nan=False``; a value
stored before this rule is written as ``null``).
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import AbacoError

MAX_DEPTH = 64  # nesting levels of arrays and objects a request body may have


def _constant(name: str) -> Any:
    raise AbacoError(f"{name} is not a JSON number (JSON has no NaN or Infinity).")


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise AbacoError(f"The number {text[:40]} is out of range for JSON (a double).")
    return value


def _depth_ok(raw: str | bytes) -> bool:
    """Brackets outside strings nest at most MAX_DEPTH deep: checked before the recursive decoder."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else raw
    if "[" not in text and "{" not in text:
        return True
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif char in "]}":
            depth -= 1
    return True


def loads(raw: str | bytes, what: str = "The request body") -> Any:
    """Standard JSON of at most MAX_DEPTH levels; a 400 naming the problem otherwise. ``ValueError``
    and ``UnicodeDecodeError`` are left to the caller for its own wording of "not JSON"."""
    if not _depth_ok(raw):
        raise AbacoError(f"{what} is nested more than {MAX_DEPTH} levels deep.")
    try:
        return json.loads(raw, parse_constant=_constant, parse_float=_number)
    except RecursionError:
        raise AbacoError(f"{what} is nested too deeply.") from None
    except AbacoError as exc:
        raise AbacoError(f"{what} is not valid JSON: {exc.message}") from None


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Valid JSON always: non-finite numbers (only in data stored before ``loads`` refused them) become
    null rather than the ``NaN`` no parser reads."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False)
