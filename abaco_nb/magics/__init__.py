"""``%load_ext abaco_nb``: the ``%abaco`` line magic, the ``%%abaco`` cell magic and tab completion."""

from __future__ import annotations

from typing import Any

from .core import AbacoMagics

__all__ = ["AbacoMagics", "load_ipython_extension"]


def load_ipython_extension(ipython: Any) -> AbacoMagics:
    """Register the magics (once per shell) and their completer; returns the magics instance."""
    from .completion import completer

    magics = AbacoMagics(ipython)
    ipython.register_magics(magics)
    hook = completer(magics)
    ipython.set_hook("complete_command", hook, str_key="%abaco")
    ipython.set_hook("complete_command", hook, str_key="%%abaco")
    return magics
