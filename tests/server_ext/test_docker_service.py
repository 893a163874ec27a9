"""The seed's reactor walk-through end to end on the real Docker engine, through the HTTP API."""

from __future__ import annotations

import io
import tarfile
import time

import pytest

from tests.serve import Served, start_serve, wait_ready, wait_status
from tests.server_ext.test_seed_curl import SEED_EXECUTION_FIELDS

pytestmark = pytest.mark.docker

ACCUMULATOR = """\
from abaco_nb.actors import get_context, update_state


def main():
    context = get_context()
    count = context['message_dict']['count']
    state = context['state']
    update_state(count + state)
    print("count", count, "state", state)


if __name__ == '__main__':
    main()
"""


def build_reactor(docker_client, tag: str, files: dict[str, str], cmd: str) -> str:
    """docker build FROM abaco-nb/py3-func with a reactor script, from an in-memory context."""
    dockerfile = (
        "FROM abaco-nb/py3-func:latest\n" + "".join(f"ADD {n} /{n}\n" for n in files) + f"CMD {cmd}\n"
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in {"Dockerfile": dockerfile, **files}.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    docker_client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True)
    return tag


@pytest.fixture(scope="module")
def served(tmp_path_factory, docker_client, built_images) -> Served:
    s = start_serve(tmp_path_factory.mktemp("docker"), runtime="docker")
    yield s
    s.stop()
    from server_ext.service.store import Store

    service_id = Store(str(s.db)).get_meta("service_id")  # ours only: the daemon is shared with other runs
    left = docker_client.api.containers(all=True, filters={"label": f"abaco-nb.service={service_id}"})
    assert not [c for c in left if c.get("State") == "running"], "containers left running after stop"


def register(served: Served, **body) -> str:
    r = served.session.post(served.api("/actors"), json=body)
    assert r.status_code == 200, r.text
    actor = wait_ready(served, r.json()["result"]["id"])
    assert actor["status"] == "READY", actor
    return actor["id"]


def send(served: Served, aid: str, suffix: str = "", **kwargs) -> str:
    r = served.session.post(served.api(f"/actors/{aid}/messages{suffix}"), **kwargs)
    assert r.status_code == 200, r.text
    return r.json()["result"]["execution_id"]


def logs(served: Served, aid: str, eid: str) -> str:
    return served.session.get(served.api(f"/actors/{aid}/executions/{eid}/logs")).json()["result"]["logs"]


def test_seed_walkthrough(served):
    aid = register(
        served,
        image="abaco-nb/test",
        name="test",
        description="My test actor using the abacosamples image.",
        default_environment={"key1": "value1", "key2": "value2", "SLEEP": "1"},
    )
    raw = send(served, aid, "?key1=valueABC", data={"message": "some test message"})
    as_json = send(served, aid, json={"username": "jdoe", "application_id": "print-env-cli-DggdGbK-0.1.0"})
    queued = [send(served, aid, data={"message": f"queued {i}"}) for i in range(2)]
    results = {eid: wait_status(served, aid, eid, timeout=120) for eid in [raw, as_json, *queued]}
    assert all(r["status"] == "COMPLETE" and r["exit_code"] == 0 for r in results.values()), results
    text = logs(served, aid, raw)
    assert "Contents of MSG: some test message" in text
    assert "key1=valueABC" in text and "key2=value2" in text
    assert "Contents of root file system" in text and "_abaco_container_repo=abaco-nb/test" in text
    assert "Contents of MSG: {'username': 'jdoe', 'application_id': 'print-env-cli-DggdGbK-0.1.0'}" in logs(
        served, aid, as_json
    )
    final = results[raw]["final_state"]
    assert final["Status"] == "exited" and final["OOMKilled"] is False and final["StartedAt"]
    r = served.session.get(served.api(f"/actors/{aid}/executions/{raw}?case=camel")).json()["result"]
    assert SEED_EXECUTION_FIELDS <= set(r), SEED_EXECUTION_FIELDS - set(r)


