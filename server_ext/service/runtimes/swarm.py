"""The ``swarm`` runtime: each execution a Docker Swarm ``replicated-job`` on some node of the swarm.

The service stays the control plane (API, store, mailboxes, workers) on a swarm manager; this runtime
talks to the manager's Docker (Engine API 1.41: Docker 20.10 has jobs, ``CapabilityDrop`` and ``Pids``
limits, and nothing newer is used). Per execution:

1. pick a node: ready and active, labelled ``abaco-nb.queue=<queue>`` unless the actor's queue is the
   default, the least loaded by our own running executions (``swarm_spec.choose_node``);
2. ask that node's agent (``swarm_agent``, a global service this runtime deploys) to prepare the
   execution's binary message and its two unix sockets on the node;
3. create the job pinned to that node, bind-mounting the three prepared paths at the contract's paths,
   on an internal overlay network (no gateway, no egress; swarm refuses ``none``), with the actor's
   ``mem_limit``/``max_cpus`` as limits, a pids limit and dropped capabilities, no restarts,
   ``dnsrr`` endpoints (no virtual IP: no IPVS needed); an idle global "keeper" on that network keeps
   each node's overlay sandbox up between jobs;
4. follow the task's status; at its end ask the agent to flush the results and to read the container's
   exit state (``OOMKilled``, times) from the node's Docker, and build ``final_state`` from both.

Logs come from ``GET /services/{id}/logs`` through the manager. Force-quit and time limits stop the
container through the agent (Docker's stop on the node: SIGTERM, SIGKILL after the grace), so the task
keeps its exit code and its logs; a job not yet running is removed. Everything carries the labels of
the docker runtime plus the node, so after a ``kill -9`` the restarted service finds its jobs by label,
re-attaches, and points the agents at its new callback address; the agents kept the results meanwhile.
Executor actors' executions (``RunSpec.warm``) run in *warm tasks* instead: one long-lived job per busy
worker forking each execution inside, the docker runtime's warm containers on a node (``swarm_warm``).
Why picking the node ourselves: the prepared files must exist on the node before the container is
created (swarm 20.10 refuses a bind mount whose source is missing and cannot create it), and only a
node chosen in advance can be prepared in advance.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import secrets
import tempfile
import threading
import time
import urllib.parse
from typing import Any

import docker
import docker.errors
import requests

from . import swarm_agent, swarm_spec
from .base import (
    LABEL_ACTOR,
    LABEL_EXECUTION,
    LABEL_SERVICE,
    LABEL_WORKER,
    ExitInfo,
    ImageCheck,
    Leftover,
    RunningRef,
    RunSpec,
    RuntimeFailure,
    RuntimeUnreachable,
)
from .docker import DEFAULT_CAP_DROP
from .swarm_relay import Relay, Target
from .swarm_spec import LABEL_API, LABEL_NODE, LABEL_NODE_ADDR, LABEL_RESULTS, LABEL_ROLE, Node
from .swarm_warm import ROLE_WARM, SwarmWarmPool
from .warm import WarmUnavailable

log = logging.getLogger(__name__)

AGENT_TARGET = "/abaco_nb_agent.py"
AGENT_SECRET_FILE = "abaco-nb-agent-token"


def _short(service_id: str) -> str:
    return service_id.lower()[:24]


class SwarmRuntime:
    """Runs executions as swarm jobs on any node (see module docstring)."""

    name = "swarm"

    def __init__(
        self,
        client: Any = None,
        *,
        registry: str = "",
        callback: str = "",
        agent_port: int = 7781,
        agent_dir: str = "/run/abaco-nb-agent",
        agent_image: str = "",
        agent_docker_socket: str = "/var/run/docker.sock",
        state_dir: str = ".",
        default_mem_limit: str | None = "1g",
        default_nano_cpus: int | None = 1_000_000_000,
        pids_limit: int | None = 4096,
        cap_drop: tuple[str, ...] | list[str] = DEFAULT_CAP_DROP,
        poll_interval: float = 0.1,
        agent_timeout: float = 180.0,
        warm_idle_seconds: float = 300.0,
    ) -> None:
        self.client = client or docker.from_env(timeout=120)
        self.api = self.client.api
        self.registry = registry
        self.callback = callback
        self.agent_port = agent_port
        self.agent_dir = agent_dir
        self.agent_image = agent_image or swarm_spec.image_ref("abaco-nb/py3-func:latest", registry)
        self.agent_docker_socket = agent_docker_socket
        self.state_dir = state_dir
        self.default_mem_limit = default_mem_limit
        self.default_nano_cpus = default_nano_cpus
        self.pids_limit = pids_limit
        self.cap_drop = list(cap_drop)
        self.poll_interval = poll_interval
        self.agent_timeout = agent_timeout
        self._lock = threading.RLock()
        self._ready_for: str | None = None
        self._relay: Relay | None = None
        self._token = ""
        self._networks: dict[bool, str] = {}
        self._nodes: tuple[float, list[Node]] = (0.0, [])
        self._load: dict[str, int] = {}
        self._turn = 0
        self._swept = False
        self._warm_why = ""  # the last reason an execution could not run in a warm task
        self.warm = SwarmWarmPool(self, tempfile.mkdtemp(prefix="abnb-swarm-warm-"), warm_idle_seconds)

    # -----------------------------------------------------------------------------------------------------
    # The swarm side: relay, networks, agent (once per service id)
    # -----------------------------------------------------------------------------------------------------

    def _ensure(self, service_id: str) -> None:
        with self._lock:
            if self._ready_for == service_id:
                return
            try:
                info = self.api.info()
            except Exception as exc:
                raise RuntimeFailure(f"the swarm manager's Docker does not answer: {exc}") from exc
            swarm = info.get("Swarm") or {}
            if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
                raise RuntimeFailure(
                    "--runtime swarm needs a swarm manager: this Docker engine is not one "
                    "(run `docker swarm init` on the manager machine, join the others)"
                )
            self._token = self._agent_token()
            if self._relay is None:
                host, _, port = self.callback.rpartition(":") if self.callback else ("", "", "0")
                self._relay = Relay(host or swarm.get("NodeAddr") or "127.0.0.1", int(port or 0), self._token)
            self._networks[False] = self._network(service_id, internal=True)
            self._deploy_agent(service_id)
            self._deploy_keeper(service_id, self._networks[False])
            self._ready_for = service_id

    def _agent_token(self) -> str:
        """The shared secret of service and agents, kept across restarts (agents must not restart while
        they hold sockets of running executions)."""
        path = os.path.join(self.state_dir, "swarm-agent.token")
        try:
            with open(path) as f:
                token = f.read().strip()
            if token:
                return token
        except FileNotFoundError:
            pass
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
        return token

    def _network(self, service_id: str, internal: bool) -> str:
        name = f"abaco-nb-{'jobs' if internal else 'net'}-{_short(service_id)}"
        found = [n for n in self.api.networks(names=[name]) if n.get("Name") == name]
        if found:
            return str(found[0]["Id"])
        created = self.api.create_network(
            name,
            driver="overlay",
            internal=internal,
            attachable=False,
            check_duplicate=True,
            labels={LABEL_SERVICE: service_id, LABEL_ROLE: "jobs" if internal else "net"},
        )
        return str(created["Id"])

    def _swarm_object(self, kind: str, name: str, data: bytes, labels: dict[str, str]) -> str:
        """The id of the swarm config or secret ``name``, created with ``data`` when missing."""
        listing = self.api.configs if kind == "config" else self.api.secrets
        found = [o for o in listing(filters={"name": name}) if o["Spec"]["Name"] == name]
        if found:
            return str(found[0]["ID"])
        create = self.api.create_config if kind == "config" else self.api.create_secret
        return str(create(name, data, labels=labels)["ID"])

    def _deploy_agent(self, service_id: str) -> None:
        code = open(swarm_agent.__file__, "rb").read()
        code_hash = hashlib.sha256(code).hexdigest()[:12]
        token_hash = hashlib.sha256(self._token.encode()).hexdigest()[:12]
        labels = {LABEL_SERVICE: service_id, LABEL_ROLE: "agent"}
        config_name = f"abaco-nb-agent-code-{code_hash}"
        config_id = self._swarm_object("config", config_name, code, labels)
        secret_name = f"abaco-nb-agent-{_short(service_id)}-{token_hash}"
        secret_id = self._swarm_object("secret", secret_name, self._token.encode(), labels)
        fingerprint = hashlib.sha256(
            json.dumps(
                [
                    code_hash,
                    token_hash,
                    self.agent_port,
                    self.agent_dir,
                    self.agent_image,
                    self.agent_docker_socket,
                ]
            ).encode()
        ).hexdigest()[:16]
        name = f"abaco-nb-agent-{_short(service_id)}"
        task_template = {
            "ContainerSpec": {
                "Image": self.agent_image,
                "Command": ["python3", "-u", AGENT_TARGET],
                "Env": [
                    f"ABACO_NB_AGENT_DIR={self.agent_dir}",
                    f"ABACO_NB_AGENT_PORT={self.agent_port}",
                    "ABACO_NB_AGENT_NODE={{.Node.Hostname}}",
                    "ABACO_NB_AGENT_DOCKER=/var/run/docker.sock",
                    f"ABACO_NB_AGENT_TOKEN_FILE=/run/secrets/{AGENT_SECRET_FILE}",
                ],
                "Labels": labels,
                "Mounts": [
                    {"Type": "bind", "Source": self.agent_dir, "Target": self.agent_dir},
                    {"Type": "bind", "Source": self.agent_docker_socket, "Target": "/var/run/docker.sock"},
                ],
                "Configs": [
                    {
                        "ConfigID": config_id,
                        "ConfigName": config_name,
                        "File": {"Name": AGENT_TARGET, "UID": "0", "GID": "0", "Mode": 0o444},
                    }
                ],
                "Secrets": [
                    {
                        "SecretID": secret_id,
                        "SecretName": secret_name,
                        "File": {"Name": AGENT_SECRET_FILE, "UID": "0", "GID": "0", "Mode": 0o400},
                    }
                ],
            },
            "RestartPolicy": {"Condition": "any", "Delay": 1_000_000_000},
            "Networks": [{"Target": "host"}],
            "Resources": {"Limits": {"MemoryBytes": 256 * 1024 * 1024}},
        }
        labels = {**labels, "abaco-nb.agent_spec": fingerprint}
        existing = [s for s in self.api.services(filters={"name": name}) if s["Spec"]["Name"] == name]
        if existing:
            current = existing[0]
            if (current["Spec"].get("Labels") or {}).get("abaco-nb.agent_spec") == fingerprint:
                return
            log.warning("updating the swarm agent %s (its spec changed): running executions lose it", name)
            self.api.update_service(
                current["ID"],
                current["Version"]["Index"],
                task_template=task_template,
                name=name,
                labels=labels,
                mode={"Global": {}},
                endpoint_spec={"Mode": "dnsrr"},
            )
            return
        try:
            self.api.create_service(
                task_template, name=name, labels=labels, mode={"Global": {}}, endpoint_spec={"Mode": "dnsrr"}
            )
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise RuntimeFailure(f"cannot deploy the swarm agent: {exc.explanation or exc}") from exc

    def _deploy_keeper(self, service_id: str, network_id: str) -> None:
        """One idle task per node on the jobs network. A node tears an overlay's sandbox down when its
        last task on it leaves and builds it again for the next (~1.5 s per execution here); an idle
        member keeps it up, so a job only adds its own interface. It listens on nothing."""
        name = f"abaco-nb-keep-{_short(service_id)}"
        if [s for s in self.api.services(filters={"name": name}) if s["Spec"]["Name"] == name]:
            return
        idle = "import signal, sys; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); signal.pause()"
        task_template = {
            "ContainerSpec": {
                "Image": self.agent_image,
                "Command": ["python3", "-c", idle],
                "Labels": {LABEL_SERVICE: service_id, LABEL_ROLE: "keeper"},
                "CapabilityDrop": ["ALL"],
            },
            "RestartPolicy": {"Condition": "any", "Delay": 1_000_000_000},
            "Networks": [{"Target": network_id}],
            "Resources": {"Limits": {"MemoryBytes": 32 * 1024 * 1024, "NanoCPUs": 100_000_000}},
        }
        try:
            self.api.create_service(
                task_template,
                name=name,
                labels={LABEL_SERVICE: service_id, LABEL_ROLE: "keeper"},
                mode={"Global": {}},
                endpoint_spec={"Mode": "dnsrr"},
            )
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise RuntimeFailure(
                    f"cannot deploy the jobs network keeper: {exc.explanation or exc}"
                ) from exc

    # -----------------------------------------------------------------------------------------------------
    # Nodes and agents
    # -----------------------------------------------------------------------------------------------------

    def nodes(self, fresh: bool = False) -> list[Node]:
        stamp, nodes = self._nodes
        if fresh or time.monotonic() - stamp > 5.0 or not nodes:
            nodes = [swarm_spec.node_from_api(n) for n in self.api.nodes()]
            self._nodes = (time.monotonic(), nodes)
        return nodes

    def _agent(
        self,
        addr: str,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection(addr, self.agent_port, timeout=timeout)
        try:
            conn.request(
                method, path, body=body, headers={"Authorization": f"Bearer {self._token}", **(headers or {})}
            )
            response = conn.getresponse()
            data = response.read()
            try:
                return response.status, json.loads(data) if data else {}
            except ValueError:
                return response.status, {"message": data.decode("utf-8", "replace")}
        finally:
            conn.close()

    def _prepare(
        self, node: Node, execution_id: str, binary: bytes | None, deadline: float, warm: bool = False
    ) -> dict[str, Any]:
        """Ask ``node``'s agent to prepare; the agent may still be starting (its image being pulled)."""
        assert self._relay is not None
        query = urllib.parse.urlencode({"callback": self._relay.address, **({"warm": "1"} if warm else {})})
        headers = {"X-Abaco-Binary": "1" if binary is not None else "0"}
        last = ""
        while True:
            try:
                status, data = self._agent(
                    node.addr, "PUT", f"/executions/{execution_id}?{query}", binary or b"", headers
                )
                if status == 200:
                    return data
                last = f"{status} {data.get('message', '')}"
            except OSError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise RuntimeFailure(
                    f"the abaco-nb agent of swarm node {node.hostname} ({node.addr}:"
                    f"{self.agent_port}) does not answer: {last}"
                )
            time.sleep(0.25)

    # -----------------------------------------------------------------------------------------------------
    # Images
    # -----------------------------------------------------------------------------------------------------

    def image_ref(self, image: str) -> str:
        return swarm_spec.image_ref(image, self.registry)

    def check_image(self, image: str, pull: bool = False) -> ImageCheck:
        """The nodes pull from a registry: ask the registry (through the manager) that it has the image."""
        ref = self.image_ref(image)
        if ref.startswith(swarm_spec.OUR_IMAGE_PREFIX):
            return ImageCheck(
                False,
                f"image {image} is built locally and no swarm node can pull it: push it with "
                "`abaco-nb images push --registry HOST:PORT` and start the service with "
                "--swarm-registry HOST:PORT",
            )
        try:
            self.api.inspect_distribution(ref)
        except docker.errors.APIError as exc:
            return ImageCheck(False, f"no swarm node can pull image {ref}: {exc.explanation or exc}")
        except Exception as exc:
            return ImageCheck(False, f"no swarm node can pull image {ref}: {exc}")
        return ImageCheck(True)

    def reattached(self, run: RunningRef, results_socket: str, api_socket: str | None) -> None:
        """The restarted service collects this execution at new paths (its run directory is new):
        the relay re-sends there from now on; the agent keeps what it could not deliver meanwhile."""
        if self._relay is not None:
            self._relay.targets[run.execution_id] = Target(results_socket, api_socket)

    def release_actor(self, actor_id: str) -> None:
        """The actor was deleted or has a new revision: its warm tasks go now, not when idle."""
        self.warm.release_actor(actor_id)

    def image_versions(self, image: str) -> dict[str, str] | None:
        """The versions the image's labels declare, read on the manager through its registry."""
        from .. import images

        try:
            return images.image_versions(self.local_image(image), docker_client=self.client)
        except Exception:  # an image that cannot be read declares nothing
            return None

    def local_image(self, image: str) -> str:
        """The image's name on the manager's Docker, pulled there if missing (to read its labels)."""
        ref = self.image_ref(image)
        try:
            self.api.inspect_image(ref)
        except docker.errors.ImageNotFound:
            repository, tag = docker.utils.parse_repository_tag(ref)
            self.api.pull(repository, tag=tag or "latest")
        return ref

    # -----------------------------------------------------------------------------------------------------
    # Executions
    # -----------------------------------------------------------------------------------------------------

    def start(self, spec: RunSpec) -> RunningRef:
        self._ensure(spec.service_id)
        assert self._relay is not None
        if spec.privileged:
            raise RuntimeFailure(
                "privileged actors cannot run on the swarm runtime (swarm services of "
                "Docker 20.10 have no privileged mode)"
            )
        if spec.warm and swarm_spec.eligible(self.nodes(), spec.queue):  # else the fresh path says why
            try:
                return self.warm.start(spec, self._warm_key(spec), dict)
            except WarmUnavailable as exc:  # said once per reason: it repeats for every call a while
                level = logging.INFO if str(exc) == self._warm_why else logging.WARNING
                self._warm_why = str(exc)
                log.log(level, "execution %s in a fresh job: %s", spec.execution_id, exc)
        binary = None
        if spec.binary_path:
            with open(spec.binary_path, "rb") as f:
                binary = f.read()
        node = self._place(spec)
        try:
            files = self._prepare(node, spec.execution_id, binary, time.monotonic() + self.agent_timeout)
            self._relay.targets[spec.execution_id] = Target(spec.results_socket, spec.api_socket)
            labels = {
                LABEL_SERVICE: spec.service_id,
                LABEL_ACTOR: spec.actor_id,
                LABEL_EXECUTION: spec.execution_id,
                LABEL_WORKER: spec.worker_id,
                LABEL_NODE: node.hostname,
                LABEL_NODE_ADDR: node.addr,
                LABEL_RESULTS: spec.results_socket or "",
                LABEL_API: spec.api_socket or "",
            }
            kwargs = swarm_spec.job_spec(
                name=swarm_spec.service_name(spec.execution_id),
                image=self.image_ref(spec.image),
                environment=spec.environment,
                labels=labels,
                node=node,
                queue=spec.queue,
                network_id=self._network_for(spec),
                files={
                    "results": files.get("results", "") if spec.results_socket else "",
                    "api": files.get("api", "") if spec.api_socket else "",
                    "binary": files.get("binary", "") if binary is not None else "",
                },
                mem_limit=spec.mem_limit if spec.mem_limit is not None else self.default_mem_limit,
                nano_cpus=spec.max_cpus if spec.max_cpus is not None else self.default_nano_cpus,
                pids_limit=self.pids_limit,
                cap_drop=self.cap_drop,
                user=spec.user,
                mounts=spec.mounts,
                stop_grace=10.0,
            )
            try:
                created = self.api.create_service(**kwargs)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
                kwargs["name"] = f"{kwargs['name'][:54]}-{secrets.token_hex(4)}"  # an earlier attempt's name
                created = self.api.create_service(**kwargs)
        except requests.exceptions.ConnectionError as exc:  # the manager's Docker went away: maybe created
            self._release(spec.execution_id, node)
            raise RuntimeUnreachable(f"the swarm manager's Docker does not answer: {exc}") from exc
        except (docker.errors.APIError, RuntimeFailure) as exc:
            self._release(spec.execution_id, node)
            if isinstance(exc, RuntimeFailure):
                raise
            raise RuntimeFailure(
                f"cannot create a swarm job of {spec.image}: {exc.explanation or exc}"
            ) from exc
        extra = {"node": node.hostname, "node_id": node.id, "addr": node.addr, "image": spec.image}
        return RunningRef(execution_id=spec.execution_id, ref=str(created["ID"]), extra=extra)

    def _warm_key(self, spec: RunSpec) -> tuple[Any, ...]:
        """Executions share a warm task only when a fresh job would be made the same way."""
        mounts = tuple(sorted(tuple(sorted(m.items())) for m in spec.mounts))
        return (
            spec.actor_id,
            spec.image,
            spec.mem_limit,
            spec.max_cpus,
            spec.network,
            spec.user,
            swarm_spec.queue_of(spec.queue),
            spec.api_socket,
            mounts,
        )

    def _network_for(self, spec: RunSpec) -> str:
        """The internal jobs network, or the one with egress when the actor asks for a network."""
        if not spec.network:
            return self._networks[False]
        network = self._networks.get(True) or self._network(spec.service_id, internal=False)
        self._networks[True] = network
        return network

    def _place(self, spec: RunSpec) -> Node:
        """The node for an execution or a warm task (counted in the node's load until released)."""
        candidates = swarm_spec.eligible(self.nodes(), spec.queue)
        if not candidates:
            candidates = swarm_spec.eligible(self.nodes(fresh=True), spec.queue)
        if not candidates:
            queue = swarm_spec.queue_of(spec.queue)
            raise RuntimeFailure(
                f"no ready swarm node for queue {queue!r}: label one with `docker node update --label-add "
                f"{swarm_spec.QUEUE_LABEL}={queue} NODE`"
                if queue
                else "no ready swarm node"
            )
        with self._lock:
            node = swarm_spec.choose_node(candidates, self._load, self._turn)
            self._turn += 1
            self._load[node.id] = self._load.get(node.id, 0) + 1
        return node

    def _release(self, execution_id: str, node: Node | None) -> None:
        if self._relay is not None:
            self._relay.targets.pop(execution_id, None)
        if node is not None:
            with self._lock:
                self._load[node.id] = max(0, self._load.get(node.id, 0) - 1)
            try:
                self._agent(node.addr, "DELETE", f"/executions/{execution_id}", timeout=30)
            except OSError as exc:
                log.warning("agent of %s: cannot drop %s: %s", node.hostname, execution_id, exc)

    def _task(self, run: RunningRef) -> dict[str, Any] | None:
        try:
            return swarm_spec.latest_task(self.api.tasks(filters={"service": run.ref}))
        except requests.exceptions.ConnectionError as exc:
            raise RuntimeUnreachable(f"the swarm manager's Docker does not answer: {exc}") from exc
        except docker.errors.APIError as exc:
            raise RuntimeFailure(f"cannot read the tasks of swarm job {run.ref[:12]}: {exc}") from exc

    def wait(self, run: RunningRef, timeout: float) -> ExitInfo | None:
        if run.extra.get("warm"):
            return self.warm.wait(run, timeout)
        cached = run.extra.get("exit")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            if run.extra.get("removed_early"):
                final = {
                    "Status": "removed",
                    "Running": False,
                    "OOMKilled": False,
                    "ExitCode": -1,
                    "Error": "stopped before the job's container started",
                    "Node": run.extra.get("node"),
                }
                run.extra["exit"] = ExitInfo(exit_code=-1, final_state=final)
                return run.extra["exit"]  # type: ignore[no-any-return]
            task = self._task(run)
            if task is not None:
                run.extra["task"] = task
            if swarm_spec.task_state(task) in swarm_spec.TASK_TERMINAL:
                run.extra["exit"] = self._finish(run, task)
                return run.extra["exit"]  # type: ignore[no-any-return]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(min(self.poll_interval, remaining))

    def _finish(self, run: RunningRef, task: dict[str, Any] | None) -> ExitInfo:
        """Flush the node's results, read the container's state there, build the exit facts."""
        state = None
        addr = run.extra.get("addr", "")
        container = swarm_spec.task_container(task)
        for _attempt in range(20):
            try:
                status, data = self._agent(
                    addr,
                    "POST",
                    f"/executions/{run.execution_id}/finish?"
                    + urllib.parse.urlencode({"container": container}),
                )
            except OSError as exc:
                log.warning("agent at %s: %s", addr, exc)
                time.sleep(0.5)
                continue
            if status == 200:
                state = data.get("state")
                if data.get("delivered", True):
                    break
            time.sleep(0.25)
        code, final = swarm_spec.exit_facts(task, state, str(run.extra.get("node", "")))
        return ExitInfo(exit_code=code, final_state=final)

    def logs(self, run: RunningRef) -> str:
        if run.extra.get("warm"):
            return self.warm.logs(run)
        try:
            chunks = self.api.service_logs(run.ref, stdout=True, stderr=True, follow=False, is_tty=False)
            text = b"".join(chunks).decode("utf-8", "replace")
        except docker.errors.NotFound:
            return str(run.extra.get("last_logs", ""))
        except docker.errors.APIError as exc:
            raise RuntimeFailure(f"cannot read the logs of swarm job {run.ref[:12]}: {exc}") from exc
        run.extra["last_logs"] = text
        return text

    def stop(self, run: RunningRef, grace: float = 10.0) -> None:
        if run.extra.get("warm"):
            self.warm.stop(run, grace)
            return
        task = self._task(run)
        state = swarm_spec.task_state(task)
        container = swarm_spec.task_container(task)
        if state in swarm_spec.TASK_TERMINAL:
            return
        if state == "running" and container:
            query = urllib.parse.urlencode({"container": container, "grace": max(0, int(grace))})
            try:
                status, data = self._agent(
                    run.extra.get("addr", ""),
                    "POST",
                    f"/executions/{run.execution_id}/stop?{query}",
                    timeout=grace + 90,
                )
            except OSError as exc:
                raise RuntimeFailure(f"cannot reach the agent to stop {run.execution_id}: {exc}") from exc
            if status == 200:
                return
            log.warning("agent could not stop %s (%s %s): removing the job", run.execution_id, status, data)
        # Not running yet (or the agent could not stop it): removing the job is the only stop swarm has.
        try:
            self.api.remove_service(run.ref)
        except docker.errors.NotFound:
            pass
        run.extra["removed_early"] = True

    def remove(self, run: RunningRef) -> None:
        if run.extra.get("warm"):
            self.warm.remove(run)
            return
        try:
            self.api.remove_service(run.ref)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise RuntimeFailure(f"cannot remove swarm job {run.ref[:12]}: {exc.explanation or exc}") from exc
        node_id = run.extra.get("node_id")
        node = next((n for n in self._nodes[1] if n.id == node_id), None)
        if node is None and run.extra.get("addr"):
            node = Node(str(node_id or ""), str(run.extra.get("node", "")), str(run.extra["addr"]), True, {})
        if not run.extra.get("released"):
            run.extra["released"] = True
            self._release(run.execution_id, node)

    def find_leftovers(self, service_id: str) -> list[Leftover]:
        try:
            return self._find_leftovers(service_id)
        except requests.exceptions.ConnectionError as exc:
            raise RuntimeUnreachable(f"the swarm manager's Docker does not answer: {exc}") from exc

    def _find_leftovers(self, service_id: str) -> list[Leftover]:
        self._ensure(service_id)
        found = []
        ours = set(self.warm.container_ids())
        for service in self.api.services(filters={"label": f"{LABEL_SERVICE}={service_id}"}):
            labels = service["Spec"].get("Labels") or {}
            if labels.get(LABEL_ROLE) == ROLE_WARM and service["ID"] not in ours:  # an earlier run's
                try:
                    self.api.remove_service(service["ID"])
                except docker.errors.NotFound:
                    pass
                continue
            if labels.get(LABEL_ROLE) or not labels.get(LABEL_EXECUTION):
                continue
            task = swarm_spec.latest_task(self.api.tasks(filters={"service": service["ID"]}))
            state = swarm_spec.task_state(task)
            started = state not in swarm_spec.TASK_WAITING and bool(swarm_spec.task_container(task))
            found.append(
                Leftover(
                    execution_id=labels[LABEL_EXECUTION],
                    ref=service["ID"],
                    running=state not in swarm_spec.TASK_TERMINAL,
                    started=started,
                )
            )
        if not self._swept:  # the first look after a start: nothing of ours is starting yet
            self._swept = True
            self._sweep_agents({lo.execution_id for lo in found} | self.warm.task_ids())
        return found

    def _sweep_agents(self, keep: set[str]) -> None:
        """Drop what the agents still hold for executions whose job is gone (the service died between
        the job's removal and the agent's clean-up). Agents that do not answer are left for later."""
        for node in self.nodes(fresh=True):
            if not node.ready:
                continue
            try:
                status, data = self._agent(node.addr, "GET", "/executions", timeout=5)
                if status != 200:
                    continue
                for eid in set(data.get("executions") or ()) - keep:
                    self._agent(node.addr, "DELETE", f"/executions/{eid}", timeout=10)
            except OSError as exc:
                log.info("agent of %s not swept: %s", node.hostname, exc)

    def attach(self, leftover: Leftover) -> RunningRef:
        """Supervise a job an earlier run started: relay its sockets again, tell its agent where we are."""
        assert self._relay is not None
        try:
            labels = self.api.inspect_service(leftover.ref)["Spec"].get("Labels") or {}
        except docker.errors.APIError as exc:
            raise RuntimeFailure(f"swarm job {leftover.ref[:12]} is gone: {exc}") from exc
        node = next((n for n in self.nodes(fresh=True) if n.hostname == labels.get(LABEL_NODE)), None)
        addr = node.addr if node else labels.get(LABEL_NODE_ADDR, "")
        self._relay.targets[leftover.execution_id] = Target(
            labels.get(LABEL_RESULTS) or None, labels.get(LABEL_API) or None
        )
        if node is not None:
            with self._lock:
                self._load[node.id] = self._load.get(node.id, 0) + 1
            try:
                self._prepare(node, leftover.execution_id, None, time.monotonic() + 30)
            except RuntimeFailure as exc:
                log.warning("re-attaching %s: %s", leftover.execution_id, exc)
        extra = {
            "node": labels.get(LABEL_NODE, ""),
            "node_id": node.id if node else "",
            "addr": addr,
            "attached": True,
        }
        return RunningRef(execution_id=leftover.execution_id, ref=leftover.ref, extra=extra)

    def close(self) -> None:
        """The service is stopping: no warm task outlives it."""
        self.warm.close()
        if self._relay is not None:
            self._relay.close()
            self._relay = None
