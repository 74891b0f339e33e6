"""The batch wait core (``airflow_mps.waits.batch``) driven by hand: each step, each reply, no I/O.

The drivers (in-place poll, overlap watcher, trigger) are exercised end to end against the emulator in
``tests/integration/test_batch_emulator.py``; here the decisions are checked one step at a time, and
the pure halves of retry adoption and the report.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_mps.batch.plan import BatchItem, CosLocation
from airflow_mps.batch.progress import FAILED, SUCCEEDED, BatchWaitState, CreateClock
from airflow_mps.batch.report import BatchReport, make_carry
from airflow_mps.errors import (
    MpsAuthError,
    MpsInvalidParameterError,
    MpsResourceNotFoundError,
    MpsThrottledError,
)
from airflow_mps.models.constants import format_api_time
from airflow_mps.ownership import match_listed_rows
from airflow_mps.waits.batch import (
    ERROR,
    RESOLVED,
    RETRY,
    RUNNING,
    SUCCESS,
    TERMINAL,
    TIMEOUT,
    DescribeTasks,
    Listed,
    ListFinished,
    Sleep,
    apply_detail,
    finished_tasks,
    result_of,
    wait_for_batch,
)

WINDOW = "2026-11-01T00:00:00Z"
log = logging.getLogger("test.batch.wait")


def _status(task_id: str, *, done: bool = True, ok: bool = True) -> Any:
    return SimpleNamespace(
        done=done,
        succeeded=done and ok,
        failed=done and not ok,
        outputs=(SimpleNamespace(bucket="b", path=f"out/{task_id}.jpg"),) if ok else (),
        error_code=None if ok else "ResourceNotFound.DownloadError",
        error_message=None if ok else "cannot download",
        request_id=f"req-{task_id}",
    )


def _rows(*task_ids: str) -> Listed:
    return Listed([SimpleNamespace(task_id=t, create_time=None) for t in task_ids])


class Clock:
    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _wait(state: BatchWaitState, clock: Clock, *, end: float = 1_100.0) -> Any:
    return wait_for_batch(state, window_start=WINDOW, end_time=end, poll_interval=15, log=log, now=clock)


def test_a_round_lists_then_describes_only_our_finished_tasks_then_sleeps() -> None:
    state = BatchWaitState([("t1", "cos://b/1.png"), ("t2", "cos://b/2.png")])
    clock = Clock()
    steps = _wait(state, clock)
    step = next(steps)
    assert isinstance(step, ListFinished) and step.start == WINDOW and step.until == 1_100.0
    step = steps.send(_rows("someone-elses", "t1"))
    assert isinstance(step, DescribeTasks) and step.task_ids == ("t1",)
    step = steps.send({"t1": _status("t1")})
    assert step == Sleep(15)
    clock.t = 1_095.0
    assert isinstance(steps.send(None), ListFinished)
    step = steps.send(_rows("t2"))
    assert isinstance(step, DescribeTasks) and step.task_ids == ("t2",)
    outcome = result_of(steps, {"t2": _status("t2", ok=False)})
    assert outcome.status == SUCCESS and outcome.error is None
    rows = {r[0]: r[2] for r in state.result_rows()}
    assert rows == {"t1": SUCCEEDED, "t2": FAILED}
    assert state.listing_calls == 2 and state.detail_calls == 2


def test_no_listed_task_of_ours_means_no_detail_call() -> None:
    state = BatchWaitState([("t1", "cos://b/1.png")])
    steps = _wait(state, Clock())
    next(steps)
    assert isinstance(steps.send(_rows("other")), Sleep)
    assert state.detail_calls == 0


def test_a_transient_listing_error_is_polled_through_a_terminal_one_ends_the_wait() -> None:
    state = BatchWaitState([("t1", "cos://b/1.png")])
    steps = _wait(state, Clock())
    next(steps)
    assert isinstance(steps.throw(MpsThrottledError("RequestLimitExceeded", "slow down", "r1")), Sleep)
    assert isinstance(steps.send(None), ListFinished)
    outcome = result_of_throw(steps, MpsAuthError("AuthFailure.SecretIdNotFound", "bad id", "r2"))
    assert outcome.status == ERROR
    assert outcome.error == {"code": "AuthFailure.SecretIdNotFound", "message": "bad id", "request_id": "r2"}


def result_of_throw(steps: Any, err: BaseException) -> Any:
    with pytest.raises(StopIteration) as done:
        steps.throw(err)
    return done.value.value


def test_a_terminal_detail_error_ends_the_wait_after_recording_the_others() -> None:
    state = BatchWaitState([("t1", "cos://b/1.png"), ("t2", "cos://b/2.png")])
    steps = _wait(state, Clock())
    next(steps)
    steps.send(_rows("t1", "t2"))
    outcome = result_of(steps, {"t1": _status("t1"), "t2": MpsAuthError("AuthFailure", "expired", "r3")})
    assert outcome.status == ERROR and outcome.error["code"] == "AuthFailure"
    assert "t1" in state.results and state.pending == {"t2"}


def test_abandoned_details_stay_pending_and_the_deadline_ends_the_wait() -> None:
    state = BatchWaitState([("t1", "cos://b/1.png"), ("t2", "cos://b/2.png")])
    clock = Clock(1_099.5)
    steps = _wait(state, clock)
    step = next(steps)
    assert step.until == 1_099.5 + 1.0  # a round at the deadline still gets MIN_CALL_SECONDS
    steps.send(_rows("t1", "t2"))
    clock.t = 1_100.5
    outcome = result_of(steps, {"t1": _status("t1")})  # t2 did not answer before the bound
    assert outcome.status == TIMEOUT
    assert outcome.error == {
        "code": "Timeout",
        "message": "1 tasks unfinished at the deadline",
        "request_id": None,
    }
    assert state.pending == {"t2"} and state.detail_calls == 1


def test_a_retryable_detail_error_leaves_the_task_for_the_next_round() -> None:
    state = BatchWaitState([("t1", "cos://b/1.png")])
    steps = _wait(state, Clock())
    next(steps)
    steps.send(_rows("t1"))
    assert isinstance(steps.send({"t1": MpsThrottledError("RequestLimitExceeded", "", None)}), Sleep)
    assert state.pending == {"t1"} and state.detail_calls == 0


def test_nothing_pending_succeeds_without_any_call() -> None:
    state = BatchWaitState([], known=[["t1", "cos://b/1.png", SUCCEEDED, ["b/o.jpg"], None, None, None]])
    steps = _wait(state, Clock())
    with pytest.raises(StopIteration) as done:
        next(steps)
    assert done.value.value.status == SUCCESS


def test_apply_detail_verdicts() -> None:
    state = BatchWaitState([("a", "ia"), ("b", "ib"), ("c", "ic"), ("d", "id"), ("e", "ie")])
    assert apply_detail(state, "a", _status("a")) == RESOLVED
    assert apply_detail(state, "b", _status("b", done=False)) == RUNNING
    assert (
        apply_detail(state, "c", MpsResourceNotFoundError("ResourceNotFound.TaskNotFound", "gone", "r"))
        == RESOLVED
    )
    assert apply_detail(state, "d", MpsThrottledError()) == RETRY
    assert apply_detail(state, "d", ConnectionResetError("reset")) == RETRY
    assert apply_detail(state, "e", MpsInvalidParameterError("InvalidParameter", "no", "r")) == TERMINAL
    assert state.pending == {"b", "d", "e"} and state.results["c"].state == FAILED
    assert state.detail_calls == 3  # answers MPS gave: two statuses and one not-found


def test_the_watchers_listing_half_calibrates_the_clock_and_skips_direct_checks() -> None:
    clock = CreateClock()
    clock.submitted("t1", 500.0, 500.2)
    clock.submitted("t2", 600.0, 600.2)
    state = BatchWaitState([("t1", "i1"), ("t2", "i2")], started=-10_000.0)  # direct checks long due
    steps = finished_tasks(state, WINDOW, clock=clock, direct_checks=False)
    assert next(steps).start == WINDOW  # uncalibrated: no floors yet
    listed = Listed([SimpleNamespace(task_id="t1", create_time=format_api_time(1_500.0))])
    assert result_of(steps, listed) == ["t1"]
    assert clock.offset == pytest.approx(1_500.0 - 500.2)
    state.refresh_floors(clock.floor)
    assert state.create_floor["t2"] == pytest.approx(600.0 + 1_500.0 - 500.2)


def test_the_waits_listing_half_adds_direct_checks_when_due() -> None:
    state = BatchWaitState([("t1", "i1"), ("t2", "i2")], started=-10_000.0)
    steps = finished_tasks(state, WINDOW)
    next(steps)
    assert result_of(steps, _rows("t2")) == ["t2", "t1"]


# ------------------------------------------------------------------------ the pure halves around it


def test_listed_rows_match_items_by_input_newest_first_once_per_task() -> None:
    items = [BatchItem("b-1", "raw/a.png", "out/a.jpg"), BatchItem("b-1", "raw/c.png", "out/c.jpg")]

    def row(task_id: str, listed: str, created: str) -> Any:
        return SimpleNamespace(task_id=task_id, input=listed, create_time=created)

    rows = [
        row("old", "cos://b-1/raw/a.png", "2026-11-01T00:00:01Z"),
        row("new", "cos://b-1/raw/a.png", "2026-11-01T00:00:09Z"),
        row("new", "cos://b-1/raw/a.png", "2026-11-01T00:00:09Z"),  # listed again under another status
        row("elsewhere", "cos://b-2/raw/c.png", "2026-11-01T00:00:05Z"),
        row("url", "https://example.com/raw/c.png", "2026-11-01T00:00:05Z"),
    ]
    wanted = {(item.input_bucket, item.input_key): item.input_uri for item in items}  # as adoption asks
    assert match_listed_rows(rows, wanted) == {"cos://b-1/raw/a.png": ["new", "old"]}


def test_report_keeps_input_order_rejections_history_and_the_policy() -> None:
    dest = CosLocation("b-1", "out/")
    items = [BatchItem("b-1", f"raw/{n}.png", f"out/{n}.jpg") for n in "abcd"]
    rejected = {"cos://b-1/raw/c.png": MpsInvalidParameterError("InvalidParameter", "bad", "r-c")}
    carry = make_carry(
        [(i.input_uri, i.output_key) for i in items],
        skipped=["cos://b-1/raw/d.png"],
        rejected=rejected,
        history={"cos://b-1/raw/a.png": ["t0"]},
        submitted=3,
        adopted=0,
    )
    rows = [
        ["ta", "cos://b-1/raw/a.png", SUCCEEDED, ["b-1/out/a.jpg"], None, None, None],
        ["tb", "cos://b-1/raw/b.png", FAILED, [], "E", "m", "r-b"],
    ]
    report = BatchReport.build(carry, rows, dest)
    assert [r["state"] for r in report.records] == [SUCCEEDED, FAILED, FAILED, "skipped"]
    assert report.records[0]["previous_task_ids"] == ["t0"]
    assert report.records[2]["error"] == {"code": "InvalidParameter", "message": "bad", "request_id": "r-c"}
    summary = report.summary(carry, manifest_uri="cos://b-1/out/m", destination=dest, max_failed=1)
    assert (summary["succeeded"], summary["failed"], summary["skipped"]) == (1, 2, 1)
    assert len(summary["failed_inputs"]) == 1
    assert report.policy_failure(0.7, "m") is None
    assert report.policy_failure(0.5, "m").startswith("2 of 3 images failed")
    assert len(report.manifest().splitlines()) == 4
