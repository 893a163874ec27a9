"""Every runtime implements the whole Runtime Protocol (runtimes/base.py), so the Service and the
dispatcher call it without peeking (no getattr for close, release_actor or the image's versions)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from server_ext.service import images
from server_ext.service.runtimes.base import Runtime
from server_ext.service.runtimes.docker import DockerRuntime
from server_ext.service.runtimes.process import ProcessRuntime
from server_ext.service.runtimes.swarm import SwarmRuntime

PROTOCOL = sorted(
    name for name, member in vars(Runtime).items() if inspect.isfunction(member) and not name.startswith("_")
)


def test_the_protocol_has_the_life_cycle_and_the_image_questions() -> None:
    assert {"close", "image_versions", "release_actor", "check_image", "start"} <= set(PROTOCOL)


@pytest.mark.parametrize("runtime", [DockerRuntime, ProcessRuntime, SwarmRuntime])
def test_every_runtime_implements_every_method_with_the_same_parameters(runtime: type) -> None:
    for name in PROTOCOL:
        assert callable(getattr(runtime, name, None)), f"{runtime.__name__} lacks {name}"
        wanted = list(inspect.signature(getattr(Runtime, name)).parameters)
        assert list(inspect.signature(getattr(runtime, name)).parameters)[: len(wanted)] == wanted, name


def test_the_process_runtime_answers_the_image_questions(tmp_path: Path) -> None:
    rt = ProcessRuntime(str(tmp_path / "proc"))
    try:
        python, cloudpickle = images.kernel_versions()
        assert rt.image_versions("abaco-nb/py3-func") == {"python": python, "cloudpickle": cloudpickle}
        assert rt.image_versions("local:echo hi") is None
        rt.release_actor("any-actor")  # keeps nothing per actor
    finally:
        rt.close()
