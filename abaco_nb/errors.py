"""The exceptions abaco_nb raises for a caller to catch, all in one place (as httpx's ``_exceptions``)::

    AbacoError                    anything abaco-nb raises on purpose (``abaco_nb.actors`` raises it in a container)
    ├── AbacoAPIError             the service refused a request: .status, .message, .method, .url
    │   └── AbacoConnectionError  the service did not answer at all (.status is 0)
    ├── RemoteError               a remote call failed and its exception could not be rebuilt in the kernel:
    │   │                         .type_name, .message, .remote_traceback, .execution_id
    │   ├── RemoteTimeoutError    the call ran past its time limit and was stopped (also a TimeoutError)
    │   └── AbacoExecutionError   the execution ended without a result: stopped, crashed, out of memory, deleted
    │       ├── OutOfMemoryError  killed by (or out of memory under) the memory limit: .mem_limit; the
    │       │                     message says how to raise it (also a MemoryError)
    │       └── ExecutorActorGone the executor's actor was deleted (dashboard, %abaco delete, idle clean-up)
    ├── VersionMismatchError      the image's Python or cloudpickle differ from the kernel's; nothing ran
    │                             (also a RuntimeError)
    ├── MissingModuleError        the executor's image lacks a module the call needs; the message says how
    │                             to add it (also a ModuleNotFoundError)
    └── KernelImageError          the kernel image (``AbacoExecutor(packages=...)``) could not be built; the
                                  message says why and what to do instead (also a RuntimeError)

A remote exception that unpickles in the kernel is raised as itself (a ``ValueError`` stays a
``ValueError``), with a :class:`RemoteTraceback` as its ``__cause__`` carrying the remote frames; that
one is never raised on its own. ``AbacoError`` is the class of ``abaco_nb.actors`` (standard library
only, and copied into the executor image as it is), so ``except abaco_nb.AbacoError`` catches both sides.
"""

from __future__ import annotations

from .actors import AbacoError

__all__ = [
    "AbacoError",
    "AbacoAPIError",
    "AbacoConnectionError",
    "RemoteError",
    "RemoteTimeoutError",
    "AbacoExecutionError",
    "OutOfMemoryError",
    "ExecutorActorGone",
    "VersionMismatchError",
    "MissingModuleError",
    "KernelImageError",
    "RemoteTraceback",
]


class AbacoAPIError(AbacoError):
    """The service refused a request. ``str()`` is one line: status, message."""

    def __init__(self, status: int, message: str, method: str = "", url: str = "") -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.method = method
        self.url = url


class AbacoConnectionError(AbacoAPIError):
    """The service did not answer at all."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(0, f"cannot reach the Abaco service at {url}: {reason}", url=url)


class RemoteTraceback(Exception):
    """Carries the remote traceback text; set as ``__cause__`` of a re-raised remote exception so the
    notebook shows the frames that failed in the container (the same trick as ProcessPoolExecutor)."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb.rstrip()}\n"""'


class RemoteError(AbacoError):
    """A remote call failed and its exception could not be rebuilt in the kernel (or it ended without
    a result). ``type_name``, ``remote_traceback``, ``execution_id`` keep the facts."""

    def __init__(
        self, type_name: str, message: str, remote_traceback: str = "", execution_id: str = ""
    ) -> None:
        super().__init__(f"{type_name}: {message}" if type_name else message)
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback
        self.execution_id = execution_id

    def _render_traceback_(self) -> list[str]:
        """IPython shows this instead of the kernel-side frames, which say nothing about the failure."""
        where = f" (execution {self.execution_id})" if self.execution_id else ""
        lines = [f"Remote call failed{where}:"]
        lines += (self.remote_traceback or str(self)).rstrip().splitlines()
        lines += list(getattr(self, "__notes__", []))
        return lines


class RemoteTimeoutError(RemoteError, TimeoutError):
    """The call ran longer than its time limit and was stopped (by the runner or the service)."""


class AbacoExecutionError(RemoteError):
    """The execution ended without a result for this call: stopped, crashed, out of memory, deleted."""


class OutOfMemoryError(AbacoExecutionError, MemoryError):
    """A call was killed by the executor's memory limit (a container's OOM kill), or ran out of memory
    under it (a ``MemoryError`` in the call). The message names the limit and how to raise it; still a
    ``MemoryError``, so ``except MemoryError`` catches it. ``mem_limit``: the limit, when known."""

    def __init__(
        self, message: str, remote_traceback: str = "", execution_id: str = "", mem_limit: str | None = None
    ) -> None:
        super().__init__("OutOfMemoryError", message, remote_traceback, execution_id)
        self.mem_limit = mem_limit


class ExecutorActorGone(AbacoExecutionError):
    """The executor's actor was deleted (from the dashboard, ``%abaco delete``, or the idle clean-up)
    while calls were pending or when a call was sent to an actor this executor did not register."""


class VersionMismatchError(AbacoError, RuntimeError):
    """The image's Python or cloudpickle differs from the kernel's; nothing was run."""


class MissingModuleError(AbacoError, ModuleNotFoundError):
    """The executor's image lacks a module the call needs. The message says how to add it."""


class KernelImageError(AbacoError, RuntimeError):
    """The kernel image could not be built; the message says why and what to do instead."""