def test_accumulator_state_and_order(served, docker_client):
    image = build_reactor(
        docker_client,
        "abaco-nb-test/accumulator:latest",
        {"reactor.py": ACCUMULATOR},
        '["python3", "/reactor.py"]',
    )
    aid = register(served, image=image, stateless=False, token=True)
    assert served.session.post(served.api(f"/actors/{aid}/state"), data=b"not json").status_code == 400
    served.session.post(served.api(f"/actors/{aid}/state"), json=0).raise_for_status()  # falsy is fine here
    eids = [send(served, aid, json={"count": n}) for n in (10, 20, 30)]
    results = [wait_status(served, aid, eid, timeout=120) for eid in eids]
    assert [r["exit_code"] for r in results] == [0, 0, 0], [logs(served, aid, e) for e in eids]
    assert [r["start_time"] for r in results] == sorted(r["start_time"] for r in results)
    assert served.session.get(served.api(f"/actors/{aid}/state")).json()["result"]["state"] == 60


def test_binary_message_in_result_out(served, docker_client):
    script = (
        "from abaco_nb.actors import get_binary_message, send_bytes_result\n"
        "data = get_binary_message()\n"
        "send_bytes_result(len(data).to_bytes(8, 'big'))\n"
        "send_bytes_result(b'y' * 200000)\n"
    )
    image = build_reactor(
        docker_client, "abaco-nb-test/binary:latest", {"bin.py": script}, '["python3", "/bin.py"]'
    )
    aid = register(served, image=image)
    payload = bytes(range(256)) * 20000  # 5 MB: a regular file, not a pipe
    eid = send(served, aid, data=payload, headers={"Content-Type": "application/octet-stream"})
    assert wait_status(served, aid, eid, timeout=120)["exit_code"] == 0, logs(served, aid, eid)
    first = served.session.get(served.api(f"/actors/{aid}/executions/{eid}/results")).content
    assert int.from_bytes(first, "big") == len(payload)
    assert served.session.get(served.api(f"/actors/{aid}/executions/{eid}/results")).content == b"y" * 200000


