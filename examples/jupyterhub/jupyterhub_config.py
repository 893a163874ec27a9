# jupyterhub_config.py: abaco-nb as the team's actor service behind JupyterHub (docs/jupyterhub.md).
#
# Every user's notebook then talks to one shared Abaco service as that user: `%load_ext abaco_nb`,
# `abaco_nb.connect()`, the magics, widgets and AbacoExecutor work as in single-user mode, and Abaco's
# permissions (owners, READ < EXECUTE < UPDATE, ABACO_WORLD, admins) hold between users.
#
# Run:  jupyterhub -f jupyterhub_config.py     (pip install 'abaco-nb[hub]' in the Hub's environment)
# tests/server_ext/test_hub.py loads this very file and changes only ports, paths, the authenticator
# and the spawner.
import os
import shutil
import sys

c = get_config()  # noqa: F821 (JupyterHub provides it)

SERVICE = "abaco"  # the service's name: users reach it at {hub}/services/abaco/
SERVICE_PORT = int(os.environ.get("ABACO_NB_HUB_SERVICE_PORT", "10101"))
PUBLIC_URL = os.environ.get("ABACO_NB_HUB_PUBLIC_URL", "http://127.0.0.1:8000/")  # the Hub's proxy
DATA = os.environ.get("ABACO_NB_HUB_DATA", "/srv/abaco-nb")  # the service's database and run files

c.JupyterHub.bind_url = PUBLIC_URL

# 1. The service. JupyterHub starts it with JUPYTERHUB_API_TOKEN, _API_URL, _SERVICE_URL, _SERVICE_PREFIX
#    and its OAuth client in the environment; `abaco-nb serve --hub` reads them. The Hub's proxy routes
#    {hub}/services/abaco/ to `url`.
abaco_nb = shutil.which("abaco-nb") or os.path.join(os.path.dirname(sys.executable), "abaco-nb")
c.JupyterHub.services = [
    {
        "name": SERVICE,
        "url": f"http://127.0.0.1:{SERVICE_PORT}",
        "command": [
            abaco_nb, "serve", "--hub",
            "--db", os.path.join(DATA, "abaco.db"),
            "--runtime", "auto",           # Docker when an engine answers, else local processes
            # "--privileged-users", "alice,bob",  # who (besides Hub admins) may register privileged actors
            # "--default-token",                  # actors get an _abaco_access_token unless they say no
        ],
        "oauth_no_confirm": True,  # the browser dashboard signs in through the Hub without a consent page
        "display": True,           # listed in the Hub's Services menu
    }
]

# 2. Who may use it: every user may reach this service (the Hub checks the scope on each request), and
#    the service may read user models, so it can tell Hub admins (who are Abaco admins) from others.
c.JupyterHub.extra_user_scopes = {f"access:services!service={SERVICE}"}
c.JupyterHub.load_roles = [
    {"name": "abaco-nb-service", "scopes": ["read:users"], "services": [SERVICE]},
]

# 3. Kernels: a user's server token (JUPYTERHUB_API_TOKEN, which kernels inherit) may reach the service,
#    and the spawner tells kernels where it is; abaco_nb.connect() finds it there.
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    f"access:services!service={SERVICE}",
]
c.Spawner.environment = {"ABACO_NB_HUB_SERVICE_URL": f"{PUBLIC_URL.rstrip('/')}/services/{SERVICE}/"}

# 4. Admins of the Hub are admins of Abaco (all actors, /actors/admin*, adding workers).
c.Authenticator.admin_users = {"admin"}
# c.Authenticator.allowed_users = {"alice", "bob"}   # or any authenticator your site uses
