"""The process runtime's boundary: a user and a directory of its own for every execution.

An execution is someone else's code (a nonce holder's message to an executor actor, say). When the
service runs as root, each process-runtime execution runs as a uid of its own, taken from a range no
real account uses (``ServiceConfig.execution_uid_base``, ``execution_uid_count``: by default 65,536
uids from 1,900,000,000; no ``/etc/passwd`` entries are needed, ``useradd`` is not involved), with the
same number as its gid and no supplementary groups. So it cannot read the service's database, its
connection file or its run directory (all 0600/0700, owned by the service's user), cannot read
another execution's files, environment or memory (``/proc/PID/environ`` and ptrace need the same
uid), and cannot signal another execution. Its ``RLIMIT_NPROC`` bounds a fork bomb to its own uid.

Its working directory (``HOME`` and ``TMPDIR`` too) is ``<sandbox root>/<execution id>``, mode 0700 and
owned by that uid, under a root that is 0711 (others may pass through, not list). The few service
files it needs are hard links in that directory: the binary message (read-only), its results socket
and the service's API socket; the originals stay in the private run directory. Its log is written to a
file the execution cannot reach (its stdout/stderr are that file's descriptor), so it cannot swap the
log for a symlink to a file only the service may read.

Not isolated: a service that does not run as root cannot switch users, so its executions run as the
service's own user (they can then read what that user can); ``execution_uids = "off"`` does the same
as root. Network, the host's world-readable files and CPU time are not isolated by this runtime; the
Docker runtime isolates those too.
"""

from __future__ import annotations

import errno
import os
import queue
import random
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass

NPROC_LIMIT = 1024  # processes one execution's uid may have at once
ROOT_PREFIX = "abaco-nb-x-"


@dataclass(frozen=True)
class ExecUser:
    """The uid and gid an execution runs as."""

    uid: int
    gid: int


def isolating(setting: str) -> bool:
    """``execution_uids``: ``auto`` (or an explicit range, ``on``) isolates when the service runs as
    root, the only case where it can; ``off`` never does."""
    return setting != "off" and hasattr(os, "geteuid") and os.geteuid() == 0


def cannot_run_python(user: ExecUser, python: str | None = None) -> str | None:
    """Why an execution's uid cannot run this service's Python (the executor image and ``python``
    actors need it), or None when it can. A Python installed under a private home (``/root/.pyenv``,
    mode 0700) cannot be run by anyone else."""
    import subprocess
    import sys

    python = python or sys.executable
    try:
        done = subprocess.run(
            [python, "-c", "import encodings"],
            user=user.uid,
            group=user.gid,
            extra_groups=[],
            cwd="/",
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            env={},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{python}: {exc}"
    if done.returncode != 0:
        return f"{python} exited {done.returncode}: {done.stderr.decode(errors='replace')[-200:]}"
    return None


class UidPool:
    """Hands out uids round-robin from a random start, never one still in use, so a uid comes back
    only after ``count`` other executions."""

    def __init__(self, base: int, count: int) -> None:
        if count < 1 or base < 1000:
            raise ValueError(f"execution uids {base}+{count}: need a range of at least one uid above 999")
        self.base, self.count = base, count
        self._next = random.randrange(count)
        self._busy: set[int] = set()
        self._lock = threading.Lock()

    def acquire(self) -> ExecUser:
        with self._lock:
            for _ in range(self.count):
                uid = self.base + self._next
                self._next = (self._next + 1) % self.count
                if uid not in self._busy:
                    self._busy.add(uid)
                    return ExecUser(uid, uid)
        raise OSError(errno.EAGAIN, f"all {self.count} execution uids are in use")

    def release(self, user: ExecUser) -> None:
        with self._lock:
            self._busy.discard(user.uid)


class Sandbox:
    """The directories executions run in: one root per runtime (removed when it closes), one directory
    per execution (removed with it).

    Removal happens on a thread of its own, after the execution's record is final: an ``rmdir`` costs
    ~1.5-2.5 ms on this machine's disk (ext4, ``discard``), which a worker would otherwise pay before
    taking its next message. What must wait for the directory to be gone (its uid going back to the
    pool, so no later execution of that uid can reach its files) is the ``then`` of :meth:`remove`."""

    def __init__(self, parent: str | None = None) -> None:
        self.root = tempfile.mkdtemp(prefix=ROOT_PREFIX, dir=parent)
        os.chmod(self.root, 0o711)  # pass through to one's own directory; no listing
        self._doomed: queue.SimpleQueue[tuple[str, Callable[[], None] | None]] = queue.SimpleQueue()
        self._remover: threading.Thread | None = None
        self._remover_lock = threading.Lock()

    def path(self, execution_id: str) -> str:
        return os.path.join(self.root, execution_id)

    def make(self, execution_id: str, user: ExecUser | None) -> str:
        """The execution's private directory, owned by its user."""
        path = self.path(execution_id)
        os.mkdir(path, 0o700)
        if user is not None:
            os.chown(path, user.uid, user.gid)
        return path

    @staticmethod
    def link(source: str, directory: str, name: str) -> str:
        """A hard link to ``source`` in the execution's directory (a socket, or the read-only binary
        message; a regular file is copied when it lives on another file system)."""
        target = os.path.join(directory, name)
        try:
            os.link(source, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV or not stat.S_ISREG(os.stat(source).st_mode):
                raise
            shutil.copyfile(source, target)
            os.chmod(target, 0o444)
        return target

    def remove(self, execution_id: str, then: Callable[[], None] | None = None) -> None:
        """Remove the execution's directory soon (in the background); ``then`` runs once it is gone."""
        self._remove_later(self.path(execution_id), then)

    def _remove_later(self, path: str, then: Callable[[], None] | None) -> None:
        with self._remover_lock:
            if self._remover is None or not self._remover.is_alive():
                self._remover = threading.Thread(
                    target=self._remove_loop, name="abaco-sandbox-rm", daemon=True
                )
                self._remover.start()
            self._doomed.put((path, then))

    def _remove_loop(self) -> None:
        while True:
            path, then = self._doomed.get()
            if path:
                shutil.rmtree(path, ignore_errors=True)  # never follows the links inside
            if then is not None:
                try:
                    then()
                except Exception:  # a callback's failure must not stop later removals
                    pass

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every removal asked for so far is done (close, tests)."""
        if self._remover is None:
            return
        done = threading.Event()
        self._remove_later("", done.set)
        done.wait(timeout)

    def close(self) -> None:
        self.settle()
        shutil.rmtree(self.root, ignore_errors=True)
