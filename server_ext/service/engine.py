"""The service's decisions, as plain functions over plain data.

What a message body means, what environment an execution sees, how many workers an actor should
have, how long logs are kept: all decided here, with no Docker, HTTP or SQLite, so tests drive every
rule directly. What status an execution ends in, and what to do with work a crash or an outage
interrupted, is ``lifecycle``'s state machine. ``dispatcher`` and ``service`` carry the decisions out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from . import environment, strict_json
from .cron import CRON_EXECUTOR
from .errors import AbacoError, TooLarge
from .models import Actor, Execution

CT_STR, CT_JSON, CT_BINARY = "str", "application/json", "application/octet-stream"
LOG_LIMIT = 1_000_000
LOG_TRUNCATED = " LOG LIMIT EXCEEDED; this execution log was TRUNCATED!"
# Query parameters become environment variables (Abaco §2.3) under the one rule of ``environment``:
# never the credentials (``token``, ``x-nonce``), nor a name a loader, interpreter or shell acts on.


@dataclass
class Message:
    """A classified message: ``value`` is the str or JSON value, ``payload`` the bytes of a binary one."""

    content_type: str
    value: Any = None
    payload: bytes | None = None

    def echo(self) -> Any:
        """What the POST answers in ``msg``."""
        return "binary - omitted" if self.content_type == CT_BINARY else self.value


def _media_type(header: str | None) -> str:
    return (header or "").split(";")[0].strip().lower()


def classify_message(
    content_type: str | None, body: bytes, query: dict[str, list[str]], max_bytes: int
) -> Message:
    """Abaco's rules (reference/abaco-api.md §2.1), in order:
    1. a ``message`` field in the query, the form or a JSON object -> a str message (``str()`` of it);
    2. ``Content-Type: application/octet-stream`` -> binary;
    3. a truthy JSON body -> a JSON message;
    4. a body that parses as JSON at all (``{}``, ``0``) -> that value, content type str;
    otherwise 400."""
    if len(body) > max_bytes:
        raise TooLarge(max_bytes)
    media = _media_type(content_type)
    if "message" in query:
        return Message(CT_STR, query["message"][-1])
    if media == "application/x-www-form-urlencoded" or (media == "" and body.startswith(b"message=")):
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise AbacoError("message POST body could not be decoded as a UTF-8 form.") from None
        if "message" in form:
            return Message(CT_STR, form["message"][-1])
        raise AbacoError("message POST form has no 'message' field. Send message=<text> or JSON.")
    if media == CT_BINARY:
        return Message(CT_BINARY, payload=body)
    try:
        parsed = strict_json.loads(body, "The message") if body.strip() else None
    except (ValueError, UnicodeDecodeError):
        raise AbacoError(
            "message POST body could not be serialized. Pass JSON data or use the message attribute."
        ) from None
    if isinstance(parsed, dict) and "message" in parsed:
        inner = parsed["message"]
        return Message(CT_STR, inner if isinstance(inner, str) else str(inner))
    if parsed:
        return Message(CT_JSON, parsed)
    if body.strip():
        return Message(CT_STR, parsed)
    raise AbacoError("message POST body is empty. Pass JSON data or use the message attribute.")


def query_environment(query: dict[str, list[str]]) -> dict[str, str]:
    """Query parameters become environment variables (Abaco §2.3), except the ones the service reads
    itself (``message``, credentials, ``_abaco_synchronous``, ``_abaco_nb_timeout``); a name the
    ``environment`` rule refuses is a 400 naming it."""
    return environment.from_query(query)


def msg_value(message_type: str, value: Any) -> str | None:
    """``MSG``: the string as is; a JSON value as its Python repr (what Abaco's docker-py produced,
    and what ``get_context()`` parses with ``ast.literal_eval``); nothing for binary."""
    if message_type == CT_BINARY:
        return None
    if message_type == CT_STR and isinstance(value, str):
        return value
    return str(value)


def execution_environment(
    actor: Actor,
    execution: Execution,
    *,
    worker_id: str,
    api_server: str,
    access_token: str,
    username: str,
    actor_configs: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The whole environment of an execution, in Abaco's precedence: default_environment <
    query parameters < the ``_abaco_*`` variables < ``MSG``. Every spelling of the content type is
    set, because the SDKs read ``_abaco_Content-Type`` and Abaco sets ``_abaco_Content_Type``.
    ``actor_configs``: ``{name: value}`` of the configs listing this actor, secrets decrypted (the
    dispatcher gathers them); ``_actor_configs`` is its ``str()``, as Abaco sets it."""
    env = environment.only_allowed(actor.reg.default_environment, settings=True)  # older data: dropped
    env.update(environment.only_allowed(execution.environment))
    env.update(
        {
            "_abaco_execution_id": execution.id,
            "_abaco_Content_Type": execution.content_type,
            "_abaco-Content-Type": execution.content_type,
            "_abaco_Content-Type": execution.content_type,  # the name agavepy/tapipy get_context() read
            "_abaco_actor_revision": str(execution.revision),
            "_abaco_username": username,
            "_abaco_api_server": api_server,
            "_abaco_access_token": access_token,
            "_abaco_actor_dbid": f"LOCAL_{actor.id}",
            "_abaco_actor_id": actor.id,
            "_abaco_worker_id": worker_id,
            "_abaco_container_repo": actor.reg.image,
            "_abaco_actor_state": str(actor.state if not actor.reg.stateless else {}),
            "_abaco_actor_name": str(actor.reg.name),
            "_actor_configs": str(actor_configs or {}),
        }
    )
    if execution.executor == CRON_EXECUTOR:  # Abaco's cron message carries no sender
        del env["_abaco_username"]
    msg = msg_value(execution.content_type, execution.message)
    if msg is not None:
        env["MSG"] = msg
    return env


