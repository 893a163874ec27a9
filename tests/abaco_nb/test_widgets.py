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
    _wait_for(lambda: plain.counts.cancelled == 1 and plain.counts.failed == 0)  # Future.cancel() by default
    _wait_for(lambda: "1 cancelled" in plain.label.value)
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
    actor = Actor(
        id="A1",
        name="n",
        image="img",
        status="ERROR",
        status_message="boom <x>",
        default_environment={"k": "v"},
        stateless=False,
    )
    assert actor.default_environment == {"k": "v"} and actor["name"] == "n"
    html = actor._repr_html_()
    assert "boom &lt;x&gt;" in html and "stateful" in html and "abaco-status-error" in html
    ex = Execution(
        id="E1",
        status="COMPLETE",
        exitCode=0,
        start_time="2026-01-01T00:00:00.000000Z",
        finish_time="2026-01-01T00:00:01.500000Z",
    )
    assert ex.exit_code == 0 and ex.seconds == 1.5 and "1.50 s" in ex._repr_html_()
    assert "E1" in repr(ExecutionList([ex])) and "1.5" in repr(ExecutionList([ex]))
    assert "<no actors>" == repr(ActorList()) and "no actors" in ActorList()._repr_html_()
    assert "X9" in MessageReceipt(executionId="X9")._repr_html_()
    with pytest.raises(AttributeError):
        _ = actor._repr_markdown_  # IPython probes these: they must not come from the dict


def test_dashboard_confirmation_belongs_to_one_actor_and_logs_follow_the_actor(client):
    a = client.register("abaco-nb/test", "wconf-a", default_environment={"SLEEP": "0"})
    b = client.register("abaco-nb/test", "wconf-b", default_environment={"SLEEP": "0"})
    for actor in (a, b):
        client.wait_until_ready(actor.id)
    sent = client.send(a.id, "logs of a")
    client.execution(a.id, sent.execution_id, wait=60)
    dash = Dashboard(client, interval=0.5)
    try:
        _wait_for(lambda: dash.refreshed.is_set())
        dash.actor_select.value = a.id
        _wait_for(lambda: [o[1] for o in dash.execution_select.options] == [sent.execution_id])
        dash.execution_select.value = sent.execution_id
        assert dash.log_viewer is not None and dash.log_viewer.finished.wait(30)
        dash.delete_button.click()  # arms deletion of a
        assert dash.delete_button.description == "Confirm"
        dash.actor_select.value = b.id  # switching disarms and clears a's logs
        assert dash.delete_button.description == "Delete" and dash.log_viewer is None
        assert dash.log_box.children == () or list(dash.log_box.children) == []
        dash.delete_button.click()  # one press on b only arms
        dash.refresh(wait=10)
        assert {a.id, b.id} <= {x.id for x in client.actors()}
        _wait_for(lambda: dash.delete_button.description == "Delete", timeout=15)  # it expires
    finally:
        dash.close()
    _wait_for(lambda: not dash.running)


def test_widgets_stop_their_threads_when_their_views_go(client):
    dash = Dashboard(client, interval=0.2)
    progress = ExecutorProgress([Future()])
    dash._view_count = 1  # what the frontend reports while the output is shown
    progress._view_count = 1
    dash._view_count = 0  # output cleared or replaced by a re-run
    progress._view_count = 0
    _wait_for(lambda: not dash.running and not progress._thread.is_alive())


def test_badges_say_the_outcome_and_logs_use_theme_colours():
    from abaco_nb.logtext import log_block
    from abaco_nb.records import outcome, status_badge

    ok = Execution(id="E", status="COMPLETE", exit_code=0)
    failed = Execution(id="E", status="COMPLETE", exit_code=1)
    oom = Execution(id="E", status="COMPLETE", exit_code=137, final_state={"OOMKilled": True})
    assert [outcome(e) for e in (ok, failed, oom)] == ["ok", "failed", "oom"]
    assert "#2e7d32" in status_badge("COMPLETE", ok) and "#c62828" in status_badge("COMPLETE", failed)
    assert "OOM · exit 137" in status_badge("COMPLETE", oom)
    assert "exit 1" in failed._repr_html_() and "#2e7d32" not in failed._repr_html_()
    text = "\n".join(f"line {i}" for i in range(500))
    block = log_block(text, "logs")
    assert "var(--jp-layout-color2" in block and "#f6f8fa" not in block
    assert "show all 500 lines" in block and "line 499" in block.split("<details")[0]
    assert "line 0\n" not in block.split("<details")[0]


def test_progress_counts_cancelled_apart_and_shows_rate_and_time_left():
    from abaco_nb.widgets.progress import Counts, timing

    futures: list[Future[int]] = [Future() for _ in range(4)]
    futures[0].set_result(1)
    futures[1].cancel()
    c = count(futures)
    assert (c.done, c.cancelled, c.failed, c.running, c.queued) == (1, 1, 0, 0, 2)
    assert timing(Counts(10, 5, 0, 1, 4), 10.0) == "10.0 s · 0.5/s · ~10.0 s left"
