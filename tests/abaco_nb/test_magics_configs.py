"""%abaco configs and Client.set_config in a real IPython shell against a real ``abaco-nb serve``: a
secret set from the notebook is listed as ciphertext and reaches the actor's execution decrypted."""

from __future__ import annotations

import ast
import sys

import pytest
from IPython.core.error import UsageError

from abaco_nb.magics.configs import ConfigList
from abaco_nb.magics.display import Notice

# prints "_actor_configs <value>" (no double quotes inside: the register line is shell-split twice)
PRINT_CONFIGS = (
    f"local:{sys.executable} -c 'import os, sys; print(sys.argv[1], os.environ[sys.argv[1]])' _actor_configs"
)


def abaco(ip, line: str):
    return ip.run_line_magic("abaco", line)


def test_configs_magic_sets_lists_and_reaches_the_execution(ip) -> None:
    actor = abaco(ip, f'register "{PRINT_CONFIGS}" --name mconfigs')
    made = abaco(ip, "configs mcfg-pw --value hunter2 --actors mconfigs --secret")
    assert made.is_secret is True and made.value != "hunter2" and made.actors == actor.id
    abaco(ip, "configs mcfg-json --value '{\"a\": 1}' --actors mconfigs")
    listed = abaco(ip, "configs")
    assert isinstance(listed, ConfigList) and {"mcfg-pw", "mcfg-json"} <= {c.name for c in listed}
    again = abaco(ip, "configs mcfg-json --value '[1, 2]' --actors mconfigs")  # re-running replaces
    assert again.value == [1, 2]
    done = abaco(ip, "send mconfigs go --wait")
    assert done.status == "COMPLETE"
    line = next(x for x in str(done.logs).splitlines() if x.startswith("_actor_configs "))
    assert ast.literal_eval(line[len("_actor_configs ") :]) == {"mcfg-pw": "hunter2", "mcfg-json": [1, 2]}
    for name in ("mcfg-pw", "mcfg-json"):
        assert isinstance(abaco(ip, f"configs {name} --delete"), Notice)
    with pytest.raises(UsageError, match="needs --value"):
        abaco(ip, "configs mcfg-x --value 1")
    with pytest.raises(UsageError, match="no actor with id or name .such-actor."):
        abaco(ip, "configs mcfg-x --value 1 --actors such-actor")
