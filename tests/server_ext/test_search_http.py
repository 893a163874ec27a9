"""Search over HTTP against a real ``abaco-nb serve``: the explicit routes and Abaco's implicit form."""

from __future__ import annotations

import pytest

from tests.serve import Served, start_serve, wait_ready, wait_status


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Served:
    s = start_serve(tmp_path_factory.mktemp("search"))
    yield s
    s.stop()


def test_search_actors_executions_logs_and_workers(served):
    ids = []
    for name in ("alpha", "beta"):
        r = served.session.post(
            served.api("/actors"),
            json={"image": "abaco-nb/test", "name": name, "default_environment": {"SLEEP": "0"}},
        )
        ids.append(wait_ready(served, r.json()["result"]["id"])["id"])
    eids = []
    for i, aid in enumerate(ids):
        eid = served.session.post(
            served.api(f"/actors/{aid}/messages"), data={"message": f"hello {i}"}
        ).json()["result"]["execution_id"]
        eids.append(eid)
        wait_status(served, aid, eid)

    def get(path: str) -> dict:
        r = served.session.get(served.api(path))
        assert r.status_code == 200, r.text
        return r.json()["result"]

    found = get("/actors/search/actors?name=beta")
    assert [a["id"] for a in found["search"]] == [ids[1]] and found["_metadata"]["total_count"] == 1
    assert get("/actors/search/executions?status=COMPLETE")["_metadata"]["total_count"] == 2
    assert get("/actors/search/executions?exit_code.neq=0")["search"] == []
    logs = get("/actors/search/logs?search=hello")["search"]
    assert {entry["execution_id"] for entry in logs} == set(eids)
    assert get("/actors/search/actors?skip=1&limit=1")["_metadata"] == {
        "total_count": 2,
        "records_skipped": 1,
        "record_limit": 1,
        "count_returned": 1,
    }
    # the implicit form: a list route with a query key of its own is a search, limited to its actor
    implicit = get(f"/actors/{ids[0]}/executions?limit=10")
    assert [e["id"] for e in implicit["search"]] == [eids[0]]
    assert get(f"/actors/{ids[0]}/workers?status=READY")["_metadata"]["total_count"] >= 0
    assert get(f"/actors/{ids[1]}/executions/{eids[1]}/logs?search=hello")["search"][0]["actor_id"] == ids[1]
    assert "search" not in get(f"/actors/{ids[0]}/executions?case=camel")  # our own keys keep the list
    assert isinstance(get("/actors?case=camel"), list)


def test_bad_search_is_a_400_naming_the_key(served):
    r = served.session.get(served.api("/actors/search/actors?limit=-3"))
    assert r.status_code == 400 and "limit" in r.json()["message"]
    r = served.session.get(served.api("/actors/search/everything"))
    assert r.status_code == 404 and "search type" in r.json()["message"]
