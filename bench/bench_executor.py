"""Executor overhead per task: AbacoExecutor (process and docker runtimes) against its peers, in one run.

    .venv/bin/python bench/bench_executor.py [--repeat 3] [--full] [--no-docker]

Maps a trivial function (``x + 1``: all the time is overhead) over N=100 and N=1000 with
``concurrent.futures.ProcessPoolExecutor(2)``, ipyparallel with 2 engines, dask's LocalCluster with 2
single-threaded workers — each with its defaults and with its best settings for tiny calls (``chunksize``
for the pool and ipyparallel, ``client.map`` over batches for dask; one chunk per worker, as
AbacoExecutor's automatic chunks once it has seen the calls be short) — and AbacoExecutor with
``max_workers=2`` on ``abaco-nb serve --runtime process`` and ``--runtime docker`` (warm containers).
Each figure is the median of ``--repeat`` runs of submit + gather; the round trip (one call, as
``blocking_call``) is the median of 20; start-up (cluster start, executor actor registration, image)
is timed apart. On docker it also times one execution per call (``chunksize=1``) over 100 calls and
scales that to 1000 (``--full`` runs the 1000). Writes ``bench/results/executor.md`` and prints it,
with the ratios and the goals of issue 11.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIZES = (100, 1000)


def inc(x: int) -> int:
    return x + 1


def timed(run: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------------------
# Peers: each with its defaults and with its best settings for many tiny calls
# ---------------------------------------------------------------------------------------------------------

ROUND_TRIPS = 20  # one call, submitted and waited for: the blocking_call figure


def chunks_of(n: int, workers: int = 2) -> int:
    """Calls per chunk in the 'best' settings: one chunk per worker, as AbacoExecutor's automatic size
    gives calls it has seen to be this short (two per worker otherwise)."""
    return max(1, -(-n // workers))


def inc_all(xs: list[int]) -> list[int]:
    return [x + 1 for x in xs]


def round_trip(call: Callable[[], Any]) -> float:
    """Median seconds of one call's round trip (submit, run, result)."""
    return timed(call, ROUND_TRIPS)


def bench_process_pool(repeat: int) -> dict[str, dict[str, Any]]:
    t0 = time.perf_counter()
    pool = cf.ProcessPoolExecutor(2)
    list(pool.map(inc, range(2)))  # the workers exist once a first call came back
    startup = time.perf_counter() - t0
    default: dict[str, Any] = {"startup": startup, "rt": round_trip(lambda: pool.submit(inc, 1).result())}
    best: dict[str, Any] = {"startup": startup, "rt": default["rt"]}
    for n in SIZES:
        default[n] = timed(lambda n=n: list(pool.map(inc, range(n))), repeat)
        best[n] = timed(lambda n=n: list(pool.map(inc, range(n), chunksize=chunks_of(n))), repeat)
    pool.shutdown()
    return {"ProcessPoolExecutor(2)": default, "ProcessPoolExecutor(2), chunksize": best}


def bench_ipyparallel(repeat: int) -> dict[str, dict[str, Any]]:
    import ipyparallel as ipp

    t0 = time.perf_counter()
    cluster = ipp.Cluster(n=2, log_level=40)
    rc = cluster.start_and_connect_sync()
    rc.wait_for_engines(2, timeout=120)
    view = rc.load_balanced_view()
    view.map_sync(inc, range(2))
    startup = time.perf_counter() - t0
    default: dict[str, Any] = {"startup": startup, "rt": round_trip(lambda: view.apply_sync(inc, 1))}
    best: dict[str, Any] = {"startup": startup, "rt": default["rt"]}
    for n in SIZES:
        default[n] = timed(lambda n=n: view.map_sync(inc, range(n)), repeat)
        best[n] = timed(lambda n=n: view.map_sync(inc, range(n), chunksize=chunks_of(n)), repeat)
    rc.close()
    cluster.stop_cluster_sync()
    return {"ipyparallel (2 engines)": default, "ipyparallel, chunksize": best}


