"""AbacoExecutor: run Python functions in an Abaco actor, as ``concurrent.futures`` futures.

The seed's surface (``blocking_call``, ``submit``, ``map``, ``delete``; results as the list ``[14]``) plus
what neither agavepy nor the peers offer together (DESIGN §6):

* responses are real ``concurrent.futures.Future`` objects (``as_completed``, ``wait``, callbacks,
  ``exception()``); ``cancel()`` drops a queued call and stops a running one (``DELETE`` execution);
* completion is long-polled by **one** watcher thread per executor (``POST .../executions/wait``), never
  a 0.5 s poll per future;
* a remote exception is re-raised with its original type and message, chained to the remote traceback
  (as ``ProcessPoolExecutor`` does), or as :class:`RemoteError` when the type cannot be rebuilt;
* ``map`` packs many calls into one execution (chunks) and shows a progress bar;
* per-call time limits run in the runner and, as a backstop, in the service (``_abaco_nb_timeout``);
* results are read without consuming them, so :meth:`AbacoExecutor.reload` gets them again later.

The wire format (messages and result frames) lives in :mod:`abaco_nb.func_runner`, next to the runner.
"""

from __future__ import annotations

import atexit
import base64
import concurrent.futures as cf
import html
import json
import math
import os
import re
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import failures, live
from . import func_runner as wire
from . import modules as needs
from .client import Client
from .connection import connect
from .errors import (
    AbacoAPIError,
    AbacoConnectionError,
    AbacoExecutionError,
    ExecutorActorGone,
    MissingModuleError,
    OutOfMemoryError,
    RemoteError,
    RemoteTimeoutError,
    RemoteTraceback,
    VersionMismatchError,
)
from .page import dashboard_link, dashboard_url
from .records import FINISHED, is_finished

EXECUTOR_HINT = "abaco_nb_executor"  # the service removes idle actors with this hint
FUNC_IMAGE = "abaco-nb/py3-func"
RESULT_FRAMES = "application/x-abaco-nb-frames"
# The modules a chunk's function and arguments need, sent with each message: a warm container's zygote
# imports them once, so later executions start with them instead of importing numpy each time.
ENV_PRELOAD = "_abaco_nb_preload"
MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # the service's default max_body_bytes
CHUNK_TARGET_BYTES = 64 * 1024 * 1024  # map splits chunks whose pickled payload is larger
POLL_SECONDS = 30  # one long-poll's server-side timeout
LOST_AFTER = 120.0  # seconds without reaching the service before pending futures fail
LOG_TAIL_LINES = 20


def kernel_versions() -> dict[str, str]:
    """What this kernel pickles with; the image must match (Python minor, cloudpickle)."""
    import cloudpickle

    return {"python": f"{sys.version_info[0]}.{sys.version_info[1]}", "cloudpickle": cloudpickle.__version__}


def default_name() -> str:
    """A name a person can tell apart in ``%abaco actors``: the notebook (or kernel, or script) and the
    time, e.g. ``executor sweep.ipynb 2026-12-01 21:50``. Jupyter gives kernels ``JPY_SESSION_NAME``
    (the notebook's path); a kernel without it is named by its id, a script by its file."""
    where = (
        os.path.basename(os.environ.get("JPY_SESSION_NAME", ""))
        or _kernel_id()
        or os.path.basename(sys.argv[0] if sys.argv and sys.argv[0] else "")
        or f"pid {os.getpid()}"
    )
    return f"executor {where} {time.strftime('%Y-%m-%d %H:%M')}"


def _kernel_id() -> str:
    if live.current_cell() is None:  # not in a kernel: importing ipykernel would only cost (and fool tqdm)
        return ""
    try:
        from ipykernel import get_connection_file

        base = os.path.basename(get_connection_file())
    except Exception:  # not in a kernel
        return ""
    return f"kernel {base.removeprefix('kernel-').removesuffix('.json')[:8]}"


_FRAME = re.compile(r'^(\s*)File "([^"]+)", line (\d+), in (\S+)')
DYNAMIC = "<dynamic-code>"  # cloudpickle's file name for every code object it ships


def code_files(fn: Any, limit: int = 500) -> dict[str, str]:
    """``{function name: the file it was defined in}`` for ``fn`` and the functions it reaches through
    its globals and nested code: cloudpickle renames every shipped file to ``<dynamic-code>``, so the
    kernel keeps the real names to show a remote frame's source line."""
    import types

    found: dict[str, str] = {}
    seen: set[int] = set()
    todo: list[Any] = [fn]
    while todo and len(found) < limit:
        item = todo.pop()
        item = getattr(item, "__func__", item)
        code = getattr(item, "__code__", None)
        if code is None or id(code) in seen:
            continue
        seen.add(id(code))
        stack = [code]
        while stack:
            c = stack.pop()
            found.setdefault(c.co_name, c.co_filename)
            stack += [k for k in c.co_consts if isinstance(k, types.CodeType)]
            names = getattr(item, "__globals__", {})
            todo += [names[n] for n in c.co_names if n in names and callable(names[n])]
    return found


def with_kernel_sources(tb: str, files: dict[str, str] | None = None) -> str:
    """A remote traceback with the source lines the container could not show: a frame of a function
    defined in the notebook names ``<dynamic-code>`` (or a cell file that exists only in the kernel);
    ``files`` (from :func:`code_files`) gives its real file, whose text IPython keeps in ``linecache``,
    so the frame is renamed and its line inserted under it."""
    import linecache

    lines = tb.splitlines()
    out: list[str] = []
    for n, line in enumerate(lines):
        found = _FRAME.match(line)
        if found and found.group(2) == DYNAMIC and files and found.group(4) in files:
            line = line.replace(f'"{DYNAMIC}"', f'"{files[found.group(4)]}"', 1)
            found = _FRAME.match(line)
        out.append(line)
        if not found:
            continue
        indent = found.group(1)
        following = lines[n + 1] if n + 1 < len(lines) else ""
        if following.startswith(indent + "  ") and not _FRAME.match(following):
            continue  # the remote side already showed the line
        source = linecache.getline(found.group(2), int(found.group(3))).strip()
        if source:
            out.append(f"{indent}    {source}")
    return "\n".join(out) + ("\n" if tb.endswith("\n") else "")


def default_image() -> str:
    """The executor image built for this kernel by ``abaco-nb images build``, e.g.
    ``abaco-nb/py3-func:3.11-3.1.3`` (same tag as ``server_ext.service.images.expected_func_image``)."""
    v = kernel_versions()
    return f"{FUNC_IMAGE}:{v['python']}-{v['cloudpickle']}"


# ---------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------


