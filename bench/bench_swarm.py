"""Swarm runtime benchmark (issue 14; not a test).

In one run, side by side on this machine:
- per-execution overhead: message to COMPLETE of ``abaco-nb/test`` with ``SLEEP=0``, one at a time,
  alternating between ``abaco-nb serve --runtime docker`` (the system's engine) and ``--runtime swarm`` (a two-node
  swarm of private daemons, tests/swarm_cluster.py, the job on either node);
- a 200-call executor ``map`` (``abaco-nb/py3-func``, ``max_workers`` 4, chunks of 10): on docker in
  warm containers, and on the swarm in warm tasks spread over the two nodes (how many executions each
  node ran is reported).
Both "nodes" share this machine's cores, so the swarm figures are its overhead, not a speed-up.
Writes ``bench/results/swarm.md``.

Usage: ``.venv/bin/python bench/bench_swarm.py [--runs 10]`` (root; ``abaco-nb images build`` first).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from server_ext.service.images import FUNC_IMAGE, TEST_IMAGE, expected_func_image  # noqa: E402
from tests.serve import Served, start_serve, wait_ready, wait_status  # noqa: E402
from tests.swarm_cluster import missing_requirements, start_cluster, start_swarm_serve  # noqa: E402


def _square(x: int) -> int:
    return x * x


def _actor(served: Served) -> str:
    r = served.session.post(
        served.api("/actors"), json={"image": TEST_IMAGE, "default_environment": {"SLEEP": "0"}}
    )
    return str(wait_ready(served, r.json()["result"]["id"], timeout=180)["id"])


def _one(served: Served, aid: str) -> float:
    t0 = time.perf_counter()
    eid = served.session.post(served.api(f"/actors/{aid}/messages"), data={"message": "x"}).json()["result"]
    wait_status(served, aid, eid["execution_id"], timeout=120)
    return time.perf_counter() - t0


def per_execution(docker: Served, swarm: Served, runs: int) -> tuple[list[float], list[float]]:
    """Alternating one docker and one swarm execution, so load from elsewhere hits both alike."""
    actors = _actor(docker), _actor(swarm)
    _one(docker, actors[0]), _one(swarm, actors[1])  # warm-up: image caches, agent connections
    d, s = [], []
    for _ in range(runs):
        d.append(_one(docker, actors[0]))
        s.append(_one(swarm, actors[1]))
    return d, s


def executor_map(served: Served, calls: int) -> tuple[float, Counter[str]]:
    import cloudpickle

    from abaco_nb.client import Client
    from abaco_nb.executor import AbacoExecutor

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ex = AbacoExecutor(
        Client(served.url, served.token), image=expected_func_image(), max_workers=4, progress=False
    )
    try:
        ex.map(_square, [1], chunksize=1)[0].result(timeout=180)  # warm-up
        t0 = time.perf_counter()
        futures = ex.map(_square, range(calls), chunksize=10)
        assert [f.result(timeout=600) for f in futures] == [[x * x] for x in range(calls)]
        elapsed = time.perf_counter() - t0
        listing = served.session.get(served.api(f"/actors/{ex.actor_id}/executions")).json()["result"]
        nodes: Counter[str] = Counter()
        for e in listing["executions"]:
            one = served.session.get(served.api(f"/actors/{ex.actor_id}/executions/{e['id']}")).json()[
                "result"
            ]
            nodes[one.get("node") or "this machine"] += 1
        return elapsed, nodes
    finally:
        ex.delete()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    reason = missing_requirements()
    if reason:
        sys.exit(f"cannot run private daemons here: {reason}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-swarm-"))
    docker = start_serve(tmp / "docker", runtime="docker", token="bench")
    cluster = start_cluster([f"{TEST_IMAGE}:latest", f"{FUNC_IMAGE}:latest", expected_func_image()])
    load_before = os.getloadavg()[0]
    try:
        swarm = start_swarm_serve(cluster, cluster.base / "svc")
        docker_exec, swarm_exec = per_execution(docker, swarm, args.runs)
        docker_map, _ = executor_map(docker, args.calls)
        swarm_map, nodes = executor_map(swarm, args.calls)
        swarm.stop()
    finally:
        docker.stop()
        cluster.stop()
    d, s = statistics.median(docker_exec), statistics.median(swarm_exec)
    rows = [
        (
            f"message to COMPLETE, `abaco-nb/test`, median of {args.runs}",
            f"{d * 1000:.0f} ms",
            f"{s * 1000:.0f} ms",
            f"{s / d:.1f}",
        ),
        (
            f"executor map, {args.calls} calls (chunks of 10, 4 workers; warm)",
            f"{docker_map:.1f} s",
            f"{swarm_map:.1f} s",
            f"{swarm_map / docker_map:.1f}",
        ),
    ]
    lines = [
        f"# Swarm runtime benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        "Same machine, one run: `--runtime docker` on the system engine against `--runtime swarm` on two private",
        "daemons in a swarm (both on this machine's cores). `.venv/bin/python bench/bench_swarm.py`",
        "",
        "| measure | docker | swarm | swarm / docker |",
        "| --- | --- | --- | --- |",
        *[f"| {a} | {b} | {c} | {r} |" for a, b, c, r in rows],
        "",
        f"Executions of the swarm map per node: {dict(sorted(nodes.items()))}. Executor maps run in warm",
        "containers on docker and in warm tasks (one long-lived job per worker) on swarm.",
        f"Load average (1 min) before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
        f"Per-execution times (s): docker {[round(x, 3) for x in docker_exec]}, swarm {[round(x, 3) for x in swarm_exec]}.",
    ]
    out = Path(__file__).parent / "results" / "swarm.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
