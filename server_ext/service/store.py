"""SQLite persistence: the only module that writes SQL.

One file in WAL mode. Every method is one transaction, so what a caller was told happened is on disk:
an accepted message (execution row ``SUBMITTED`` + its mailbox entry + its binary payload) is
committed before the POST returns, and claiming a message (mailbox entry removed, execution
``RUNNING``) is atomic, so after a crash a message is either still queued or visibly interrupted,
never both and never lost. ``synchronous=NORMAL`` in WAL mode survives a killed process (the
kernel keeps the written pages); only a power loss could drop the last commits.

Rows keep the dataclasses of ``models`` as JSON plus the columns that queries need. The store holds no
policy: a claim or a requeue writes the execution that ``lifecycle`` hands it (``claim_next(actor_id,
decide)``, like ``redeem_nonce(nonce_id, decide)``).

Faults: the busy timeout is short (``busy_timeout``, 2 s), so a database locked by another process,
or a disk that is full, becomes ``StoreUnavailable`` (503 locked, 507 full, with the path) within
seconds instead of a request that hangs for 30 s; nothing was written and the caller may try again
(workers retry with backoff). Reads keep working while another process holds the write lock (WAL).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from .access_rules import Alias, Nonce
from .actor_config_rules import ActorConfig
from .errors import StoreUnavailable
from .models import Actor, Execution, Registration, Worker
from .users import User

log = logging.getLogger("abaco_nb.service")
BUSY_TIMEOUT = 2.0  # seconds a write waits for another process's lock before StoreUnavailable
# Room kept beside the database (a file of zeros) and given back when the disk is full at start, so
# the service can open its database (SQLite needs a few pages for its WAL index) and say what is wrong.
RESERVE_BYTES = 512 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS actors (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS executions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, actor_id TEXT NOT NULL,
    status TEXT NOT NULL, data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_by_actor ON executions (actor_id, seq);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status);
CREATE TABLE IF NOT EXISTS mailbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, actor_id TEXT NOT NULL, execution_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS mailbox_by_actor ON mailbox (actor_id, seq);
CREATE TABLE IF NOT EXISTS payloads (execution_id TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS logs (execution_id TEXT PRIMARY KEY, text TEXT NOT NULL, expires REAL);
CREATE TABLE IF NOT EXISTS results (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, execution_id TEXT NOT NULL, body BLOB NOT NULL,
    consumed INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS results_by_execution ON results (execution_id, seq);
CREATE TABLE IF NOT EXISTS workers (id TEXT PRIMARY KEY, actor_id TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS aliases (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, alias TEXT UNIQUE NOT NULL, actor_id TEXT NOT NULL, data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS nonces (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, actor_id TEXT, alias TEXT, data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS permissions (
    kind TEXT NOT NULL, target TEXT NOT NULL, user TEXT NOT NULL, level TEXT NOT NULL,
    PRIMARY KEY (kind, target, user)
);
CREATE TABLE IF NOT EXISTS actor_configs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE NOT NULL, data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, admin INTEGER NOT NULL, token_hash TEXT UNIQUE, source TEXT NOT NULL,
    create_time REAL NOT NULL
);
"""


# Executions and workers are flat dataclasses of JSON values: ``vars()`` is their dict, without the deep
# copy ``asdict`` makes (a quarter of the time of accepting a message). Nested ones keep ``asdict``.


def _actor_from_json(text: str) -> Actor:
    data = json.loads(text)
    data["reg"] = Registration(**data["reg"])
    return Actor(**data)


_EXECUTION_FIELDS = frozenset(Execution.__dataclass_fields__)


def _execution_from_json(text: str) -> Execution:
    data = json.loads(text)
    if not _EXECUTION_FIELDS.issuperset(data):  # rows written before a field was dropped
        data = {k: v for k, v in data.items() if k in _EXECUTION_FIELDS}
    return Execution(**data)


def _disk_full(path: str) -> bool:
    try:
        return shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free < RESERVE_BYTES
    except OSError:
        return False


