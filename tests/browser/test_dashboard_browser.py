"""The notebook and the dashboard page in a real browser: JupyterLab on loopback (one server for the
module), headless Debian chromium through Playwright.

A notebook registers an actor on a real ``abaco-nb serve``, sends it messages, shows logs, ``%abaco
dashboard``, an ``AbacoExecutor.map`` with its progress bar and live remote output, and a sweep; the cells
run in the live page (a notebook executed elsewhere shows only text fallbacks in JupyterLab 4). The test
checks what renders, in the light theme and then the dark one (logs must stay readable: text and
background far apart in luminance), then opens the dashboard page inside Jupyter (cookie + XSRF: it
deletes an actor) and standalone (service token). Screenshots go to ``test-output/``; with
``ABACO_NB_UPDATE_SCREENSHOT`` set they are copied to ``docs/screenshots/``, which the README shows.
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
from typing import Any

import nbformat
import pytest
import requests
from nbformat.v4 import new_code_cell, new_notebook

from abaco_nb.client import Client
from tests.chromium import CHROMIUM, launch
from tests.serve import Served, start_serve

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "test-output"
SCREENSHOTS = REPO / "docs" / "screenshots"
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
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(root / "settings"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTER_CONFIG_DIR": str(root / "config"),
        "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces"),
        "JUPYTER_DATA_DIR": str(root / "data"),
    }
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--port={port}",
        "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.open_browser=False",
        "--AbacoApp.runtime=process",
        f"--AbacoApp.db_path={root / 'abaco.db'}",
    ]
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


NOTEBOOK = [
    "%load_ext abaco_nb\nclient = %abaco connect\nclient",  # the lab's embedded service (ABACO_NB_URL)
    "%abaco register abaco-nb/test --name browser-demo -e SLEEP=0 --workers 2\n"
    "for i in range(4):\n"
    '    done = %abaco send browser-demo "message {{i}}" --wait\n'
    "done.logs",
    "%abaco dashboard",
    "from abaco_nb import AbacoExecutor\nimport time\nex = AbacoExecutor(client=client, max_workers=2)\n"
    "def square(x):\n    print(f'squaring {{x}}')\n    time.sleep(0.2)\n    return x * x\n"
    "futures = ex.map(square, range(6), chunksize=2)",
    "%%abaco map a=range(3) b=[1, 2] -o sweep\na * 10 + b",
]

# Luminance distance between a node's text colour and the background it sits on (walking up until a
# background is not transparent): below ~0.35 text is hard to read.
CONTRAST_JS = """(sel) => {
  const el = document.querySelector(sel); if (!el) return -1;
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => { const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
                             return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  let bg = el, b = null;
  while (bg) { const c = rgb(getComputedStyle(bg).backgroundColor); if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) { b = c; break; } bg = bg.parentElement; }
  b = b || [255, 255, 255];
  return Math.abs(lum(rgb(getComputedStyle(el).color)) - lum(b));
}"""


def lab_client(url: str) -> Client:
    """The lab's embedded service, as a kernel of that lab reaches it (Jupyter's token)."""
    return Client(f"{url}/abaco", TOKEN)


def write_notebook(path: Path, service: Served) -> None:
    nb = new_notebook(cells=[new_code_cell(c.format(url=service.url, token=service.token)) for c in NOTEBOOK])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def _shot(page_or_locator: Any, name: str) -> Path:
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / name
    page_or_locator.screenshot(path=str(path))
    if os.environ.get("ABACO_NB_UPDATE_SCREENSHOT"):  # refresh the README's pictures on request only
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / name)
    return path


def _wait_text(page: Any, selector: str, text: str, timeout: float = 60_000) -> None:
    page.wait_for_function(
        "([s, t]) => [...document.querySelectorAll(s)].some(e => e.innerText.includes(t))",
        arg=[selector, text],
        timeout=timeout,
    )


def _set_theme(page: Any, theme: str) -> None:
    page.get_by_text("Settings", exact=True).first.click()
    page.get_by_text("Theme", exact=True).first.hover()
    page.get_by_text(theme, exact=True).first.click()
    page.wait_for_function("(t) => document.body.dataset.jpThemeName === t", arg=theme, timeout=30_000)


def test_notebook_in_light_and_dark_then_the_dashboard_page_in_jupyter(lab, service):
    playwright = pytest.importorskip("playwright.sync_api")
    url, root = lab
    write_notebook(root / "dashboard.ipynb", service)
    with playwright.sync_playwright() as p:
        browser = launch(p)
        try:
            context = browser.new_context(viewport={"width": 1500, "height": 1300})
            page = context.new_page()
            page.goto(f"{url}/lab/workspaces/abaco-browser/tree/dashboard.ipynb?token={TOKEN}")
            page.get_by_text("| Idle").first.wait_for(timeout=120_000)
            page.locator(".jp-Notebook").first.click()
            page.get_by_text("Run", exact=True).first.click()
            page.get_by_text("Run All Cells", exact=True).first.click()

            _wait_text(page, ".abaco-dashboard-actors", "browser-demo", 120_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.abaco-dashboard-executions')]"
                ".some(e => (e.innerText.match(/COMPLETE/g) || []).length >= 4)",
                timeout=60_000,
            )
            _wait_text(page, ".abaco-progress-counts", "6/6", 120_000)
            _wait_text(page, ".abaco-live-output", "[square 5] squaring 5")
            _wait_text(page, ".abaco-sweep-summary", "6/6 finished")  # the live repr, not a snapshot
            assert page.locator(".abaco-dashboard .abaco-timeline-bar").count() >= 4
            progress = page.locator(".abaco-progress").first
            text = progress.inner_text()
            assert "6 done" in text and "0 running" in text and "/s" in text and "dashboard" in text
            assert page.locator(".abaco-client .abaco-dashboard-link, .abaco-dashboard-link").count() >= 2
            for theme, suffix in (("JupyterLab Light", "light"), ("JupyterLab Dark", "dark")):
                if suffix == "dark":
                    _set_theme(page, theme)
                for selector in (".abaco-logs-tail", ".abaco-live-tail", ".abaco-dashboard-actors td"):
                    contrast = page.evaluate(CONTRAST_JS, selector)
                    assert contrast > 0.35, f"{selector} hard to read in {theme}: {contrast:.2f}"
                page.locator(".abaco-dashboard").first.scroll_into_view_if_needed()
                _shot(page, f"notebook-{suffix}.png")
                page.locator(".abaco-progress").first.scroll_into_view_if_needed()
                _shot(page, f"executor-{suffix}.png")
            _set_theme(page, "JupyterLab Light")
            facts = {"progress": text, "actors": page.locator(".abaco-dashboard-actors").first.inner_text()}
            (OUTPUT / "browser-dashboard.json").write_text(json.dumps(facts, indent=2))

            # The dashboard page inside Jupyter: Jupyter's cookie from the visit above, XSRF for writes.
            client = lab_client(url)
            doomed = client.register("abaco-nb/test", "page-doomed")
            client.wait_until_ready(doomed.id)
            board = context.new_page()  # same context: Jupyter's login cookie
            board.set_viewport_size({"width": 1400, "height": 1100})
            board.goto(f"{url}/abaco/")
            _wait_text(board, "#actors", "browser-demo")
            _wait_text(board, "#executors", "executor")
            board.locator("#actors tr", has_text="browser-demo").first.click()
            _wait_text(board, "#executions", "COMPLETE")
            board.locator("#executions tbody tr").first.click()
            _wait_text(board, "#logs", "Contents of MSG")
            assert board.locator("#stream .task-bar").count() >= 4
            board.locator("#executors tbody tr").first.click()  # the executor: one bar per call
            board.wait_for_function("() => document.querySelectorAll('#stream .task-bar').length >= 6")
            board.locator("#executions tbody tr").first.click()
            _wait_text(board, "#logs", "── call")
            _shot(board, "dashboard-page.png")
            board.locator("#actors tr", has_text="page-doomed").first.click()
            board.locator("#delete").click()
            board.locator("#actors tr", has_text="browser-demo").first.click()  # switching disarms
            assert board.locator("#delete").inner_text() == "Delete"
            board.locator("#actors tr", has_text="page-doomed").first.click()
            board.locator("#delete").click()
            board.locator("#delete").click()  # confirmed within 5 s: deleted through Jupyter with XSRF
            board.wait_for_function(
                "() => !document.querySelector('#actors').innerText.includes('page-doomed')", timeout=30_000
            )
            assert doomed.id not in [a.id for a in client.actors()]
            assert "browser-demo" in [a.name for a in client.actors()]
        except BaseException:
            _failure_shots(browser)
            raise
        finally:
            browser.close()


def _failure_shots(browser: Any) -> None:
    """What every open page showed when the test failed (test-output/failure-N.png)."""
    OUTPUT.mkdir(exist_ok=True)
    for n, page in enumerate(p for c in browser.contexts for p in c.pages):
        try:
            page.screenshot(path=str(OUTPUT / f"failure-{n}.png"))
        except Exception:
            pass


def test_jupyter_dashboard_page_is_behind_jupyters_login(lab):
    url, _root = lab
    anonymous = requests.get(f"{url}/abaco/", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    signed = requests.get(f"{url}/abaco/?token={TOKEN}", timeout=10)
    assert signed.status_code == 200 and "window.ABACO_PAGE" in signed.text
    assert "default-src 'none'" in signed.headers["Content-Security-Policy"]
    assert requests.get(f"{url}/abaco/actors", timeout=10).status_code == 401  # the API: unchanged


def test_standalone_dashboard_page_needs_the_service_token(service):
    playwright = pytest.importorskip("playwright.sync_api")
    _need(Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    assert requests.get(f"{service.url}/", timeout=10).status_code == 401
    client = Client(service.url, service.token)
    if "browser-demo" not in [a.name for a in client.actors()]:
        client.wait_until_ready(client.register("abaco-nb/test", "browser-demo").id)
    with playwright.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, color_scheme="dark")
            page.goto(f"{service.url}/?token={service.token}")
            _wait_text(page, "#actors", "browser-demo")
            assert "token=" not in page.url  # taken out of the address bar (kept for this tab only)
            page.reload()  # sessionStorage keeps the tab signed in
            _wait_text(page, "#actors", "browser-demo")
            assert page.evaluate("document.documentElement.classList.contains('dark')")
            assert page.evaluate(CONTRAST_JS, "#actors td") > 0.35
            _shot(page, "dashboard-page-dark.png")
        finally:
            browser.close()