def bench_dask(repeat: int) -> dict[str, dict[str, Any]]:
    from dask.distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    client.gather(client.map(inc, range(2), pure=False))
    startup = time.perf_counter() - t0
    default: dict[str, Any] = {
        "startup": startup,
        "rt": round_trip(lambda: client.submit(inc, 1, pure=False).result()),
    }
    best: dict[str, Any] = {"startup": startup, "rt": default["rt"]}

    def batched(n: int) -> list[int]:
        """client.map over batches (one task per chunk, as our executor's chunks), then flattened."""
        size = chunks_of(n)
        batches = [list(range(i, min(n, i + size))) for i in range(0, n, size)]
        return [y for part in client.gather(client.map(inc_all, batches, pure=False)) for y in part]

    for n in SIZES:
        default[n] = timed(lambda n=n: client.gather(client.map(inc, range(n), pure=False)), repeat)
        best[n] = timed(lambda n=n: batched(n), repeat)
    client.close()
    cluster.close()
    return {"dask LocalCluster (2 workers)": default, "dask, batched map": best}


# ---------------------------------------------------------------------------------------------------------
# Ours
# ---------------------------------------------------------------------------------------------------------


def serve(runtime: str, tmp: str) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    conn = Path(tmp) / "conn.json"
    argv = [sys.executable, "-m", "server_ext", "serve", "--runtime", runtime, "--db", f"{tmp}/abaco.db",
            "--port", "0", "--token", "bench", "--connection-file", str(conn)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not conn.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"abaco-nb serve --runtime {runtime} did not start")
        time.sleep(0.05)
    time.sleep(0.1)
    return proc, json.loads(conn.read_text())


def bench_abaco(runtime: str, repeat: int, full: bool, image: str | None) -> dict[str, Any]:
    from abaco_nb import AbacoExecutor, Client

    with tempfile.TemporaryDirectory(prefix=f"bench-{runtime}-") as tmp:
        proc, info = serve(runtime, tmp)
        try:
            client = Client(info["url"], info["token"])
            t0 = time.perf_counter()
            ex = AbacoExecutor(client, image=image, max_workers=2, progress=False)
            ex.blocking_call(inc, 1)  # the first execution (image, interpreter caches) belongs to start-up
            ex.map(inc, range(4))[-1].result()  # ... and so does the second worker's first execution
            out: dict[str, Any] = {"startup": time.perf_counter() - t0, "register": ex.startup_seconds}
            out["rt"] = round_trip(lambda: ex.blocking_call(inc, 1))

            def run(n: int, chunksize: int | None = None) -> None:
                responses = ex.map(inc, range(n), chunksize=chunksize)
                cf.wait(responses)
                assert all(r.result() == [i + 1] for i, r in enumerate(responses))
                out[f"executions_{n}"] = len({r.execution_id for r in responses})

            for n in SIZES:
                out[n] = timed(lambda n=n: run(n), repeat)
            if runtime == "docker":
                n_single = 1000 if full else 100
                kept = out[f"executions_{n_single}"]
                single = timed(lambda: run(n_single, 1), 1)
                out[f"executions_{n_single}"] = kept
                out["one_per_call_1000"] = single * (1000 / n_single)
                out["one_per_call_measured"] = n_single
            ex.delete()
            return out
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=5).ping()
        return True
    except Exception:
        return False


# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------


_LOADS: list[float] = []


def sample_load() -> None:
    _LOADS.append(os.getloadavg()[0])


def results_load() -> str:
    """The 1-minute load average at each system's start, min-max: the machine is shared, so say so."""
    return f"{min(_LOADS):.1f}-{max(_LOADS):.1f}" if _LOADS else "unknown"


GOALS = (  # issue 11: (system, measure, limit in ms, what)
    ("AbacoExecutor (docker)", 100, 0.5, "Docker, N=100, per call"),
    ("AbacoExecutor (docker)", 1000, 0.1, "Docker, N=1000, per call"),
    ("AbacoExecutor (docker)", "rt", 30.0, "Docker, blocking_call round trip"),
    ("AbacoExecutor (process)", 1000, 0.047, "process runtime, N=1000, per call"),
)


