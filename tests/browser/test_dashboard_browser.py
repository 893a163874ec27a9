"""The widgets in a real browser: JupyterLab on loopback, headless Debian chromium through Playwright.

A notebook registers an actor on a real ``abaco-nb serve``, sends it messages, shows ``%abaco dashboard``
and an ``ExecutorProgress`` over a real ``AbacoExecutor.map``; the cells are run in the live page (a
notebook executed elsewhere shows only text fallbacks in JupyterLab 4), and the test asserts what the
widgets render. Screenshots go to ``test-output/``; one is copied to ``docs/screenshots/dashboard.png``.
Never ``playwright install``: the browser is Debian's ``/usr/bin/chromium``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import requests
from nbformat.v4 import new_code_cell, new_notebook

from tests.serve import Served, start_serve

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "test-output"
SCREENSHOT = REPO / "docs" / "screenshots" / "dashboard.png"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
TOKEN = "browser-test-token"


def _need(ok: bool, reason: str) -> None:
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs it: {reason}")
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = start_serve(tmp_path_factory.mktemp("browser-service"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """JupyterLab on 127.0.0.1 with its own config and runtime dirs."""
    _need(Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    root = tmp_path_factory.mktemp("lab")
    port = _free_port()
    settings = root / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')  # no news pop-up
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(root / "settings"), "JUPYTER_RUNTIME_DIR": str(root / "runtime"), "JUPYTER_CONFIG_DIR": str(root / "config"),
           "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces")}  # fmt: skip
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False"]  # fmt: skip
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(root / "lab.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if requests.get(f"{url}/api/status?token={TOKEN}", timeout=2).ok:
                break
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"JupyterLab did not start: {(root / 'lab.log').read_text()[-3000:]}")
        time.sleep(0.2)
    yield url, root
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def write_notebook(path: Path, service: Served) -> None:
    cells = [
        f"%load_ext abaco_nb\nclient = %abaco connect {service.url} --token {service.token}",
        "%abaco register abaco-nb/test --name browser-demo -e SLEEP=0 --workers 2\n"
        "for i in range(4):\n"
        '    _ = %abaco send browser-demo "message {i}" --wait',
        "%abaco dashboard",
        "from abaco_nb import AbacoExecutor\nfrom abaco_nb.widgets import ExecutorProgress\n"
        "ex = AbacoExecutor(client=client)\n"
        "def square(x):\n    return x * x\n"
        "futures = ex.map(square, range(6), chunksize=1, progress=False)\n"
        "ExecutorProgress(futures, cancel=ex.cancel_all, description='squares')",
    ]
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_dashboard_and_progress_render_in_jupyterlab(lab, service):
    playwright = pytest.importorskip("playwright.sync_api")
    url, root = lab
    write_notebook(root / "dashboard.ipynb", service)
    OUTPUT.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1300})
            page.goto(f"{url}/lab/workspaces/abaco-browser/tree/dashboard.ipynb?token={TOKEN}")
            page.get_by_text("| Idle").first.wait_for(timeout=120_000)
            page.locator(".jp-Notebook").first.click()
            page.get_by_text("Run", exact=True).first.click()
            page.get_by_text("Run All Cells", exact=True).first.click()

            actors = page.locator(".abaco-dashboard-actors")
            actors.wait_for(timeout=120_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.abaco-dashboard-actors')].some(e => e.innerText.includes('browser-demo'))",
                timeout=60_000,
            )
            page.wait_for_function(
                "() => [...document.querySelectorAll('.abaco-dashboard-executions')]"
                ".some(e => (e.innerText.match(/COMPLETE/g) || []).length >= 4)",
                timeout=60_000,
            )
            page.wait_for_function(
                "() => [...document.querySelectorAll('.abaco-progress-counts')].some(e => e.innerText.includes('6/6'))",
                timeout=120_000,
            )
            assert page.locator(".abaco-dashboard .abaco-timeline-bar").count() >= 4
            assert page.locator(".abaco-dashboard .abaco-log-viewer").count() == 1
            progress = page.locator(".abaco-progress").first
            assert "6 done" in progress.inner_text() and page.locator(".abaco-progress-bar").count() == 1
            page.locator(".abaco-dashboard").first.scroll_into_view_if_needed()
            page.screenshot(path=str(OUTPUT / "browser-notebook.png"), full_page=True)
            shot = OUTPUT / "dashboard.png"
            page.locator(".jp-Notebook").first.screenshot(path=str(shot))
            facts = {"actors": actors.first.inner_text(), "progress": progress.inner_text()}
            (OUTPUT / "browser-dashboard.json").write_text(json.dumps(facts, indent=2))
        finally:
            browser.close()
    if os.environ.get("ABACO_NB_UPDATE_SCREENSHOT"):  # refresh the README's picture on request only
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
