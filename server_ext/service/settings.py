"""Settings of one service instance, with the defaults a single-user notebook machine wants."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field


def default_data_dir() -> str:
    """Where the database and run files live: Jupyter's data dir, without importing Jupyter."""
    base = os.environ.get("JUPYTER_DATA_DIR") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "jupyter"
    )
    return os.path.join(base, "abaco-nb")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "abaco"


@dataclass
class ServiceConfig:
    """Everything a Service needs to know; ``abaco-nb serve`` flags and ``c.AbacoApp`` traits map here."""

    db_path: str = field(default_factory=lambda: os.path.join(default_data_dir(), "abaco.db"))
    run_dir: str = ""  # sockets and message files; default: a private dir next to the database
    runtime: str = "auto"  # auto | docker | process
    username: str = field(default_factory=_user)
    max_run_time: int = 12 * 3600  # seconds; the seed's limit. 0 or less = unlimited
    default_mem_limit: str | None = "2g"
    default_max_cpus: int | None = 1_000_000_000  # nano-CPUs: one CPU
    max_workers_per_actor: int = 6
    worker_idle_seconds: float = 60.0  # extra workers of a stateless actor stop after this idle time
    log_ex: int = 43200  # seconds logs are kept (Abaco's default: 12 h)
    log_ex_limit: int = 86400
    results_ttl: int = 24 * 3600  # seconds results are kept after they are written
    max_body_bytes: int = 256 * 1024 * 1024
    container_network: bool = False  # containers run with networking off unless configured
    sync_timeout: float = 300.0  # how long a synchronous message may block
    executor_idle_seconds: float = 12 * 3600  # idle executor actors are removed after this
    allow_privileged: bool = False  # privileged actors get the Docker socket: root on the host
    warm_idle_seconds: float = 300.0  # warm containers (docker runtime) stop after this long unused
    cron_interval: float = 50.0  # seconds between cron passes (Abaco's 50); tests use ~1

    def resolved_run_dir(self) -> str:
        return self.run_dir or os.path.join(os.path.dirname(os.path.abspath(self.db_path)), "run")
