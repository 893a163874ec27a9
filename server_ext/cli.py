"""The ``abaco-nb`` command: ``serve``, ``images build``, ``demo``."""

from __future__ import annotations

import argparse
import logging
import sys

from .service.settings import ServiceConfig


def _serve(args: argparse.Namespace) -> int:
    from .standalone import serve

    config = ServiceConfig(runtime=args.runtime)
    if args.db:
        config.db_path = args.db
    if args.max_run_time is not None:
        config.max_run_time = args.max_run_time
    if args.max_body_bytes is not None:
        config.max_body_bytes = args.max_body_bytes
    if args.mem_limit is not None:
        config.default_mem_limit = None if args.mem_limit == "-1" else args.mem_limit
    if args.cpus is not None:
        config.default_max_cpus = None if args.cpus <= 0 else int(args.cpus * 1_000_000_000)
    if args.max_workers_per_actor is not None:
        config.max_workers_per_actor = args.max_workers_per_actor
    config.container_network = args.container_network
    config.allow_privileged = args.allow_privileged
    if args.cron_interval is not None:
        config.cron_interval = args.cron_interval
    if args.warm_idle_seconds is not None:
        config.warm_idle_seconds = args.warm_idle_seconds
    serve(config, args.host, args.port, args.token, args.connection_file)
    return 0


def _images(args: argparse.Namespace) -> int:
    from .service.images import build_images

    built = build_images(force=args.force)
    for name, tag in built.items():
        print(f"{name}: {tag}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from abaco_nb.demo import main as demo_main

    return demo_main(runtime=args.runtime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="abaco-nb", description="Abaco actors and executors for Jupyter.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the Abaco-compatible service without Jupyter")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    serve.add_argument("--db", help="SQLite database path (default: under the Jupyter data dir)")
    serve.add_argument("--token", help="the API token (default: generated and printed)")
    serve.add_argument("--runtime", choices=["auto", "docker", "process"], default="auto")
    serve.add_argument("--max-run-time", type=int, help="seconds an execution may run (default 43200)")
    serve.add_argument("--max-body-bytes", type=int, help="largest request body accepted (default 256 MiB)")
    serve.add_argument(
        "--mem-limit", help="default memory limit of an execution, e.g. 512m (default 2g; -1: none)"
    )
    serve.add_argument("--cpus", type=float, help="default CPUs of an execution (default 1; 0: no limit)")
    serve.add_argument(
        "--max-workers-per-actor", type=int, help="workers a stateless actor may have (default 6)"
    )
    serve.add_argument(
        "--container-network", action="store_true", help="give actor containers a network (default: none)"
    )
    serve.add_argument(
        "--allow-privileged",
        action="store_true",
        help="accept privileged actors from the service token: they get the Docker socket, root on the host",
    )
    serve.add_argument("--cron-interval", type=float, help="seconds between cron passes (default 50)")
    serve.add_argument(
        "--warm-idle-seconds", type=float, help="idle warm containers (docker) stop after this (default 300)"
    )
    serve.add_argument("--connection-file", help="where to write url and token (mode 0600)")
    serve.set_defaults(func=_serve)
    images = sub.add_parser("images", help="build the executor and test images locally")
    images_sub = images.add_subparsers(dest="images_command", required=True)
    build = images_sub.add_parser("build", help="build abaco-nb/test and abaco-nb/py3-func (cached)")
    build.add_argument("--force", action="store_true", help="rebuild even when cached")
    build.set_defaults(func=_images)
    demo = sub.add_parser("demo", help="register, send, logs and an executor map on an embedded service")
    demo.add_argument("--runtime", choices=["auto", "docker", "process"], default="auto")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
