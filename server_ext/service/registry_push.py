"""``abaco-nb images push --registry HOST:PORT``: our images into the registry the swarm nodes pull from.

The images are built on one machine (``abaco-nb images build``) and exist on no public registry; in a
swarm every node must pull them, so they are tagged ``HOST:PORT/abaco-nb/<name>:<tag>`` and pushed, every
tag of each (the executor asks for ``abaco-nb/py3-func:<python>-<cloudpickle>``). The swarm runtime,
started with ``--swarm-registry HOST:PORT``, names them that way. Registries on 127.0.0.0/8 are
plain HTTP to Docker without any setting; others need TLS or the engine's ``insecure-registries``.
"""

from __future__ import annotations

from typing import Any

OUR_REPOSITORIES = ("abaco-nb/test", "abaco-nb/py3-func")


def push_images(
    registry: str,
    docker_client: Any = None,
    repositories: tuple[str, ...] = OUR_REPOSITORIES,
    extra: tuple[str, ...] = (),
) -> dict[str, str]:
    """Tag and push every local tag of ``repositories`` and the ``extra`` images (``name:tag``, e.g. an
    ``abaco-nb/kernel`` image); returns ``{local: remote}``. Raises with the registry's reason when a
    push fails, and when an image is missing (build it first)."""
    import docker

    client = docker_client or docker.from_env(timeout=600)
    registry = registry.rstrip("/")
    if not registry or "/" in registry:
        raise SystemExit(f"--registry wants HOST:PORT, not {registry!r}")
    wanted: list[str] = []
    for repository in repositories:
        tags = [
            t
            for image in client.images.list(name=repository)
            for t in image.tags
            if t.startswith(repository + ":")
        ]
        if not tags:
            raise SystemExit(
                f"image {repository} is not on this Docker engine: run `abaco-nb images build` first"
            )
        wanted += sorted(set(tags))
    for image in extra:
        if ":" not in image.rsplit("/", 1)[-1]:
            raise SystemExit(f"name {image} with its tag (name:tag)")
        wanted.append(image)
    pushed: dict[str, str] = {}
    for local in wanted:
        repository, tag = local.rsplit(":", 1)
        remote_repository = f"{registry}/{repository}"
        try:
            client.api.tag(local, remote_repository, tag=tag)
        except docker.errors.ImageNotFound:
            raise SystemExit(f"image {local} is not on this Docker engine") from None
        for line in client.api.push(remote_repository, tag=tag, stream=True, decode=True):
            if line.get("error"):
                raise SystemExit(f"pushing {local} to {registry} failed: {line['error']}")
        pushed[local] = f"{remote_repository}:{tag}"
    return pushed