def worker_limit(stateless: bool, max_workers: int | None, default: int) -> int:
    """How many workers an actor may have: one when stateful, else its ``max_workers`` or the service's
    default."""
    return 1 if not stateless else (max_workers or default)


def target_workers(stateless: bool, max_workers: int, queue_length: int, busy: int) -> int:
    """How many workers an actor should have now. A stateful actor has one; a stateless one grows
    to cover its queue, up to ``max_workers``, at once (Abaco adds one per 5 s; we need not wait)."""
    if not stateless:
        return 1
    return max(1, min(max_workers, busy + queue_length))


def truncate_logs(text: str, limit: int = LOG_LIMIT) -> str:
    """Abaco's log limit: at most ``limit`` characters, with a marker saying so. Unlike Abaco, which
    keeps the head, we keep the head and the tail (half each): a failure's traceback is at the end."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + "\n" + LOG_TRUNCATED.strip() + "\n" + text[-half:]


# The executor's function runner marks each call of a chunk and the end in the log (abaco_nb.func_runner
# CALL_MARKER and END_MARKER; the two sides are pinned by a test).
_RUNNER_MARK = re.compile(r"^--- abaco-nb (?:call (-?\d+)|end) @([0-9.]+) ---$", re.MULTILINE)


def call_times(logs: str) -> tuple[int, float] | None:
    """When an executor execution's calls ran, from its runner's markers: ``(index of the first call
    marked, seconds from that marker to the end marker)``. The calls from that index to the chunk's
    last ran in that time (``truncate_logs`` keeps the head and the tail, so a long log keeps both
    markers). None without both (not a chunk, or stopped before its end)."""
    first: tuple[int, float] | None = None
    for found in _RUNNER_MARK.finditer(logs):
        index, at = found.group(1), float(found.group(2))
        if index is not None:
            first = first or (int(index), at)
        elif first is not None:
            return first[0], max(0.0, at - first[1])
    return None


def log_expiry(actor_log_ex: int | None, default: int, limit: int, now: float) -> float:
    """When an execution's logs expire: the actor's ``log_ex`` clamped to ``limit``, else ``default``."""
    seconds = min(actor_log_ex, limit) if actor_log_ex else default
    return now + seconds
