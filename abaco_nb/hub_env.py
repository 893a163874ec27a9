"""Finding the team's Abaco service from a kernel a JupyterHub spawned (docs/jupyterhub.md).

JupyterHub gives each user's server (and so its kernels) the server's own ``JUPYTERHUB_API_TOKEN``;
the team service accepts it as that user. Where the service is, the Hub's environment says, through a
variable the administrator adds to the spawner's environment (``c.Spawner.environment``):

- ``ABACO_NB_HUB_SERVICE_URL``: the service's URL behind the Hub's proxy, e.g.
  ``http://127.0.0.1:8000/services/abaco/``; or
- ``ABACO_NB_HUB_SERVICE``: the service's name, joined to ``JUPYTERHUB_PUBLIC_URL`` (which the Hub
  sets when ``c.JupyterHub.public_url`` is configured) as ``{public_url}services/{name}/``.
"""

from __future__ import annotations

import os

ENV_SERVICE_URL = "ABACO_NB_HUB_SERVICE_URL"
ENV_SERVICE_NAME = "ABACO_NB_HUB_SERVICE"


def team_service(environ: dict[str, str] | None = None) -> tuple[str, str] | None:
    """``(url, token)`` of the team service when this process runs under JupyterHub and the spawner
    names one; None otherwise (single-user: nothing changes)."""
    env = os.environ if environ is None else environ
    token = env.get("JUPYTERHUB_API_TOKEN")
    if not token:
        return None
    url = env.get(ENV_SERVICE_URL)
    if not url and env.get(ENV_SERVICE_NAME) and env.get("JUPYTERHUB_PUBLIC_URL"):
        url = env["JUPYTERHUB_PUBLIC_URL"].rstrip("/") + f"/services/{env[ENV_SERVICE_NAME]}/"
    return (url.rstrip("/"), token) if url else None
