"""AbacoExecutor on the Docker runtime with the images ``abaco-nb images build`` makes: the seed's
examples (numpy in an image built FROM abaco-nb/py3-func), chunked map, cancel of a running container,
a version-mismatched image, big results, and no container left behind."""

from __future__ import annotations

import concurrent.futures as cf
import io
import os
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from test_executor import LabError, f, fails

from abaco_nb.client import AbacoAPIError, Client
from abaco_nb.executor import AbacoExecutor, VersionMismatchError
from tests.serve import Served, start_serve

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.docker
NUMPY_IMAGE = "abaco-nb-test/py3-numpy"
OLD_IMAGE = "abaco-nb-test/py3-func-mismatch"


@pytest.fixture(scope="module")
def dserved(built_images: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("executor-docker")
    served = start_serve(tmp, "docker")
    yield served
    served.stop()


@pytest.fixture
def client(dserved: Served) -> Client:
    return Client(dserved.url, dserved.token)


def _build(docker_client, tag: str, dockerfile: str, files: dict[str, Path] | None = None) -> str:
    """A small image FROM the executor image; Docker's layer cache makes a re-run take a second."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for name, path in (files or {}).items():
            tar.add(str(path), arcname=name)
    buf.seek(0)
    docker_client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True, pull=False)
    return tag


@pytest.fixture(scope="module")
def numpy_image(docker_client, built_images: dict) -> str:
    """docs/images.md's recipe: the kernel's own numpy copied FROM abaco-nb/py3-func (no registry)."""
    site = Path(np.__file__).resolve().parents[1]
    files = {"site/numpy": site / "numpy"}
    if (site / "numpy.libs").exists():
        files["site/numpy.libs"] = site / "numpy.libs"
    dockerfile = (
        f"FROM {built_images['abaco-nb/py3-func']}\n"
        "COPY site/ /opt/site-packages/\n"
        "ENV PYTHONPATH=/opt/abaco-nb:/opt/site-packages\n"
    )
    return _build(docker_client, NUMPY_IMAGE, dockerfile, files)


def _containers(docker_client, actor_id: str) -> list:
    return [
        c
        for c in docker_client.containers.list(all=True)
        if actor_id in " ".join(f"{k}={v}" for k, v in (c.labels or {}).items())
    ]


def test_seed_examples_on_docker(client: Client, numpy_image: str, docker_client) -> None:
    ex = AbacoExecutor(client, image=numpy_image)
    assert ex.blocking_call(f, 3) == [14]
    arsp = ex.submit(f, 5)
    assert arsp.result() == [20] and arsp.done() and arsp.execution_id

    def g(std_dev, size):
        A = np.random.normal(0, std_dev, (size, size))
        B = np.random.normal(0, std_dev, (size, size))
        C = np.dot(A, B)
        return C[0]

    arsp = ex.submit(g, 100, 512)
    (row,) = arsp.result()
    assert row.shape == (512,)
    arsp = ex.map(g, [[100, 1024] for i in range(8)])
    for a in arsp:
        try:
            assert a.result()[0].shape == (1024,)
        except Exception:
            print(f"error for execution: {a.execution_id}")
            raise
    actor_id = ex.actor_id
    ex.delete()
    assert not _containers(docker_client, actor_id)


def numpy_in_the_zygote() -> bool:
    """Whether the warm container's PID 1 (the zygote these calls fork from) has numpy loaded."""
    np.zeros(1)  # this call needs numpy, as a sweep's would
    with open("/proc/1/maps") as maps:
        return "_multiarray_umath" in maps.read()


def test_the_warm_zygote_imports_what_the_calls_need(client: Client, numpy_image: str) -> None:
    """A child forked from the zygote imported numpy itself on every execution (~150 ms here); the
    executor names the modules its function needs and the zygote imports them once, after the first
    fork, for the children forked after it."""
    ex = AbacoExecutor(client, image=numpy_image, max_workers=1)
    try:
        ex.blocking_call(numpy_in_the_zygote)  # the first imports numpy itself (the zygote meanwhile)
        assert ex.blocking_call(numpy_in_the_zygote) == [True]  # forked from a zygote that has it
        assert ex.blocking_call(f, 1) == [8]  # a call with other needs runs as before
    finally:
        ex.delete()


def test_map_chunks_errors_and_cancel_on_docker(client: Client, docker_client) -> None:
    ex = AbacoExecutor(client, max_workers=2, progress=False)
    try:
        responses = ex.map(f, range(200))
        assert [r.result()[0] for r in responses] == [f(i) for i in range(200)]
        assert len({r.execution_id for r in responses}) == 4  # 4 containers, not 200
        with pytest.raises(LabError, match="bad sample 3"):
            ex.blocking_call(fails, 3)
        running = ex.submit(time.sleep, 120)
        deadline = time.monotonic() + 60
        while client.execution(ex.actor_id, running.execution_id).status != "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert running.cancel()
        stopped = client.execution(ex.actor_id, running.execution_id, wait=60)
        assert stopped.status in ("COMPLETE", "ERROR")
        assert ex.blocking_call(f, 1) == [8]
    finally:
        actor_id = ex.actor_id
        ex.delete()
    assert not _containers(docker_client, actor_id)


def test_big_results_travel_in_parts_on_docker(client: Client) -> None:
    ex = AbacoExecutor(client, progress=False)
    try:
        (data,) = ex.blocking_call(os.urandom, 20 * 1024 * 1024)
        assert len(data) == 20 * 1024 * 1024
        (n,) = ex.blocking_call(len, data)
        assert n == len(data)
        done, _ = cf.wait([ex.submit(f, 2)], timeout=60)
        assert done
    finally:
        ex.delete()


def test_a_mismatched_image_is_refused_before_anything_runs(
    client: Client, docker_client, built_images
) -> None:
    image = _build(
        docker_client,
        OLD_IMAGE,
        f"FROM {built_images['abaco-nb/py3-func']}\nLABEL abaco-nb.python=3.9 abaco-nb.cloudpickle=1.4.1\n",
    )
    before = {a.id for a in client.actors()}
    with pytest.raises(VersionMismatchError, match="python 3.9 in the image") as info:
        AbacoExecutor(client, image=image)
    assert "abaco-nb images build" in str(info.value)
    assert {a.id for a in client.actors()} == before  # its actor was removed again


def test_missing_image_is_a_clear_error(client: Client) -> None:
    with pytest.raises((RuntimeError, AbacoAPIError), match="could not start"):
        AbacoExecutor(client, image="abaco-nb-test/never-built:none", ready_timeout=60)
