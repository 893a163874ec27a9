"""The swarm runtime for real: two private Docker daemons in a swarm (tests/swarm_cluster.py), a local
registry, ``abaco-nb serve --runtime swarm`` on the manager node, executions on both nodes.

The system's Docker is only read (``docker save`` of our images); the module checks at the end that its
``docker0``, containers and images are as before and that it is still in no swarm.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import cloudpickle
import pytest

from server_ext.service.images import FUNC_IMAGE, TEST_IMAGE, expected_func_image
from tests.serve import Served, wait_ready, wait_status
from tests.server_ext.test_docker_service import ACCUMULATOR, _allocate, _pickled_call, build_reactor
from tests.swarm_cluster import Cluster, missing_requirements, start_cluster, start_swarm_serve

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _system_docker_facts() -> dict:
    link = subprocess.run(["ip", "-o", "link", "show", "docker0"], capture_output=True, text=True).stdout
    addr = subprocess.run(["ip", "-o", "addr", "show", "docker0"], capture_output=True, text=True).stdout
    ps = subprocess.run(["docker", "ps", "-aq", "--no-trunc"], capture_output=True, text=True).stdout.split()
    images = subprocess.run(
        ["docker", "images", "-q", "--no-trunc"], capture_output=True, text=True
    ).stdout.split()
    swarm = subprocess.run(
        ["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "docker0": link.split(">")[0] + " " + " ".join(addr.split()[2:5]),
        "containers": set(ps),
        "images": set(images),
        "swarm": swarm,
    }


@pytest.fixture(scope="module")
def cluster(docker_client, built_images) -> Iterator[Cluster]:
    reason = missing_requirements()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs private Docker daemons: {reason}")
        pytest.skip(reason)
    before = _system_docker_facts()
    names = [f"{TEST_IMAGE}:latest", f"{FUNC_IMAGE}:latest", expected_func_image()]
    c = start_cluster(names)
    try:
        c.label(c.nodes[1], "abaco-nb.queue", "bq")
        yield c
    finally:
        c.stop()
        after = _system_docker_facts()
        assert after["docker0"] == before["docker0"], "the system's docker0 changed"
        assert after["swarm"] == before["swarm"] == "inactive"
        assert not {i for i in after["images"] - before["images"]} or not os.environ.get("CI"), "images added"
        assert before["images"] - after["images"] == set() or not os.environ.get("CI"), "images removed"
        ours = subprocess.run(
            ["docker", "ps", "-aq", "--filter", "label=abaco-nb.node"], capture_output=True, text=True
        ).stdout.split()
        assert ours == [], "a swarm job's container reached the system daemon"
        if os.environ.get("CI"):  # on a shared machine other users' containers come and go
            assert after["containers"] == before["containers"]


@pytest.fixture(scope="module")
def served(cluster: Cluster) -> Iterator[Served]:
    s = start_swarm_serve(cluster, cluster.base / "svc")
    yield s
    s.stop()


def register(served: Served, **body) -> str:
    r = served.session.post(served.api("/actors"), json=body)
    assert r.status_code == 200, r.text
    actor = wait_ready(served, r.json()["result"]["id"], timeout=120)
    assert actor["status"] == "READY", actor
    return actor["id"]


def send(served: Served, aid: str, suffix: str = "", **kwargs) -> str:
    r = served.session.post(served.api(f"/actors/{aid}/messages{suffix}"), **kwargs)
    assert r.status_code == 200, r.text
    return r.json()["result"]["execution_id"]


def logs(served: Served, aid: str, eid: str) -> str:
    return served.session.get(served.api(f"/actors/{aid}/executions/{eid}/logs")).json()["result"]["logs"]


def pushed_reactor(cluster: Cluster, name: str, files: dict[str, str], cmd: str) -> str:
    """A reactor image built on the manager node and pushed to the swarm's registry."""
    client = cluster.manager.client()
    tag = f"{cluster.registry}/abaco-nb-test/{name}:latest"
    build_reactor(client, tag, files, cmd)
    for line in client.api.push(tag.rsplit(":", 1)[0], tag="latest", stream=True, decode=True):
        assert "error" not in line, line
    return tag


NODES = {"abnb-node-a", "abnb-node-b"}


def test_seed_walkthrough_runs_on_both_nodes(served, cluster):
    aid = register(
        served,
        image="abaco-nb/test",
        name="test",
        description="My test actor using the abacosamples image.",
        default_environment={"key1": "value1", "key2": "value2", "SLEEP": "0"},
    )
    raw = send(served, aid, "?key1=valueABC", data={"message": "some test message"})
    as_json = send(served, aid, json={"username": "jdoe", "application_id": "print-env-cli-DggdGbK-0.1.0"})
    more = [send(served, aid, data={"message": f"m{i}"}) for i in range(4)]
    results = {e: wait_status(served, aid, e, timeout=120) for e in [raw, as_json, *more]}
    assert all(r["status"] == "COMPLETE" and r["exit_code"] == 0 for r in results.values()), results
    raw_logs = logs(served, aid, raw)
    assert "Contents of MSG: some test message" in raw_logs and "key1=valueABC" in raw_logs  # query override
    assert "key2=value2" in raw_logs and "_abaco_execution_id=" + raw in raw_logs
    json_logs = logs(served, aid, as_json)
    assert "'username': 'jdoe'" in json_logs and "_abaco_Content_Type=application/json" in json_logs
    nodes = {r["node"] for r in results.values()}
    assert nodes == NODES, nodes  # GET execution names the node, and both nodes ran executions
    assert {r["final_state"]["Node"] for r in results.values()} == NODES
    assert all(r["final_state"]["TaskState"] == "complete" for r in results.values())


def test_state_of_a_stateful_actor_across_nodes(served, cluster):
    image = pushed_reactor(cluster, "accumulator", {"reactor.py": ACCUMULATOR}, '["python3", "/reactor.py"]')
    aid = register(served, image=image, stateless=False, token=True)  # update_state needs a token
    served.session.post(served.api(f"/actors/{aid}/state"), json=0).raise_for_status()
    eids = [send(served, aid, json={"count": n}) for n in (10, 20, 30, 40)]
    results = [wait_status(served, aid, e, timeout=120) for e in eids]
    assert [r["exit_code"] for r in results] == [0, 0, 0, 0], [logs(served, aid, e) for e in eids]
    # update_state went through the node agent's API socket, whichever node ran it
    assert served.session.get(served.api(f"/actors/{aid}/state")).json()["result"]["state"] == 100
    assert {r["node"] for r in results} == NODES


BINARY = (
    "import os\n"
    "from abaco_nb.actors import get_binary_message, send_bytes_result\n"
    "data = get_binary_message()\n"
    "send_bytes_result(len(data).to_bytes(8, 'big'))\n"
    "send_bytes_result(data[:150000])\n"
    "send_bytes_result(b'y' * 200000)\n"
    "print('node', os.uname().nodename)\n"
    "print('destinations', [r.split()[1] for r in open('/proc/net/route').read().splitlines()[1:]])\n"
)


def test_binary_messages_and_large_results_from_both_nodes(served, cluster):
    image = pushed_reactor(cluster, "binary", {"bin.py": BINARY}, '["python3", "/bin.py"]')
    aid = register(served, image=image)
    payload = bytes(range(256)) * 3000  # 768 KB: a regular file at /_abaco_binary_data on the node
    eids = [
        send(served, aid, data=payload, headers={"Content-Type": "application/octet-stream"})
        for _ in range(2)
    ]
    results = [wait_status(served, aid, e, timeout=120) for e in eids]
    assert [r["exit_code"] for r in results] == [0, 0], [logs(served, aid, e) for e in eids]
    assert {r["node"] for r in results} == NODES
    for eid in eids:  # the internal overlay: a route to its subnet, no default route (no egress)
        routes = logs(served, aid, eid).split("destinations", 1)[1]
        assert "'00000000'" not in routes and "'" in routes, routes
        url = served.api(f"/actors/{aid}/executions/{eid}/results")
        assert int.from_bytes(served.session.get(url).content, "big") == len(payload)
        assert served.session.get(url).content == payload[:150000]
        assert served.session.get(url).content == b"y" * 200000


def _square(x):
    return x * x


def _warm_tasks(cluster: Cluster, actor_id: str) -> list:
    """The actor's warm tasks: swarm jobs labelled ``abaco-nb.role=warm`` (runtimes/swarm_warm.py)."""
    return cluster.manager.client().services.list(
        filters={"label": ["abaco-nb.role=warm", f"abaco-nb.actor_id={actor_id}"]}
    )


