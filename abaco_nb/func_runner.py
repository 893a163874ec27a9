"""The function runner: the CMD of the ``abaco-nb/py3-func`` executor image.

Behaves like the ``call_f.py`` of Abaco's ``abacosamples/py3_func`` images (``reference/clients.md``
§2.4), so agavepy's AbacoExecutor and ours can both use the image: read the binary message, unpickle
``{'func', 'args', 'kwargs'}`` with cloudpickle, call it, send the return value as one result over the
results socket and print ``result: ...``. A failure prints the traceback and exits 1 with no result sent.

Kept as small steps (``load_call`` -> ``run_call`` -> ``deliver``) so the executor can add chunks and
error frames by replacing one step.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

from abaco_nb.actors import get_binary_message, send_python_result


def load_call() -> dict[str, Any]:
    """The pickled call from the binary message: ``{'func': callable, 'args': ..., 'kwargs': ...}``."""
    import cloudpickle

    message = cloudpickle.loads(get_binary_message())
    if not isinstance(message, dict) or "func" not in message:
        raise ValueError(f"the message is not a pickled {{'func', 'args', 'kwargs'}} dict: {type(message)}")
    return message


def run_call(message: dict[str, Any]) -> Any:
    """Call the function. tapipy's executor adds ``cwd``: honour it where that directory exists."""
    cwd = message.get("cwd")
    if isinstance(cwd, str) and os.path.isdir(cwd):
        os.chdir(cwd)
    return message["func"](*(message.get("args") or ()), **(message.get("kwargs") or {}))


def deliver(result: Any) -> None:
    """Send the result as one cloudpickled frame and log it, as call_f.py does."""
    send_python_result(result)
    print(f"result: {result}")


def main() -> int:
    """Run the pickled call; 0 on success, 1 (with the traceback on stderr) on any failure."""
    try:
        message = load_call()
    except Exception:
        print("Could not load the function call from the binary message:", file=sys.stderr)
        traceback.print_exc()
        return 1
    try:
        result = run_call(message)
    except BaseException:  # SystemExit/KeyboardInterrupt in user code are failures of the call too
        traceback.print_exc()
        return 1
    try:
        deliver(result)
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