def test_nonzero_exit_oom_force_quit_and_timeout(served):
    sh = "abaco-nb/test"
    aid = register(served, image=sh, default_environment={"SLEEP": "0"})
    # a failing container: ask busybox sh for a command that does not exist via the MSG-independent path
    failing = register(served, image="abaco-nb/py3-func")  # no binary message: the runner exits non-zero
    eid = send(served, failing, data={"message": "not a pickled call"})
    result = wait_status(served, failing, eid, timeout=120)
    assert result["status"] == "COMPLETE" and result["exit_code"] != 0
    # OOM under a small memory limit
    hog = register(served, image="abaco-nb/py3-func", mem_limit="32m")
    eid = send(
        served, hog, data=_pickled_call(_allocate, 512), headers={"Content-Type": "application/octet-stream"}
    )
    result = wait_status(served, hog, eid, timeout=120)
    assert result["final_state"]["OOMKilled"] is True and result["exit_code"] == 137, result
    # force quit of a running container
    sleeper = register(served, image=sh, default_environment={"SLEEP": "120"})
    eid = send(served, sleeper, data={"message": "x"})
    wait_status(served, sleeper, eid, ("RUNNING",), timeout=60)  # RUNNING from the claim, before the start
    deadline = time.monotonic() + 30
    while "Contents of MSG: x" not in logs(served, sleeper, eid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "Contents of MSG: x" in logs(served, sleeper, eid)  # partial logs while running
    assert wait_status(served, sleeper, eid, ("RUNNING",))["status"] == "RUNNING"
    r = served.session.delete(served.api(f"/actors/{sleeper}/executions/{eid}"))
    assert r.status_code == 200
    result = wait_status(served, sleeper, eid, timeout=60)
    assert result["status"] == "COMPLETE" and "Force quit" in result["status_message"]
    # the time limit
    eid = send(served, sleeper, "?_abaco_nb_timeout=2", data={"message": "x"})
    result = wait_status(served, sleeper, eid, timeout=60)
    assert result["status"] == "COMPLETE" and "max_run_time" in result["status_message"]
    assert aid


def test_missing_image_is_error_with_what_to_do(served):
    r = served.session.post(served.api("/actors"), json={"image": "127.0.0.1:5999/none/such"})
    actor = wait_ready(served, r.json()["result"]["id"])
    assert actor["status"] == "ERROR" and "127.0.0.1:5999/none/such" in actor["status_message"]


def _allocate(mb: int) -> int:
    blocks = [bytearray(1024 * 1024) for _ in range(mb)]
    return len(blocks)


def _pickled_call(func, *args) -> bytes:
    import sys

    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the image cannot import this module
    return cloudpickle.dumps({"func": func, "args": list(args), "kwargs": {}})


def test_kill9_reattaches_running_container(tmp_path, docker_client, built_images):
    first = start_serve(tmp_path / "svc", runtime="docker")
    aid = register(first, image="abaco-nb/test", stateless=False, default_environment={"SLEEP": "4"})
    running = send(first, aid, data={"message": "survivor"})
    queued = send(first, aid, data={"message": "next"})
    wait_status(first, aid, running, ("RUNNING",), timeout=60)
    deadline = time.monotonic() + 60
    while "Contents of MSG" not in logs(first, aid, running):  # the container really runs
        assert time.monotonic() < deadline
        time.sleep(0.1)
    first.kill9()
    second = start_serve(tmp_path / "svc", runtime="docker", db=first.db)
    try:
        survivor = wait_status(second, aid, running, timeout=120)
        following = wait_status(second, aid, queued, timeout=120)
        assert survivor["status"] == "COMPLETE" and survivor["exit_code"] == 0  # re-attached, not lost
        assert "Contents of MSG: survivor" in logs(second, aid, running)
        assert following["status"] == "COMPLETE" and following["start_time"] > survivor["start_time"]
    finally:
        second.stop()
    leftovers = docker_client.containers.list(all=True, filters={"label": f"abaco-nb.execution_id={running}"})
    assert leftovers == []


AGAVEPY_REACTOR = """\
from agavepy.actors import get_binary_message, get_context, send_python_result

context = get_context()
data = get_binary_message()
send_python_result({"size": len(data), "execution_id": context["execution_id"], "actor_id": context["actor_id"],
                    "content_type": context["content_type"], "head": data[:4]})
print("agavepy reactor done")
"""
_SKIP_SITE = {
    "pip",
    "setuptools",
    "pkg_resources",
    "_distutils_hack",
    "pytest",
    "_pytest",
    "pygments",
    "py.py",
    "__pycache__",
    "distutils-precedence.pth",
}


def test_reactor_using_the_real_agavepy_actors(served, docker_client):
    """A reactor that imports the real agavepy.actors (0.9.5, copied into its image from the client venv,
    since no registry or index is reachable from a build): get_context, get_binary_message and
    send_python_result work against our contract unchanged."""
    from tests.clients.conftest import client_python

    site = client_python("agavepy").parent.parent / "lib" / "python3.11" / "site-packages"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for entry in sorted(site.iterdir()):
            if entry.name not in _SKIP_SITE and not entry.name.endswith(".dist-info"):
                tar.add(
                    entry,
                    arcname=f"site/{entry.name}",
                    filter=lambda info: None if "__pycache__" in info.name else info,
                )
        files = {
            "reactor.py": AGAVEPY_REACTOR,
            "Dockerfile": "FROM abaco-nb/py3-func:latest\nCOPY site/ /opt/agavepy-site/\nADD reactor.py /reactor.py\n"
            'ENV PYTHONPATH=/opt/abaco-nb:/opt/agavepy-site\nCMD ["python3", "/reactor.py"]\n',
        }
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    docker_client.images.build(
        fileobj=buf, custom_context=True, tag="abaco-nb-test/agavepy-reactor:latest", rm=True
    )
    aid = register(served, image="abaco-nb-test/agavepy-reactor:latest")
    payload = b"\x89PNG" + bytes(300_000)  # larger than a pipe buffer: a regular file works
    eid = send(served, aid, data=payload, headers={"Content-Type": "application/octet-stream"})
    result = wait_status(served, aid, eid, timeout=120)
    assert result["exit_code"] == 0, logs(served, aid, eid)
    import cloudpickle

    frame = served.session.get(served.api(f"/actors/{aid}/executions/{eid}/results")).content
    sent = cloudpickle.loads(frame)
    assert sent == {
        "size": len(payload),
        "execution_id": eid,
        "actor_id": aid,
        "content_type": "application/octet-stream",
        "head": b"\x89PNG",
    }
