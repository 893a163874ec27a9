"""Warm tasks: the docker runtime's warm containers (``warm.py``) on the swarm runtime.

An executor actor's executions on swarm would each be a fresh ``replicated-job`` (~1.5 s here). A warm
task is one long-lived job per busy worker, placed on a node like an execution (ready, queue label,
least loaded), whose PID 1 is the same zygote program as a docker warm container, forking each
execution inside. Nothing of the pool's protocol is new: :class:`SwarmWarmPool` is ``WarmPool`` with
the few places where it touches files or Docker on *this* machine pointed at the node's agent instead.

- **control socket**: the pool still listens on a local unix socket in its worker directory; the task's
  zygote connects to ``control.sock`` in the agent's directory for the task on the node (bound at the
  worker mount), and the agent tunnels that connection to ``CONNECT /control/<wid>`` of the service's
  relay, which connects it to the local listener — the API socket's channel, for one more socket.
- **results**: the task's ``/_abaco_results.sock`` is the agent's, relayed to the pool's per-container
  relay socket, which forwards to the current execution's own socket (as on docker). When an execution
  exits the pool first asks the agent to flush (``finish``), then drains: no result is lost to the race
  between the last datagram and the exit report.
- **binary data, logs**: files in the agent's directory on the node: the binary message is rewritten in
  place per execution, a child's log is read and dropped through the agent.
- **OOM**: after a child died of SIGKILL the agent reads the task container's cgroup ``oom_kill`` count
  inside it (``docker exec``); a rise since the last reading means the kernel killed it. A zygote killed
  itself is reported by the container's ``OOMKilled`` state, read by the agent.
- **program**: the zygote's three files reach the node as swarm configs (named by their content hash).
- **end**: the pool removes the job (idle stop, actor deleted, ``close``). After a ``kill -9`` of the
  service the relay's connection ends, so the zygote exits and the task completes; the next start
  removes jobs labelled ``abaco-nb.role=warm`` of the service that are not its own (``find_leftovers``).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import subprocess
import threading
import time
import urllib.parse
import uuid
from typing import TYPE_CHECKING, Any

import docker.errors
import requests

from . import swarm_spec, zygote_main
from .base import LABEL_ACTOR, LABEL_EXECUTION, LABEL_SERVICE, LABEL_WORKER, RunningRef, RunSpec
from .swarm_relay import Target
from .swarm_spec import LABEL_NODE, LABEL_NODE_ADDR, LABEL_ROLE, Node
from .warm import (
    CONTROL,
    LABEL_WARM,
    LAUNCHER,
    PROGRAM_FILES,
    PROGRAM_MOUNT,
    PROGRAM_PACKAGE,
    RELAY,
    WORKER_MOUNT,
    WarmContainer,
    WarmPool,
    WarmUnavailable,
    _WarmRun,
    image_facts,
)
from .zygote import SLOT_BYTES, SLOT_NAME

if TYPE_CHECKING:
    from .swarm import SwarmRuntime

log = logging.getLogger(__name__)

ROLE_WARM = "warm"


class _TaskProc:
    """``wait``/``poll``/``kill`` of a warm task's job, for :class:`Zygote`."""

    def __init__(self, api: Any, service_id: str) -> None:
        self.api = api
        self.service_id = service_id
        self.killed = False

    def poll(self) -> int | None:
        if self.killed:
            return -1
        try:
            task = swarm_spec.latest_task(self.api.tasks(filters={"service": self.service_id}))
        except docker.errors.NotFound:
            return -1
        except (docker.errors.APIError, requests.exceptions.RequestException):
            return None
        if task is None or swarm_spec.task_state(task) not in swarm_spec.TASK_TERMINAL:
            return None
        return int(((task.get("Status") or {}).get("ContainerStatus") or {}).get("ExitCode", -1))

    def wait(self, timeout: float | None = None) -> int:
        deadline = time.monotonic() + (timeout if timeout is not None else 3600.0)
        while True:
            code = self.poll()
            if code is not None:
                return code
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("swarm warm task", timeout or 0)
            time.sleep(0.2)

    def kill(self) -> None:
        self.killed = True
        try:
            self.api.remove_service(self.service_id)
        except (docker.errors.APIError, requests.exceptions.RequestException):
            pass


