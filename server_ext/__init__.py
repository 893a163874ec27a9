"""Server side of abaco-nb: the Jupyter server extension and the embedded Abaco service.

Importing ``server_ext`` stays cheap (``abaco-nb serve`` and the service import it): the extension app
is imported only when Jupyter asks for the extension points.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """Jupyter's entry point: ``server_ext.app.AbacoApp`` serves ``{base_url}abaco/``."""
    from .app import AbacoApp

    return [{"module": "server_ext.app", "app": AbacoApp}]
