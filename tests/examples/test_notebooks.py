"""Execute every example notebook with nbclient in a real kernel against a real service.

The kernel finds the service the way it does inside Jupyter: ``ABACO_NB_URL`` and ``ABACO_NB_TOKEN`` in its
environment. The reactor-development notebook needs Docker; it runs twice, the second time against another
service by changing its one ``SERVICE = ...`` line, as its text promises.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.serve import Served, start_serve

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOTEBOOKS = sorted(p.name for p in EXAMPLES.glob("*.ipynb"))
DOCKER_NOTEBOOKS = {"reactor-development.ipynb"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = start_serve(tmp_path_factory.mktemp("examples"))
    yield s
    s.stop()


def run_notebook(nb: nbformat.NotebookNode, served: Served, cwd: Path) -> nbformat.NotebookNode:
    env = {**os.environ, "ABACO_NB_URL": served.url, "ABACO_NB_TOKEN": served.token}
    client = NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute(env=env)
    return nb


def outputs(nb: nbformat.NotebookNode) -> str:
    """Every cell's printed output (its stream messages joined with nothing between them: one print()
    can arrive as several while a live display updates), then its displays."""
    text = []
    for cell in nb.cells:
        printed = [
            out.get("text", "") for out in cell.get("outputs", []) if out.get("output_type") == "stream"
        ]
        text.append("".join(printed))
        for out in cell.get("outputs", []):
            text.extend(str(v) for v in out.get("data", {}).values())
    return "\n".join(text)


def test_every_example_is_tested():
    assert set(NOTEBOOKS) >= {"quickstart.ipynb", "parameter-sweep.ipynb", "reactor-development.ipynb"}


@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if n not in DOCKER_NOTEBOOKS])
def test_example_notebook_runs(name: str, served: Served, tmp_path: Path):
    nb = run_notebook(nbformat.read(EXAMPLES / name, as_version=4), served, tmp_path)
    text = outputs(nb)
    assert "Traceback" not in text
    if name == "parameter-sweep.ipynb":  # the DataFrame has the parameters as columns
        assert "damping" in text and "frequency" in text and "result" in text
    if name == "quickstart.ipynb":
        assert "Contents of MSG: some test message" in text and "9 words so far" in text
        assert "application/vnd.jupyter.widget-view+json" in str(nb.cells)  # the dashboard widget
    if name == "parameter-sweep.ipynb":
        assert "image/png" in str(nb.cells)  # the matplotlib plot
        assert "15/15" in text  # the progress widget's text fallback once every point is done


@pytest.mark.docker
def test_reactor_development_locally_then_against_another_service(built_images, tmp_path: Path):
    local = start_serve(tmp_path / "local", runtime="docker", token="local-token")
    remote = start_serve(tmp_path / "remote", runtime="docker", token="remote-token")
    try:
        source = nbformat.read(EXAMPLES / "reactor-development.ipynb", as_version=4)
        (tmp_path / "run1").mkdir()
        first = run_notebook(nbformat.from_dict(source), local, tmp_path / "run1")
        assert "version 2: 3 words (2 distinct), 6 in total" in outputs(first)
        # "the same notebook against a remote Abaco by changing one line"
        changed = nbformat.from_dict(source)
        lines = [c for c in changed.cells if c.cell_type == "code" and c.source.strip() == "SERVICE = None"]
        assert len(lines) == 1
        lines[0].source = f"SERVICE = ({remote.url!r}, {remote.token!r})"
        (tmp_path / "run2").mkdir()
        second = run_notebook(changed, local, tmp_path / "run2")  # the kernel's own service stays `local`
        assert "version 2: 3 words (2 distinct), 6 in total" in outputs(second)
        assert remote.url in outputs(second)
    finally:
        local.stop()
        remote.stop()
