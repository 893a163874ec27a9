"""The service's own files are private to the service's user: the database (with its WAL and SHM
files: SQLite creates them with the database file's mode), the run directory, logs and the connection
file are 0600/0700, whatever the umask. The database holds the execution-token secret and the key of
secret actor configs; the connection file and ``serve.log`` hold the service token.

The run directory is also *locked* (``flock`` on ``.lock`` inside it) for as long as a service uses it,
so a second service given the same directory is refused instead of taking over its sockets.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

from .errors import AbacoError

DB_SUFFIXES = ("", "-wal", "-shm", "-journal")
LOCK_NAME = ".lock"


def private_dir(path: str) -> str:
    """Create ``path`` (and missing parents, 0700) and make it 0700; refuse a symlink."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.path.islink(path):
        raise AbacoError(f"{path} is a symbolic link; the service wants a directory of its own.", 500)
    os.chmod(path, 0o700)
    return path


def private_file(path: str) -> str:
    """Create ``path`` when missing with mode 0600, and make an existing one 0600."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
    os.chmod(path, 0o600)
    return path


def private_database(path: str) -> None:
    """The database and its companions 0600, before SQLite opens it (so the WAL and SHM it creates
    inherit 0600)."""
    private_file(path)
    for suffix in DB_SUFFIXES[1:]:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path + suffix, 0o600)


def open_private_log(path: str) -> int:
    """A log file for appending, 0600 (it may show a token): the descriptor."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def lock_run_dir(path: str) -> int:
    """Hold the run directory for this service: the lock file's descriptor (keep it open; closing it
    or exiting releases the lock). Another live service holding it is a refusal naming its pid."""
    lock_path = os.path.join(path, LOCK_NAME)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise AbacoError(
            f"The run directory {path} is in use by another abaco-nb service (pid {holder}); give each "
            "service its own (--run-dir, or the default: a fresh private directory).",
            500,
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd
