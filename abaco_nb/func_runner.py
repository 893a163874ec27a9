"""The function runner: the CMD of the ``abaco-nb/py3-func`` executor image, and its wire format.

Two protocols share one runner, told apart by the message:

**agavepy's** (``reference/clients.md`` §2.4): the binary message is ``cloudpickle.dumps({'func', 'args',
'kwargs'})``. The runner calls it, sends ``cloudpickle.dumps(return value)`` as one result datagram and
prints ``result: ...``. A failure prints the traceback and exits 1 with no result sent (as ``call_f.py``),
so agavepy 0.9.5's own ``AbacoExecutor`` works against this image unchanged.

**abaco-nb's** (what ``abaco_nb.executor`` sends): a plain pickle of a small dict with the marker key
``_abaco_nb`` (the protocol version), the sender's Python and cloudpickle versions, an optional per-call
time limit and ``payload`` = ``cloudpickle.dumps({'func': f, 'calls': [(args, kwargs), ...]})``. The outer
dict holds only built-in types, so it unpickles under any Python 3, and the runner checks versions
*before* touching the payload: a mismatch is a clear error frame, not a cryptic unpickling failure.
Every call of the chunk gets its own result **frame**: ``MAGIC``, a 4-byte header length, a JSON header
``{"i": call index, "k": "ok"|"error", "p": part, "n": parts}`` and a slice of the cloudpickled value
(or of the error: type, message, remote traceback, the pickled exception when it pickles). Values larger
than one datagram are split into parts of ``PART_BYTES`` (below real Abaco's 128 KiB frame truncation),
so results of tens of MB travel over the same results socket; past ``max_result_bytes()`` the call gets a
``ResultTooLarge`` error frame instead. When the message says ``batch`` (this kernel's executor does),
small results travel together in **batch frames** (header ``{"b": [[index, kind, size], ...]}`` then the
bodies), so a 1,000-call chunk is a few datagrams; see :class:`_Batcher`.

The runner keeps its own small I/O (read the message file, send datagrams) instead of importing
``abaco_nb.actors``: that module pulls in ``http.client`` and costs ~35 ms per execution, which is most
of a process-runtime call's overhead.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

PROTOCOL = 1
MARKER = "_abaco_nb"
MAGIC = b"\x00ABNB\x01"
PART_BYTES = 120_000  # below real Abaco's 128 KiB results-frame truncation and Linux's ~212 KB datagram
BATCH_BODY_BYTES = 96_000  # result bytes per batch frame (its header stays under PART_BYTES too)
BATCH_ITEMS = 1000
BATCH_SECONDS = 0.2
DEFAULT_MAX_RESULT_BYTES = 256 * 1024 * 1024
ENV_MAX_RESULT = "ABACO_NB_MAX_RESULT_BYTES"
BINARY_DATA_PATH = "/_abaco_binary_data"
RESULTS_SOCKET_PATH = "/_abaco_results.sock"
# Marker lines in the log, one before each call of a chunk and one at the end: the kernel splits the log
# per call (``future.logs()``, live output) and the dashboard page draws one bar per call from the times.
CALL_MARKER = "--- abaco-nb call {index} @{time:.6f} ---"
END_MARKER = "--- abaco-nb end @{time:.6f} ---"
ENV_BINARY_DATA = "ABACO_NB_BINARY_DATA"  # host paths used by the process runtime
ENV_RESULTS_SOCKET = "ABACO_NB_RESULTS_SOCK"


def max_result_bytes() -> int:
    """Largest pickled result one call may return (env ``ABACO_NB_MAX_RESULT_BYTES`` overrides)."""
    try:
        return int(os.environ.get(ENV_MAX_RESULT, "") or DEFAULT_MAX_RESULT_BYTES)
    except ValueError:
        return DEFAULT_MAX_RESULT_BYTES


def runner_versions() -> dict[str, str]:
    import cloudpickle

    return {"python": f"{sys.version_info[0]}.{sys.version_info[1]}", "cloudpickle": cloudpickle.__version__}


# ---------------------------------------------------------------------------------------------------------
# Wire format (also used by abaco_nb.executor on the kernel side)
# ---------------------------------------------------------------------------------------------------------


def encode_message(payload: bytes, versions: dict[str, str], timeout: float | None) -> bytes:
    """The binary message of one abaco-nb chunk. ``batch``: the sender reads batch frames (a runner
    that predates them ignores the key and sends one frame per call)."""
    outer = {MARKER: PROTOCOL, "versions": versions, "timeout": timeout, "payload": payload, "batch": True}
    return pickle.dumps(outer, protocol=4)


def encode_batch(items: list[tuple[int, str, bytes]]) -> bytes:
    """Several small results in one frame: header ``{"b": [[index, kind, size], ...]}``, then the bodies."""
    header = json.dumps({"b": [[i, k, len(body)] for i, k, body in items]}).encode()
    return MAGIC + struct.pack(">I", len(header)) + header + b"".join(body for _, _, body in items)


def encode_frames(index: int, kind: str, body: bytes, part_bytes: int = PART_BYTES) -> Iterator[bytes]:
    """One call's result as one or more frames (datagrams)."""
    parts = max(1, -(-len(body) // part_bytes))
    for p in range(parts):
        header = json.dumps({"i": index, "k": kind, "p": p, "n": parts}).encode()
        yield MAGIC + struct.pack(">I", len(header)) + header + body[p * part_bytes : (p + 1) * part_bytes]


def decode_frames(frames: list[bytes]) -> tuple[dict[int, tuple[str, bytes]], list[bytes]]:
    """Reassemble frames: ``({call index: (kind, body)}, frames that are not ours)``. Calls whose parts
    are incomplete are left out (the execution was stopped while sending them)."""
    parts: dict[int, dict[int, bytes]] = {}
    kinds: dict[int, tuple[str, int]] = {}
    foreign: list[bytes] = []
    for frame in frames:
        if not frame.startswith(MAGIC):
            foreign.append(frame)
            continue
        start = len(MAGIC)
        (size,) = struct.unpack(">I", frame[start : start + 4])
        header = json.loads(frame[start + 4 : start + 4 + size])
        if "b" in header:  # a batch of whole small results
            pos = start + 4 + size
            for index, kind, length in header["b"]:
                parts[index], kinds[index] = {0: frame[pos : pos + length]}, (kind, 1)
                pos += length
            continue
        parts.setdefault(header["i"], {})[header["p"]] = frame[start + 4 + size :]
        kinds[header["i"]] = (header["k"], header["n"])
    out: dict[int, tuple[str, bytes]] = {}
    for index, got in parts.items():
        kind, n = kinds[index]
        if len(got) == n:
            out[index] = (kind, b"".join(got[p] for p in range(n)))
    return out, foreign


# ---------------------------------------------------------------------------------------------------------
# I/O inside the execution
# ---------------------------------------------------------------------------------------------------------


def read_message() -> bytes:
    """The binary message (a regular file here; real Abaco's FIFO is read until EAGAIN by actors)."""
    path = os.environ.get(ENV_BINARY_DATA) or BINARY_DATA_PATH
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        from abaco_nb.actors import get_binary_message  # a FIFO (real Abaco): read non-blocking

        return get_binary_message()


class _Batcher:
    """Packs small results into batch frames when the sender reads them: a 1,000-call chunk then costs a
    few datagrams, store rows and decodes instead of 1,000 of each. A batch is sent when full, when its
    first result has waited ``BATCH_SECONDS`` (so an execution stopped later keeps what was done), and at
    the end; a large result goes alone, split into parts as before."""

    def __init__(self, send: Any, enabled: bool) -> None:
        self.send = send
        self.enabled = enabled
        self.items: list[tuple[int, str, bytes]] = []
        self.size = 0
        self.first = 0.0
        self.last = time.monotonic()  # when the previous call ended: a long call is sent at once

    def add(self, index: int, kind: str, body: bytes) -> None:
        if not self.enabled or len(body) > BATCH_BODY_BYTES // 4:
            self.flush()
            for frame in encode_frames(index, kind, body):
                self.send(frame)
            return
        if self.size + len(body) > BATCH_BODY_BYTES or len(self.items) >= BATCH_ITEMS:
            self.flush()
        if not self.items:
            self.first = time.monotonic()
        self.items.append((index, kind, body))
        self.size += len(body)
        now = time.monotonic()
        if now - self.first >= BATCH_SECONDS or now - self.last >= BATCH_SECONDS:  # slow calls: send now
            self.flush()
        self.last = now

    def flush(self) -> None:
        if self.items:
            self.send(encode_batch(self.items))
            self.items, self.size = [], 0


class _Sender:
    """Datagrams to the results socket, over one connected socket for the whole execution."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * PART_BYTES)
        except OSError:
            pass
        self.sock.connect(os.environ.get(ENV_RESULTS_SOCKET) or RESULTS_SOCKET_PATH)

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------------------------------------------------
# agavepy's protocol: {'func', 'args', 'kwargs'}
# ---------------------------------------------------------------------------------------------------------


def parse_message(raw: bytes) -> dict[str, Any]:
    """An agavepy call ``{'func', 'args', 'kwargs'}`` or an abaco-nb chunk (marker key). Plain
    ``pickle.loads`` is ``cloudpickle.loads``; unpickling a function imports cloudpickle by itself."""
    message = pickle.loads(raw)
    if not isinstance(message, dict) or ("func" not in message and not message.get(MARKER)):
        raise ValueError(f"the message is not a pickled {{'func', 'args', 'kwargs'}} dict: {type(message)}")
    return message


def load_call() -> dict[str, Any]:
    """The pickled call from the binary message (either protocol)."""
    return parse_message(read_message())


def run_call(message: dict[str, Any]) -> Any:
    """Call the function. tapipy's executor adds ``cwd``: honour it where that directory exists."""
    cwd = message.get("cwd")
    if isinstance(cwd, str) and os.path.isdir(cwd):
        os.chdir(cwd)
    return message["func"](*(message.get("args") or ()), **(message.get("kwargs") or {}))


def deliver(result: Any) -> None:
    """Send the result as one cloudpickled frame and log it, as call_f.py does."""
    from abaco_nb.actors import send_python_result

    send_python_result(result)
    print(f"result: {result}")


# ---------------------------------------------------------------------------------------------------------
# abaco-nb's protocol: chunks, error frames, big results
# ---------------------------------------------------------------------------------------------------------


class CallTimeout(TimeoutError):
    """Raised inside a call that exceeded its per-call time limit."""


class VersionMismatch(RuntimeError):
    """The kernel pickled with another Python or cloudpickle than the image runs."""


class ResultTooLarge(ValueError):
    """A call's pickled result is above ``max_result_bytes()``."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise CallTimeout("the call ran longer than its time limit")


def _user_traceback(exc: BaseException) -> str:
    """The remote traceback without the runner's own frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def error_body(exc: BaseException, message: str | None = None) -> bytes:
    """What an error frame carries: enough to re-raise the original type in the kernel."""
    import cloudpickle

    pickled: bytes | None = None
    try:
        data = cloudpickle.dumps(exc)
        pickle.loads(data)  # an exception whose __init__ cannot be re-run does not round-trip
        pickled = data
    except Exception:
        pass
    return pickle.dumps(
        {
            "type": type(exc).__qualname__,
            "module": type(exc).__module__,
            "message": message if message is not None else str(exc),
            "traceback": _user_traceback(exc),
            "exception": pickled,
        },
        protocol=4,
    )


def _version_problem(sent: dict[str, str]) -> str | None:
    here = runner_versions()
    problems = [
        f"{name} {sent.get(name)} in the kernel, {here[name]} in the image"
        for name in ("python", "cloudpickle")
        if sent.get(name) and sent.get(name) != here[name]
    ]
    if not problems:
        return None
    return (
        "the executor image cannot run functions pickled by this kernel: " + "; ".join(problems) + ". "
        "Use an image built for the kernel's versions (`abaco-nb images build`)."
    )


FLUSH_SECONDS = 0.2  # how stale a call's printed output may be in the log while it runs


def _live_output() -> None:
    """Prints reach the log while a call runs, in the order they were written, without a write per
    line (a syscall per marker was ~5-10 µs per call): stderr goes into stdout's buffer (both end in the
    same log anyway), and a daemon thread flushes it every ``FLUSH_SECONDS``."""
    sys.stdout.flush()
    sys.stderr.flush()
    sys.stderr = sys.stdout

    def flush() -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            try:
                sys.stdout.flush()
            except Exception:  # closed at exit
                return

    threading.Thread(target=flush, name="abaco-nb-flush", daemon=True).start()


def _mark(line: str) -> None:
    """A marker on a line of its own in the shared buffer (no syscall)."""
    sys.stdout.write(line + "\n")


def run_chunk(outer: dict[str, Any], send: Any) -> int:
    """Run every call of an abaco-nb chunk, sending one result (or error) per call as it finishes."""
    import cloudpickle

    problem = _version_problem(outer.get("versions") or {})
    if problem:
        for frame in encode_frames(-1, "error", error_body(VersionMismatch(problem))):
            send(frame)
        print(problem, file=sys.stderr)
        return 2
    try:
        chunk = cloudpickle.loads(outer["payload"])
        func, calls = chunk["func"], chunk["calls"]
    except Exception as exc:
        for frame in encode_frames(-1, "error", error_body(exc, f"could not unpickle the call: {exc}")):
            send(frame)
        traceback.print_exc()
        return 1
    timeout = outer.get("timeout")
    if timeout:
        signal.signal(signal.SIGALRM, _on_alarm)
    limit = max_result_bytes()
    failed = 0
    batch = _Batcher(send, bool(outer.get("batch")))
    _live_output()
    for index, (args, kwargs) in enumerate(calls):
        _mark(CALL_MARKER.format(index=index, time=time.time()))
        kind = "ok"
        try:
            if timeout:
                signal.setitimer(signal.ITIMER_REAL, float(timeout))
            try:
                value = func(*args, **kwargs)
            finally:
                if timeout:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            body = cloudpickle.dumps(value)
            if len(body) > limit:
                raise ResultTooLarge(
                    f"the result is {len(body) / 1e6:.1f} MB pickled, above the executor's limit of "
                    f"{limit / 1e6:.0f} MB ({ENV_MAX_RESULT}); write large data to a file or store instead"
                )
        except CallTimeout:
            kind, failed = "error", failed + 1
            body = error_body(CallTimeout(f"the call ran longer than its time limit of {timeout:g} s"))
        except BaseException as exc:  # SystemExit/KeyboardInterrupt in user code are failures of the call
            kind, failed = "error", failed + 1
            traceback.print_exc()
            try:
                body = error_body(exc)
            except Exception as inner:  # an unpicklable message: keep the facts as text
                body = error_body(RuntimeError(f"{type(exc).__name__}: {exc!s:.500} ({inner})"))
        batch.add(index, kind, body)
    batch.flush()
    _mark(END_MARKER.format(time=time.time()))
    print(f"abaco-nb runner: {len(calls)} call(s), {failed} failed", flush=True)
    return 1 if failed else 0


def main() -> int:
    """Run the pickled call(s); exit 0 on success, non-zero (traceback on stderr) on any failure."""
    if os.environ.get("ABACO_NB_HANDLER_SOURCE"):  # a %%abaco actor cell (magics), not a pickled call
        from abaco_nb.cell_actor_runner import main as run_cell

        return run_cell()
    try:
        message = parse_message(read_message())
    except Exception:
        print("Could not load the function call from the binary message:", file=sys.stderr)
        traceback.print_exc()
        return 1
    if message.get(MARKER):
        sender = _Sender()
        try:
            return run_chunk(message, sender.send)
        finally:
            sender.close()
    try:
        result = run_call(message)
    except BaseException:  # SystemExit/KeyboardInterrupt in user code are failures of the call too
        traceback.print_exc()
        return 1
    try:
        deliver(result)
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
