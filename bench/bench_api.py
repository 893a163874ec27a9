"""API throughput and latency of the embedded service (issue 2's benchmark; not a test).

Measures, against a real ``abaco-nb serve --runtime process`` subprocess on loopback:
- messages accepted per second by ``POST /actors/{id}/messages`` with 20 concurrent client processes, and the
  p50/p99 latency of one POST (each accepted message is committed to SQLite before the answer);
- message-to-complete time of a trivial ``local:`` actor (``true``), median over sequential runs,
  next to a bare ``subprocess.run(["true"])`` of the same command, as a ratio.

Usage: ``.venv/bin/python bench/bench_api.py [--messages 4000] [--clients 20]``; writes
``bench/results/api.md``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.serve import start_serve, wait_ready, wait_status  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def _client(url: str, token: str, count: int, barrier: Any, out: Any) -> None:
    """One client: its own process (so clients do not share a GIL) and its own keep-alive connection."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    mine = []
    barrier.wait()
    for i in range(count):
        t0 = time.perf_counter()
        r = session.post(url, data={"message": f"m{i}"})
        mine.append(time.perf_counter() - t0)
        r.raise_for_status()
    out.put(mine)


def throughput(served, actor_id: str, total: int, clients: int) -> tuple[float, list[float]]:
    """``clients`` concurrent client processes posting ``total`` messages between them."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(clients + 1)
    out = ctx.Queue()
    url = served.api(f"/actors/{actor_id}/messages")
    procs = [
        ctx.Process(target=_client, args=(url, served.token, total // clients, barrier, out))
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    latencies: list[float] = []
    for _ in procs:
        latencies.extend(out.get())
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    return len(latencies) / elapsed, latencies


def message_to_complete(served, runs: int) -> tuple[float, float]:
    r = served.session.post(served.api("/actors"), json={"image": "local:true"})
    aid = r.json()["result"]["id"]
    wait_ready(served, aid)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        eid = served.session.post(served.api(f"/actors/{aid}/messages"), data={"message": "x"}).json()[
            "result"
        ]["execution_id"]
        served.session.get(served.api(f"/actors/{aid}/executions/{eid}?wait=30"))
        times.append(time.perf_counter() - t0)
        wait_status(served, aid, eid)
    bare = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(["true"], check=True)
        bare.append(time.perf_counter() - t0)
    return statistics.median(times), statistics.median(bare)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        served = start_serve(Path(tmp))
        try:
            # a stateful actor whose one worker is held by a first message that sleeps: the others
            # queue and none run, so the figure is the acceptance path alone (validate, commit, answer).
            # (An actor in ERROR refuses messages, so it cannot serve for this.)
            r = served.session.post(
                served.api("/actors"), json={"image": "local:sleep 3600", "stateless": False}
            )
            aid = r.json()["result"]["id"]
            wait_ready(served, aid)
            served.session.post(served.api(f"/actors/{aid}/messages"), data={"message": "hold the worker"})
            rate, lat = throughput(served, aid, args.messages, args.clients)
            done, bare = message_to_complete(served, args.runs)
        finally:
            served.stop()
    lines = [
        "# API benchmark",
        "",
        f"Command: `.venv/bin/python bench/bench_api.py --messages {args.messages} --clients {args.clients}`",
        "",
        "| measure | value |",
        "|---|---|",
        f"| messages accepted per second, {args.clients} concurrent clients | {rate:,.0f} /s |",
        f"| POST /messages latency p50 | {percentile(lat, 50) * 1000:.1f} ms |",
        f"| POST /messages latency p99 | {percentile(lat, 99) * 1000:.1f} ms |",
        f"| message-to-complete, `local:true` actor (median of {args.runs}) | {done * 1000:.1f} ms |",
        f"| bare `subprocess.run(['true'])` (median) | {bare * 1000:.1f} ms |",
        f"| ratio service / bare | {done / bare:.1f}x |",
        "",
        "Abaco's published figure for comparison: about 200 messages/s through one web node (Jetstream, 2020).",
    ]
    text = "\n".join(lines) + "\n"
    out = Path(__file__).resolve().parent / "results" / "api.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
