"""Log lines never show a credential, and an attacker cannot make the log grow without bound.

``Redact``: every record's final text has the values of ``token=``, ``x-nonce=``, ``Authorization:``
and ``X-Tapis-Token:`` (in a query string, a header dump or a message), and every secret registered
with ``add_secret`` (the service token), replaced by ``[redacted]``. A failing request with
``?token=...`` used to be written to the access log in clear.

``RateLimit``: at most ``burst`` records of one kind (its logger and its text with digits masked, cut
at 80 characters) and ``total`` records in all in each ``window`` seconds; the rest are counted, and the
next line of that kind says how many were suppressed. 1,100 half-open connections once wrote 138,269
lines.

``install()`` puts both on every handler of the root logger (``abaco-nb serve``) or of given loggers
(the Jupyter server's), once.
"""

from __future__ import annotations

import logging
import re
import threading
import time

REDACTED = "[redacted]"
_PATTERNS = [
    re.compile(r"(?i)((?:^|[?&\s;,])(?:token|x-nonce|x_nonce)=)[^&\s\"']+"),
    re.compile(
        r"(?i)((?:authorization|x-tapis-token)['\"]?\s*[:=]\s*['\"]?(?:bearer\s+|token\s+)?)[^\s'\",}]+"
    ),
]
_SECRETS: set[str] = set()
_LOCK = threading.Lock()


def add_secret(value: str) -> None:
    """Redact this exact value wherever it appears (the service token; short values are ignored)."""
    if value and len(value) >= 8:
        with _LOCK:
            _SECRETS.add(value)


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_DIGITS = re.compile(r"\d+")


class RateLimit(logging.Filter):
    """``burst`` records per kind and ``total`` in all per ``window`` seconds, then counts."""

    def __init__(self, burst: int = 20, total: int = 600, window: float = 60.0) -> None:
        super().__init__()
        self.burst, self.total, self.window = burst, total, window
        self._seen: dict[tuple[str, str], list[float]] = {}  # kind -> [window start, count, dropped]
        self._window_start, self._in_window = time.monotonic(), 0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, _DIGITS.sub("#", record.getMessage())[:80])
        now = time.monotonic()
        with self._lock:
            if now - self._window_start >= self.window:
                self._window_start, self._in_window = now, 0
            self._in_window += 1
            if self._in_window > self.total:  # everything beyond the overall budget is dropped
                self._seen.setdefault(key, [now, self.burst, 0])[2] += 1
                return False
            entry = self._seen.get(key)
            if entry is None or now - entry[0] >= self.window:
                dropped = int(entry[2]) if entry is not None else 0
                self._seen[key] = [now, 1, 0]
                if len(self._seen) > 10_000:  # bounded too: forget the oldest templates
                    for stale in sorted(self._seen, key=lambda k: self._seen[k][0])[:5_000]:
                        del self._seen[stale]
                if dropped:
                    record.msg = f"{redact(record.getMessage())} (and {dropped} more like it suppressed)"
                    record.args = None
                return True
            entry[1] += 1
            if entry[1] <= self.burst:
                return True
            entry[2] += 1
            return False


_INSTALLED: set[int] = set()


def install(*loggers: logging.Logger) -> None:
    """Add both filters to every handler of ``loggers`` (the root logger when none is given)."""
    limit, clean = RateLimit(), Redact()
    for logger in loggers or (logging.getLogger(),):
        for handler in logger.handlers:
            if id(handler) in _INSTALLED:
                continue
            _INSTALLED.add(id(handler))
            handler.addFilter(limit)
            handler.addFilter(clean)
