"""What the process runtime's boundary costs: an execution's start-to-exit with and without its own uid.

    sudo .venv/bin/python bench/bench_isolation.py [--n 200]

Runs a trivial function (the runner's agavepy protocol, ``x + 1``) through ``ProcessRuntime`` directly,
one execution at a time, side by side in one run:

- zygote fork, as the service's user (no boundary: what a non-root service does);
- zygote fork, each execution its own uid and private directory (``runtimes/sandbox.py``);
- ``Popen`` of a fresh ``python -m abaco_nb.func_runner``, its own uid (what the zygote saves).

Each figure is the median (and p90) of ``--n`` executions, after a warm-up, from ``start()`` to the exit
the runtime reports. Needs root, and a Python that other users can run (a virtual environment made
from /usr/bin/python3 works; one whose interpreter lives under /root does not). Writes
``bench/results/isolation.md`` and prints it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cloudpickle  # noqa: E402

from server_ext.service.results import ResultCollector  # noqa: E402
from server_ext.service.runtimes.base import RunSpec  # noqa: E402
from server_ext.service.runtimes.process import ProcessRuntime  # noqa: E402
from server_ext.service.runtimes.sandbox import ExecUser, UidPool, cannot_run_python  # noqa: E402

FUNC_IMAGE = "abaco-nb/py3-func:latest"


def inc(x: int) -> int:
    return x + 1


def one(rt: ProcessRuntime, message: Path) -> tuple[float, float]:
    eid = uuid.uuid4().hex[:13]
    collector = ResultCollector(os.path.join(os.path.dirname(message), f"{eid}.sock"), lambda frames: None)
    spec = RunSpec(
        execution_id=eid,
        actor_id="A",
        worker_id="W",
        image=FUNC_IMAGE,
        environment={"_abaco_execution_id": eid, "MSG": ""},
        service_id="bench",
        binary_path=str(message),
        results_socket=collector.path,
    )
    t0 = time.perf_counter()
    run = rt.start(spec)
    started = time.perf_counter() - t0
    info = rt.wait(run, 60)
    elapsed = time.perf_counter() - t0
    assert info is not None and info.exit_code == 0, rt.logs(run)
    rt.remove(run)
    collector.close()
    return started, elapsed


Row = tuple[str, list[float], list[float]]


def measure(name: str, make: Callable[[str], ProcessRuntime], message: Path, n: int) -> Row:
    with tempfile.TemporaryDirectory() as tmp:
        rt = make(tmp)
        try:
            for _ in range(10):  # warm-up: the zygote starts, caches fill
                one(rt, message)
            pairs = [one(rt, message) for _ in range(n)]
        finally:
            rt.close()
    return name, [p[0] for p in pairs], [p[1] for p in pairs]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: only root can give each execution a uid of its own")
    why = cannot_run_python(ExecUser(1_900_000_001, 1_900_000_001))
    if why:
        sys.exit(f"other users cannot run this Python ({why}); use a venv made from /usr/bin/python3")
    with tempfile.TemporaryDirectory() as tmp:
        message = Path(tmp) / "message.bin"
        message.write_bytes(cloudpickle.dumps({"func": inc, "args": [1], "kwargs": {}}))
        os.chmod(tmp, 0o755)

        def popen(work: str) -> ProcessRuntime:
            rt = ProcessRuntime(os.path.join(work, "proc"), uids=UidPool(1_900_000_000, 65536))
            assert rt.zygote is not None
            rt.zygote.close()
            rt.zygote = None
            return rt

        rows = [
            measure(
                "zygote fork, service's user (no boundary)",
                lambda w: ProcessRuntime(os.path.join(w, "proc")),
                message,
                args.n,
            ),
            measure(
                "zygote fork, own uid + private dir",
                lambda w: ProcessRuntime(os.path.join(w, "proc"), uids=UidPool(1_900_000_000, 65536)),
                message,
                args.n,
            ),
            measure("Popen python -m abaco_nb.func_runner, own uid", popen, message, max(20, args.n // 5)),
        ]
    base_start, base = statistics.median(rows[0][1]), statistics.median(rows[0][2])
    lines = [
        "# Process runtime: the cost of the boundary",
        "",
        f"`sudo python bench/bench_isolation.py --n {args.n}` on {platform.node()} "
        f"({os.cpu_count()} cores, Python {platform.python_version()}); one execution at a time, "
        "start() to reported exit, a trivial function through the runner.",
        "",
        "`start()` is until the process exists (the fork acknowledged, or Popen returned); the run is",
        "until its exit is reported. Ratios against the zygote without a boundary.",
        "",
        "| how | start() median ms | ratio | start to exit median ms | p90 ms | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for name, starts, times in rows:
        s_med, median = statistics.median(starts), statistics.median(times)
        p90 = statistics.quantiles(times, n=10)[-1]
        lines.append(
            f"| {name} | {s_med * 1000:.2f} | {s_med / base_start:.2f} | {median * 1000:.2f} | "
            f"{p90 * 1000:.2f} | {median / base:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    out = ROOT / "bench" / "results" / "isolation.md"
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
