"""The kernel's side of "an image made from the kernel's own environment" (issue 11).

``AbacoExecutor()`` with no image asks for ``abaco-nb/kernel:<minor>-<hash>``: the kernel's interpreter
and its installed distributions (all, or ``packages=[...]`` with their dependencies), built on the local
Docker engine by ``abaco-nb images build --from-kernel`` run with *this* interpreter (so it sees exactly
the distributions the kernel imports; ``abaco_nb`` does not import ``server_ext``). The build prints its
progress and time; a cached image costs one ``docker inspect``, and the answer is remembered for the
kernel's life until an installed distribution changes.

No image is built when the service is not on this machine (its Docker engine is not ours), when no
Docker engine answers (the process runtime runs functions with the service's own Python), or with
``ABACO_NB_KERNEL_IMAGE=0``: the executor then uses ``abaco-nb/py3-func`` as before.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from .errors import KernelImageError as KernelImageError  # re-exported: the executor raises it from here

ENV_SWITCH = "ABACO_NB_KERNEL_IMAGE"
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}
_memo: dict[tuple[Any, ...], dict[str, Any]] = {}
_memo_lock = threading.Lock()
_no_engine_until = 0.0  # after "no Docker engine answers", do not ask again for a while
NO_ENGINE_RETRY = 300.0


def _installed_fingerprint() -> tuple[str, ...]:
    """The installed ``name-version`` set (dist-info directory names: ~10 ms), so a ``%pip install``
    in the kernel makes the next executor build again."""
    names = []
    for dist in importlib.metadata.distributions():
        path = getattr(dist, "_path", None)
        names.append(os.path.basename(str(path)) if path is not None else str(dist.metadata["Name"]))
    return tuple(sorted(names))


def is_local(base_url: str) -> bool:
    """Whether the service runs on this machine (so its Docker engine is the one we build on)."""
    parsed = urllib.parse.urlparse(base_url)
    if parsed.scheme.startswith("http+unix"):
        return True
    host = (parsed.hostname or "").lower()
    return host in _LOCAL_HOSTS or host.startswith("127.")


def ensure(
    packages: Sequence[str] | None = None,
    base_url: str = "",
    log: Callable[[str], Any] = print,
    force: bool = False,
) -> dict[str, Any] | None:
    """Build or find the kernel image; its description (``ref``, ``built``, ``seconds``, ``packages``,
    ``modules``, ``python``, ``cloudpickle``), or None when this kernel should not build one."""
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if base_url and not is_local(base_url):
        return None
    global _no_engine_until
    key = (tuple(sorted(packages)) if packages is not None else None, _installed_fingerprint())
    with _memo_lock:
        if key in _memo and not force:
            return {**_memo[key], "built": False, "seconds": 0.0}  # nothing was built this time
        if time.monotonic() < _no_engine_until and not force:
            return None
    answer = build(packages, log=log, force=force)
    with _memo_lock:
        if answer is not None:
            _memo[key] = answer
        else:  # each executor on a machine without Docker would otherwise pay a subprocess
            _no_engine_until = time.monotonic() + NO_ENGINE_RETRY
    return answer


def build(
    packages: Sequence[str] | None = None, log: Callable[[str], Any] = print, force: bool = False
) -> dict[str, Any] | None:
    """Run ``python -m server_ext images build --from-kernel --json`` with this interpreter, showing its
    progress lines as they come. None when no Docker engine answers."""
    command = [sys.executable, "-m", "server_ext", "images", "build", "--from-kernel", "--json"]
    if packages is not None:
        if not packages:
            raise ValueError("packages=[] names no distribution; leave it out to carry every one")
        command += ["--packages", *packages]
    if force:
        command.append("--force")
    try:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env()
        )
    except OSError as exc:
        raise KernelImageError(f"cannot run {sys.executable} to build the kernel image: {exc}") from exc
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read() if proc.stdout else ""))
    reader.start()
    tail: list[str] = []
    for line in proc.stderr or []:
        line = line.rstrip("\n")
        tail = (tail + [line])[-20:]
        log(line)
    reader.join()
    proc.wait()
    try:
        answer = json.loads((out[0] if out else "").strip().splitlines()[-1])
    except (ValueError, IndexError):
        if "No module named server_ext" in "\n".join(tail):
            return None  # abaco_nb without its service package: nothing to build with
        raise KernelImageError(
            f"building the kernel image failed (exit {proc.returncode}):\n" + "\n".join(tail)
        ) from None
    if "error" in answer:
        if str(answer["error"]).startswith("no Docker engine answers"):
            return None
        raise KernelImageError(
            f"{answer['error']}\n(pass image=... to use an image of your own, or set {ENV_SWITCH}=0)"
        )
    return dict(answer)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    return env
