"""A real JupyterHub for the tests: jupyterhub and the Python configurable-http-proxy from PyPI.

The Hub loads the documented example (examples/jupyterhub/jupyterhub_config.py) and changes only what
a test machine needs: loopback ports, paths under a temporary directory, jupyterhub's
SharedPasswordAuthenticator (one password for the users), ``SimpleLocalProcessSpawner`` (each user's server is a local
process of this user, root here, so ``--allow-root``) and three users with API tokens of their own
(``alice``, ``bob``, and the Hub admin ``admin``). The abaco-nb service is the Hub's managed service,
on the process runtime. One Hub per test module: starting it takes a few seconds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.serve import terminate

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "jupyterhub" / "jupyterhub_config.py"
BIN = Path(sys.executable).parent
PASSWORD = "hub-test-password"
USERS = ("alice", "bob", "admin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need_hub() -> None:
    """Skip (fail in CI) when jupyterhub or the Python proxy is missing: scripts/test installs both."""
    missing = [
        n
        for n in ("jupyterhub", "configurable-http-proxy", "jupyterhub-singleuser")
        if not (BIN / n).exists()
    ]
    if missing:
        reason = f"{', '.join(missing)} not installed in {BIN} (pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@dataclass
class Hub:
    public: str  # the proxy's URL, e.g. http://127.0.0.1:PORT
    tokens: dict[str, str]
    tmp: Path
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def service(self) -> str:
        return f"{self.public}/services/abaco"

    def api(self, method: str, path: str, user: str = "admin", **kwargs: object) -> requests.Response:
        headers = {"Authorization": f"token {self.tokens[user]}"}
        return requests.request(method, f"{self.public}/hub/api{path}", headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        for user in ("alice", "bob"):
            try:
                self.api("DELETE", f"/users/{user}/server", user=user)
            except requests.RequestException:
                pass
        terminate(self.proc)


CONFIG = """\
import os
os.environ["ABACO_NB_HUB_SERVICE_PORT"] = "{service_port}"
os.environ["ABACO_NB_HUB_PUBLIC_URL"] = "{public}/"
os.environ["ABACO_NB_HUB_DATA"] = "{tmp}/abaco"
load_subconfig({example!r})
c = get_config()
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.JupyterHub.db_url = "sqlite:///{tmp}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{tmp}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = "{tmp}/jupyterhub.pid"
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = {password!r}
c.Authenticator.allowed_users = {{"alice", "bob"}}
c.Authenticator.admin_users = {{"admin"}}
c.JupyterHub.api_tokens = {api_tokens!r}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{tmp}/home/{{username}}"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = ["--allow-root"]
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.Spawner.environment.update({{"JUPYTER_PLATFORM_DIRS": "1"}})
service = c.JupyterHub.services[0]
command = service["command"]
command[command.index("--runtime") + 1] = "process"
"""


def start_hub(tmp: Path) -> Hub:
    need_hub()
    public_port, proxy_api_port, hub_port, service_port = (free_port() for _ in range(4))
    public = f"http://127.0.0.1:{public_port}"
    tokens = {user: f"hub-token-{user}-{os.urandom(8).hex()}" for user in USERS}
    (tmp / "abaco").mkdir(parents=True, exist_ok=True)
    config = tmp / "jupyterhub_config.py"
    config.write_text(
        CONFIG.format(
            service_port=service_port,
            public=public,
            tmp=tmp,
            example=str(EXAMPLE),
            hub_port=hub_port,
            proxy=str(BIN / "configurable-http-proxy"),
            proxy_api_port=proxy_api_port,
            password=PASSWORD,
            api_tokens={token: user for user, token in tokens.items()},
            singleuser=str(BIN / "jupyterhub-singleuser"),
        )
    )
    log = tmp / "jupyterhub.log"
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    env.pop("JUPYTERHUB_API_TOKEN", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "jupyterhub"), "-f", str(config)],
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    hub = Hub(public, tokens, tmp, proc, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyterhub exited:\n{log.read_text()[-5000:]}")
        try:
            answer = requests.get(
                f"{hub.service}/actors", headers={"Authorization": f"token {tokens['alice']}"}, timeout=5
            )
            if answer.status_code == 200:
                return hub
        except requests.RequestException:
            pass
        time.sleep(0.25)
    hub.stop()
    raise RuntimeError(f"the Hub or its abaco service did not answer:\n{log.read_text()[-5000:]}")
