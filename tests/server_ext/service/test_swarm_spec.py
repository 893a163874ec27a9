"""The swarm runtime's pure rules, without a swarm: nodes for a queue, the job spec, exit facts."""

from __future__ import annotations

import pytest

from server_ext.service.errors import AbacoError
from server_ext.service.models import parse_registration
from server_ext.service.runtimes.swarm_spec import (
    Node,
    choose_node,
    eligible,
    exit_facts,
    image_ref,
    job_spec,
    memory_bytes,
    node_from_api,
)

A = Node("a1", "abnb-node-a", "127.0.0.2", True, {})
B = Node("b1", "abnb-node-b", "127.0.0.3", True, {"abaco-nb.queue": "bq"})
DOWN = Node("c1", "abnb-node-c", "127.0.0.4", False, {"abaco-nb.queue": "bq"})


def test_queues_pick_labelled_ready_nodes():
    assert eligible([A, B, DOWN], "default") == [A, B]
    assert eligible([A, B, DOWN], None) == [A, B]
    assert eligible([A, B, DOWN], "bq") == [B]
    assert eligible([A, B, DOWN], "gpu") == []


def test_least_loaded_then_round_robin():
    assert choose_node([A, B], {"a1": 2, "b1": 1}, 0) == B
    assert [choose_node([A, B], {}, turn).id for turn in range(4)] == ["a1", "b1", "a1", "b1"]
    with pytest.raises(ValueError):
        choose_node([], {}, 0)


def test_manager_address_when_status_says_0000():
    node = node_from_api(
        {
            "ID": "x",
            "Description": {"Hostname": "m"},
            "Spec": {"Availability": "active"},
            "Status": {"State": "ready", "Addr": "0.0.0.0"},
            "ManagerStatus": {"Addr": "10.1.2.3:2377"},
        }
    )
    assert node.addr == "10.1.2.3" and node.ready
    drained = node_from_api(
        {"ID": "y", "Spec": {"Availability": "drain"}, "Status": {"State": "ready", "Addr": "1.2.3.4"}}
    )
    assert not drained.ready


def test_our_images_come_from_the_registry():
    assert image_ref("abaco-nb/test", "reg:5000") == "reg:5000/abaco-nb/test"
    assert image_ref("abaco-nb/test", "") == "abaco-nb/test"
    assert image_ref("python:3.11", "reg:5000") == "python:3.11"
    assert memory_bytes("512m") == 512 * 1024**2 and memory_bytes("2g") == 2 * 1024**3
    assert memory_bytes("-1") is None and memory_bytes(None) is None and memory_bytes("100") == 100


def test_job_spec_is_a_pinned_replicated_job_with_the_contract_mounts():
    spec = job_spec(
        name="abaco-nb-x-e1",
        image="reg/abaco-nb/test",
        environment={"MSG": "hi", "N": None},
        labels={"abaco-nb.execution_id": "e1"},
        node=B,
        queue="bq",
        network_id="net1",
        files={"results": "/n/e1/results.sock", "api": "/n/e1/api.sock", "binary": ""},
        mem_limit="64m",
        nano_cpus=500_000_000,
        pids_limit=100,
        cap_drop=["NET_RAW"],
        user=None,
        mounts=[],
        stop_grace=10,
    )
    template = spec["task_template"]
    assert spec["mode"] == {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}
    assert spec["endpoint_spec"] == {"Mode": "dnsrr"}
    assert template["RestartPolicy"]["Condition"] == "none"
    assert template["Placement"]["Constraints"] == ["node.id==b1", "node.labels.abaco-nb.queue==bq"]
    assert template["Resources"]["Limits"] == {
        "MemoryBytes": 64 * 1024**2,
        "NanoCPUs": 500_000_000,
        "Pids": 100,
    }
    assert template["Networks"] == [{"Target": "net1"}]
    container = template["ContainerSpec"]
    assert container["Env"] == ["MSG=hi", "N="] and container["CapabilityDrop"] == ["CAP_NET_RAW"]
    targets = {m["Target"]: m["Source"] for m in container["Mounts"]}
    assert targets == {"/_abaco_results.sock": "/n/e1/results.sock", "/_abaco_api.sock": "/n/e1/api.sock"}


def test_exit_facts_prefer_the_nodes_inspect():
    task = {
        "Status": {
            "State": "failed",
            "Err": "task: non-zero exit (137)",
            "ContainerStatus": {"ExitCode": 137},
        }
    }
    code, final = exit_facts(task, {"OOMKilled": True, "ExitCode": 137, "StartedAt": "t0"}, "abnb-node-b")
    assert code == 137 and final["OOMKilled"] is True and final["Node"] == "abnb-node-b"
    assert final["TaskState"] == "failed" and final["StartedAt"] == "t0"
    code, final = exit_facts({"Status": {"State": "rejected", "Err": "No such image"}}, None, "n")
    assert code == -1 and final["Status"] == "rejected" and final["TaskError"] == "No such image"


def test_queue_names_only_where_the_runtime_has_queues():
    with pytest.raises(AbacoError, match="only the 'default' queue"):
        parse_registration({"image": "x", "queue": "bq"})
    assert parse_registration({"image": "x", "queue": "bq"}, queues=True).queue == "bq"
    with pytest.raises(AbacoError, match="queue"):
        parse_registration({"image": "x", "queue": "b q"}, queues=True)
