"""The notebook as a user meets it, in a real Jupyter kernel (nbclient) against a real service.

One notebook exercises issue 12's items end to end: both ``connect`` import forms, remote output live in
the cell that started it (display updates, prefixed per call, nbclient applies them as JupyterLab does),
``future.logs()`` per call, remote exceptions that name their execution and call and show the notebook's
source lines, executor names, ``%%abaco map`` reusing the notebook's executor (so ``ex.delete()`` leaves
nothing), a sweep's DataFrame and plot, live reprs, running counts, and a reactor's output followed live.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from abaco_nb.client import Client
from tests.serve import Served, start_serve

CELLS = [
    # 0: both documented forms of connect, more than once
    "from abaco_nb import connect\nc1 = connect(); c2 = connect()\nimport abaco_nb\nc3 = abaco_nb.connect(); c4 = abaco_nb.connect()\n"
    "print('connect:', type(c1).__name__, type(c2).__name__, type(c3).__name__, type(c4).__name__)",
    # 1: an executor named after the notebook; live remote output in this cell
    "%load_ext abaco_nb\nimport time, concurrent.futures as cf\nfrom abaco_nb import AbacoExecutor\n"
    "ex = AbacoExecutor(max_workers=2)\nprint('name:', ex.name)\n"
    "def shout(i):\n    import time\n    print(f'hello {i}')\n    time.sleep(0.2)\n    return i\n"
    "rs = ex.map(shout, range(6), chunksize=3, progress=False)\ncf.wait(rs)\ntime.sleep(2)",
    # 2: per-call logs
    "print('logs:', repr(rs[4].logs()), repr(rs[0].logs()))",
    # 3: a remote exception names its execution and call and shows the notebook's line
    "def boom(x):\n    y = x + 1\n    raise ValueError(f'bad {x}')\n"
    "bad = ex.map(boom, [1, 2], chunksize=2, progress=False)[1]\ncf.wait([bad])\nerr = bad.exception()\n"
    "print('error:', type(err).__name__, err.execution_id == bad.execution_id, err.call)\n"
    "print('notes:', err.__notes__)\nprint('source:', \"raise ValueError(f'bad {x}')\" in str(err.__cause__))",
    # 4: a sweep with any Python expressions, reusing ex, as a DataFrame and a plot
    "%%abaco map x=range(3) y=[1, 2] -o s --wait\nx * 10 + y",
    "df = s.dataframe()\nprint('columns:', list(df.columns), 'rows:', len(df), 'reused:', s.executor is ex)\n"
    "ax = s.plot()\nprint('lines:', len(ax.get_lines()))",
    # 6: a live sweep repr: displayed while pending, updated when done (while the next cell runs)
    "%%abaco map x=range(4) -o s2 --no-progress\nimport time\ntime.sleep(0.3)\nx",
    "s2.wait()\ntime.sleep(2.5)\nprint('s2 done:', len(s2.results))",
    # 8: running counts never exceed what runs
    "from abaco_nb.widgets import ExecutorProgress\n"
    "slow = ex.map(shout, range(8), chunksize=2, progress=False)\np = ExecutorProgress(slow)\nseen = 0\n"
    "while not all(f.done() for f in slow):\n    seen = max(seen, p.counts.running)\n    time.sleep(0.05)\n"
    "print('running max:', seen, 'executions:', len({f.execution_id for f in slow}), 'final:', p.counts)",
    # 9: a reactor's output followed live in the cell that sent the message
    '%abaco register abaco-nb/test --name kfollow -e SLEEP=0\nreceipt = %abaco send kfollow "followed live"\n'
    "for _ in range(100):\n    if c1.execution(receipt.actor_id if hasattr(receipt, 'actor_id') else "
    "[a.id for a in c1.actors() if a.name == 'kfollow'][0], receipt.execution_id).status == 'COMPLETE':\n"
    "        break\n    time.sleep(0.1)\ntime.sleep(1.5)",
    # 10: the executor's live repr, then clean-up leaves no executor actor behind
    "display(ex)\nex.delete()\nprint('left:', [a.name for a in c1.actors() if 'executor' in (a.name or '')])",
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = start_serve(tmp_path_factory.mktemp("kernel-notebook"))
    yield s
    s.stop()


def _texts(cell: nbformat.NotebookNode) -> str:
    """What a cell shows, as text: its printed output first, then its displays and errors.

    Stream outputs are joined with nothing between them, as the notebook shows them: while the live
    output display updates from another thread, the kernel sends one ``print()`` as several stream
    messages ("name:" and " executor ...") with displays in between."""
    printed, shown = [], []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            printed.append(o.get("text", ""))
        shown.extend(str(v) for v in o.get("data", {}).values())
        if o.get("output_type") == "error":
            shown.append("\n".join(o.get("traceback", [])))
    return "\n".join(["".join(printed), *shown])


@pytest.fixture(scope="module")
def executed(served: Served, tmp_path_factory: pytest.TempPathFactory) -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    env = {
        **os.environ,
        "ABACO_NB_URL": served.url,
        "ABACO_NB_TOKEN": served.token,
        "JPY_SESSION_NAME": "/home/u/issue12-sweep.ipynb",
        "MPLBACKEND": "Agg",
    }
    cwd = tmp_path_factory.mktemp("kernel-cwd")
    client = NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute(env=env)
    (Path(cwd) / "executed.ipynb").write_text(nbformat.writes(nb))
    return nb


def test_connect_works_in_both_documented_forms(executed):
    assert "connect: Client Client Client Client" in _texts(executed.cells[0])


def test_remote_output_is_live_in_its_cell_prefixed_by_call(executed):
    text = _texts(executed.cells[1])
    assert "name: executor issue12-sweep.ipynb 20" in text
    for i in range(6):
        assert f"[shout {i}] hello {i}" in text, text
    assert "abaco-live-output" in text and "abaco-nb call" not in text  # markers never shown


def test_logs_are_per_call(executed):
    assert "logs: 'hello 4\\n' 'hello 0\\n'" in _texts(executed.cells[2])


def test_remote_exception_names_execution_call_and_source(executed):
    text = _texts(executed.cells[3])
    assert "error: ValueError True 1" in text
    assert "call 1 failed in execution" in text and ".logs()" in text
    assert "source: True" in text


def test_sweep_values_are_expressions_and_results_a_dataframe(executed):
    assert "6/6 finished" in _texts(executed.cells[4])
    text = _texts(executed.cells[5])
    assert "columns: ['x', 'y', 'result', 'status'] rows: 6 reused: True" in text
    assert "lines: 2" in text


def test_sweep_repr_is_live(executed):
    text = _texts(executed.cells[6])
    assert "4/4 finished" in text and "0/4 finished" not in text, text
    assert "s2 done: 4" in _texts(executed.cells[7])


def test_running_counts_only_what_runs(executed):
    text = _texts(executed.cells[8])
    line = next(t for t in text.splitlines() if t.startswith("running max:"))
    seen, executions = int(line.split()[2]), int(line.split()[4])
    assert seen <= executions == 4
    assert "done=8" in line and "running=0" in line


def test_reactor_output_is_followed_live(executed):
    text = _texts(executed.cells[9])
    assert "] Contents of MSG: followed live" in text and "[exec " in text


def test_executor_repr_links_the_dashboard_and_cleanup_leaves_nothing(executed, served):
    text = _texts(executed.cells[10])
    assert "abaco-dashboard-link" in text and "AbacoExecutor" in text
    assert "left: []" in text
    assert not [a for a in Client(served.url, served.token).actors() if "executor" in (a.name or "")]