def _rebuild_error(body: bytes, execution_id: str, files: dict[str, str] | None = None) -> BaseException:
    """An error frame back into an exception: the original type when it unpickles, else RemoteError."""
    import pickle

    info = pickle.loads(body)
    tb = with_kernel_sources(str(info.get("traceback") or ""), files)
    exc: BaseException | None = None
    if info.get("exception"):
        try:
            exc = pickle.loads(info["exception"])
        except Exception:
            exc = None
    if info.get("type") == "CallTimeout":  # the runner's per-call limit
        exc = RemoteTimeoutError("TimeoutError", info["message"], tb, execution_id)
    elif info.get("type") == "VersionMismatch":  # found by the runner (a service without image_versions)
        return VersionMismatchError(info["message"])
    if not isinstance(exc, BaseException):
        exc = RemoteError(str(info.get("type", "")), str(info.get("message", "")), tb, execution_id)
    if isinstance(exc, ModuleNotFoundError) or info.get("type") == "ModuleNotFoundError":
        name = getattr(exc, "name", None) or str(info.get("message", "")).split("'")[1:2]
        module = name if isinstance(name, str) else (name[0] if name else "?")
        exc = MissingModuleError(needs.how_to_add(module.split(".", 1)[0]), name=module)
    if tb and not isinstance(exc, RemoteError):
        exc.__cause__ = RemoteTraceback(tb)
    return exc


# ---------------------------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _Chunk:
    """What an execution runs, kept while its calls may be retried."""

    fn: Callable[..., Any]
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]]
    timeout: float | None
    retries: int


class AbacoAsyncResponse(cf.Future[Any]):  # the seed's [value], or the value itself (plain_results)
    """The future of one call. ``result()`` is the list of the call's results (``[20]``), as in agavepy.

    ``done()`` answers from memory (the executor's watcher completes it); ``running()`` is ``not done()``
    as in agavepy; ``cancel()`` works until the call has finished, including while it runs.
    """

    def __init__(
        self, executor: AbacoExecutor, execution_id: str, index: int | None, call: int | None = None
    ) -> None:
        super().__init__()
        self._executor = executor
        self.actor_id = executor.actor_id
        self.execution_id = execution_id
        self.index = index  # position of the call in its execution's chunk; None: the whole execution
        self.call = call  # position in its map (None for submit)
        # The remote side as the executor's monitor last saw it: SUBMITTED (queued, and what it is
        # until a monitor looks), RUNNING (this very call runs now), QUEUED (its execution runs another
        # call of the chunk), COMPLETE/ERROR (ended, result not read yet).
        self.status: str = "SUBMITTED"

    @property
    def state(self) -> str:
        if self.cancelled():
            return "cancelled"
        if self.done():
            return "failed" if self.exception() is not None else "done"
        return "running" if self.status == "RUNNING" else "pending"

    def __repr__(self) -> str:
        where = f"{self.execution_id}" + (f"[{self.index}]" if self.index else "")
        call = f" call {self.call}" if self.call is not None else ""
        return f"<AbacoAsyncResponse {where}{call} {self.state}>"

    def _repr_html_(self) -> str:
        colour = {
            "done": "#2e7d32",
            "pending": "#ef6c00",
            "running": "#1565c0",
            "cancelled": "#757575",
            "failed": "#c62828",
        }
        state = self.state
        link = dashboard_link(
            self._executor.client, "dashboard", actor=self.actor_id, execution=self.execution_id
        )
        return (
            f"<b>AbacoAsyncResponse</b>{'' if self.call is None else f' call {self.call}'} execution "
            f"<code>{self.execution_id}</code>{'' if self.index is None else f' [{self.index}]'} "
            f"<span style='color:{colour[state]}'>{state}</span> · {link}"
        )

    def track(self) -> None:
        """Ask the executor to follow remote statuses (what a progress bar needs to count running)."""
        self._executor.track()

    def running(self) -> bool:
        return not self.done()

    def value(self, timeout: float | None = None) -> Any:
        """The call's return value itself: ``14`` where ``result()`` is the seed's list ``[14]``."""
        result = self.result(timeout)
        return result if self._executor.plain_results or self.index is None else result[0]

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        self._executor._cancelled(self)
        return True

    def logs(self) -> str:
        """This call's output (stdout and stderr), cut from its execution's log at the runner's markers;
        for a response of a whole execution (``reload`` by actor id), the execution's log."""
        text = self._executor.client.logs(self.actor_id, self.execution_id)
        if self.index is None:
            return live.strip_markers(text)
        return live.split_calls(text).get(self.index, "")

    def execution_logs(self) -> str:
        """The whole execution's log, every call of its chunk, markers included."""
        return self._executor.client.logs(self.actor_id, self.execution_id)

    def execution(self) -> Any:
        """The execution record (status, exit code, runtime...)."""
        return self._executor.client.execution(self.actor_id, self.execution_id)


# ---------------------------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------------------------


class _Progress:
    """A tqdm.auto bar (a widget in a notebook, text elsewhere) advanced by done-callbacks."""

    def __init__(self, responses: Sequence[AbacoAsyncResponse], desc: str) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=len(responses), desc=desc, unit="call")
        self._lock = threading.Lock()
        self._left = len(responses)
        for r in responses:
            r.add_done_callback(self._one)

    def _one(self, response: cf.Future[Any]) -> None:
        with self._lock:
            self._bar.update(1)
            self._left -= 1
            if response.cancelled() or response.exception() is not None:
                self._bar.set_postfix_str("failures or cancellations", refresh=False)
            if self._left == 0:
                self._bar.close()


# ---------------------------------------------------------------------------------------------------------
# The executor
# ---------------------------------------------------------------------------------------------------------

_LIVE: weakref.WeakSet[AbacoExecutor] = weakref.WeakSet()


@atexit.register
def _at_exit() -> None:
    """Interpreter exit (a kernel restart or shutdown): stop every unfinished call, so no container
    keeps running for a kernel that is gone. The actor and its results stay for ``reload``."""
    for executor in list(_LIVE):
        try:
            executor._exit()
        except Exception:
            pass


def _default_client() -> Client:
    """The default connection: ``abaco_nb.connect()`` (env, connection file, Jupyter, or start one)."""
    return connect()


