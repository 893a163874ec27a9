"""abaco-nb: Abaco actors and executors in Jupyter.

``from abaco_nb import connect, Client, AbacoExecutor``; ``%load_ext abaco_nb`` for the magics; the
exceptions a caller catches (``abaco_nb.RemoteError``, ``abaco_nb.AbacoAPIError``, ...) are those of
``abaco_nb.errors``, whose docstring draws their tree.
Names are imported lazily so that importing the package (e.g. inside an executor image, where only
``actors`` and ``func_runner`` exist) costs nothing and needs no third-party package.

``connect`` lives in ``abaco_nb.connection``: a submodule named ``connect`` would replace the function
on the package the moment it is imported (``from abaco_nb import connect; connect()`` then called a
module), so no submodule carries that name.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_ERRORS = (  # abaco_nb/errors.py: the tree of what a caller catches
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
)
_LAZY = {
    "Client": ("abaco_nb.client", "Client"),
    "connect": ("abaco_nb.connection", "connect"),
    "AbacoExecutor": ("abaco_nb.executor", "AbacoExecutor"),
    "AbacoAsyncResponse": ("abaco_nb.executor", "AbacoAsyncResponse"),
    **{name: ("abaco_nb.errors", name) for name in _ERRORS},
}

__all__ = [*_LAZY, "load_ipython_extension", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'abaco_nb' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext abaco_nb``: register the %abaco and %%abaco magics."""
    from .magics import load_ipython_extension as load

    load(ipython)
