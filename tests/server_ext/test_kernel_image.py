"""Kernel images (``abaco-nb images build --from-kernel``): which distributions, the cache by package
set, and one new layer for a package added, checked against the real Docker engine."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from server_ext.service import kernel_env
from server_ext.service.images import ImageBuildError
from server_ext.service.kernel_image import LABEL_PACKAGES, build_kernel_image


def test_the_closure_of_a_package_follows_its_requirements_not_its_extras() -> None:
    names = kernel_env.select(["pandas"])
    assert {"pandas", "numpy", "python-dateutil", "cloudpickle"} <= set(names)
    assert "scipy" not in names and "pytest" not in names  # extras ("test", "computation") stay out
    assert "abaco-nb" not in kernel_env.select(None)  # its runner is copied as files instead


def test_packages_may_be_named_by_their_import_name() -> None:
    assert "pyyaml" in kernel_env.select(["yaml"])


def test_an_unknown_package_is_refused_naming_it() -> None:
    with pytest.raises(kernel_env.KernelEnvError, match="'no-such-dist-xyz' is not installed"):
        kernel_env.select(["no-such-dist-xyz"])


def test_a_distribution_brings_the_files_of_its_record() -> None:
    (numpy,) = kernel_env.describe(["numpy"])
    assert numpy.modules == ("numpy",)
    assert "numpy/__init__.py" in numpy.files and any(f.startswith("numpy.libs/") for f in numpy.files)
    assert not any(f.startswith("..") for f in numpy.files)  # scripts in bin/ are not carried


@pytest.mark.docker
def test_a_package_added_costs_one_layer_and_the_same_set_builds_nothing(docker_client) -> None:
    lines: list[str] = []
    small = build_kernel_image(docker_client, ["numpy"], log=lines.append)
    more = build_kernel_image(docker_client, ["numpy", "PyYAML"], log=lines.append)
    layers = [len(docker_client.api.inspect_image(i.ref)["RootFS"]["Layers"]) for i in (small, more)]
    if more.built:  # a first run: built on top of the numpy image, adding PyYAML only
        assert more.parent.startswith("abaco-nb/kernel-packages:") and layers[1] == layers[0] + 1
        assert more.bytes_added < 5_000_000 and any("1 of 3 distributions to add" in x for x in lines)
    labels = docker_client.api.inspect_image(more.ref)["Config"]["Labels"]
    assert set(labels[LABEL_PACKAGES].split()) == set(more.packages)
    out = docker_client.containers.run(
        more.ref, ["python3", "-c", "import yaml, numpy; print(numpy.__version__)"], remove=True
    )
    import numpy

    assert out.decode().strip() == numpy.__version__
    again = build_kernel_image(docker_client, ["PyYAML", "numpy"])
    assert not again.built and again.ref == more.ref


@pytest.mark.docker
def test_the_cli_answers_json_for_the_executor(docker_client) -> None:
    build_kernel_image(docker_client, ["numpy"])
    cmd = [sys.executable, "-m", "server_ext", "images", "build", "--from-kernel", "--packages", "numpy"]
    out = subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=True)
    answer = json.loads(out.stdout)
    assert answer["ref"].startswith("abaco-nb/kernel:") and answer["built"] is False
    assert "numpy" in answer["modules"] and answer["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    bad = subprocess.run([*cmd[:-1], "no-such-dist-xyz", "--json"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no-such-dist-xyz" in json.loads(bad.stdout)["error"]


def test_no_engine_is_a_clear_error() -> None:
    class NoEngine:
        def ping(self) -> None:
            raise ConnectionError("refused")

    with pytest.raises(ImageBuildError, match="no Docker engine answers"):
        build_kernel_image(NoEngine(), ["numpy"])


@pytest.mark.docker
def test_prune_removes_old_kernel_images_but_not_what_a_kept_one_builds_on(docker_client) -> None:
    from server_ext.service.kernel_image import KERNEL_PACKAGES_REPO, prune

    image = build_kernel_image(docker_client, ["numpy"])
    packages_tag = next(
        t
        for t in docker_client.api.images(filters={"label": ["abaco-nb.kind=kernel-packages"]})
        for t in t["RepoTags"] or []
        if t.startswith(KERNEL_PACKAGES_REPO)
        and docker_client.api.inspect_image(image.ref)["RootFS"]["Layers"][:-1]
        == docker_client.api.inspect_image(t)["RootFS"]["Layers"]
    )
    # the package image is "old" here, the kernel image on it is not: it stays
    assert prune(docker_client, older_than_hours=-1, only={packages_tag}) == []
    # a private copy of the kernel image, old: removed
    docker_client.api.tag(image.ref, "abaco-nb/kernel", "prune-test")
    assert prune(docker_client, older_than_hours=-1, only={"abaco-nb/kernel:prune-test"}) == [
        "abaco-nb/kernel:prune-test"
    ]
    assert docker_client.api.inspect_image(image.ref)  # the original tag is untouched
