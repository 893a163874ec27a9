"""Constants both sides of the wire must agree on, pinned pair by pair.

The kernel side (``abaco_nb``) and the service (``server_ext``) cannot import each other's constants:
the service imports nothing from ``abaco_nb`` and the in-container helpers only the standard library.
So each side names its own copy, and this test is where a change to one must meet the other.
"""

from __future__ import annotations

import pytest

from abaco_nb import actors, executor, func_runner, records
from abaco_nb.magics import cell_actor
from server_ext.service import environment, images, models, rest
from server_ext.service import service as service_module
from server_ext.service.runtimes import base, process, swarm_agent


def test_both_sides_agree_which_statuses_are_final() -> None:
    assert set(records.FINISHED) == set(models.EXECUTION_TERMINAL)


@pytest.mark.parametrize(
    ("what", "kernel_side", "service_side"),
    [
        ("the executor actors' hint", executor.EXECUTOR_HINT, service_module.EXECUTOR_HINT),
        ("the result frames media type", executor.RESULT_FRAMES, rest.RESULT_FRAMES),
        ("the executor image", executor.FUNC_IMAGE, images.FUNC_IMAGE),
        ("the %%abaco actor image", cell_actor.CELL_IMAGE, images.FUNC_IMAGE),
        ("the executor image on the process runtime", executor.FUNC_IMAGE, process.FUNC_REPO),
        ("the binary message in a container", actors.BINARY_DATA_PATH, base.BINARY_DATA_PATH),
        ("the runner's binary message", func_runner.BINARY_DATA_PATH, base.BINARY_DATA_PATH),
        ("the results socket in a container", actors.RESULTS_SOCKET_PATH, base.RESULTS_SOCKET_PATH),
        ("the runner's results socket", func_runner.RESULTS_SOCKET_PATH, base.RESULTS_SOCKET_PATH),
        ("the process runtime's binary variable", actors.ENV_BINARY_DATA, base.ENV_BINARY_DATA),
        ("the runner's binary variable", func_runner.ENV_BINARY_DATA, base.ENV_BINARY_DATA),
        ("the process runtime's results variable", actors.ENV_RESULTS_SOCKET, base.ENV_RESULTS_SOCKET),
        ("the runner's results variable", func_runner.ENV_RESULTS_SOCKET, base.ENV_RESULTS_SOCKET),
        ("the final_state keys a swarm node reads", swarm_agent.STATE_KEYS, base.STATE_KEYS),
        ("the modules a warm zygote imports", executor.ENV_PRELOAD, base.ENV_PRELOAD),
    ],
)
def test_both_sides_name_the_same_thing(what: str, kernel_side: str, service_side: str) -> None:
    assert kernel_side == service_side, what


def test_a_message_may_name_the_modules_to_preload() -> None:
    """The executor sends ``_abaco_nb_preload`` as a query parameter: the environment rule lets it in."""
    assert environment.allowed(base.ENV_PRELOAD)
    assert environment.from_query({base.ENV_PRELOAD: ["numpy,scipy"]}) == {base.ENV_PRELOAD: "numpy,scipy"}