def test_our_executor_map_in_warm_tasks_on_both_nodes(served, cluster):
    from abaco_nb.client import Client
    from abaco_nb.executor import AbacoExecutor

    # a registry image: the kernel image AbacoExecutor() builds is on this machine's Docker only
    ex = AbacoExecutor(
        Client(served.url, served.token), image=expected_func_image(), max_workers=4, progress=False
    )
    try:
        futures = ex.map(_square, range(40), chunksize=5)
        assert [f.result(timeout=180) for f in futures] == [[x * x] for x in range(40)]
        more = ex.map(_square, range(40, 80), chunksize=5)  # the same warm tasks again
        assert [f.result(timeout=180) for f in more] == [[x * x] for x in range(40, 80)]
        executions = served.session.get(served.api(f"/actors/{ex.actor_id}/executions")).json()["result"]
        records = [
            served.session.get(served.api(f"/actors/{ex.actor_id}/executions/{e['id']}")).json()["result"]
            for e in executions["executions"]
        ]
        assert {r["node"] for r in records} == NODES
        assert all(r["status"] == "COMPLETE" and r["exit_code"] == 0 for r in records), records
        tasks = _warm_tasks(cluster, ex.actor_id)
        # 16 executions ran in a few long-lived jobs (a worker's task, a spare), not 16 jobs
        assert 1 <= len(tasks) < len(records) == 16, (len(tasks), len(records))
        assert {t.attrs["Spec"]["Labels"]["abaco-nb.node"] for t in tasks} == NODES
        jobs = cluster.manager.client().services.list(filters={"label": f"abaco-nb.actor_id={ex.actor_id}"})
        assert {j.attrs["Spec"]["Labels"].get("abaco-nb.role") for j in jobs} == {"warm"}
    finally:
        ex.delete()
    assert _warm_tasks(cluster, ex.actor_id) == []  # the actor's deletion ends its warm tasks


def _nap(seconds: float) -> float:
    print("call started", flush=True)
    time.sleep(seconds)
    return seconds