class AbacoExecutor(cf.Executor):
    """Run functions in an executor actor. ``AbacoExecutor(client=None, image=None, ...)``.

    ``image``: an image built FROM ``abaco-nb/py3-func``. Default: ``abaco-nb/kernel:...``, built (once,
    then cached) from this kernel's interpreter and installed distributions, so the kernel's packages
    are there with their versions; ``packages=[...]`` limits it to those and their dependencies.
    ``max_workers``: executions run in parallel (the actor's ``max_workers``). ``timeout``: seconds a call
    may run (runner and service enforce it). ``chunksize``: calls per execution in ``map`` (default
    automatic). ``progress``: show a bar in ``map``. ``actor_id``: use an existing executor actor.
    ``cancel_on_exit``: at interpreter exit stop unfinished calls (default True). ``environment``:
    variables every call sees (the actor's default environment). ``mem_limit``: memory of each
    execution (e.g. ``"4g"``; default the service's); a call over it raises :class:`OutOfMemoryError`.
    ``retries``: how many times a call whose worker was lost (OOM kill, node loss, service restart) is
    run again (default 0; ``submit`` and ``map`` take ``retries=`` too); a call that raised is never
    retried. ``plain_results``: ``result()`` is the value itself instead of the seed's ``[value]``
    (``response.value()`` is the value either way).
    """

    def __init__(
        self,
        client: Client | None = None,
        image: str | None = None,
        *,
        packages: Sequence[str] | None = None,
        actor_id: str | None = None,
        max_workers: int | None = None,
        timeout: float | None = None,
        chunksize: int | None = None,
        progress: bool = True,
        cancel_on_exit: bool = True,
        name: str | None = None,
        environment: dict[str, str] | None = None,
        check_versions: bool = True,
        ready_timeout: float = 120.0,
        live_output: bool | None = None,
        mem_limit: str | None = None,
        retries: int = 0,
        plain_results: bool = False,
    ) -> None:
        if client is not None and not isinstance(client, Client):
            raise TypeError(
                f"client must be an abaco_nb.Client, not {type(client).__name__}; for agavepy's Agave "
                "client use agavepy.actors.AbacoExecutor"
            )
        self.client = client or _default_client()
        self.timeout = timeout
        self.chunksize = chunksize
        self.progress = progress
        self.cancel_on_exit = cancel_on_exit
        self.retries = retries
        self.plain_results = plain_results
        self._work: dict[str, _Chunk] = {}  # execution id -> what it runs, while it can be retried
        self.timeout_grace = 5.0  # the service's backstop limit is the call's limit plus this
        self.versions = kernel_versions()
        self._lock = threading.Condition()
        self._send_lock = threading.Lock()
        self._pending: dict[str, list[AbacoAsyncResponse]] = {}
        self._sizes: dict[str, int] = {}  # execution id -> calls in its chunk, in submission order
        self._newest = ""
        self._foreign: list[str] = []
        self._watcher: threading.Thread | None = None
        self._closed = False
        self._poll_delay = 0.2  # seconds between rounds of _poll_each (no wait route), backing off
        self.deleted = False
        self.startup_seconds = 0.0
        self.image_build: dict[str, Any] | None = None  # what the kernel image build said, if one ran
        self.image_modules: frozenset[str] | None = None  # import names the image is known to have
        # Remote output live in the cell that started each call: on by default in a Jupyter kernel.
        self.live_output = live.current_cell() is not None if live_output is None else live_output
        self._sinks: dict[str, tuple[str, live.LiveOutput]] = {}  # execution id -> (prefix name, output)
        self._calls: dict[str, list[int | None]] = {}  # execution id -> map positions of its calls
        self._files: dict[str, dict[str, str]] = {}  # execution id -> its functions' real files
        self._monitor: threading.Thread | None = None
        self._tracking = False
        # What sizes later maps (auto_chunksize): seconds per call of each function's latest chunk, the
        # least an execution took here beyond its calls, and when each pending execution was sent.
        self._call_seconds: dict[tuple[str, str], float] = {}
        self._overhead: float | None = None
        self._sent: dict[str, tuple[float, tuple[str, str]]] = {}
        self.created = time.time()
        self.name = name or default_name()
        t0 = time.monotonic()
        if image is not None and packages is not None:
            raise ValueError("pass image= (an image of your own) or packages= (a kernel image), not both")
        self.own_actor = actor_id is None
        if actor_id is None:
            self.image = image or self._kernel_image(packages)
            fields: dict[str, Any] = {"hints": [EXECUTOR_HINT], "token": False}
            if mem_limit:
                fields["mem_limit"] = mem_limit
            self._registration = dict(
                name=self.name,
                stateless=True,
                max_workers=max_workers,
                default_environment=environment,
                **fields,
            )
            actor = self.client.register(self.image, **self._registration)
            self.actor_id = str(actor.id)
        else:
            self.actor_id = actor_id
            existing = self.client.actor(actor_id)
            self.image = str(existing.image)
            self.name = str(existing.get("name") or self.name)
        try:
            actor = self.client.wait_until_ready(self.actor_id, timeout=ready_timeout)
        except AbacoAPIError as exc:
            self._delete_quietly(actor_id is None)
            raise RuntimeError(
                f"the executor actor for image {self.image} could not start: {exc.message}"
            ) from None
        self.max_workers = int(actor.get("max_workers") or max_workers or 6)
        self.mem_limit = actor.get("mem_limit") or mem_limit
        if check_versions:
            self._check_versions(own_actor=actor_id is None)
        self.startup_seconds = time.monotonic() - t0
        _LIVE.add(self)

    # -- set-up -------------------------------------------------------------------------------------

    def _kernel_image(self, packages: Sequence[str] | None) -> str:
        """The image of this kernel's environment (built now if not cached), or ``abaco-nb/py3-func``
        where none can be built (no Docker engine here, or a service elsewhere)."""
        from . import kernel_image

        built = kernel_image.ensure(packages, base_url=self.client.base_url)
        if built is None:
            if packages is not None:
                raise kernel_image.KernelImageError(
                    "packages=[...] needs a kernel image, and none can be built here (no Docker engine "
                    f"answers, the service is not on this machine, or {kernel_image.ENV_SWITCH}=0)"
                )
            return default_image()
        self.image_build = built
        self.image_modules = frozenset(built.get("modules") or ())
        return str(built["ref"])

    def _check_modules(self, fn: Callable[..., Any], needed: set[str]) -> None:
        """Name a module the image lacks before the call is sent (known for kernel images only)."""
        if self.image_modules is None:
            return
        lacking = needs.missing(needed, self.image_modules)
        if lacking:
            name = getattr(fn, "__qualname__", "the function")
            raise MissingModuleError(
                f"{name} needs {', '.join(map(repr, lacking))}: {needs.how_to_add(lacking[0], self.image)}",
                name=lacking[0],
            )

    def _check_versions(self, own_actor: bool) -> None:
        """Refuse an image whose Python or cloudpickle differs from the kernel's, before anything runs.
        A service without our ``image_versions`` route (a real Abaco) is checked by the runner instead."""
        try:
            image = self.client.request("GET", f"/{self.actor_id}/image_versions")
        except AbacoAPIError as exc:
            if exc.status in (404, 405):
                return
            raise
        if not image:
            return
        problems = [
            f"{name} {image.get(name)} in the image, {self.versions[name]} in the kernel"
            for name in ("python", "cloudpickle")
            if image.get(name) and image.get(name) != self.versions[name]
        ]
        if problems:
            self._delete_quietly(own_actor)
            raise VersionMismatchError(
                f"image {self.image} cannot run functions pickled by this kernel: {'; '.join(problems)}. "
                "Leave image= out to use an image built from this kernel (`abaco-nb images build "
                f"--from-kernel`), build {default_image()} with `abaco-nb images build`, or build your "
                "image FROM it."
            )

    def _delete_quietly(self, own_actor: bool) -> None:
        if own_actor:
            try:
                self.client.delete(self.actor_id)
            except AbacoAPIError:
                pass

    def counts(self) -> dict[str, int]:
        """Unfinished calls now: ``{"pending": n, "running": m}`` (running as the monitor last saw)."""
        with self._lock:
            responses = [r for rs in self._pending.values() for r in rs if not r.done()]
        running = sum(1 for r in responses if r.status == "RUNNING")
        return {"pending": len(responses), "running": running}

    def _state_text(self) -> str:
        if self.deleted:
            return "deleted"
        c = self.counts()
        running = f", {c['running']} running" if self._tracking else ""
        return f"{c['pending']} call(s) pending{running}"

    def __repr__(self) -> str:
        return f"<AbacoExecutor {self.name!r} actor={self.actor_id} image={self.image} {self._state_text()}>"

    def _repr_html_(self) -> str:
        link = dashboard_link(self.client, "dashboard", actor=self.actor_id)
        return (
            f"<div class='abaco-executor'><b>AbacoExecutor</b> <i>{html.escape(self.name)}</i> actor "
            f"<code>{self.actor_id}</code> image <code>{html.escape(self.image)}</code> "
            f"({self.max_workers} worker(s), <span class='abaco-executor-state'>{self._state_text()}</span>)"
            f"{' · ' + link if link else ''}</div>"
        )

    def _ipython_display_(self) -> None:
        """Displayed in a cell, the repr keeps itself current while calls are pending."""
        live.show_live(self)

    def live_finished(self) -> bool:
        """Whether a live display of this executor can stop updating."""
        return self.deleted or self.counts()["pending"] == 0

    @property
    def dashboard_url(self) -> str:
        """The dashboard page, opened at this executor's actor."""
        return dashboard_url(self.client, actor=self.actor_id)

    # -- submitting ---------------------------------------------------------------------------------

    # Not cf.Executor's signature (hence the override ignore): retries= is taken, as dask's submit does,
    # where cf.Executor's would pass it on to fn.
    def submit(  # type: ignore[override]
        self, fn: Callable[..., Any], /, *args: Any, retries: int | None = None, **kwargs: Any
    ) -> AbacoAsyncResponse:
        """Run ``fn(*args, **kwargs)`` remotely; returns at once with its future. ``retries`` (as in
        dask's ``submit``, so not passed to ``fn``): runs again if its worker is lost."""
        tries = self.retries if retries is None else retries
        return self._submit_chunk(fn, [(args, kwargs)], self.timeout, retries=tries)[0]

    def blocking_call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``submit(...).result()``: ``[value]``, or the value itself with ``plain_results``. Ctrl-C
        (interrupting the kernel) stops the remote call too."""
        response = self.submit(fn, *args, **kwargs)
        try:
            return response.result()
        except KeyboardInterrupt:
            response.cancel()
            raise

    # Not cf.Executor's signature (hence the override ignore): agavepy's (args_list, kwargs_list, ...),
    # and it returns the futures, not an iterator of results.
    def map(  # type: ignore[override]
        self,
        fn: Callable[..., Any],
        args_list: Iterable[Any] = (),
        kwargs_list: Iterable[dict[str, Any]] | None = None,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: bool | None = None,
        retries: int | None = None,
    ) -> list[AbacoAsyncResponse]:
        """One response per element of ``args_list`` (a list/tuple element is the call's arguments,
        anything else its single argument), as agavepy's ``map``. Calls are packed ``chunksize`` to an
        execution (default :meth:`auto_chunksize`: about two executions per worker, one once ``fn``'s
        calls are known to be short, so 1,000 small calls cost a handful of containers, not 1,000)."""
        calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
            (tuple(a) if isinstance(a, list | tuple) else (a,), {}) for a in args_list
        ]
        if kwargs_list is not None:
            kwargs = list(kwargs_list)
            if len(kwargs) != len(calls):
                raise ValueError(
                    f"map needs args_list and kwargs_list of equal length ({len(calls)} != {len(kwargs)})"
                )
            calls = [(a, dict(k)) for (a, _), k in zip(calls, kwargs, strict=True)]
        if not calls:
            return []
        size = chunksize or self.chunksize or self.auto_chunksize(len(calls), fn)
        if size < 1:
            raise ValueError(f"chunksize must be at least 1, got {size}")
        limit = timeout if timeout is not None else self.timeout
        responses: list[AbacoAsyncResponse] = []
        show = self.progress if progress is None else progress
        try:
            for start in range(0, len(calls), size):
                tries = self.retries if retries is None else retries
                responses += self._submit_chunk(
                    fn, calls[start : start + size], limit, first_call=start, retries=tries
                )
        except BaseException:
            for r in responses:  # a failure half-way (or Ctrl-C) leaves nothing running
                r.cancel()
            raise
        if show:
            self._show_progress(responses, f"abaco map {getattr(fn, '__name__', 'call')}")
        return responses

    def _show_progress(self, responses: Sequence[AbacoAsyncResponse], description: str) -> None:
        """In a Jupyter kernel, the progress widget (counts, bar, a Cancel button); elsewhere a text bar.
        Either way ``map`` returns at once: a kernel busy waiting could not take the button press."""
        try:
            from .widgets import show_progress
        except ImportError:  # ipywidgets missing: the text bar still works
            show_progress = None  # type: ignore[assignment]  # mypy gives the name the function's type
        link = dashboard_link(self.client, "dashboard", actor=self.actor_id)
        if show_progress is not None and show_progress(
            responses, cancel=self.cancel_all, description=description, link=link
        ):
            return
        _Progress(responses, description)

    def auto_chunksize(self, n: int, fn: Callable[..., Any] | None = None) -> int:
        """Calls per execution for a ``map`` of ``n`` calls of ``fn``: about two executions per worker
        (an execution's start costs far more than a small call, and a second round balances uneven
        calls), or one per worker when this executor has seen ``fn``'s calls be so short that a
        worker's whole share takes less than the least time an execution here took beyond its calls.
        Then the second round cannot pay for itself: the imbalance it could win back is at most one
        worker's share, less than the execution start it costs. The estimate is ``fn``'s latest chunk
        (by module and name); a first map of a function, or one whose calls took longer, gets two."""
        two = max(1, math.ceil(n / (2 * self.max_workers)))
        one = max(1, math.ceil(n / self.max_workers))
        with self._lock:
            per_call = self._call_seconds.get(_function_key(fn)) if fn is not None else None
            overhead = self._overhead
        if per_call is not None and overhead is not None and one * per_call <= overhead:
            return one
        return two

    def _learn(self, eid: str, execution: dict[str, Any], calls: int) -> None:
        """From a finished chunk: its function's seconds per call (the runner's markers, as the wait
        answer's ``_abaco_nb_calls``) and the time it took beyond its calls, from send to completion
        here (the least over executions is one that did not wait in the mailbox)."""
        with self._lock:
            sent = self._sent.pop(eid, None)
        timed = execution.get("_abaco_nb_calls")
        if sent is None or not isinstance(timed, dict) or not calls:
            return
        try:
            per_call = float(timed["seconds"]) / max(1, calls - int(timed["from_call"]))
        except (KeyError, TypeError, ValueError):
            return
        beyond = time.monotonic() - sent[0] - per_call * calls
        with self._lock:
            self._call_seconds[sent[1]] = per_call
            if beyond > 0 and (self._overhead is None or beyond < self._overhead):
                self._overhead = beyond

    def _submit_chunk(
        self,
        fn: Callable[..., Any],
        calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
        timeout: float | None,
        first_call: int | None = None,
        retries: int = 0,
        again: list[AbacoAsyncResponse] | None = None,
    ) -> list[AbacoAsyncResponse]:
        """Pickle and send one chunk (split further if it is too big); register its futures.
        ``first_call``: the map position of the chunk's first call (None for submit). ``again``: the
        futures of these calls when they are being retried (they move to the new execution)."""
        if self._closed and again is None:  # a retry of a call already accepted still runs
            raise RuntimeError("cannot submit: the executor was shut down or deleted")
        import cloudpickle

        needed = set(needs.function_modules(fn)) | needs.argument_modules(calls)
        self._check_modules(fn, needed)
        try:
            payload = cloudpickle.dumps({"func": fn, "calls": calls})
        except Exception as exc:
            raise TypeError(f"cannot pickle the function or its arguments: {exc}") from None
        if len(payload) > CHUNK_TARGET_BYTES and len(calls) > 1:
            half = len(calls) // 2
            second = None if first_call is None else first_call + half
            first, rest = (again[:half], again[half:]) if again else (None, None)
            return self._submit_chunk(
                fn, calls[:half], timeout, first_call, retries, first
            ) + self._submit_chunk(fn, calls[half:], timeout, second, retries, rest)
        if len(payload) > MAX_MESSAGE_BYTES:
            raise ValueError(
                f"the pickled call is {len(payload) / 1e6:.0f} MB, above the executor's limit of "
                f"{MAX_MESSAGE_BYTES / 1e6:.0f} MB; pass a path or URL to the data instead"
            )
        message = wire.encode_message(payload, self.versions, timeout)
        environment = {ENV_PRELOAD: ",".join(sorted(needed)[:64])} if needed else {}
        if timeout:
            backstop = math.ceil(timeout * len(calls) + self.timeout_grace)
            environment["_abaco_nb_timeout"] = str(backstop)
        sink = self._sink(fn)
        files = code_files(fn)
        with self._send_lock:
            sent_at = time.monotonic()
            receipt = self._send(message, environment)
            eid = str(receipt.execution_id)
            positions = [None if first_call is None else first_call + i for i in range(len(calls))]
            responses = again or [AbacoAsyncResponse(self, eid, i, positions[i]) for i in range(len(calls))]
            for i, response in enumerate(responses):  # a retry: the futures follow their calls
                response.actor_id, response.execution_id, response.index = self.actor_id, eid, i
            positions = [r.call for r in responses]
            with self._lock:
                self._pending[eid] = responses
                self._sizes[eid] = len(calls)
                if retries > 0:
                    self._work[eid] = _Chunk(fn, calls, timeout, retries)
                self._newest = eid
                self._sent[eid] = (sent_at, _function_key(fn))
                self._calls[eid] = list(positions)
                self._files[eid] = files
                if sink is not None:
                    self._sinks[eid] = sink
                    self._tracking = True
                if self._tracking:
                    self._start_monitor()
                self._start_watcher()
                self._lock.notify_all()
        return responses

    def _send(self, message: bytes, environment: dict[str, str]) -> Any:
        """Send one chunk. The actor may have been deleted since (from the dashboard, or by the idle
        clean-up): an actor this executor registered is registered again, anyone else's is an error
        that says what happened."""
        try:
            return self.client.send(self.actor_id, message, environment=environment)
        except AbacoAPIError as exc:
            if exc.status == 413:
                raise ValueError(f"the service refused the call as too large: {exc.message}") from None
            if exc.status != 404 or isinstance(exc, AbacoConnectionError) or self._actor_exists():
                raise
        gone = self.actor_id
        if not self.own_actor:
            raise ExecutorActorGone(
                "",
                f"the executor's actor {gone} no longer exists (deleted from the dashboard, with %abaco "
                "delete, or by the idle clean-up); create a new AbacoExecutor()",
                "",
                "",
            )
        actor = self.client.register(self.image, **self._registration)
        self.actor_id = str(actor.id)
        self.client.wait_until_ready(self.actor_id, timeout=120)
        warnings.warn(
            f"the executor's actor {gone} was deleted (from the dashboard or by the idle clean-up); "
            f"this executor registered a new one, {self.actor_id}",
            stacklevel=4,
        )
        return self.client.send(self.actor_id, message, environment=environment)

    def _actor_exists(self) -> bool:
        try:
            self.client.actor(self.actor_id)
            return True
        except AbacoAPIError as exc:
            return exc.status != 404 or isinstance(exc, AbacoConnectionError)

    # -- live output and remote statuses -------------------------------------------------------------

    def _sink(self, fn: Callable[..., Any]) -> tuple[str, live.LiveOutput] | None:
        """The running cell's live output for this executor (created there, on this thread)."""
        if not self.live_output:
            return None
        link = dashboard_link(self.client, "dashboard", actor=self.actor_id)
        out = live.for_cell(self.actor_id, f"remote output of {self.name}", link)
        return None if out is None else (getattr(fn, "__name__", "call"), out)

    def track(self) -> None:
        """Follow the remote status of pending calls (one request per second for the actor's
        executions, plus the logs of those running): what progress bars and live reprs show."""
        with self._lock:
            self._tracking = True
            if self._pending:
                self._start_monitor()

    def _start_monitor(self) -> None:
        if self._monitor is None or not self._monitor.is_alive():
            self._monitor = threading.Thread(
                target=self._monitor_loop, name=f"abaco-monitor-{self.actor_id}", daemon=True
            )
            self._monitor.start()

    def _monitor_loop(self, interval: float = 0.5) -> None:
        """While calls are pending: mark the call that runs in each RUNNING execution, and write what
        its execution printed since the last look to the cell that started it (prefixed by call)."""
        cursors: dict[str, live.LogCursor] = {}
        while True:
            with self._lock:
                watched = {eid: list(rs) for eid, rs in self._pending.items()}
                # Every execution with a live output not drained yet, also one that ran and ended
                # between two looks (never seen RUNNING): its output is written once, at its end.
                ended = [eid for eid in self._sinks if eid not in watched]
            if not watched and not ended:
                return
            try:
                statuses = {
                    str(e.get("id")): str(e.get("status"))
                    for e in self.client.executions(self.actor_id).get("executions") or []
                }
            except AbacoAPIError:
                time.sleep(2.0)
                continue
            for eid in ended:  # the watcher completed it: write what was printed at the very end
                self._tail(eid, cursors.pop(eid, live.LogCursor()), final=True)
            for eid, responses in watched.items():
                status = statuses.get(eid, "SUBMITTED")
                if status == "RUNNING" or status in FINISHED:
                    cursor = cursors.setdefault(eid, live.LogCursor())
                    self._tail(eid, cursor, final=False)
                    current = cursor.current
                else:
                    current = None
                for r in responses:
                    if not r.done():
                        r.status = (
                            "RUNNING"
                            if status == "RUNNING" and r.index in (current, None)
                            else "QUEUED"
                            if status == "RUNNING"
                            else status
                        )
            time.sleep(interval)

    def _tail(self, eid: str, cursor: live.LogCursor, final: bool) -> None:
        try:
            text = self.client.logs(self.actor_id, eid)
        except AbacoAPIError as exc:
            if final and exc.status == 404 and not isinstance(exc, AbacoConnectionError):
                with self._lock:  # the execution (or its actor) is gone: nothing more to show
                    self._sinks.pop(eid, None)
            return
        new = cursor.advance(text, final=final)
        sink = self._sinks.get(eid)
        if sink is None:
            return
        name, out = sink
        positions = self._calls.get(eid) or []
        for index, chunk in new:
            if index == live.PREAMBLE:
                continue  # the runner's own lines
            call = positions[index] if 0 <= index < len(positions) else None
            prefix = f"{name} {call}" if call is not None else f"exec {eid}"
            out.write(prefix, chunk, final=final)
        if final:
            out.flush()
            with self._lock:
                self._sinks.pop(eid, None)

    # -- completion ---------------------------------------------------------------------------------

    def _start_watcher(self) -> None:
        if self._watcher is None or not self._watcher.is_alive():
            self._watcher = threading.Thread(
                target=self._watch, name=f"abaco-executor-{self.actor_id}", daemon=True
            )
            self._watcher.start()

    def _watch(self) -> None:
        """The one background thread: long-poll the service for any pending execution to end."""
        failing_since: float | None = None
        fallback = False
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._lock.wait()
                if not self._pending:
                    return
                ids = list(self._pending)
                newer = [self._newest, *self._foreign] if self._newest else []
            try:
                if fallback:
                    done = self._poll_each(ids)
                else:
                    done = self._long_poll(ids, newer)
                failing_since = None
            except AbacoAPIError as exc:
                lost = exc.status == 404 and not isinstance(exc, AbacoConnectionError)
                if lost and not self._actor_exists():
                    self._actor_gone()
                    continue
                if exc.status in (404, 405) and not fallback and not isinstance(exc, AbacoConnectionError):
                    fallback = True  # a real Abaco behind a proxy: no wait route
                    continue
                since = failing_since = failing_since or time.monotonic()
                if time.monotonic() - since > LOST_AFTER:
                    self._fail_all(exc)
                    failing_since = None
                time.sleep(min(5.0, 0.5 + (time.monotonic() - since) / 10))
                continue
            self._finish(done)

    def _long_poll(self, ids: list[str], newer: list[str]) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"ids": ids, "timeout": POLL_SECONDS, "results": True}
        if newer:
            body["newer_than"] = newer
        found = self.client.request(
            "POST", f"/{self.actor_id}/executions/wait", json=body, timeout=POLL_SECONDS + 30
        )
        return list(found or [])

    def _poll_each(self, ids: list[str]) -> list[dict[str, Any]]:
        """Without the wait route: read each execution, backing off up to 2 s between rounds."""
        delay = self._poll_delay
        done: list[dict[str, Any]] = [
            dict(e) for e in (self.client.execution(self.actor_id, i) for i in ids) if _terminal(e)
        ]
        self._poll_delay = 0.2 if done else min(2.0, delay * 1.5)
        if not done:
            time.sleep(delay)
        return done

    def _finish(self, done: list[dict[str, Any]]) -> None:
        """Complete the futures of every ended execution; remember ids that are not ours."""
        foreign = []
        for execution in done:
            eid = str(execution.get("id"))
            with self._lock:
                responses = self._pending.pop(eid, None)
            if responses is None:
                with self._send_lock, self._lock:  # a submit may be registering it right now
                    responses = self._pending.pop(eid, None)
                if responses is None:
                    foreign.append(eid)
                    continue
            self._complete(execution, responses)
        with self._lock:
            self._foreign = foreign

    def _complete(self, execution: dict[str, Any], responses: list[AbacoAsyncResponse]) -> None:
        eid = str(execution.get("id"))
        missing: BaseException | None = None
        try:
            outcomes = self._outcomes(eid, execution.get("_abaco_nb_results"))
        except Exception as exc:  # results unreadable: every call of the execution fails with the reason
            outcomes = {}
            missing = RemoteError("", f"could not read the results: {exc}", "", eid)
            if isinstance(exc, AbacoAPIError) and exc.status == 404 and not self._actor_exists():
                missing = self._gone_error(eid)
        self._files.pop(eid, None)
        self._learn(eid, execution, len(responses))
        chunk_error = outcomes.get(-1)
        with self._lock:
            work = self._work.pop(eid, None)
        lost: list[AbacoAsyncResponse] = []  # calls without a result whose worker was lost: run again
        for response in responses:
            if response.done():
                continue
            if (
                work is not None
                and not missing
                and response.index is not None
                and response.index not in outcomes
                and chunk_error is None
                and failures.ending(execution) in failures.RETRYABLE
            ):
                lost.append(response)
                continue
            if response.index is None:  # reloaded without the call count: the whole execution
                values = [outcomes[i] for i in sorted(outcomes) if i >= 0]
                errors = [v for k, v in values if k == "error"]
                outcome: tuple[str, Any] = ("error", errors[0]) if errors else ("ok", [v for _, v in values])
            else:
                found = outcomes.get(response.index) or chunk_error
                if found is None:
                    missing = missing or self._no_result_error(execution)
                outcome = found or ("error", missing)
            kind, value = outcome
            try:
                if kind == "ok":
                    plain = self.plain_results or response.index is None
                    response.set_result(value if plain else [value])
                else:
                    response.set_exception(self._describe(self._memory_error(value, eid), response))
            except cf.InvalidStateError:  # cancelled meanwhile
                pass
        if lost and work is not None:
            self._retry(work, lost)

    def _retry(self, work: _Chunk, lost: list[AbacoAsyncResponse]) -> None:
        """Run the calls of a lost worker again, in one new execution; their futures move to it."""
        calls = [work.calls[r.index] for r in lost if r.index is not None]
        try:
            self._submit_chunk(work.fn, calls, work.timeout, retries=work.retries - 1, again=lost)
        except Exception as exc:  # the service refused or is gone: the calls fail with the reason
            for r in lost:
                try:
                    r.set_exception(exc)
                except cf.InvalidStateError:
                    pass

    def _memory_error(self, value: Any, eid: str) -> BaseException:
        """A remote error as raised in the kernel: a ``MemoryError`` inside the call (the process
        runtime's limit is RLIMIT_AS) becomes :class:`OutOfMemoryError`, naming the limit."""
        if not isinstance(value, BaseException):
            return RemoteError("", str(value))
        if isinstance(value, MemoryError) and not isinstance(value, OutOfMemoryError):
            tb = value.__cause__.tb if isinstance(value.__cause__, RemoteTraceback) else ""
            error = OutOfMemoryError(
                f"{failures.memory_advice(self.mem_limit)} ({type(value).__name__}: {value})",
                tb,
                eid,
                self.mem_limit,
            )
            error.__cause__ = value
            return error
        return value

    def _describe(self, error: BaseException, response: AbacoAsyncResponse) -> BaseException:
        """Say which call failed where: ``execution_id`` and ``call`` on the exception, and a note
        (shown under the traceback) pointing to ``logs()``. A chunk-wide error is shared: noted once."""
        where = f"call {response.call}" if response.call is not None else "the call"
        chunk = (
            f", call {response.index} of its chunk"
            if response.index not in (None, 0) or response.call
            else ""
        )
        note = (
            f"abaco: {where} failed in execution {response.execution_id}{chunk} of executor actor "
            f"{self.actor_id}; its future's .logs() shows what it printed"
        )
        try:  # any exception type: the two attributes are added to it (hence the attr-defined ignores)
            if getattr(error, "execution_id", None) in (None, ""):
                error.execution_id = response.execution_id  # type: ignore[attr-defined]
            if not hasattr(error, "call"):
                error.call = response.call  # type: ignore[attr-defined]
        except AttributeError:  # an exception type with __slots__: the note still says it
            pass
        notes = getattr(error, "__notes__", [])
        if not any(n.startswith("abaco: ") for n in notes) and hasattr(error, "add_note"):
            error.add_note(note)
        return error

    def _outcomes(self, eid: str, inline: str | None = None) -> dict[int, tuple[str, Any]]:
        """Every call's outcome from the execution's result frames: ``{index: ("ok", value) |
        ("error", exception)}``. ``inline``: the frames the wait answer carried (small results), which
        saves reading the results route."""
        import cloudpickle

        frames = _unpack_frames(base64.b64decode(inline)) if inline else self._frames(eid)
        decoded, foreign = wire.decode_frames(frames)
        out: dict[int, tuple[str, Any]] = {}
        for index, (kind, body) in decoded.items():
            if kind == "ok":
                try:
                    out[index] = ("ok", cloudpickle.loads(body))
                except Exception as exc:
                    out[index] = ("error", RemoteError("", f"could not unpickle the result: {exc}", "", eid))
            else:
                out[index] = ("error", _rebuild_error(body, eid, self._files.get(eid)))
        if foreign and not decoded:  # an agavepy-style runner: one plain result frame
            try:
                out[0] = ("ok", cloudpickle.loads(foreign[0]))
            except Exception:
                pass
        return out

    def _frames(self, eid: str) -> list[bytes]:
        """All result frames, read without consuming them (ours); a real Abaco pops them one by one."""
        resp = self.client.request(
            "GET", f"/{self.actor_id}/executions/{eid}/results", params={"_abaco_nb_all": "1"}, raw=True
        )
        if resp.headers.get("Content-Type", "").startswith(RESULT_FRAMES):
            return _unpack_frames(resp.content)
        frames = [resp.content] if resp.content else []
        while frames and frames[-1]:
            frames.append(self.client.result(self.actor_id, eid))
        return [f for f in frames if f]

    def _no_result_error(self, execution: dict[str, Any]) -> BaseException:
        """Why a call has no result: the execution's status, exit code, OOM flag and last log lines."""
        eid = str(execution.get("id"))
        status = execution.get("status")
        message = str(execution.get("status_message") or execution.get("statusMessage") or "")
        state = execution.get("final_state") or execution.get("finalState") or {}
        code = execution.get("exit_code", execution.get("exitCode"))
        facts = [f"execution {eid} ended {status}", f"exit code {code}"]
        if isinstance(state, dict) and state.get("OOMKilled"):
            facts.append("killed: out of memory")
        if message:
            facts.append(message)
        try:
            tail = "\n".join(self.client.logs(self.actor_id, eid).splitlines()[-LOG_TAIL_LINES:])
        except AbacoAPIError:
            tail = ""
        text = "; ".join(facts) + " - no result for this call"
        if "max_run_time" in message:
            return RemoteTimeoutError("TimeoutError", text, tail, eid)
        if message.startswith("Stopped: the actor was deleted"):
            return ExecutorActorGone(
                "", f"the executor's actor {self.actor_id} was deleted - {text}", tail, eid
            )
        if failures.ending(execution) is failures.Ending.OUT_OF_MEMORY:
            advice = failures.memory_advice(self.mem_limit)
            return OutOfMemoryError(f"{advice} - {text}", tail, eid, self.mem_limit)
        return AbacoExecutionError("", text, tail, eid)

    def _actor_gone(self) -> None:
        """The actor was deleted under pending calls: they fail saying so (a later submit registers a new
        actor when this executor made the first one)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for eid, responses in pending.items():
            error = self._gone_error(eid)
            for r in responses:
                try:
                    r.set_exception(error)
                except cf.InvalidStateError:
                    pass

    def _gone_error(self, eid: str) -> ExecutorActorGone:
        after = "the next submit registers a new one" if self.own_actor else "create a new AbacoExecutor()"
        return ExecutorActorGone(
            "",
            f"the executor's actor {self.actor_id} was deleted (from the dashboard, with %abaco delete, "
            f"or by the idle clean-up) before this call's result was read; {after}",
            "",
            eid,
        )

    def _fail_all(self, exc: BaseException) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for responses in pending.values():
            for r in responses:
                try:
                    r.set_exception(AbacoConnectionError(self.client.base_url, f"lost the service: {exc}"))
                except cf.InvalidStateError:
                    pass

    # -- cancelling and shutting down ---------------------------------------------------------------

    def _cancelled(self, response: AbacoAsyncResponse) -> None:
        """A future was cancelled: once every call of its execution is cancelled or done, stop the
        execution (dropped from the mailbox if queued, force-quit if running)."""
        with self._lock:
            siblings = self._pending.get(response.execution_id)
            if siblings is None or not all(r.done() for r in siblings):
                return
            del self._pending[response.execution_id]
            self._sent.pop(response.execution_id, None)
        self._stop_execution(response.execution_id)

    def _stop_execution(self, eid: str, patience: float = 10.0) -> None:
        """``DELETE`` the execution. Refused while a worker is between taking it from the mailbox and
        starting it; then try again briefly, until it runs (and stops) or has ended."""
        deadline, delay = time.monotonic() + patience, 0.05
        while True:
            try:
                self.client.cancel(self.actor_id, eid)
                return
            except AbacoAPIError as exc:
                if exc.status != 400 or time.monotonic() > deadline:
                    return
            try:
                if _terminal(self.client.execution(self.actor_id, eid)):
                    return
            except AbacoAPIError:
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls; ``cancel_futures`` stops unfinished ones; ``wait`` waits for the rest.
        The actor stays (``delete()`` removes it)."""
        self._closed = True
        if cancel_futures:
            self.cancel_all()
        if wait:
            with self._lock:
                futures = [r for rs in self._pending.values() for r in rs]
            cf.wait(futures)
        with self._lock:
            self._lock.notify_all()

    def cancel_all(self) -> int:
        """Cancel every unfinished call; returns how many were cancelled."""
        with self._lock:
            futures = [r for rs in self._pending.values() for r in rs]
        return sum(1 for r in futures if r.cancel())

    def delete(self) -> None:
        """Stop everything and remove the actor with its results (what the seed ends with)."""
        self._closed = True
        self.cancel_all()
        if not self.deleted:
            try:
                self.client.delete(self.actor_id)
            except AbacoAPIError as exc:
                if exc.status != 404:
                    raise
            self.deleted = True
        with self._lock:
            self._lock.notify_all()
        _LIVE.discard(self)

    def _exit(self) -> None:
        if self.cancel_on_exit and not self.deleted:
            self._closed = True
            self.cancel_all()

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=exc[0] is None, cancel_futures=exc[0] is not None)
        self.delete()

    # -- persistence --------------------------------------------------------------------------------

    def handle(self) -> dict[str, Any]:
        """What :meth:`reload` needs to rebuild every response later (JSON-serialisable)."""
        with self._lock:
            executions = [[eid, n] for eid, n in self._sizes.items()]
        return {"actor_id": self.actor_id, "image": self.image, "executions": executions}

    def save(self, path: str) -> str:
        """Write :meth:`handle` to a JSON file; ``AbacoExecutor.reload(path)`` reads it back."""
        with open(path, "w") as f:
            json.dump(self.handle(), f)
        return path

    @classmethod
    def reload(
        cls,
        handle: dict[str, Any] | str,
        client: Client | None = None,
        *,
        execution_ids: Sequence[str] | None = None,
        progress: bool = False,
    ) -> AbacoExecutor:
        """Re-attach to an executor actor after a re-run cell or a kernel restart; its ``responses`` are
        futures for the earlier calls, completed from the results the service kept.

        ``handle``: a dict from :meth:`handle`, the path of a file from :meth:`save`, or an actor id.
        With an actor id alone, there is one response per execution (``execution_ids``, default every
        execution of the actor) whose ``result()`` lists the results of all its calls.
        """
        if isinstance(handle, str) and os.path.exists(handle):
            with open(handle) as f:
                handle = json.load(f)
        if isinstance(handle, str):
            executor = cls(client, actor_id=handle, progress=progress)
            ids = list(execution_ids) if execution_ids is not None else executor._all_execution_ids()
            entries: list[tuple[str, int | None]] = [(eid, None) for eid in ids]
        else:
            executor = cls(client, actor_id=str(handle["actor_id"]), progress=progress)
            entries = [(str(eid), int(n)) for eid, n in handle.get("executions", [])]
        executor.responses = []
        with executor._lock:
            for eid, n in entries:
                rs = (
                    [AbacoAsyncResponse(executor, eid, None)]
                    if n is None
                    else [AbacoAsyncResponse(executor, eid, i) for i in range(n)]
                )
                executor._pending[eid] = rs
                if n is not None:
                    executor._sizes[eid] = n
                executor.responses += rs
            if entries:
                executor._start_watcher()
        return executor

    responses: list[AbacoAsyncResponse]

    def _all_execution_ids(self) -> list[str]:
        summary = self.client.executions(self.actor_id)
        return [str(e.get("id")) for e in summary.get("executions", [])]


def _function_key(fn: Callable[..., Any]) -> tuple[str, str]:
    """A function as ``auto_chunksize`` remembers it: its module and qualified name."""
    return str(getattr(fn, "__module__", "")), str(getattr(fn, "__qualname__", type(fn).__qualname__))


def _unpack_frames(data: bytes) -> list[bytes]:
    """Frames sent as an 8-byte big-endian length then the bytes, one after the other."""
    frames, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 8], "big")
        frames.append(data[pos + 8 : pos + 8 + size])
        pos += 8 + size
    return frames


def _terminal(execution: dict[str, Any]) -> bool:
    return is_finished(execution)
