"""The ``abaco-nb`` command: ``serve``, ``images build``, ``demo``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .service.settings import ServiceConfig, from_values, settings

ENV_SERVE_TOKEN = "ABACO_NB_SERVE_TOKEN"


def _token(args: argparse.Namespace) -> str | None:
    """The service token, from ``ABACO_NB_SERVE_TOKEN`` or ``--token-file`` (a command line is readable by
    every process on the host, in ``/proc/PID/cmdline``), or ``--token`` with a warning."""
    if args.token:
        print(
            f"warning: --token puts the token on the command line, where every process on this host can read "
            f"it (/proc/PID/cmdline); use {ENV_SERVE_TOKEN} or --token-file",
            file=sys.stderr,
            flush=True,
        )
        return str(args.token)
    if args.token_file:
        with open(args.token_file) as f:
            return f.read().strip() or None
    return os.environ.pop(ENV_SERVE_TOKEN, None) or None


def _loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: the only addresses served without --listen-beyond-loopback."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(args: argparse.Namespace) -> int:
    from .standalone import serve

    if not _loopback(args.host):
        if not args.listen_beyond_loopback:
            print(
                f"abaco-nb serve: --host {args.host} listens beyond loopback; add --listen-beyond-loopback if "
                "you mean it (the API then travels without TLS, and anyone who reaches the port and learns "
                "the token, or a nonce, can use it)",
                file=sys.stderr,
            )
            return 2
        print(
            f"warning: listening on {args.host}, beyond loopback, without TLS: the token and every request "
            "travel in clear; put a TLS proxy in front and keep the token secret",
            file=sys.stderr,
            flush=True,
        )
    given = {s.name: getattr(args, s.name) for s in settings() if hasattr(args, s.name)}
    config = from_values(given)
    config.multi_user = args.users or args.hub
    config.privileged_users = [u.strip() for u in (args.privileged_users or "").split(",") if u.strip()]
    serve(config, args.host, args.port, _token(args), args.connection_file, hub=args.hub)
    return 0


def _users(args: argparse.Namespace) -> int:
    """``abaco-nb users add|list|remove``: the admin command of the standalone multi-user mode. It
    writes the service's database directly (a running service sees the change on the next request)."""
    from .service.errors import AbacoError
    from .service.store import Store
    from .service.users_ops import Users

    config = ServiceConfig(multi_user=True)
    if args.db:
        config.db_path = args.db
    os.makedirs(os.path.dirname(os.path.abspath(config.db_path)), exist_ok=True)
    store = Store(config.db_path)
    users = Users(store, config)
    try:
        if args.users_command == "add":
            token = users.add(args.name, admin=args.admin)
            print(f"user {args.name}{' (admin)' if args.admin else ''} added; token (shown once): {token}")
        elif args.users_command == "remove":
            users.remove(args.name)
            print(f"user {args.name} removed")
        else:
            for user in users.list():
                print(f"{user.name}\t{'admin' if user.admin else 'user'}\t{user.source}")
    except AbacoError as exc:
        print(f"abaco-nb users: {exc.message}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


def _setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting (``service.settings``); a flag not given leaves the setting's default."""
    for s in settings():
        text = s.flag_help or s.help
        if s.kind is not bool and not s.computed and "default" not in text.lower():
            text = f"{text} (default: {s.default})"
        if s.kind is bool:
            action = "store_true" if not s.default else argparse.BooleanOptionalAction
            parser.add_argument(s.flag, dest=s.name, action=action, default=argparse.SUPPRESS, help=text)
        else:
            parser.add_argument(
                s.flag,
                dest=s.name,
                type=s.parse,
                choices=s.choices or None,
                default=argparse.SUPPRESS,
                metavar=None if s.choices else s.flag[2:].upper().replace("-", "_"),
                help=text,
            )


def _images(args: argparse.Namespace) -> int:
    if args.from_kernel or args.packages:
        return _kernel_image(args)
    from .service.images import build_images

    built = build_images(force=args.force)
    for name, tag in built.items():
        print(f"{name}: {tag}")
    return 0


def _push(args: argparse.Namespace) -> int:
    from .service.registry_push import push_images

    for local, remote in push_images(args.registry).items():
        print(f"{local} -> {remote}")
    return 0


def _kernel_image(args: argparse.Namespace) -> int:
    """``images build --from-kernel``: this interpreter's environment as an executor image. With
    ``--json`` progress goes to stderr and stdout is one JSON line (what ``AbacoExecutor`` reads)."""
    import json

    from .service.images import ImageBuildError
    from .service.kernel_image import build_kernel_image

    def log(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    try:
        image = build_kernel_image(packages=args.packages or None, log=log, force=args.force)
    except ImageBuildError as exc:
        if args.json:
            print(json.dumps({"error": str(exc)}))
        else:
            print(f"abaco-nb images build: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(image.as_dict()))
    else:
        state = f"built in {image.seconds:.1f} s" if image.built else f"up to date ({image.seconds:.2f} s)"
        print(f"{image.ref}: {state}, {len(image.packages)} distributions, Python {image.python}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    from .service.kernel_image import prune

    removed = prune(older_than_hours=args.older_than)
    print(f"{len(removed)} kernel image(s) removed")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from abaco_nb.demo import main as demo_main

    return demo_main(runtime=args.runtime)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="abaco-nb", description="Abaco actors and executors for Jupyter.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the Abaco-compatible service without Jupyter")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument(
        "--listen-beyond-loopback",
        action="store_true",
        help="allow a --host that is not loopback (no TLS: the token travels in clear)",
    )
    serve.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    serve.add_argument(
        "--token",
        help=f"the API token (visible to every process on the host: prefer {ENV_SERVE_TOKEN} or --token-file; "
        "default: generated and printed)",
    )
    serve.add_argument("--token-file", help="read the API token from this file")
    _setting_flags(serve)
    serve.add_argument("--connection-file", help="where to write url and token (mode 0600)")
    serve.add_argument(
        "--users", action="store_true", help="multi-user: the users of `abaco-nb users`, Abaco's permissions"
    )
    serve.add_argument(
        "--hub", action="store_true", help="run as a JupyterHub service: Hub users, Abaco's permissions"
    )
    serve.add_argument(
        "--privileged-users", help="comma-separated users (besides admins) who may register privileged actors"
    )
    serve.set_defaults(func=_serve)
    users = sub.add_parser("users", help="users of the multi-user mode (`abaco-nb serve --users`)")
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", help="the service's SQLite database (default: under the Jupyter data dir)")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser(
        "add", parents=[db], help="create a user and print their token (stored hashed)"
    )
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="an Abaco admin: passes every permission check")
    users_sub.add_parser("list", parents=[db], help="list users (never their tokens)")
    remove = users_sub.add_parser("remove", parents=[db], help="remove a user and their token")
    remove.add_argument("name")
    users.set_defaults(func=_users)
    images = sub.add_parser("images", help="build the executor and test images locally")
    images_sub = images.add_subparsers(dest="images_command", required=True)
    build = images_sub.add_parser("build", help="build abaco-nb/test and abaco-nb/py3-func (cached)")
    build.add_argument("--force", action="store_true", help="rebuild even when cached")
    build.add_argument(
        "--from-kernel",
        action="store_true",
        help="build abaco-nb/kernel from this Python's installed distributions (what AbacoExecutor() uses)",
    )
    build.add_argument(
        "--packages", nargs="+", metavar="PKG", help="with --from-kernel: only these and their dependencies"
    )
    build.add_argument("--json", action="store_true", help="with --from-kernel: one JSON line on stdout")
    build.set_defaults(func=_images)
    push = images_sub.add_parser(
        "push", help="push the abaco-nb images to the registry swarm nodes pull from"
    )
    push.add_argument("--registry", required=True, help="HOST:PORT of the registry")
    push.set_defaults(func=_push)
    prune_p = images_sub.add_parser("prune", help="remove kernel images (abaco-nb/kernel*) not used lately")
    prune_p.add_argument(
        "--older-than", type=float, default=168.0, metavar="HOURS", help="created before this (default 168)"
    )
    prune_p.set_defaults(func=_prune)
    demo = sub.add_parser("demo", help="register, send, logs and an executor map on an embedded service")
    demo.add_argument("--runtime", choices=["auto", "docker", "process"], default="auto")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
