"""Widgets and reprs against real futures and a real ``abaco-nb serve --runtime process``."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from abaco_nb.client import Client
from abaco_nb.records import Actor, ActorList, Execution, ExecutionList, MessageReceipt
from abaco_nb.widgets import Dashboard, ExecutorProgress, LogViewer, count, timeline_svg
from tests.serve import Served


@pytest.fixture(scope="module")
def client(served: Served) -> Client:
    return Client(served.url, served.token)


def _wait_for(predicate, timeout: float = 30.0) -> None:
    event = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        event.wait(0.05)
    raise AssertionError("condition not reached")


def test_progress_counts_real_futures_and_finishes():
    gate = threading.Event()

    def work(i: int) -> int:
        gate.wait(10)
        if i == 3:
            raise ValueError("boom")
        return i

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(work, i) for i in range(5)]
        progress = ExecutorProgress(futures, description="calls")
        assert progress.counts.finished == 0 and "0/5" in progress.label.value
        gate.set()
        _wait_for(lambda: progress.cancel_button.disabled)
    c = count(futures)
    assert (c.done, c.failed, c.running, c.queued) == (4, 1, 0, 0)
    assert progress.bar.value == 5 and progress.bar.bar_style == "danger"
    assert "4 done" in progress.label.value and "1 failed" in progress.label.value
    assert "5/5" in repr(progress)


def test_progress_cancel_button_calls_the_callback_without_blocking():
    futures: list[Future[int]] = [Future() for _ in range(3)]
    called = threading.Event()
    progress = ExecutorProgress(futures, cancel=called.set)
    progress.cancel_button.click()  # what a press in the browser triggers
    assert called.is_set() and progress.cancel_button.disabled
    plain = ExecutorProgress([Future()])
    plain.cancel_button.click()
    _wait_for(lambda: plain.counts.failed == 1)  # Future.cancel() by default
    for f in futures:
        f.set_result(1)
    _wait_for(lambda: progress.bar.value == 3)


def test_log_viewer_follows_a_running_execution(client):
    actor = client.register("abaco-nb/test", "wlogs", default_environment={"SLEEP": "1"})
    client.wait_until_ready(actor.id)
    receipt = client.send(actor.id, "followed by the viewer")
    viewer = LogViewer(client, actor.id, receipt.execution_id, interval=0.2)
    assert viewer.finished.wait(60)
    assert viewer.status == "COMPLETE"
    assert "Contents of MSG: followed by the viewer" in viewer.body.value
    assert "Contents of root file system" in viewer.text  # the last lines are fetched after the end


def test_timeline_draws_one_lane_per_worker(client):
    actor = client.register("abaco-nb/test", "wtime", default_environment={"SLEEP": "0"}, max_workers=2)
    client.wait_until_ready(actor.id)
    client.add_workers(actor.id, 2)
    ids = [client.send(actor.id, f"m{i}").execution_id for i in range(4)]
    executions = [client.execution(actor.id, e, wait=60) for e in ids]
    svg = timeline_svg(executions)
    assert svg.startswith("<svg") and svg.count("abaco-timeline-bar") == 4
    workers = {e.worker_id for e in executions}
    assert svg.count(">worker ") == len(workers)
    assert all(e in svg for e in ids)
    assert "no executions" in timeline_svg([])


def test_dashboard_shows_actors_executions_logs_and_acts(client):
    actor = client.register("abaco-nb/test", "wdash", default_environment={"SLEEP": "0"})
    client.wait_until_ready(actor.id)
    first = client.send(actor.id, "dashboard message")
    client.execution(actor.id, first.execution_id, wait=60)
    dash = Dashboard(client, interval=0.5)
    try:
        _wait_for(lambda: dash.refreshed.is_set())
        assert "wdash" in dash.actor_table.value and "abaco-status-ready" in dash.actor_table.value
        dash.actor_select.value = actor.id
        _wait_for(lambda: first.execution_id in dash.execution_table.value)
        assert "abaco-status-complete" in dash.execution_table.value
        assert "abaco-timeline-bar" in dash.timeline.value
        dash.execution_select.value = first.execution_id
        assert dash.log_viewer is not None and dash.log_viewer.finished.wait(30)
        assert "dashboard message" in dash.log_viewer.text
        # the send form
        dash.message.value = '{"from": "form"}'
        dash.env.value = "key1=fromform"
        dash.send_button.click()
        _wait_for(lambda: "sent: execution" in dash.send_result.value)
        assert len(client.executions(actor.id)["executions"]) == 2
        dash.env.value = "novalue"
        dash.send_button.click()
        assert "KEY=VALUE" in dash.send_result.value
        # scale, then delete (two presses)
        dash.workers_input.value = 2
        dash.scale_button.click()
        _wait_for(lambda: len(client.workers(actor.id)) == 2)
        dash.delete_button.click()
        assert dash.delete_button.description == "Confirm"
        dash.delete_button.click()
        _wait_for(lambda: actor.id not in [a.id for a in client.actors()])
        _wait_for(lambda: "wdash" not in dash.actor_table.value)
    finally:
        dash.close()


def test_reprs_do_no_io_and_keep_attribute_access():
    actor = Actor(id="A1", name="n", image="img", status="ERROR", status_message="boom <x>",
                  default_environment={"k": "v"}, stateless=False)  # fmt: skip
    assert actor.default_environment == {"k": "v"} and actor["name"] == "n"
    html = actor._repr_html_()
    assert "boom &lt;x&gt;" in html and "stateful" in html and "abaco-status-error" in html
    ex = Execution(id="E1", status="COMPLETE", exitCode=0, start_time="2026-01-01T00:00:00.000000Z",
                   finish_time="2026-01-01T00:00:01.500000Z")  # fmt: skip
    assert ex.exit_code == 0 and ex.seconds == 1.5 and "1.50 s" in ex._repr_html_()
    assert "E1" in repr(ExecutionList([ex])) and "1.5" in repr(ExecutionList([ex]))
    assert "<no actors>" == repr(ActorList()) and "no actors" in ActorList()._repr_html_()
    assert "X9" in MessageReceipt(executionId="X9")._repr_html_()
    with pytest.raises(AttributeError):
        _ = actor._repr_markdown_  # IPython probes these: they must not come from the dict
