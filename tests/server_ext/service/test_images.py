"""The locally built images: cached builds, version labels, and what is inside them."""

from __future__ import annotations

import time

import pytest

from server_ext.service import images
from server_ext.service.images import (
    FUNC_IMAGE,
    LABEL_CLOUDPICKLE,
    LABEL_PYTHON,
    TEST_IMAGE,
    build_images,
    debian_mirror,
    expected_func_image,
    func_image_tag,
    image_versions,
    kernel_versions,
    version_mismatch,
)


def test_expected_tag_follows_the_kernel():
    py, cp = kernel_versions()
    assert py.count(".") == 1 and cp
    assert func_image_tag() == f"{py}-{cp}"
    assert expected_func_image() == f"{FUNC_IMAGE}:{py}-{cp}"


def test_debian_mirror_read_from_apt_sources():
    try:
        mirror = debian_mirror()
    except images.ImageBuildError as exc:
        pytest.skip(str(exc))
    assert mirror.startswith(("http://", "https://", "file:/"))


@pytest.mark.docker
def test_built_images_and_labels(docker_client, built_images):
    assert built_images[TEST_IMAGE] == f"{TEST_IMAGE}:latest"
    assert built_images[FUNC_IMAGE] == expected_func_image()
    py, cp = kernel_versions()
    labels = docker_client.api.inspect_image(expected_func_image())["Config"]["Labels"]
    assert labels[LABEL_PYTHON] == py and labels[LABEL_CLOUDPICKLE] == cp
    # latest and the version tag are the same image
    assert (
        docker_client.api.inspect_image(f"{FUNC_IMAGE}:latest")["Id"]
        == docker_client.api.inspect_image(expected_func_image())["Id"]
    )
    assert image_versions(f"{FUNC_IMAGE}:latest", docker_client) == {"python": py, "cloudpickle": cp}
    assert image_versions(f"{TEST_IMAGE}:latest", docker_client) is None
    assert image_versions("abaco-nb/not-there:1", docker_client) is None
    assert version_mismatch(expected_func_image(), docker_client) is None
    assert docker_client.api.inspect_image(f"{TEST_IMAGE}:latest")["Size"] < 10_000_000


@pytest.mark.docker
def test_second_build_is_cached(docker_client, built_images):
    before = {ref: docker_client.api.inspect_image(ref)["Id"] for ref in built_images.values()}
    t0 = time.monotonic()
    again = build_images(docker_client=docker_client, log=lambda _msg: None)
    elapsed = time.monotonic() - t0
    assert again == built_images
    assert {ref: docker_client.api.inspect_image(ref)["Id"] for ref in again.values()} == before
    assert elapsed < 10, f"a cached build took {elapsed:.1f} s"


@pytest.mark.docker
def test_func_image_python_and_cloudpickle_match_the_kernel(docker_client, built_images):
    out = docker_client.containers.run(
        expected_func_image(),
        [
            "python3",
            "-c",
            "import sys, cloudpickle, abaco_nb.actors, abaco_nb.func_runner; "
            "print('%d.%d' % sys.version_info[:2], cloudpickle.__version__)",
        ],
        remove=True,
        network_mode="none",
    )
    assert out.decode().split() == list(kernel_versions())
    config = docker_client.api.inspect_image(expected_func_image())["Config"]
    assert config["Cmd"] == ["python3", "-m", "abaco_nb.func_runner"]


@pytest.mark.docker
def test_version_mismatch_names_both_versions(docker_client, built_images):
    container = docker_client.api.create_container(f"{TEST_IMAGE}:latest", network_disabled=True)
    ref = "abaco-nb/mismatch-probe:1"
    try:
        docker_client.api.commit(
            container["Id"],
            repository="abaco-nb/mismatch-probe",
            tag="1",
            changes=[f"LABEL {LABEL_PYTHON}=3.0 {LABEL_CLOUDPICKLE}=0.1"],
        )
        message = version_mismatch(ref, docker_client)
        assert message is not None
        assert "Python 3.0 in the image" in message and "cloudpickle 0.1 in the image" in message
        assert "abaco-nb images build" in message
    finally:
        docker_client.api.remove_container(container["Id"], force=True)
        docker_client.api.remove_image(ref, force=True)
