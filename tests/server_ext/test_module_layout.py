"""What each process imports: the service side stays free of the kernel package.

The service runs the kernel side's code only in other interpreters (containers, the zygote program
``runtimes/zygote_main.py``), so importing the service must load nothing from ``abaco_nb``. Checked in
a fresh interpreter, since this test process has imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys


def _modules_after(*imports: str) -> list[str]:
    code = "import json, sys\n" + "".join(f"import {m}\n" for m in imports)
    code += "print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout))


def test_the_service_side_imports_nothing_from_abaco_nb() -> None:
    loaded = _modules_after(
        "server_ext.service.service", "server_ext.service.runtimes.zygote", "server_ext.standalone"
    )
    assert [m for m in loaded if m == "abaco_nb" or m.startswith("abaco_nb.")] == []
