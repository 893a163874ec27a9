"""Fixtures shared by the whole suite.

Docker: tests marked ``docker`` use the real engine. Where no engine answers they skip with the reason,
except in CI (``CI`` set), where a missing engine fails the run: skipped tests would hide breakage.
Images are built once per run by ``abaco-nb images build`` (cached by tag, so a re-run takes seconds).
"""

from __future__ import annotations

import os

import pytest


def _docker_or_reason() -> tuple[object | None, str]:
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        return client, ""
    except Exception as exc:  # any failure means "no engine answers"
        return None, f"no Docker engine answers: {exc}"


@pytest.fixture(scope="session")
def docker_client():
    """A live Docker SDK client, or a skip (a failure in CI)."""
    client, reason = _docker_or_reason()
    if client is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs Docker: {reason}")
        pytest.skip(reason)
    return client


@pytest.fixture(scope="session")
def built_images(docker_client):
    """Build (or find cached) abaco-nb/test and abaco-nb/py3-func once per test run."""
    from server_ext.service.images import build_images

    return build_images(docker_client=docker_client)


@pytest.fixture(scope="session")
def kernel_image(docker_client) -> dict:
    """What ``AbacoExecutor()`` uses by default here: ``abaco-nb/kernel`` made from this test
    environment (every installed distribution), built once per run (cached by its package set, so a
    re-run only inspects it). Built through the kernel-side path, so later executors find it memoised."""
    from abaco_nb import kernel_image as ki

    built = ki.ensure()
    assert built is not None, "a Docker engine answers, so a kernel image must be built"
    return built
