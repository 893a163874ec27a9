"""Docker runtime benchmark (issue 3; not a test).

In one run, on the same engine and image (``abaco-nb/test`` with ``SLEEP=0``):
- message-to-container-start: from the POST of a message to the container's ``StartedAt``, against a
  bare ``docker run -d`` (from the command to ``StartedAt``);
- message-to-complete: from the POST to the execution being COMPLETE (long-polled), against a bare
  ``docker run --rm`` of the same image (the command's wall time);
- executions per second with 1, 2 and 4 workers (a stateless actor, ``max_workers`` = N, 4N messages).
Reports medians and ratios; writes ``bench/results/docker.md``.

Usage: ``.venv/bin/python bench/bench_docker.py [--runs 15]`` (needs ``abaco-nb images build``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.serve import start_serve, wait_ready  # noqa: E402

IMAGE = "abaco-nb/test"


def parse_docker_time(text: str) -> float:
    """Docker's RFC 3339 with nanoseconds -> epoch seconds."""
    head, _, frac = text.rstrip("Z").partition(".")
    base = dt.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc).timestamp()
    return base + float("0." + (frac[:6] or "0"))


def bare_start(runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.time()
        cid = subprocess.run(
            ["docker", "run", "-d", "--network", "none", "-e", "SLEEP=0", IMAGE],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        started = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.StartedAt}}", cid],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        out.append(parse_docker_time(started) - t0)
        subprocess.run(["docker", "rm", "-f", cid], check=True, capture_output=True)
    return out


def bare_complete(runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(
            ["docker", "run", "--rm", "--network", "none", "-e", "SLEEP=0", IMAGE],
            check=True,
            capture_output=True,
        )
        out.append(time.perf_counter() - t0)
    return out


def service_runs(served, runs: int) -> tuple[list[float], list[float]]:
    r = served.session.post(
        served.api("/actors"), json={"image": IMAGE, "default_environment": {"SLEEP": "0"}}
    )
    aid = r.json()["result"]["id"]
    wait_ready(served, aid)
    to_start, to_complete = [], []
    for _ in range(runs):
        t0 = time.time()
        p0 = time.perf_counter()
        eid = served.session.post(served.api(f"/actors/{aid}/messages"), data={"message": "x"}).json()[
            "result"
        ]["execution_id"]
        result = served.session.get(served.api(f"/actors/{aid}/executions/{eid}?wait=60")).json()["result"]
        to_complete.append(time.perf_counter() - p0)
        to_start.append(parse_docker_time(result["final_state"]["StartedAt"]) - t0)
    served.session.delete(served.api(f"/actors/{aid}"))
    return to_start, to_complete


def throughput(served, workers: int) -> float:
    r = served.session.post(
        served.api("/actors"),
        json={"image": IMAGE, "max_workers": workers, "default_environment": {"SLEEP": "0"}},
    )
    aid = r.json()["result"]["id"]
    wait_ready(served, aid)
    n = 4 * workers
    t0 = time.perf_counter()
    eids = [
        served.session.post(served.api(f"/actors/{aid}/messages"), data={"message": "x"}).json()["result"][
            "execution_id"
        ]
        for _ in range(n)
    ]
    for eid in eids:
        served.session.get(served.api(f"/actors/{aid}/executions/{eid}?wait=120"))
    elapsed = time.perf_counter() - t0
    served.session.delete(served.api(f"/actors/{aid}"))
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        served = start_serve(Path(tmp), runtime="docker")
        try:
            service_runs(served, 2)  # warm-up
            bare_complete(2)
            s_start, s_done = service_runs(served, args.runs)
            b_start, b_done = bare_start(args.runs), bare_complete(args.runs)
            rates = {n: throughput(served, n) for n in (1, 2, 4)}
        finally:
            served.stop()
    med = statistics.median
    lines = [
        "# Docker runtime benchmark",
        "",
        f"Command: `.venv/bin/python bench/bench_docker.py --runs {args.runs}`; image `{IMAGE}` with `SLEEP=0`.",
        "",
        "| measure | abaco-nb | bare docker | ratio |",
        "|---|---|---|---|",
        f"| message-to-container-start (median) | {med(s_start) * 1000:.0f} ms | {med(b_start) * 1000:.0f} ms "
        f"(`docker run -d` to StartedAt) | {med(s_start) / med(b_start):.2f} |",
        f"| message-to-complete (median) | {med(s_done) * 1000:.0f} ms | {med(b_done) * 1000:.0f} ms "
        f"(`docker run --rm`) | {med(s_done) / med(b_done):.2f} |",
        "",
        "| workers | executions per second |",
        "|---|---|",
        *[f"| {n} | {rate:.2f} |" for n, rate in rates.items()],
    ]
    text = "\n".join(lines) + "\n"
    out = Path(__file__).resolve().parent / "results" / "docker.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
