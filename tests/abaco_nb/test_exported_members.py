"""What ``import abaco_nb`` offers is pinned: a name added to or dropped from ``__all__`` is a decision,
made here. Every exported name resolves, and the exceptions a caller catches form the tree that
abaco_nb/errors.py draws."""

from __future__ import annotations

import subprocess
import sys

import pytest

import abaco_nb
from abaco_nb import errors

EXPORTED = [
    "Client",
    "connect",
    "AbacoExecutor",
    "AbacoAsyncResponse",
    "AbacoError",
    "AbacoAPIError",
    "AbacoConnectionError",
    "RemoteError",
    "RemoteTimeoutError",
    "AbacoExecutionError",
    "OutOfMemoryError",
    "ExecutorActorGone",
    "VersionMismatchError",
    "MissingModuleError",
    "KernelImageError",
    "RemoteTraceback",
    "load_ipython_extension",
    "__version__",
]


def test_all_is_pinned() -> None:
    assert sorted(abaco_nb.__all__) == sorted(EXPORTED)
    assert sorted(errors.__all__) == sorted(n for n in EXPORTED if n.endswith(("Error", "Traceback", "Gone")))


@pytest.mark.parametrize("name", EXPORTED)
def test_every_exported_name_resolves(name: str) -> None:
    assert getattr(abaco_nb, name) is not None


def test_connect_is_the_function() -> None:
    from abaco_nb import connect

    assert callable(connect) and connect.__module__ == "abaco_nb.connection"


def test_the_exception_tree() -> None:
    assert issubclass(abaco_nb.AbacoAPIError, abaco_nb.AbacoError)
    assert issubclass(abaco_nb.AbacoConnectionError, abaco_nb.AbacoAPIError)
    assert issubclass(abaco_nb.RemoteError, abaco_nb.AbacoError)
    assert issubclass(abaco_nb.RemoteTimeoutError, abaco_nb.RemoteError)
    assert issubclass(abaco_nb.RemoteTimeoutError, TimeoutError)
    assert issubclass(abaco_nb.AbacoExecutionError, abaco_nb.RemoteError)
    assert issubclass(abaco_nb.OutOfMemoryError, abaco_nb.AbacoExecutionError)
    assert issubclass(abaco_nb.OutOfMemoryError, MemoryError)
    assert issubclass(abaco_nb.ExecutorActorGone, abaco_nb.AbacoExecutionError)
    assert issubclass(abaco_nb.VersionMismatchError, abaco_nb.AbacoError)
    assert issubclass(abaco_nb.VersionMismatchError, RuntimeError)
    assert issubclass(abaco_nb.MissingModuleError, abaco_nb.AbacoError)
    assert issubclass(abaco_nb.MissingModuleError, ModuleNotFoundError)
    assert issubclass(abaco_nb.KernelImageError, abaco_nb.AbacoError)
    assert issubclass(abaco_nb.KernelImageError, RuntimeError)
    from abaco_nb import actors, client, executor

    assert actors.AbacoError is abaco_nb.AbacoError  # one class on both sides of the container wall
    assert executor.RemoteError is abaco_nb.RemoteError and client.AbacoAPIError is abaco_nb.AbacoAPIError


def test_the_exceptions_need_no_third_party_package() -> None:
    """Importing abaco_nb.errors (as ``except abaco_nb.RemoteError`` does) loads neither requests nor
    cloudpickle."""
    code = "import sys, abaco_nb; abaco_nb.RemoteError; print(sorted(m for m in ('requests', 'cloudpickle') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_package_says_it_is_typed() -> None:
    from importlib.resources import files

    assert files("abaco_nb").joinpath("py.typed").is_file()
