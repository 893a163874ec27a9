"""Search rules over plain dicts: operators, typing, text, paging, and the errors that name the key."""

from __future__ import annotations

import pytest

from server_ext.service import search
from server_ext.service.errors import AbacoError

RECORDS = [
    {
        "id": "A",
        "status": "COMPLETE",
        "exit_code": 0,
        "runtime": 2,
        "final_state": {"StartedAt": "2026-01-02T00:00:00Z"},
        "image": "abaco-nb/test",
        "stateless": True,
    },
    {
        "id": "B",
        "status": "COMPLETE",
        "exit_code": 3,
        "runtime": 7,
        "final_state": {"StartedAt": "2026-03-01T00:00:00Z"},
        "image": "abaco-nb/py3-func",
        "stateless": False,
    },
    {
        "id": "C",
        "status": "RUNNING",
        "exit_code": None,
        "runtime": 0,
        "final_state": None,
        "image": "mylab/wc",
        "stateless": True,
    },
]


def ids(query: dict[str, str]) -> list[str]:
    result = search.run(RECORDS, search.parse_query({k: [v] for k, v in query.items()}))
    return [r["id"] for r in result["search"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "COMPLETE"}, ["A", "B"]),
        ({"status.neq": "COMPLETE"}, ["C"]),
        ({"exit_code": "3"}, ["B"]),
        ({"exit_code": "none"}, ["C"]),
        ({"stateless": "false"}, ["B"]),
        ({"runtime.gt": "1"}, ["A", "B"]),
        ({"runtime.lte": "2"}, ["A", "C"]),
        ({"runtime.between": "1,5"}, ["A"]),
        ({"id.in": '["A", "C"]'}, ["A", "C"]),
        ({"id.nin": '["A", "C"]'}, ["B"]),
        ({"image.like": "^abaco-nb/"}, ["A", "B"]),
        ({"image.nlike": "py3"}, ["A", "C"]),
        ({"final_state.StartedAt.gt": "2026-02"}, ["B"]),
        ({"search": "wc func"}, ["B", "C"]),
        ({"exactsearch": "abaco-nb/test"}, ["A"]),
        ({"status": "COMPLETE", "skip": "1", "limit": "5"}, ["B"]),
    ],
)
def test_filters(query, expected):
    assert ids(query) == expected


def test_metadata_and_defaults():
    result = search.run(RECORDS, search.parse_query({"limit": ["1"], "skip": ["1"]}))
    assert result["_metadata"] == {
        "total_count": 3,
        "records_skipped": 1,
        "record_limit": 1,
        "count_returned": 1,
    }
    assert search.parse_query({}).limit == 100


@pytest.mark.parametrize(
    ("key", "value"),
    [("skip", "-1"), ("limit", "many"), ("id.in", "A"), ("runtime.between", "1"), ("image.like", "(")],
)
def test_bad_queries_name_the_key(key, value):
    with pytest.raises(AbacoError, match=key.split(".")[0]):
        search.parse_query({key: [value]})


def test_implicit_search_ignores_the_services_own_keys():
    assert not search.is_search({"case": ["camel"], "x-nonce": ["N"], "token": ["t"]})
    assert search.is_search({"limit": ["10"]})