def unavailable(exc: sqlite3.Error | OSError, path: str) -> StoreUnavailable:
    """What a failed read or write of the database means for the caller, naming the file. An I/O
    error on a disk with no room left is the full disk (SQLite says so when it cannot grow its
    shared-memory file)."""
    name = str(getattr(exc, "sqlite_errorname", ""))
    text = str(exc).lower()
    full = name.startswith("SQLITE_FULL") or "full" in text or getattr(exc, "errno", None) == errno.ENOSPC
    if full or (("I/O" in str(exc) or name.startswith("SQLITE_IOERR")) and _disk_full(path)):
        return StoreUnavailable(
            f"The disk holding the service's database ({path}) is full: nothing was changed. Free "
            "space on that disk and try again.",
            507,
        )
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return StoreUnavailable(
            f"The service's database ({path}) is locked by another process: nothing was changed. "
            "Try again shortly.",
            503,
        )
    return StoreUnavailable(f"The service's database ({path}) cannot be used now: {exc}.", 503)


class Store:
    """Thread-safe access to the service's SQLite file: one connection for writes and one for reads,
    each guarded by its lock. Reads never wait behind a write that waits for another process's lock
    (WAL lets them read the last commit meanwhile), and every read sees every commit made before it."""

    def __init__(self, path: str, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._read_lock = threading.Lock()
        self.reserve = path + ".reserve"
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=busy_timeout)
        try:
            self._configure()
        except sqlite3.OperationalError as exc:
            fault = unavailable(exc, path)
            if fault.status == 507 and self._give_back_reserve():
                log.error("%s Gave back the service's reserve (%s) to start.", fault.message, self.reserve)
                try:
                    self._configure()
                except sqlite3.OperationalError as again:
                    raise unavailable(again, path) from again
            elif self._has_schema():  # locked by another process: reads work, writes wait for it
                log.error("%s", fault.message)
            else:
                raise fault from exc
        self._reader = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=busy_timeout
        )
        self._keep_reserve()

    def _configure(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def _give_back_reserve(self) -> bool:
        try:
            os.unlink(self.reserve)
        except OSError:
            return False
        return True

    def _keep_reserve(self) -> None:
        """Make the reserve when there is comfortably room for it (never on a nearly full disk)."""
        if os.path.exists(self.reserve):
            return
        try:
            if shutil.disk_usage(os.path.dirname(os.path.abspath(self.path))).free < 8 * RESERVE_BYTES:
                return
            with open(self.reserve, "wb") as f:
                f.write(bytes(RESERVE_BYTES))
        except OSError:
            self._give_back_reserve()

    def _has_schema(self) -> bool:
        try:
            row = self._db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name='executions'").fetchone()
        except sqlite3.Error:
            return False
        return bool(row and row[0])

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. Waiting for our own lock is bounded too: while another process
        holds the database, each writer here waits up to the busy timeout, and a request must not
        queue behind all of them."""
        if not self._lock.acquire(timeout=2 * self.busy_timeout + 1):
            raise unavailable(sqlite3.OperationalError("database is locked"), self.path)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            raise unavailable(exc, self.path) from exc
        finally:
            self._lock.release()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._read_lock:
            try:
                yield self._reader
            except sqlite3.OperationalError as exc:
                raise unavailable(exc, self.path) from exc

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._db.close()
            self._reader.close()

    # -- meta -------------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- actors -----------------------------------------------------------------------------------

    def put_actor(self, actor: Actor) -> None:
        data = json.dumps(asdict(actor))
        with self._tx() as db:
            cur = db.execute("UPDATE actors SET data=? WHERE id=?", (data, actor.id))
            if cur.rowcount == 0:
                db.execute("INSERT INTO actors (id, data) VALUES (?, ?)", (actor.id, data))

    def get_actor(self, actor_id: str) -> Actor | None:
        with self._read() as db:
            row = db.execute("SELECT data FROM actors WHERE id=?", (actor_id,)).fetchone()
        return _actor_from_json(row[0]) if row else None

    def list_actors(self) -> list[Actor]:
        with self._read() as db:
            rows = db.execute("SELECT data FROM actors ORDER BY seq").fetchall()
        return [_actor_from_json(r[0]) for r in rows]

    def set_actor_status(self, actor_id: str, revision: int, status: str, status_message: str) -> bool:
        """Set only the status of the actor's ``revision`` (an image check's outcome), so a PUT, a state
        POST or a cron pass written while the image was checked is not overwritten. False when the
        actor is gone or has moved to another revision."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE actors SET data=json_set(data, '$.status', ?, '$.status_message', ?) "
                "WHERE id=? AND json_extract(data, '$.revision')=?",
                (status, status_message, actor_id, revision),
            )
            return cur.rowcount == 1

    def set_cron_next_ex(self, actor_id: str, expected: str | None, value: str) -> bool:
        """Move an actor's ``cron_next_ex`` from ``expected`` to ``value``, only that field and only if
        it still is ``expected`` (a PUT may have changed the schedule meanwhile). True when moved."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE actors SET data=json_set(data, '$.cron_next_ex', ?) "
                "WHERE id=? AND json_extract(data, '$.cron_next_ex') IS ?",
                (value, actor_id, expected),
            )
            return cur.rowcount == 1

    def delete_actor(self, actor_id: str) -> list[str]:
        """Remove the actor, its mailbox, workers, logs, results and finished executions (Abaco keeps
        the records, yet its searches no longer show them: here they go with the actor).
        Returns the ids of executions that were still queued (they end ERROR: their actor is gone)."""
        with self._tx() as db:
            queued = [
                r[0] for r in db.execute("SELECT execution_id FROM mailbox WHERE actor_id=?", (actor_id,))
            ]
            db.execute("DELETE FROM mailbox WHERE actor_id=?", (actor_id,))
            db.execute("DELETE FROM workers WHERE actor_id=?", (actor_id,))
            db.execute(
                "DELETE FROM logs WHERE execution_id IN (SELECT id FROM executions WHERE actor_id=?)",
                (actor_id,),
            )
            db.execute(
                "DELETE FROM payloads WHERE execution_id IN (SELECT id FROM executions WHERE actor_id=?)",
                (actor_id,),
            )
            db.execute("DELETE FROM actors WHERE id=?", (actor_id,))
            # its finished executions go with it (running ones when they finish: purge_orphans)
            db.execute(
                "DELETE FROM results WHERE execution_id IN "
                "(SELECT id FROM executions WHERE actor_id=? AND status IN ('COMPLETE', 'ERROR'))",
                (actor_id,),
            )
            db.execute(
                "DELETE FROM executions WHERE actor_id=? AND status IN ('COMPLETE', 'ERROR')", (actor_id,)
            )
            # its nonces and permissions go too; aliases stay, pointing at nothing (as Abaco)
            db.execute("DELETE FROM nonces WHERE actor_id=? AND alias IS NULL", (actor_id,))
            db.execute("DELETE FROM permissions WHERE kind='actor' AND target=?", (actor_id,))
        return queued

    # -- messages and executions -------------------------------------------------------------------

    def submit(self, execution: Execution, payload: bytes | None) -> None:
        """Accept a message: the execution row, its payload and its mailbox entry, in one commit."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO executions (id, actor_id, status, data) VALUES (?, ?, ?, ?)",
                (execution.id, execution.actor_id, execution.status, json.dumps(vars(execution))),
            )
            if payload is not None:
                db.execute("INSERT INTO payloads (execution_id, body) VALUES (?, ?)", (execution.id, payload))
            db.execute(
                "INSERT INTO mailbox (actor_id, execution_id) VALUES (?, ?)",
                (execution.actor_id, execution.id),
            )

    def claim_next(self, actor_id: str, decide: Callable[[Execution], Execution]) -> Execution | None:
        """Take the oldest queued message of the actor and write the execution ``decide``
        (``lifecycle.claim``) makes of it, in one transaction. None when the mailbox is empty."""
        with self._tx() as db:
            row = db.execute(
                "SELECT seq, execution_id FROM mailbox WHERE actor_id=? ORDER BY seq LIMIT 1", (actor_id,)
            ).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM mailbox WHERE seq=?", (row[0],))
            data = db.execute("SELECT data FROM executions WHERE id=?", (row[1],)).fetchone()
            execution = decide(_execution_from_json(data[0]))
            self._write_execution(db, execution)
        return execution

    def requeue_first(self, execution: Execution) -> None:
        """Write ``execution`` (``lifecycle.requeued``) and put it back at the head of its mailbox."""
        with self._tx() as db:
            self._write_execution(db, execution)
            db.execute(
                "INSERT INTO mailbox (seq, actor_id, execution_id) VALUES "
                "((SELECT COALESCE(MIN(seq), 1) - 1 FROM mailbox), ?, ?)",
                (execution.actor_id, execution.id),
            )

    def _write_execution(self, db: sqlite3.Connection, execution: Execution) -> None:
        db.execute(
            "UPDATE executions SET status=?, data=? WHERE id=?",
            (execution.status, json.dumps(vars(execution)), execution.id),
        )

    def update_execution(self, execution: Execution) -> None:
        with self._tx() as db:
            self._write_execution(db, execution)

    def finish_execution(self, execution: Execution, logs: str | None, log_expires: float | None) -> None:
        """Store the final logs and the terminal status together: a client that sees COMPLETE sees
        the whole log (Abaco writes the logs first for the same reason)."""
        with self._tx() as db:
            if logs is not None:
                db.execute(
                    "INSERT OR REPLACE INTO logs (execution_id, text, expires) VALUES (?, ?, ?)",
                    (execution.id, logs, log_expires),
                )
            db.execute("DELETE FROM payloads WHERE execution_id=?", (execution.id,))
            db.execute("DELETE FROM mailbox WHERE execution_id=?", (execution.id,))
            self._write_execution(db, execution)

    def get_execution(self, execution_id: str) -> Execution | None:
        with self._read() as db:
            row = db.execute("SELECT data FROM executions WHERE id=?", (execution_id,)).fetchone()
        return _execution_from_json(row[0]) if row else None

    def list_executions(self, actor_id: str) -> list[Execution]:
        with self._read() as db:
            rows = db.execute(
                "SELECT data FROM executions WHERE actor_id=? ORDER BY seq", (actor_id,)
            ).fetchall()
        return [_execution_from_json(r[0]) for r in rows]

    def all_executions(self) -> list[Execution]:
        """Every execution, oldest first (search's ``executions`` collection)."""
        with self._read() as db:
            rows = db.execute("SELECT data FROM executions ORDER BY seq").fetchall()
        return [_execution_from_json(r[0]) for r in rows]

    def log_records(self, now: float, actor_id: str | None = None) -> list[tuple[str, str, str]]:
        """(execution id, actor id, logs) of every unexpired log, oldest first (search's ``logs``)."""
        sql = (
            "SELECT l.execution_id, e.actor_id, l.text FROM logs l JOIN executions e ON e.id = l.execution_id "
            "WHERE (l.expires IS NULL OR l.expires >= ?)"
        )
        args: tuple[object, ...] = (now,)
        if actor_id is not None:
            sql += " AND e.actor_id = ?"
            args += (actor_id,)
        with self._read() as db:
            rows = db.execute(sql + " ORDER BY e.seq", args).fetchall()
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def executions_with_status(self, status: str) -> list[Execution]:
        with self._read() as db:
            rows = db.execute("SELECT data FROM executions WHERE status=? ORDER BY seq", (status,)).fetchall()
        return [_execution_from_json(r[0]) for r in rows]

    def get_payload(self, execution_id: str) -> bytes | None:
        with self._read() as db:
            row = db.execute("SELECT body FROM payloads WHERE execution_id=?", (execution_id,)).fetchone()
        return bytes(row[0]) if row else None

    def queue_length(self, actor_id: str) -> int:
        with self._read() as db:
            return int(db.execute("SELECT COUNT(*) FROM mailbox WHERE actor_id=?", (actor_id,)).fetchone()[0])

    def queued_actor_ids(self) -> list[str]:
        with self._read() as db:
            return [r[0] for r in db.execute("SELECT DISTINCT actor_id FROM mailbox")]

    def drop_queued(self, actor_id: str, execution_id: str | None = None) -> list[str]:
        """Remove queued messages (one, or the whole mailbox); returns the execution ids removed."""
        with self._tx() as db:
            if execution_id is None:
                rows = db.execute("SELECT execution_id FROM mailbox WHERE actor_id=?", (actor_id,)).fetchall()
                db.execute("DELETE FROM mailbox WHERE actor_id=?", (actor_id,))
            else:
                rows = db.execute(
                    "SELECT execution_id FROM mailbox WHERE actor_id=? AND execution_id=?",
                    (actor_id, execution_id),
                ).fetchall()
                db.execute(
                    "DELETE FROM mailbox WHERE actor_id=? AND execution_id=?", (actor_id, execution_id)
                )
        return [r[0] for r in rows]

    # -- logs ---------------------------------------------------------------------------------------

    def set_logs(self, execution_id: str, text: str, expires: float | None) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO logs (execution_id, text, expires) VALUES (?, ?, ?)",
                (execution_id, text, expires),
            )

    def get_logs(self, execution_id: str, now: float) -> str:
        with self._read() as db:
            row = db.execute(
                "SELECT text, expires FROM logs WHERE execution_id=?", (execution_id,)
            ).fetchone()
        if row is None or (row[1] is not None and row[1] < now):
            return ""
        return str(row[0])

    def purge_expired_logs(self, now: float) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM logs WHERE expires IS NOT NULL AND expires < ?", (now,)).rowcount

    # -- results ------------------------------------------------------------------------------------

    def add_result(self, execution_id: str, body: bytes, created: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO results (execution_id, body, created) VALUES (?, ?, ?)",
                (execution_id, body, created),
            )

    def add_results(self, execution_id: str, bodies: list[bytes], created: float) -> None:
        """Several frames in one transaction, in order (the results collector's batches)."""
        with self._tx() as db:
            db.executemany(
                "INSERT INTO results (execution_id, body, created) VALUES (?, ?, ?)",
                [(execution_id, body, created) for body in bodies],
            )

    def pop_result(self, execution_id: str) -> bytes | None:
        """Abaco's destructive read: the oldest unread result, marked read (kept for ``all_results``)."""
        with self._tx() as db:
            row = db.execute(
                "SELECT seq, body FROM results WHERE execution_id=? AND consumed=0 ORDER BY seq LIMIT 1",
                (execution_id,),
            ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE results SET consumed=1 WHERE seq=?", (row[0],))
        return bytes(row[1])

    def all_results(self, execution_id: str) -> list[bytes]:
        """Every result of an execution, read or not, oldest first (our non-destructive read)."""
        with self._read() as db:
            rows = db.execute(
                "SELECT body FROM results WHERE execution_id=? ORDER BY seq", (execution_id,)
            ).fetchall()
        return [bytes(r[0]) for r in rows]

    # -- the executor's long-poll and idle removal (ours) ------------------------------------------

    def finished_among(self, execution_ids: list[str]) -> list[Execution]:
        """The terminal executions among ``execution_ids``, in one query (a long-poll re-checks often)."""
        found: list[Execution] = []
        with self._read() as db:
            for start in range(0, len(execution_ids), 500):
                batch = execution_ids[start : start + 500]
                marks = ",".join("?" * len(batch))
                found += [
                    _execution_from_json(r[0])
                    for r in db.execute(
                        f"SELECT data FROM executions WHERE id IN ({marks}) "
                        "AND status IN ('COMPLETE', 'ERROR') ORDER BY seq",
                        batch,
                    ).fetchall()
                ]
        return found

    def finished_newer_than(self, actor_id: str, execution_ids: list[str]) -> list[Execution]:
        """Terminal executions of the actor submitted after the newest of ``execution_ids``: lets a
        long-poll also cover messages its client sent after the poll began."""
        if not execution_ids:
            return []
        marks = ",".join("?" * len(execution_ids))
        with self._read() as db:
            row = db.execute(
                f"SELECT MAX(seq) FROM executions WHERE id IN ({marks})", execution_ids
            ).fetchone()
            if row is None or row[0] is None:
                return []
            rows = db.execute(
                "SELECT data FROM executions WHERE actor_id=? AND seq>? AND status IN ('COMPLETE', 'ERROR') "
                "ORDER BY seq",
                (actor_id, row[0]),
            ).fetchall()
        return [_execution_from_json(r[0]) for r in rows]

    def actor_activity(self, actor_id: str) -> tuple[int, float | None]:
        """``(executions not yet terminal, time of the newest execution's last event)``."""
        with self._read() as db:
            active = db.execute(
                "SELECT COUNT(*) FROM executions WHERE actor_id=? AND status NOT IN ('COMPLETE', 'ERROR')",
                (actor_id,),
            ).fetchone()[0]
            row = db.execute(
                "SELECT data FROM executions WHERE actor_id=? ORDER BY seq DESC LIMIT 1", (actor_id,)
            ).fetchone()
        if row is None:
            return int(active), None
        last = _execution_from_json(row[0])
        return int(active), last.finish_time or last.start_time or last.message_received_time

    def purge_results_before(self, created: float) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM results WHERE created < ?", (created,)).rowcount

    # -- workers ------------------------------------------------------------------------------------

    def put_worker(self, worker: Worker) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO workers (id, actor_id, data) VALUES (?, ?, ?)",
                (worker.id, worker.actor_id, json.dumps(vars(worker))),
            )

    def delete_worker(self, worker_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM workers WHERE id=?", (worker_id,))

    def list_workers(self, actor_id: str | None = None) -> list[Worker]:
        with self._read() as db:
            if actor_id is None:
                rows = db.execute("SELECT data FROM workers").fetchall()
            else:
                rows = db.execute("SELECT data FROM workers WHERE actor_id=?", (actor_id,)).fetchall()
        return [Worker(**json.loads(r[0])) for r in rows]

    def clear_workers(self) -> None:
        """Workers are threads of a running service: none survive a restart."""
        with self._tx() as db:
            db.execute("DELETE FROM workers")

    def stats(self) -> dict[str, Any]:
        with self._read() as db:
            return {
                "actors": db.execute("SELECT COUNT(*) FROM actors").fetchone()[0],
                "executions": db.execute("SELECT COUNT(*) FROM executions").fetchone()[0],
                "queued": db.execute("SELECT COUNT(*) FROM mailbox").fetchone()[0],
            }

    # -- aliases, nonces and permissions (access_rules.py decides; these only store) ----------------

    def add_alias(self, alias: Alias) -> bool:
        """False when the name is taken: uniqueness is the table's, so two racing POSTs cannot both win."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO aliases (alias, actor_id, data) VALUES (?, ?, ?)",
                (alias.alias, alias.actor_id, json.dumps(asdict(alias))),
            )
            return cur.rowcount == 1

    def get_alias(self, name: str) -> Alias | None:
        with self._read() as db:
            row = db.execute("SELECT data FROM aliases WHERE alias=?", (name,)).fetchone()
        return Alias(**json.loads(row[0])) if row else None

    def list_aliases(self) -> list[Alias]:
        with self._read() as db:
            rows = db.execute("SELECT data FROM aliases ORDER BY seq").fetchall()
        return [Alias(**json.loads(r[0])) for r in rows]

    def put_alias(self, alias: Alias) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE aliases SET actor_id=?, data=? WHERE alias=?",
                (alias.actor_id, json.dumps(asdict(alias)), alias.alias),
            )

    def delete_alias(self, name: str) -> bool:
        """Remove the alias with its own nonces and permissions; False when there was none."""
        with self._tx() as db:
            gone = db.execute("DELETE FROM aliases WHERE alias=?", (name,)).rowcount == 1
            db.execute("DELETE FROM nonces WHERE alias=?", (name,))
            db.execute("DELETE FROM permissions WHERE kind='alias' AND target=?", (name,))
        return gone

    def add_nonce(self, nonce: Nonce) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO nonces (id, actor_id, alias, data) VALUES (?, ?, ?, ?)",
                (nonce.id, nonce.actor_id, nonce.alias, json.dumps(asdict(nonce))),
            )

    def get_nonce(self, nonce_id: str) -> Nonce | None:
        with self._read() as db:
            row = db.execute("SELECT data FROM nonces WHERE id=?", (nonce_id,)).fetchone()
        return Nonce(**json.loads(row[0])) if row else None

    def list_nonces(self, *, actor_id: str | None = None, alias: str | None = None) -> list[Nonce]:
        """An actor's own nonces (``actor_id``) or an alias's (``alias``), oldest first."""
        with self._read() as db:
            if alias is not None:
                rows = db.execute("SELECT data FROM nonces WHERE alias=? ORDER BY seq", (alias,))
            else:
                rows = db.execute(
                    "SELECT data FROM nonces WHERE actor_id=? AND alias IS NULL ORDER BY seq", (actor_id,)
                )
            return [Nonce(**json.loads(r[0])) for r in rows.fetchall()]

    def delete_nonce(self, nonce_id: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM nonces WHERE id=?", (nonce_id,)).rowcount == 1

    def redeem_nonce(self, nonce_id: str, decide: Callable[[Nonce], Nonce]) -> Nonce | None:
        """Read the nonce, let ``decide`` (``access.redeem``) refuse it or return it used once, and write
        that back, in one transaction: a nonce with one use left serves exactly one request.
        None when there is no such nonce; ``decide``'s refusal propagates and nothing is written."""
        with self._tx() as db:
            row = db.execute("SELECT data FROM nonces WHERE id=?", (nonce_id,)).fetchone()
            if row is None:
                return None
            used = decide(Nonce(**json.loads(row[0])))
            db.execute("UPDATE nonces SET data=? WHERE id=?", (json.dumps(asdict(used)), nonce_id))
        return used

    def get_permissions(self, kind: str, target: str) -> dict[str, str]:
        """The grants on an actor (``kind="actor"``) or an alias (``"alias"``), in the order made."""
        with self._read() as db:
            rows = db.execute(
                "SELECT user, level FROM permissions WHERE kind=? AND target=? ORDER BY rowid", (kind, target)
            ).fetchall()
        return {r[0]: r[1] for r in rows}

    def set_permission(self, kind: str, target: str, user: str, level: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO permissions (kind, target, user, level) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kind, target, user) DO UPDATE SET level=excluded.level",
                (kind, target, user, level),
            )

    # -- actor configs (actor_config_rules.py decides; these only store) -----------------------------

    def add_config(self, config: ActorConfig) -> bool:
        """False when the name is taken (uniqueness is the table's, as for aliases)."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO actor_configs (name, data) VALUES (?, ?)",
                (config.name, json.dumps(asdict(config))),
            )
            return cur.rowcount == 1

    def get_config(self, name: str) -> ActorConfig | None:
        with self._read() as db:
            row = db.execute("SELECT data FROM actor_configs WHERE name=?", (name,)).fetchone()
        return ActorConfig(**json.loads(row[0])) if row else None

    def list_configs(self) -> list[ActorConfig]:
        with self._read() as db:
            rows = db.execute("SELECT data FROM actor_configs ORDER BY seq").fetchall()
        return [ActorConfig(**json.loads(r[0])) for r in rows]

    def put_config(self, config: ActorConfig) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE actor_configs SET data=? WHERE name=?", (json.dumps(asdict(config)), config.name)
            )

    def delete_config(self, name: str) -> bool:
        """Remove the config and its permissions; False when there was none."""
        with self._tx() as db:
            gone = db.execute("DELETE FROM actor_configs WHERE name=?", (name,)).rowcount == 1
            db.execute("DELETE FROM permissions WHERE kind='config' AND target=?", (name,))
        return gone

    # -- users of a multi-user service (users.py decides; these only store) ------------------------

    def put_user(self, user: User) -> None:
        """Add or replace a user (a Hub user is re-recorded when their admin flag changes)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO users (name, admin, token_hash, source, create_time) "
                "VALUES (?, ?, ?, ?, ?)",
                (user.name, int(user.admin), user.token_hash, user.source, user.create_time),
            )

    def get_user(self, name: str) -> User | None:
        with self._lock:
            row = self._db.execute(
                "SELECT name, admin, token_hash, source, create_time FROM users WHERE name=?", (name,)
            ).fetchone()
        return User(row[0], bool(row[1]), row[2], row[3], row[4]) if row else None

    def user_for_token_hash(self, token_hash: str) -> User | None:
        with self._lock:
            row = self._db.execute(
                "SELECT name, admin, token_hash, source, create_time FROM users WHERE token_hash=?",
                (token_hash,),
            ).fetchone()
        return User(row[0], bool(row[1]), row[2], row[3], row[4]) if row else None

    def list_users(self) -> list[User]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, admin, token_hash, source, create_time FROM users ORDER BY create_time, name"
            ).fetchall()
        return [User(r[0], bool(r[1]), r[2], r[3], r[4]) for r in rows]

    def delete_user(self, name: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM users WHERE name=?", (name,)).rowcount == 1

    def all_permissions(self, kind: str) -> dict[str, dict[str, str]]:
        """Every grant on objects of one kind, ``{target: {user: level}}``: one read to filter a list."""
        with self._lock:
            rows = self._db.execute(
                "SELECT target, user, level FROM permissions WHERE kind=? ORDER BY rowid", (kind,)
            ).fetchall()
        grants: dict[str, dict[str, str]] = {}
        for target, user, level in rows:
            grants.setdefault(target, {})[user] = level
        return grants

    def prune_executions(self, actor_id: str, ids: list[str], totals: dict[str, int]) -> None:
        """Delete these finished executions (with their logs, results and payloads) and add them to the
        actor's pruned totals, in one transaction (``retention``)."""
        key = f"pruned_totals:{actor_id}"
        marks = ",".join("?" * len(ids))
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            kept = json.loads(row[0]) if row else {}
            merged = {name: int(kept.get(name, 0)) + int(value) for name, value in totals.items()}
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(merged)))
            for table in ("logs", "results", "payloads"):
                db.execute(f"DELETE FROM {table} WHERE execution_id IN ({marks})", ids)
            db.execute(
                f"DELETE FROM executions WHERE actor_id=? AND status IN ('COMPLETE', 'ERROR') AND id IN ({marks})",
                [actor_id, *ids],
            )

    def pruned_totals(self, actor_id: str) -> dict[str, int]:
        """What the actor's pruned executions add to its totals (``retention.TOTALS``)."""
        value = self.get_meta(f"pruned_totals:{actor_id}")
        return {k: int(v) for k, v in json.loads(value).items()} if value else {}

    def purge_orphan_executions(self) -> int:
        """Finished executions (and their logs and results) whose actor was deleted while they ran."""
        orphans = (
            "SELECT id FROM executions WHERE status IN ('COMPLETE', 'ERROR') "
            "AND actor_id NOT IN (SELECT id FROM actors)"
        )
        with self._tx() as db:
            db.execute(f"DELETE FROM logs WHERE execution_id IN ({orphans})")
            db.execute(f"DELETE FROM results WHERE execution_id IN ({orphans})")
            return db.execute(f"DELETE FROM executions WHERE id IN ({orphans})").rowcount
