"""Executor overhead per task: AbacoExecutor (process and docker runtimes) against its peers, in one run.

    .venv/bin/python bench/bench_executor.py [--repeat 3] [--full] [--no-docker]

Maps a trivial function (``x + 1``: all the time is overhead) over N=100 and N=1000 with
``concurrent.futures.ProcessPoolExecutor(2)``, ipyparallel with 2 engines, dask's LocalCluster with 2
single-threaded workers, and AbacoExecutor with ``max_workers=2`` on ``abaco-nb serve --runtime process``
and ``--runtime docker``. Each figure is the median of ``--repeat`` runs of submit + gather; start-up
(cluster start, executor actor registration) is timed apart. On docker it also times one container per
call (``chunksize=1``) over 100 calls and scales that to 1000 (``--full`` runs the 1000 for real, several
minutes). Writes ``bench/results/executor.md`` and prints it.
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
# Peers
# ---------------------------------------------------------------------------------------------------------


def bench_process_pool(repeat: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    pool = cf.ProcessPoolExecutor(2)
    list(pool.map(inc, range(2)))  # the workers exist once a first call came back
    startup = time.perf_counter() - t0
    out = {"startup": startup}
    for n in SIZES:
        out[n] = timed(lambda n=n: list(pool.map(inc, range(n))), repeat)
    pool.shutdown()
    return out


def bench_ipyparallel(repeat: int) -> dict[str, Any]:
    import ipyparallel as ipp

    t0 = time.perf_counter()
    cluster = ipp.Cluster(n=2, log_level=40)
    rc = cluster.start_and_connect_sync()
    rc.wait_for_engines(2, timeout=120)
    view = rc.load_balanced_view()
    view.map_sync(inc, range(2))
    out: dict[str, Any] = {"startup": time.perf_counter() - t0}
    for n in SIZES:
        out[n] = timed(lambda n=n: view.map_sync(inc, range(n)), repeat)
    rc.close()
    cluster.stop_cluster_sync()
    return out


def bench_dask(repeat: int) -> dict[str, Any]:
    from dask.distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    client.gather(client.map(inc, range(2), pure=False))
    out: dict[str, Any] = {"startup": time.perf_counter() - t0}
    for n in SIZES:
        out[n] = timed(lambda n=n: client.gather(client.map(inc, range(n), pure=False)), repeat)
    client.close()
    cluster.close()
    return out


# ---------------------------------------------------------------------------------------------------------
# Ours
# ---------------------------------------------------------------------------------------------------------


def serve(runtime: str, tmp: str) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    conn = Path(tmp) / "conn.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "server_ext", "serve", "--runtime", runtime, "--db", f"{tmp}/abaco.db",
         "--port", "0", "--token", "bench", "--connection-file", str(conn)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not conn.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"abaco-nb serve --runtime {runtime} did not start")
        time.sleep(0.05)
    time.sleep(0.1)
    return proc, json.loads(conn.read_text())


def bench_abaco(runtime: str, repeat: int, full: bool) -> dict[str, Any]:
    from abaco_nb import AbacoExecutor, Client

    with tempfile.TemporaryDirectory(prefix=f"bench-{runtime}-") as tmp:
        proc, info = serve(runtime, tmp)
        try:
            client = Client(info["url"], info["token"])
            t0 = time.perf_counter()
            ex = AbacoExecutor(client, max_workers=2, progress=False)
            ex.blocking_call(inc, 1)  # the first execution (image, interpreter caches) belongs to start-up
            out: dict[str, Any] = {"startup": time.perf_counter() - t0, "register": ex.startup_seconds}

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


def report(results: dict[str, dict[str, Any]], repeat: int) -> str:
    ms = lambda s: f"{s * 1000:.1f}"  # noqa: E731
    lines = [
        "# Executor benchmark",
        "",
        f"`bench/bench_executor.py`, {time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; median of {repeat} runs. "
        "Trivial function (`x + 1`), so the time per task is all overhead: submit, run, gather. "
        "Two workers everywhere.",
        "",
        "| system | start-up (s) | N=100 total (ms) | per task (ms) | N=1000 total (ms) | per task (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['startup']:.2f} | {ms(r[100])} | {ms(r[100] / 100)} | {ms(r[1000])} | "
            f"{ms(r[1000] / 1000)} |"
        )
    ours = [k for k in results if k.startswith("AbacoExecutor")]
    peers = [k for k in results if not k.startswith("AbacoExecutor")]
    lines += ["", "Per-task overhead, ours ÷ peer (below 1: ours is cheaper):", ""]
    lines += [
        "| ours | N | " + " | ".join(peers) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in peers) + " |",
    ]
    for o in ours:
        for n in SIZES:
            cells = " | ".join(f"{results[o][n] / results[p][n]:.2f}" for p in peers)
            lines.append(f"| {o} | {n} | {cells} |")
    lines += ["", "Executions (processes or containers) used by `map`, automatic chunk size:", ""]
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
            f"Docker, 1000 calls: chunked map {docker[1000]:.2f} s vs one container per call "
            f"{docker['one_per_call_1000']:.1f} s ({how}): **{docker['one_per_call_1000'] / docker[1000]:.0f}× "
            "faster**.",
        ]
    lines += [
        "",
        "Start-up: pool/cluster start until a first call came back; for AbacoExecutor, registering the "
        "executor actor, waiting for READY, the version check and a first call.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="run 1000 one-container-per-call executions")
    parser.add_argument("--no-docker", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "executor.md"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    results: dict[str, dict[str, Any]] = {}
    results["AbacoExecutor (process)"] = bench_abaco("process", args.repeat, args.full)
    if not args.no_docker and docker_available():
        results["AbacoExecutor (docker)"] = bench_abaco("docker", args.repeat, args.full)
    results["ProcessPoolExecutor(2)"] = bench_process_pool(args.repeat)
    results["ipyparallel (2 engines)"] = bench_ipyparallel(args.repeat)
    results["dask LocalCluster (2 workers)"] = bench_dask(args.repeat)
    text = report(results, args.repeat)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
