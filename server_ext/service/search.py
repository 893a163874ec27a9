"""Abaco's search (reference/abaco-api.md §1.10): filters, full text and paging over plain dicts.

Pure code: the caller hands over the records it may show (display dicts of actors, executions, workers
or logs) and gets Abaco's ``{"_metadata": {...}, "search": [...]}``. Query keys: ``search`` (any of the
words, case-insensitive), ``exactsearch`` (a phrase), ``skip``, ``limit`` (default 100), and
``<field>[.<op>]=<value>`` with dotted paths (``final_state.ExitCode``) and Abaco's operators. Values are
typed as Abaco does: ``true``/``false``/``none``, numbers, JSON lists; anything else is a string, and
times compare as ISO-8601 strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import re2

from . import strict_json
from .errors import AbacoError

TYPES = ("actors", "workers", "executions", "logs")
OPERATORS = ("eq", "neq", "lt", "lte", "gt", "gte", "in", "nin", "between", "like", "nlike")
# Query keys that are not filters: paging, text search, and the service's own parameters.
NOT_FILTERS = {"search", "exactsearch", "skip", "limit", "x-nonce", "case", "token", "wait", "_abaco_nb_all"}
DEFAULT_LIMIT = 100
_MISSING = object()


@dataclass
class Query:
    words: list[str] = field(default_factory=list)
    phrase: str | None = None
    skip: int = 0
    limit: int = DEFAULT_LIMIT
    filters: list[tuple[str, str, Any]] = field(default_factory=list)  # (dotted path, operator, value)


def is_search(query: dict[str, list[str]]) -> bool:
    """Abaco turns a list route into a search when any query key other than its own is present."""
    own = {"x-nonce", "case", "token", "wait", "_abaco_nb_all", "_abaco_nb_offset", "_abaco_nb_limit"}
    return any(key not in own for key in query)


def auto_type(text: str) -> Any:
    """``true``/``false``/``none`` -> bool/None; numbers; a JSON list; else the string itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    if text.strip().startswith("["):
        try:
            value = strict_json.loads(text, "The search value")
        except ValueError:
            return text
        return value
    return text


def _non_negative(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise AbacoError(f"Invalid {name}: {text!r} is not a non-negative integer.") from None
    if value < 0:
        raise AbacoError(f"Invalid {name}: {text!r} is not a non-negative integer.")
    return value


def parse_query(query: dict[str, list[str]]) -> Query:
    """The search a query string asks for; 400 naming the key for a bad one."""
    q = Query()
    for key, values in query.items():
        value = values[-1]
        if key == "search":
            q.words = [w.lower() for w in value.split() if w]
        elif key == "exactsearch":
            q.phrase = value.lower()
        elif key == "skip":
            q.skip = _non_negative(value, "skip")
        elif key == "limit":
            q.limit = _non_negative(value, "limit")
        elif key in NOT_FILTERS:
            continue
        else:
            path, op = key, "eq"
            head, _, tail = key.rpartition(".")
            if head and tail in OPERATORS:
                path, op = head, tail
            typed: Any = auto_type(value)
            if op in ("in", "nin") and not isinstance(typed, list):
                raise AbacoError(f'Invalid {key}: .{op} takes a JSON list, e.g. ["a", "b"].')
            if op == "between":
                parts = value.split(",")
                if len(parts) != 2:
                    raise AbacoError(f"Invalid {key}: .between takes two values separated by a comma.")
                typed = [auto_type(p) for p in parts]
            if op in ("like", "nlike"):
                typed = linear_pattern(key, value)
            q.filters.append((path, op, typed))
    return q


MAX_PATTERN = 1000  # characters of a .like pattern


def linear_pattern(key: str, value: str) -> Any:
    """A ``.like`` pattern (Abaco's Mongo ``$regex``) compiled by RE2, whose matching time is linear in
    the text: a crafted pattern such as ``(a+)+$`` cannot stall the service as a backtracking engine
    would. Backreferences and lookarounds, which need backtracking, are refused naming the key."""
    if len(value) > MAX_PATTERN:
        raise AbacoError(f"Invalid {key}: a pattern of at most {MAX_PATTERN} characters.")
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern to stderr
    options.max_mem = 8 << 20
    try:
        return re2.compile(value, options=options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise AbacoError(
            f"Invalid {key}: not a regular expression this service matches in linear time ({reason})."
        ) from None


def field_value(record: Any, path: str) -> Any:
    """The value at a dotted path, or ``_MISSING``."""
    value = record
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return _MISSING
    return value


def _compare(value: Any, op: str, wanted: Any) -> bool:
    try:
        if op == "eq":
            return bool(value == wanted)
        if op == "neq":
            return bool(value != wanted)
        if op == "lt":
            return bool(value < wanted)
        if op == "lte":
            return bool(value <= wanted)
        if op == "gt":
            return bool(value > wanted)
        if op == "gte":
            return bool(value >= wanted)
        if op == "between":
            return bool(wanted[0] <= value <= wanted[1])
    except TypeError:  # e.g. a number against a string: no match, as a typed database would say
        return False
    if op == "in":
        return value in wanted
    if op == "nin":
        return value not in wanted
    if op in ("like", "nlike"):
        found = isinstance(value, str) and wanted.search(value) is not None
        return found if op == "like" else not found
    return False


def matches(record: dict[str, Any], q: Query) -> bool:
    for path, op, wanted in q.filters:
        value = field_value(record, path)
        if value is _MISSING:
            if op in ("neq", "nin", "nlike"):
                continue
            return False
        if not _compare(value, op, wanted):
            return False
    if q.words or q.phrase:
        text = json.dumps(record, default=str).lower()
        if q.words and not any(word in text for word in q.words):
            return False
        if q.phrase and q.phrase not in text:
            return False
    return True


def run(records: list[dict[str, Any]], q: Query) -> dict[str, Any]:
    """Filter, then page: Abaco's result shape."""
    found = [r for r in records if matches(r, q)]
    page = found[q.skip : q.skip + q.limit]
    return {
        "_metadata": {
            "total_count": len(found),
            "records_skipped": q.skip,
            "record_limit": q.limit,
            "count_returned": len(page),
        },
        "search": page,
    }
