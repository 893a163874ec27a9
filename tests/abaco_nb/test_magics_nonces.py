"""%abaco nonces, %abaco alias and %abaco aliases in a real IPython shell against a real
``abaco-nb serve --runtime process``; the nonce is then used the way a collaborator would, with no token."""

from __future__ import annotations

import sys

import pytest
import requests
from IPython.core.error import UsageError

from abaco_nb.magics.access import AliasList, NonceList
from abaco_nb.magics.display import Notice
from tests.serve import Served

QUICK = f"local:{sys.executable} -c 'print(1)'"


def abaco(ip, line: str):
    return ip.run_line_magic("abaco", line)


def test_nonces_create_list_use_delete(ip, served: Served) -> None:
    actor = abaco(ip, f'register "{QUICK}" --name mnonce')
    assert isinstance(abaco(ip, "nonces mnonce"), NonceList) and len(abaco(ip, "nonces mnonce")) == 0
    nonce = abaco(ip, "nonces mnonce --create --level READ --max-uses 2")
    assert nonce.level == "READ" and nonce.max_uses == 2 and nonce.id.startswith("LOCAL_")
    # a collaborator with the nonce and no token
    got = requests.get(f"{served.url}/actors/{actor.id}", params={"x-nonce": nonce.id}, timeout=30)
    assert got.status_code == 200 and got.json()["result"]["id"] == actor.id
    listed = abaco(ip, "nonces mnonce")
    assert [n.id for n in listed] == [nonce.id] and listed[0].current_uses == 1
    assert "current_uses" in repr(listed) and "<table" in listed._repr_html_()
    done = abaco(ip, f"nonces mnonce --delete {nonce.id}")
    assert isinstance(done, Notice) and nonce.id in done
    assert len(abaco(ip, "nonces mnonce")) == 0
    with pytest.raises(UsageError, match="Nonce not found"):
        abaco(ip, f"nonces mnonce --delete {nonce.id}")
    with pytest.raises(UsageError, match="max-uses"):
        abaco(ip, "nonces mnonce --create --max-uses 0")
    with pytest.raises(UsageError, match="go with --create"):
        abaco(ip, "nonces mnonce --level READ")


def test_alias_then_use_it_everywhere(ip) -> None:
    first = abaco(ip, f'register "{QUICK}" --name malias1')
    second = abaco(ip, f'register "{QUICK}" --name malias2')
    made = abaco(ip, "alias mjane malias1")
    assert made.alias == "mjane" and made.actor_id == first.id
    aliases = abaco(ip, "aliases")
    assert isinstance(aliases, AliasList) and "mjane" in repr(aliases)
    # the alias works wherever an actor goes in a magic
    assert abaco(ip, "actor mjane").id == first.id
    done = abaco(ip, "send mjane hello --wait")
    assert done.status == "COMPLETE"
    nonce = abaco(ip, "nonces mjane --create")
    assert nonce.actor_id == first.id and nonce.level == "EXECUTE"
    # running the cell again with another actor re-points the alias
    assert abaco(ip, "alias mjane malias2").actor_id == second.id
    assert abaco(ip, "actor mjane").id == second.id
    assert "mjane" in abaco(ip, "alias mjane --delete")
    with pytest.raises(UsageError, match="no actor with id or name 'mjane'"):
        abaco(ip, "actor mjane")
    with pytest.raises(UsageError, match="forbidden characters"):
        abaco(ip, "alias 'a b' malias1")


def test_help_documents_the_commands(ip) -> None:
    text = abaco(ip, "help")
    for command in (
        "%abaco nonces",
        "--create",
        "--max-uses N",
        "--delete NID",
        "%abaco alias",
        "%abaco aliases",
    ):
        assert command in text, command
    assert "--level" in abaco(ip, "help nonces")