def report(results: dict[str, dict[str, Any]], repeat: int) -> str:
    ms = lambda s: f"{s * 1000:.1f}"  # noqa: E731
    us = lambda s: f"{s * 1000:.3f}"  # noqa: E731
    lines = [
        "# Executor benchmark",
        "",
        f"`bench/bench_executor.py`, {time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs (load average {results_load()} while it ran), Python "
        f"{platform.python_version()}; median of {repeat} runs "
        f"({ROUND_TRIPS} for round trips). Trivial function (`x + 1`), so the time per task is all "
        "overhead: submit, run, gather. Two workers everywhere. Peers with their defaults and with their "
        "best settings for many tiny calls (one chunk per worker, as AbacoExecutor's automatic chunks for "
        "calls it has seen to be short).",
        "",
        "| system | start-up (s) | round trip (ms) | N=100 total (ms) | per task (ms) | N=1000 total (ms) "
        "| per task (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['startup']:.2f} | {ms(r['rt'])} | {ms(r[100])} | {us(r[100] / 100)} | "
            f"{ms(r[1000])} | {us(r[1000] / 1000)} |"
        )
    ours = [k for k in results if k.startswith("AbacoExecutor")]
    peers = [k for k in results if not k.startswith("AbacoExecutor")]
    lines += ["", "Ours ÷ peer, per task and per round trip (below 1: ours is cheaper):", ""]
    lines += [
        "| ours | measure | " + " | ".join(peers) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in peers) + " |",
    ]
    for o in ours:
        for key, label in ((100, "N=100"), (1000, "N=1000"), ("rt", "round trip")):
            cells = " | ".join(f"{results[o][key] / results[p][key]:.2f}" for p in peers)
            lines.append(f"| {o} | {label} | {cells} |")
    lines += ["", "Goals (issue 11):", ""]
    for system, key, limit, what in GOALS:
        r = results.get(system)
        if r is None:
            lines.append(f"- {what} ≤ {limit} ms: not measured (no Docker engine)")
            continue
        value = r[key] * 1000 / (key if isinstance(key, int) else 1)
        lines.append(f"- {what} ≤ {limit} ms: **{value:.3f} ms** {'met' if value <= limit else 'NOT met'}")
    lines += [
        "",
        "Executions (processes or containers) used by the last `map`, automatic chunk size (two "
        "per worker for a function not seen yet, one once its calls are known to be short):",
        "",
    ]
    for o in ours:
        lines.append(
            f"- {o}: N=100 → {results[o]['executions_100']}, N=1000 → {results[o]['executions_1000']}"
        )
    docker = results.get("AbacoExecutor (docker)")
    if docker:
        measured = docker["one_per_call_measured"]
        how = "measured" if measured == 1000 else f"measured over {measured} calls and scaled to 1000"
        lines += [
            "",
            f"Docker, 1000 calls: chunked map in warm containers {docker[1000]:.3f} s vs one execution per "
            f"call {docker['one_per_call_1000']:.1f} s ({how}).",
        ]
    lines += [
        "",
        "Start-up: pool/cluster start until a first call came back; for AbacoExecutor, registering the "
        "executor actor (and building its image from the kernel when not cached), waiting for READY, the "
        "version check and a first call on each worker (on Docker: starting the warm containers).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="run 1000 one-execution-per-call calls")
    parser.add_argument("--no-docker", action="store_true")
    parser.add_argument("--image", help="executor image (default: AbacoExecutor's own default)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "executor.md"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    results: dict[str, dict[str, Any]] = {}
    sample_load()
    results["AbacoExecutor (process)"] = bench_abaco("process", args.repeat, args.full, args.image)
    if not args.no_docker and docker_available():
        sample_load()
        results["AbacoExecutor (docker)"] = bench_abaco("docker", args.repeat, args.full, args.image)
    for bench in (bench_process_pool, bench_ipyparallel, bench_dask):
        sample_load()
        results.update(bench(args.repeat))
    sample_load()
    text = report(results, args.repeat)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
