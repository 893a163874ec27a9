"""Pure decisions of the swarm runtime: which node, what job spec, how a task's end reads in Abaco terms.

No I/O here, so the rules are tested without a swarm: node choice for a queue, the ``replicated-job``
service spec (Docker Engine API 1.41, the version of Docker 20.10), image names through the registry,
and the ``final_state`` built from a task's status and the node's inspect of its container.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .base import API_SOCKET_PATH, BINARY_DATA_PATH, RESULTS_SOCKET_PATH, exited_state

QUEUE_LABEL = "abaco-nb.queue"
LABEL_ROLE = "abaco-nb.role"
LABEL_NODE = "abaco-nb.node"
LABEL_NODE_ADDR = "abaco-nb.node_addr"
LABEL_RESULTS = "abaco-nb.results_socket"
LABEL_API = "abaco-nb.api_socket"
DEFAULT_QUEUES = ("", "default")
QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

# Task states (swarmkit's api.TaskState, lower case as the API reports them).
TASK_WAITING = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting")
TASK_TERMINAL = ("complete", "shutdown", "failed", "rejected", "orphaned", "remove")
OUR_IMAGE_PREFIX = "abaco-nb/"


@dataclass(frozen=True)
class Node:
    """A swarm node as the runtime sees it."""

    id: str
    hostname: str
    addr: str
    ready: bool
    labels: dict[str, str]


def node_from_api(data: dict[str, Any]) -> Node:
    """A node from ``GET /nodes``. A manager may report ``Status.Addr`` 0.0.0.0: use its manager address."""
    status = data.get("Status") or {}
    spec = data.get("Spec") or {}
    addr = status.get("Addr") or ""
    if addr in ("", "0.0.0.0"):
        addr = ((data.get("ManagerStatus") or {}).get("Addr") or "").rsplit(":", 1)[0]
    ready = status.get("State") == "ready" and spec.get("Availability", "active") == "active"
    return Node(
        data["ID"],
        (data.get("Description") or {}).get("Hostname", ""),
        addr,
        ready,
        dict(spec.get("Labels") or {}),
    )


def queue_of(queue: str | None) -> str:
    return "" if (queue or "") in DEFAULT_QUEUES else str(queue)


def eligible(nodes: list[Node], queue: str | None) -> list[Node]:
    """Ready, active nodes for ``queue``: any node for the default queue, else those labelled for it."""
    wanted = queue_of(queue)
    return [n for n in nodes if n.ready and n.addr and (not wanted or n.labels.get(QUEUE_LABEL) == wanted)]


def choose_node(candidates: list[Node], load: dict[str, int], turn: int) -> Node:
    """The least loaded candidate (our running executions per node); ties rotate with ``turn``."""
    if not candidates:
        raise ValueError("no candidates")
    ordered = sorted(candidates, key=lambda n: n.id)
    least = min(load.get(n.id, 0) for n in ordered)
    ties = [n for n in ordered if load.get(n.id, 0) == least]
    return ties[turn % len(ties)]


def image_ref(image: str, registry: str) -> str:
    """Our own images (``abaco-nb/...``) live in the swarm's registry; other names are pulled as given."""
    if registry and image.startswith(OUR_IMAGE_PREFIX):
        return f"{registry.rstrip('/')}/{image}"
    return image


def memory_bytes(mem: str | None) -> int | None:
    """Docker's memory strings (512m, 2g, 1024k, 100) to bytes; None or -1 means no limit."""
    if mem is None or str(mem).strip() in ("", "-1", "0"):
        return None
    text = str(mem).strip().lower().rstrip("b")
    units = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def service_name(execution_id: str) -> str:
    return f"abaco-nb-x-{execution_id}".lower()[:63]


