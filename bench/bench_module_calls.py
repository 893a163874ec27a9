"""A call that needs numpy: round trip and a 100-call map, AbacoExecutor against its peers, in one run.

    .venv/bin/python bench/bench_module_calls.py [--repeat 20]

The trivial-function benchmark (bench_executor.py) measures overhead with modules the runner already
has. A sweep's function needs numpy, and every execution forked from a zygote that lacks it imports it
again (~150 ms here), where a process pool's worker or a dask worker imports it once. Measured: a
``blocking_call`` round trip of ``np.ones(n).sum()`` (median of ``--repeat``) and a 100-call map,
after a warm-up call on each worker, with AbacoExecutor (``max_workers=2``) on ``--runtime docker``
(warm containers: the zygote imports what the calls need) and ``--runtime process`` (the zygote on the
host never imports what a message names: each execution imports numpy), ProcessPoolExecutor(2) with
chunks (its best setting) and dask's LocalCluster (2 single-threaded workers), its map by default and
batched (one task per chunk, its best). Prints a Markdown table with the ratios.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_executor import chunks_of, docker_available, serve, timed  # noqa: E402


def total(n: int) -> float:
    return float(np.ones(n).sum())


def totals(ns: list[int]) -> list[float]:
    return [total(n) for n in ns]


def median_ms(call: Callable[[], Any], repeat: int) -> float:
    return timed(call, repeat) * 1000


def once_ms(call: Callable[[], Any]) -> float:
    return timed(call, 1) * 1000


def bench_abaco(runtime: str, repeat: int) -> dict[str, float]:
    import cloudpickle

    from abaco_nb import AbacoExecutor, Client

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with tempfile.TemporaryDirectory(prefix=f"bench-modules-{runtime}-") as tmp:
        proc, info = serve(runtime, tmp)
        try:
            ex = AbacoExecutor(Client(info["url"], info["token"]), max_workers=2, progress=False)
            cf.wait(ex.map(total, [10] * 4))  # each worker's first execution (and its container)
            out = {"rt": median_ms(lambda: ex.blocking_call(total, 10), repeat)}
            out["map"] = once_ms(lambda: cf.wait(ex.map(total, [10] * 100)))
            ex.delete()
            return out
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def bench_pool(repeat: int) -> dict[str, float]:
    with cf.ProcessPoolExecutor(2) as pool:
        list(pool.map(total, [10] * 4))
        return {
            "rt": median_ms(lambda: pool.submit(total, 10).result(), repeat),
            "map": once_ms(lambda: list(pool.map(total, [10] * 100, chunksize=chunks_of(100)))),
        }


def bench_dask(repeat: int) -> dict[str, dict[str, float]]:
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        client.gather(client.map(total, [10] * 4, pure=False))
        rt = median_ms(lambda: client.submit(total, 10, pure=False).result(), repeat)
        size = chunks_of(100)
        batches = [[10] * size for _ in range(0, 100, size)]  # one task per chunk, as our chunks
        return {
            "dask LocalCluster (2 workers)": {
                "rt": rt,
                "map": once_ms(lambda: client.gather(client.map(total, [10] * 100, pure=False))),
            },
            "dask, batched map": {
                "rt": rt,
                "map": once_ms(lambda: client.gather(client.map(totals, batches, pure=False))),
            },
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rows: dict[str, dict[str, float]] = {}
    if docker_available():
        rows["AbacoExecutor (docker, warm containers)"] = bench_abaco("docker", args.repeat)
    rows["AbacoExecutor (process)"] = bench_abaco("process", args.repeat)
    rows["ProcessPoolExecutor(2)"] = bench_pool(args.repeat)
    rows.update(bench_dask(args.repeat))
    peers = [name for name in rows if not name.startswith("AbacoExecutor")]
    header = "".join(f" ÷ {p} (round trip / map) |" for p in peers)
    print(f"| system | round trip, numpy call (ms) | 100-call map (ms) |{header}")
    print("| --- | ---: | ---: |" + " ---: |" * len(peers))
    for name, row in rows.items():
        ratios = "".join(
            f" {row['rt'] / rows[p]['rt']:.2f} / {row['map'] / rows[p]['map']:.2f} |" for p in peers
        )
        print(f"| {name} | {row['rt']:.1f} | {row['map']:.1f} |{ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
