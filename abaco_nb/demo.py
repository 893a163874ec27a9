"""``abaco-nb demo``: the seed's walk-through on an embedded service, in one run.

Starts (or finds) the service, registers the test reactor, sends it a raw string with an environment
override and a JSON message, prints their logs, then runs functions remotely with AbacoExecutor:
``blocking_call``, ``submit`` and a chunked ``map``. Everything it creates it deletes.
"""

from __future__ import annotations

import time


def f(x: int) -> int:
    return 3 * x + 5


def square(x: int) -> int:
    return x * x


def _say(text: str) -> None:
    print(text, flush=True)


def main(runtime: str = "auto") -> int:
    import sys

    import cloudpickle

    from .connection import connect
    from .executor import AbacoExecutor

    # f and square live in this module, which the executor image does not have: send them by value,
    # as functions defined in a notebook are.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])

    client = connect(runtime=runtime, stop_at_exit=True)
    _say(f"service: {client.base_url} ({client.how})")
    actor = client.register(
        "abaco-nb/test",
        name="test",
        description="The seed's test reactor",
        default_environment={"key1": "value1", "key2": "value2", "SLEEP": "1"},
    )
    _say(f"registered actor {actor.id} from abaco-nb/test; waiting for READY")
    try:
        client.wait_until_ready(actor.id)
        raw = client.send(actor.id, "some test message", environment={"key1": "valueABC"})
        as_json = client.send(actor.id, {"username": "jdoe", "application_id": "print-env-cli-0.1.0"})
        for receipt in (raw, as_json):
            execution = client.execution(actor.id, receipt.execution_id, wait=120)
            logs = client.logs(actor.id, receipt.execution_id)
            wanted = [
                line for line in logs.splitlines() if line.startswith(("Contents of MSG", "key1=", "key2="))
            ]
            _say(f"execution {execution.id}: {execution.status}, exit code {execution.exit_code}")
            for line in wanted:
                _say(f"    {line}")
    finally:
        client.delete(actor.id)

    _say("AbacoExecutor:")
    t0 = time.monotonic()
    ex = AbacoExecutor(client, progress=False)
    try:
        _say(f"    executor actor {ex.actor_id} ready in {time.monotonic() - t0:.1f} s (image {ex.image})")
        _say(f"    ex.blocking_call(f, 3) -> {ex.blocking_call(f, 3)}")
        response = ex.submit(f, 5)
        _say(f"    ex.submit(f, 5).result() -> {response.result()} (execution {response.execution_id})")
        t0 = time.monotonic()
        responses = ex.map(square, range(100))
        values = [r.result()[0] for r in responses]
        executions = len({r.execution_id for r in responses})
        _say(
            f"    ex.map(square, range(100)): sum {sum(values)} from {executions} executions "
            f"in {time.monotonic() - t0:.2f} s"
        )
    finally:
        ex.delete()
    _say("done: the actors are deleted")
    return 0