def job_spec(
    *,
    name: str,
    image: str,
    environment: dict[str, str],
    labels: dict[str, str],
    node: Node,
    queue: str | None,
    network_id: str,
    files: dict[str, str],
    mem_limit: str | None,
    nano_cpus: int | None,
    pids_limit: int | None,
    cap_drop: list[str],
    user: str | None,
    mounts: list[dict[str, str]],
    stop_grace: float,
) -> dict[str, Any]:
    """Keyword arguments of ``APIClient.create_service`` for one execution's ``replicated-job``.

    ``files`` maps ``binary``/``results``/``api`` to the paths the node's agent prepared. Placement is
    pinned to the node whose agent holds them; the queue constraint is kept as documentation.
    """
    binds = [
        {
            "Type": "bind",
            "Source": m["host_path"],
            "Target": m["container_path"],
            "ReadOnly": (m.get("mode") or m.get("format") or "ro") != "rw",
        }
        for m in mounts
    ]
    for key, target, read_only in (
        ("results", RESULTS_SOCKET_PATH, True),
        ("api", API_SOCKET_PATH, True),
        ("binary", BINARY_DATA_PATH, True),
    ):
        if files.get(key):
            binds.append({"Type": "bind", "Source": files[key], "Target": target, "ReadOnly": read_only})
    limits: dict[str, Any] = {}
    mem = memory_bytes(mem_limit)
    if mem:
        limits["MemoryBytes"] = mem
    if nano_cpus and nano_cpus > 0:
        limits["NanoCPUs"] = int(nano_cpus)
    if pids_limit:
        limits["Pids"] = int(pids_limit)  # API 1.41
    constraints = [f"node.id=={node.id}"]
    if queue_of(queue):
        constraints.append(f"node.labels.{QUEUE_LABEL}=={queue_of(queue)}")
    container: dict[str, Any] = {
        "Image": image,
        "Env": [f"{k}={'' if v is None else v}" for k, v in environment.items()],
        "Labels": labels,
        "Mounts": binds,
        "CapabilityDrop": [f"CAP_{c}" if not c.startswith("CAP_") else c for c in cap_drop],  # API 1.41
        "StopGracePeriod": int(stop_grace * 1e9),
    }
    if user:
        container["User"] = user
    task_template = {
        "ContainerSpec": container,
        "Resources": {"Limits": limits},
        "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
        "Placement": {"Constraints": constraints},
        "Networks": [{"Target": network_id}],
    }
    return {
        "task_template": task_template,
        "name": name,
        "labels": labels,
        "mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}},
        "endpoint_spec": {"Mode": "dnsrr"},  # no virtual IP: this kernel has no IPVS
    }


def latest_task(tasks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A job has one task (no restarts); if swarm made more, the newest one counts."""
    if not tasks:
        return None
    return max(tasks, key=lambda t: (t.get("Version") or {}).get("Index", 0))


def task_state(task: dict[str, Any] | None) -> str:
    return str(((task or {}).get("Status") or {}).get("State", ""))


def task_container(task: dict[str, Any] | None) -> str:
    return (((task or {}).get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID", "") or ""


def exit_facts(
    task: dict[str, Any] | None, container_state: dict[str, Any] | None, node: str
) -> tuple[int, dict[str, Any]]:
    """(exit_code, final_state) of an ended task: Docker's State keys (from the node's inspect of the
    container when the agent could read it, else from the task), plus the task's own facts and the node."""
    status = (task or {}).get("Status") or {}
    container_status = status.get("ContainerStatus") or {}
    code = container_status.get("ExitCode")
    final = exited_state(code, None, status.get("Timestamp"), error=status.get("Err", ""))
    if container_state:
        final.update(container_state)
        code = container_state.get("ExitCode", code)
    if code is None:  # the container never ran (rejected: image, mounts, no resources)
        final["Status"] = "rejected" if task_state(task) == "rejected" else task_state(task) or "removed"
        code = -1
        final["ExitCode"] = -1
    final["Node"] = node
    final["TaskState"] = task_state(task)
    final["TaskError"] = status.get("Err", "")
    return int(code), final
