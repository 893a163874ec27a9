"""Kernel image build times (issue 11 goals: numpy + scipy + pandas under 15 s cold, under 1 s cached).

    .venv/bin/python bench/bench_kernel_image.py [--packages numpy scipy pandas] [--add PyYAML]

Times, on the local Docker engine: a cold build (``--force``: the interpreter base and the package
layer made again), the cached answer as a new kernel sees it (``abaco-nb images build --from-kernel``
in a fresh process: start-up, reading the installed distributions, one ``docker inspect``), the same
in-process, and one package added to the set (one new layer on the cached image). Then the seed's
examples on ``abaco-nb serve --runtime docker`` with ``AbacoExecutor()``: start-up with the image
cached, ``submit(g, 100, 4096)`` and ``map(g, [[100, 1024]] * 8)``. Writes
``bench/results/kernel-image.md`` and prints it.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server_ext.service.kernel_image import build_kernel_image  # noqa: E402


def g(std_dev, size):
    import numpy as np

    A = np.random.normal(0, std_dev, (size, size))
    B = np.random.normal(0, std_dev, (size, size))
    C = np.dot(A, B)
    return C[0]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packages", nargs="+", default=["numpy", "scipy", "pandas"])
    parser.add_argument("--add", default="PyYAML", help="a small installed distribution to add")
    parser.add_argument("--no-seed", action="store_true", help="skip the executor part")
    args = parser.parse_args()
    client = docker.from_env(timeout=300)
    rows: list[tuple[str, str]] = []

    cold = build_kernel_image(client, args.packages, log=lambda line: None, force=True)
    rows.append(
        (
            f"cold build of {' + '.join(args.packages)} ({len(cold.packages)} distributions, "
            f"{cold.bytes_added / 1e6:.0f} MB)",
            f"{cold.seconds:.1f} s",
        )
    )
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "server_ext", "images", "build", "--from-kernel", "--json", "--packages"]
    subprocess.run([*cmd, *args.packages], check=True, capture_output=True, cwd=ROOT)
    rows.append(("cached, as a new kernel asks (fresh process)", f"{time.monotonic() - t0:.2f} s"))
    cached = build_kernel_image(client, args.packages, log=lambda line: None)
    rows.append(("cached, in-process (read distributions + one inspect)", f"{cached.seconds:.2f} s"))
    added = build_kernel_image(client, [*args.packages, args.add], log=lambda line: None)
    what = f"{added.bytes_added / 1e6:.1f} MB layer on the cached image" if added.built else "was cached"
    rows.append((f"{args.add} added ({what})", f"{added.seconds:.2f} s"))

    if not args.no_seed:
        from abaco_nb.client import Client
        from abaco_nb.executor import AbacoExecutor
        from tests.serve import start_serve

        with tempfile.TemporaryDirectory() as tmp:
            served = start_serve(Path(tmp), runtime="docker")
            try:
                t0 = time.monotonic()
                ex = AbacoExecutor(Client(served.url, served.token), packages=args.packages, progress=False)
                rows.append(
                    ("AbacoExecutor(packages=...) start-up, image cached", f"{time.monotonic() - t0:.2f} s")
                )
                t0 = time.monotonic()
                ex.submit(g, 100, 4096).result()
                rows.append(("submit(g, 100, 4096).result()", f"{time.monotonic() - t0:.2f} s"))
                t0 = time.monotonic()
                [r.result() for r in ex.map(g, [[100, 1024] for i in range(8)])]
                rows.append(("map(g, [[100, 1024]] * 8), all results", f"{time.monotonic() - t0:.2f} s"))
                ex.delete()
            finally:
                served.stop()

    load = os.getloadavg()[0]
    text = "\n".join(
        [
            "# Kernel image build times",
            "",
            f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average {load:.1f} at the end.",
            "",
            "| what | time |",
            "| --- | --- |",
            *(f"| {a} | {b} |" for a, b in rows),
            "",
        ]
    )
    out = ROOT / "bench" / "results" / "kernel-image.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