class SwarmWarmContainer(WarmContainer):
    """A warm container that is a swarm job on a node chosen when it starts."""

    start_timeout = 120.0  # placing, maybe pulling on the node, overlay set-up: more than a local start

    def __init__(self, pool: SwarmWarmPool, key: tuple[Any, ...], spec: RunSpec, wdir: str) -> None:
        super().__init__(pool, key, {}, pool.facts(spec.image), wdir)
        self.swarm = pool.runtime
        self.spec = spec
        self.wid = f"warm-{os.path.basename(wdir)}"
        self.node: Node | None = None
        self.task_container = ""  # the job's container id on the node, once known
        self.oom_seen = 0

    def _launch(self) -> Any:
        swarm, spec = self.swarm, self.spec
        try:
            node = swarm._place(spec)
        except Exception as exc:
            raise OSError(str(exc)) from exc
        self.node = node
        assert swarm._relay is not None
        swarm._relay.targets[self.wid] = Target(
            os.path.join(self.dir, RELAY), spec.api_socket, os.path.join(self.dir, CONTROL)
        )
        try:
            files = swarm._prepare(node, self.wid, b"", time.monotonic() + 60, warm=True)
            created = swarm.api.create_service(**self._job(node, files))
        except Exception as exc:  # RuntimeFailure, APIError, a Docker that does not answer
            swarm._release(self.wid, node)
            self.node = None
            raise OSError(f"cannot start a warm task on swarm node {node.hostname}: {exc}") from exc
        self.container_id = str(created["ID"])
        return _TaskProc(swarm.api, self.container_id)

    def _job(self, node: Node, files: dict[str, Any]) -> dict[str, Any]:
        swarm, spec, facts = self.swarm, self.spec, self.facts
        labels = {
            LABEL_SERVICE: spec.service_id,
            LABEL_ACTOR: spec.actor_id,
            LABEL_EXECUTION: self.wid,
            LABEL_WORKER: spec.worker_id,
            LABEL_NODE: node.hostname,
            LABEL_NODE_ADDR: node.addr,
            LABEL_ROLE: ROLE_WARM,
            LABEL_WARM: "1",
        }
        network = swarm._network_for(spec)
        kwargs = swarm_spec.job_spec(
            name=f"abaco-nb-{self.wid}",
            image=swarm.image_ref(spec.image),
            environment={SLOT_NAME: "x" * SLOT_BYTES},
            labels=labels,
            node=node,
            queue=spec.queue,
            network_id=network,
            files={
                "results": files["results"],
                "api": files["api"] if spec.api_socket else "",
                "binary": files["binary"],
            },
            mem_limit=spec.mem_limit if spec.mem_limit is not None else swarm.default_mem_limit,
            nano_cpus=spec.max_cpus if spec.max_cpus is not None else swarm.default_nano_cpus,
            pids_limit=swarm.pids_limit,
            cap_drop=swarm.cap_drop,
            user=spec.user,
            mounts=spec.mounts,
            stop_grace=2.0,
        )
        container = kwargs["task_template"]["ContainerSpec"]
        container["Command"] = [
            facts.python,
            "-c",
            LAUNCHER,
            ",".join(zygote_main.PRELOAD) if facts.func else "",
        ]
        container["Dir"] = facts.workdir
        container["Mounts"].append({"Type": "bind", "Source": files["dir"], "Target": WORKER_MOUNT})
        container["Configs"] = self.pool.program_configs(spec.service_id)  # type: ignore[attr-defined]
        return kwargs

    def container_on_node(self) -> str:
        """The job's container id on its node (for the agent's Docker calls), once the task has one."""
        if not self.task_container and self.container_id:
            try:
                task = swarm_spec.latest_task(self.swarm.api.tasks(filters={"service": self.container_id}))
                self.task_container = swarm_spec.task_container(task)
            except (docker.errors.APIError, requests.exceptions.RequestException):
                pass
        return self.task_container

    def _end(self) -> None:
        if self.container_id:
            _TaskProc(self.swarm.api, self.container_id).kill()
        if self.node is not None:
            node, self.node = self.node, None
            self.swarm._release(self.wid, node)

    def _container_logs(self) -> str:
        if not self.container_id:
            return ""
        try:
            chunks = self.swarm.api.service_logs(self.container_id, stdout=True, stderr=True, follow=False)
            text = b"".join(chunks).decode("utf-8", "replace")
        except (docker.errors.APIError, requests.exceptions.RequestException):
            return ""
        return f": {text.strip()[-600:]}" if text.strip() else ""