def _hog_mb(mb: int) -> int:
    blocks = [b"x" * (16 << 20) for _ in range(mb // 16)]
    return len(blocks)


def test_cancel_and_oom_of_warm_calls(served, cluster):
    from abaco_nb import OutOfMemoryError
    from abaco_nb.client import Client
    from abaco_nb.executor import AbacoExecutor

    client = Client(served.url, served.token)
    ex = AbacoExecutor(client, image=expected_func_image(), max_workers=1, progress=False, mem_limit="128m")
    try:
        assert ex.submit(_square, 3).result(timeout=180) == [9]  # its worker's warm task is up
        call = ex.submit(_nap, 120)
        deadline = time.monotonic() + 60
        while "call started" not in client.logs(ex.actor_id, call.execution_id):  # live logs from the node
            assert time.monotonic() < deadline, "the call never started"
            time.sleep(0.1)
        assert call.cancel()
        done = client.execution(ex.actor_id, call.execution_id, wait=60)
        assert done.status in ("COMPLETE", "ERROR") and done.final_state["ExitCode"] in (137, 143), done
        with pytest.raises(OutOfMemoryError, match="mem_limit=128m"):
            ex.submit(_hog_mb, 1024).result(timeout=120)
        assert ex.submit(_square, 4).result(timeout=120) == [16]  # the warm task serves on
        executions = client.executions(ex.actor_id)["executions"]
        oom = [client.execution(ex.actor_id, e["id"]) for e in executions]
        assert [e.final_state["OOMKilled"] for e in oom].count(True) == 1
        assert len(_warm_tasks(cluster, ex.actor_id)) <= 2  # all of it in the worker's task (and a spare)
    finally:
        ex.delete()


def test_agavepy_executor(served):
    from tests.clients.conftest import run_driver

    out = run_driver("agavepy", "agave_executor.py", served, timeout=300)
    assert out["status"] == "READY"
    assert out["submit"] == [13] and out["blocking"] == [11] and out["map"] == [[2], [5]]
    assert out["failing_done_poll"] == [] and "ValueError: boom from the executor" in out["failing_logs"]


def test_queue_places_on_labelled_nodes(served):
    aid = register(served, image="abaco-nb/test", queue="bq", default_environment={"SLEEP": "0"})
    eids = [send(served, aid, data={"message": "q"}) for _ in range(3)]
    assert {wait_status(served, aid, e, timeout=120)["node"] for e in eids} == {"abnb-node-b"}
    nowhere = register(served, image="abaco-nb/test", queue="gpu")
    eid = send(served, nowhere, data={"message": "q"})
    result = wait_status(served, nowhere, eid, timeout=60)
    assert result["status"] == "ERROR" and "abaco-nb.queue=gpu" in result["status_message"], result
    r = served.session.post(served.api("/actors"), json={"image": "abaco-nb/test", "queue": "no spaces"})
    assert r.status_code == 400 and "queue" in r.json()["message"]


def test_cancel_time_limit_oom_and_missing_image(served):
    sleeper = register(served, image="abaco-nb/test", queue="bq", default_environment={"SLEEP": "120"})
    eid = send(served, sleeper, data={"message": "x"})
    wait_status(served, sleeper, eid, ("RUNNING",), timeout=60)
    deadline = time.monotonic() + 60
    while "Contents of MSG: x" not in logs(served, sleeper, eid):  # partial logs while it runs
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert served.session.delete(served.api(f"/actors/{sleeper}/executions/{eid}")).status_code == 200
    result = wait_status(served, sleeper, eid, timeout=60)
    assert result["status"] == "COMPLETE" and "Force quit" in result["status_message"], result
    assert result["exit_code"] in (137, 143) and result["node"] == "abnb-node-b"
    limited = send(served, sleeper, "?_abaco_nb_timeout=2", data={"message": "x"})
    result = wait_status(served, sleeper, limited, timeout=60)
    assert result["status"] == "COMPLETE" and "max_run_time" in result["status_message"], result
    hog = register(served, image="abaco-nb/py3-func", mem_limit="32m", queue="bq")
    eid = send(
        served, hog, data=_pickled_call(_allocate, 512), headers={"Content-Type": "application/octet-stream"}
    )
    result = wait_status(served, hog, eid, timeout=120)
    assert result["final_state"]["OOMKilled"] is True and result["exit_code"] == 137, result
    r = served.session.post(served.api("/actors"), json={"image": "127.0.0.2:5000/none/such"})
    actor = wait_ready(served, r.json()["result"]["id"])
    assert (
        actor["status"] == "ERROR"
        and "no swarm node can pull image 127.0.0.2:5000/none/such" in actor["status_message"]
    )


SURVIVOR = (
    "import time\n"
    "from abaco_nb.actors import send_python_result\n"
    "send_python_result('before')\n"
    "print('survivor running', flush=True)\n"
    "time.sleep(6)\n"
    "send_python_result('after')\n"
    "print('survivor done', flush=True)\n"
)


def _stored_results(served: Served, eid: str) -> int:
    """Results the service has stored (read from its database, so nothing is consumed): a datagram still
    queued in a killed service's socket was never acknowledged, on any runtime."""
    import sqlite3

    with sqlite3.connect(f"file:{served.db}?mode=ro", uri=True, timeout=5) as db:
        return int(db.execute("SELECT count(*) FROM results WHERE execution_id=?", (eid,)).fetchone()[0])


def test_kill9_of_the_service_mid_run(cluster):
    image = pushed_reactor(cluster, "survivor", {"s.py": SURVIVOR}, '["python3", "/s.py"]')
    # a second service on this swarm: its own agents need their own port on the nodes
    port = ("--swarm-agent-port", "7782")
    first = start_swarm_serve(cluster, cluster.base / "svc-kill9", extra=port)
    aid = register(first, image=image, stateless=False, queue="bq")  # node b: the far side of the relay
    from abaco_nb.client import Client
    from abaco_nb.executor import AbacoExecutor

    ex = AbacoExecutor(
        Client(first.url, first.token), image=expected_func_image(), max_workers=1, progress=False
    )
    assert ex.submit(_square, 5).result(timeout=180) == [25]  # a warm task the crash will leave behind
    assert _warm_tasks(cluster, ex.actor_id)
    running = send(first, aid, data={"message": "survivor"})
    queued = send(first, aid, data={"message": "next"})
    deadline = time.monotonic() + 60
    while "survivor running" not in logs(first, aid, running) or not _stored_results(first, running):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    first.kill9()  # "before" is stored; "after" will be sent while no service runs, or after the restart
    second = start_swarm_serve(cluster, cluster.base / "svc-kill9", db=first.db, extra=port)
    try:
        survivor = wait_status(second, aid, running, timeout=120)
        following = wait_status(second, aid, queued, timeout=120)
        assert survivor["status"] == "COMPLETE" and survivor["exit_code"] == 0, survivor
        assert "survivor done" in logs(second, aid, running)
        url = second.api(f"/actors/{aid}/executions/{running}/results")
        frames = [second.session.get(url).content for _ in range(2)]
        assert [cloudpickle.loads(f) for f in frames] == ["before", "after"]  # "after" came after the crash
        assert following["status"] == "COMPLETE" and following["start_time"] > survivor["start_time"]
        assert _warm_tasks(cluster, ex.actor_id) == []  # the restart removed the earlier run's warm tasks
        ex.client = Client(second.url, second.token)
        ex.delete()
    finally:
        second.stop()
    jobs = cluster.manager.client().services.list(filters={"label": f"abaco-nb.execution_id={running}"})
    assert jobs == []