class SwarmWarmPool(WarmPool):
    """``WarmPool`` whose containers are swarm jobs and whose files are on the nodes (module docstring)."""

    def __init__(self, runtime: SwarmRuntime, base_dir: str, idle_seconds: float = 300.0) -> None:
        super().__init__(runtime.api, base_dir, idle_seconds=idle_seconds)
        self.runtime = runtime
        self._configs: list[dict[str, Any]] | None = None
        self._configs_lock = threading.Lock()

    def facts(self, image: str) -> Any:
        facts = self._facts.get(image)
        if facts is None:
            try:
                config = self.api.inspect_image(self.runtime.local_image(image)).get("Config") or {}
            except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
                raise WarmUnavailable(f"cannot inspect {image}: {exc}") from exc
            facts = self._facts[image] = image_facts(config)
        return facts

    def program_configs(self, service_id: str) -> list[dict[str, Any]]:
        """The zygote program's files as swarm configs (created once, named by content)."""
        with self._configs_lock:
            if self._configs is None:
                self._configs = self._program_configs(service_id)
            return self._configs

    def _program_configs(self, service_id: str) -> list[dict[str, Any]]:
        """Each file of the zygote program as a swarm config, created when missing."""
        configs = []
        for name, src in PROGRAM_FILES.items():
            with open(src, "rb") as f:
                data = f.read() or b"\n"  # swarm refuses an empty config (the package's __init__.py)
            config_name = f"abaco-nb-zygote-{name.replace('.', '-')}-{hashlib.sha256(data).hexdigest()[:12]}"
            config_id = self.runtime._swarm_object(
                "config", config_name, data, {LABEL_SERVICE: service_id, LABEL_ROLE: "zygote"}
            )
            configs.append(
                {
                    "ConfigID": config_id,
                    "ConfigName": config_name,
                    "File": {
                        "Name": f"{PROGRAM_MOUNT}/{PROGRAM_PACKAGE}/{name}",
                        "UID": "0",
                        "GID": "0",
                        "Mode": 0o444,
                    },
                }
            )
        return configs

    def task_ids(self) -> set[str]:
        """The agent-side ids of this pool's warm tasks (kept when agents are swept)."""
        with self._lock:
            return {c.wid for c in self._containers if isinstance(c, SwarmWarmContainer)}

    def _new(self, key: tuple[Any, ...], spec: RunSpec, host_config: dict[str, Any]) -> WarmContainer:
        wdir = os.path.join(self.base_dir, uuid.uuid4().hex[:12])
        os.makedirs(wdir)
        return SwarmWarmContainer(self, key, spec, wdir)

    # -- the node's files, through its agent ----------------------------------------------------------

    def _call(
        self, container: WarmContainer, method: str, path: str, body: bytes = b"", timeout: float = 30.0
    ) -> tuple[int, bytes]:
        """One raw request to the agent of the container's node."""
        assert isinstance(container, SwarmWarmContainer)
        if container.node is None:
            raise OSError("the warm task has no node")
        conn = http.client.HTTPConnection(container.node.addr, self.runtime.agent_port, timeout=timeout)
        try:
            conn.request(
                method,
                f"/executions/{container.wid}{path}",
                body=body,
                headers={"Authorization": f"Bearer {self.runtime._token}"},
            )
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def _ref_extra(self, container: WarmContainer) -> dict[str, Any]:
        assert isinstance(container, SwarmWarmContainer) and container.node is not None
        node = container.node
        return {"node": node.hostname, "node_id": node.id, "addr": node.addr, "warm_task": container.wid}

    def _load_binary(self, container: WarmContainer, path: str | None) -> None:
        data = b""
        if path:
            with open(path, "rb") as f:
                data = f.read()
        status, body = self._call(container, "PUT", "/binary", data, timeout=120)
        if status != 200:
            raise OSError(f"the node's agent answered {status}: {body[:200]!r}")

    def _new_log(self, run: _WarmRun) -> None:
        """The zygote creates the child's log on the node."""

    def _log_query(self, run: _WarmRun) -> str:
        return "/log?" + urllib.parse.urlencode({"name": os.path.basename(run.log_path)})

    def _drop_log(self, run: _WarmRun) -> None:
        try:
            self._call(run.container, "DELETE", self._log_query(run))
        except OSError as exc:
            log.info("warm task log of %s not dropped: %s", run.execution_id, exc)

    def logs(self, ref: RunningRef) -> str:
        with self._lock:
            run = self._runs.get(ref.execution_id)
        if run is None:
            return str(ref.extra.get("last_logs", ""))
        try:
            status, body = self._call(run.container, "GET", self._log_query(run))
        except OSError as exc:
            log.warning("logs of %s from its node: %s", ref.execution_id, exc)
            return str(ref.extra.get("last_logs", ""))
        if status == 200:
            ref.extra["last_logs"] = body.decode("utf-8", errors="replace")
        return str(ref.extra.get("last_logs", ""))

    def _agent_json(self, container: WarmContainer, path: str) -> dict[str, Any]:
        import json

        try:
            status, body = self._call(container, "POST", path)
            return json.loads(body) if status == 200 and body else {}
        except (OSError, ValueError) as exc:
            log.warning("agent of a warm task: %s", exc)
            return {}

    def _oom_kills(self, container: WarmContainer, before: bool) -> int | None:
        assert isinstance(container, SwarmWarmContainer)
        if before:
            return container.oom_seen
        query = urllib.parse.urlencode(
            {"container": container.container_on_node(), "python": container.facts.python}
        )
        count = self._agent_json(container, f"/oom?{query}").get("oom_kill")
        if isinstance(count, int):
            container.oom_seen = count
            return count
        return None

    def _pid1_oom(self, container: WarmContainer) -> bool:
        assert isinstance(container, SwarmWarmContainer)
        query = urllib.parse.urlencode({"container": container.container_on_node()})
        state = self._agent_json(container, f"/finish?{query}").get("state") or {}
        return bool(state.get("OOMKilled"))

    def _flush(self, container: WarmContainer) -> None:
        for _attempt in range(20):
            if self._agent_json(container, "/finish").get("delivered"):
                return
            time.sleep(0.25)
