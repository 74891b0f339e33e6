"""Airflow metrics of the single-image operator (issue 14 item 6) with a ``Stats`` stub, and the readable
trigger ``repr``.

The real hook's throttled attempts are counted against the emulator in
tests/integration/operators/test_operator_metrics_emulator.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, TaskDeferred

from airflow_mps.errors import MpsInvalidParameterError, MpsTransientError
from airflow_mps.hooks.mps import Submission
from airflow_mps.models import ImageTaskStatus
from airflow_mps.operators.mps import MpsProcessImageOperator
from airflow_mps.utils import metrics as metrics_module
from airflow_mps.utils.metrics import (
    CALLS_THROTTLED,
    IMAGES_FAILED,
    IMAGES_SKIPPED,
    IMAGES_SUBMITTED,
    IMAGES_SUCCEEDED,
    SUBMIT_LATENCY,
    MpsMetrics,
)
from tests.hook_contract import SubmitsImageTasks
from tests.metrics_support import StatsStub

HAS_TASK_STATE_STORE = bool(MpsProcessImageOperator(task_id="probe", input="x").durable)


def _status(state: str, task_id: str = "task-1", err: str | None = None) -> ImageTaskStatus:
    body: dict[str, Any] = {"Status": state}
    if state == "FINISH":
        body["ImageProcessTaskResultSet"] = [
            {"Status": "FAIL" if err else "SUCCESS", "ErrMsg": err or "", "Output": None}
        ]
    return ImageTaskStatus.from_api(body, task_id=task_id)


class FakeHook(SubmitsImageTasks):
    def __init__(self) -> None:
        self.script: list[Any] = [_status("FINISH")]
        self.submit_error: BaseException | None = None
        self.submitted = 0

    def process_image(self, request: Any) -> Submission:
        if self.submit_error is not None:
            raise self.submit_error
        self.submitted += 1
        return Submission(task_id=f"task-{self.submitted}", request_id="req")

    def describe_image_task(self, task_id: str) -> ImageTaskStatus:
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return item


class Store:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.data[key] = value


class TI:
    def __init__(self) -> None:
        self.stats_tags: dict[str, str] = {}
        self.start_date = datetime.now(timezone.utc)

    def xcom_push(self, key: str, value: Any) -> None:
        pass


def _op(**kwargs: Any) -> tuple[MpsProcessImageOperator, FakeHook, dict[str, Any]]:
    from airflow.sdk import DAG

    with DAG("metrics_dag", schedule=None):
        op = MpsProcessImageOperator(
            task_id="enhance",
            input="cos://in-1250000000/raw/a.jpg",
            region="ap-guangzhou",
            image_task={"EncodeConfig": {"Format": "webp"}},
            poll_interval=0.01,
            **kwargs,
        )
    hook = FakeHook()
    op.__dict__["hook"] = hook
    return op, hook, {"ti": TI(), "task_state_store": Store()}


def test_sync_success_counts_submitted_succeeded_and_latency(stats: StatsStub) -> None:
    op, _, ctx = _op()
    op.execute(ctx)
    assert stats.counts() == {IMAGES_SUBMITTED: 1, SUBMIT_LATENCY: 1, IMAGES_SUCCEEDED: 1}
    [latency] = [value for kind, name, value, _ in stats.calls if name == SUBMIT_LATENCY]
    assert isinstance(latency, timedelta) and latency >= timedelta(0)
    expected = {"dag_id": "metrics_dag", "task_id": "enhance", "operator": "MpsProcessImageOperator"}
    assert all(tags == expected for _, _, _, tags in stats.calls)


def test_sync_failure_counts_failed_with_the_mps_code(stats: StatsStub) -> None:
    op, hook, ctx = _op()
    hook.script = [_status("FINISH", err="ResourceNotFound.CosObjectNotExist")]
    with pytest.raises(AirflowFailException):
        op.execute(ctx)
    assert stats.counts() == {IMAGES_SUBMITTED: 1, SUBMIT_LATENCY: 1, IMAGES_FAILED: 1}
    assert stats.tags_of(IMAGES_FAILED)[0]["code"] == "ResourceNotFound.CosObjectNotExist"


def test_deferrable_counts_on_resume(stats: StatsStub) -> None:
    op, _, ctx = _op(deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute(ctx)
    assert stats.counts() == {IMAGES_SUBMITTED: 1, SUBMIT_LATENCY: 1}
    op.execute_complete(
        ctx, {"status": "success", "mps_task_id": "task-1", "result": _status("FINISH").to_dict()}
    )
    failed = {
        "status": "failed",
        "mps_task_id": "task-1",
        "error": {"code": "FailedOperation.X", "message": "m"},
    }
    with pytest.raises(AirflowFailException):
        op.execute_complete(ctx, failed)
    assert stats.counts()[IMAGES_SUCCEEDED] == 1 and stats.counts()[IMAGES_FAILED] == 1
    assert stats.tags_of(IMAGES_FAILED)[0]["code"] == "FailedOperation.X"


def test_fire_and_forget_counts_the_submission_only(stats: StatsStub) -> None:
    op, _, ctx = _op(wait_for_completion=False)
    op.execute(ctx)
    assert stats.counts() == {IMAGES_SUBMITTED: 1, SUBMIT_LATENCY: 1}


def test_refused_submission_is_a_failed_image_a_transient_one_is_not(stats: StatsStub) -> None:
    op, hook, ctx = _op()
    hook.submit_error = MpsInvalidParameterError("InvalidParameterValue.ImageTask", "bad", "r")
    with pytest.raises(AirflowFailException):
        op.execute(ctx)
    assert stats.counts() == {IMAGES_FAILED: 1}
    assert stats.tags_of(IMAGES_FAILED)[0]["code"] == "InvalidParameterValue.ImageTask"
    stats.calls.clear()
    op2, hook2, ctx2 = _op()
    hook2.submit_error = MpsTransientError("InternalError", "down", "r")
    with pytest.raises(AirflowException) as info:
        op2.execute(ctx2)
    assert not isinstance(info.value, AirflowFailException)
    assert stats.counts() == {}  # a retry will submit: neither failed nor submitted yet


@pytest.mark.skipif(not HAS_TASK_STATE_STORE, reason="no task_state_store (Airflow < 3.3): every try submits")
def test_retry_that_finds_its_task_done_counts_a_skip(stats: StatsStub) -> None:
    op, _, ctx = _op()
    op.execute(ctx)
    stats.calls.clear()
    op.execute({"ti": TI(), "task_state_store": ctx["task_state_store"]})
    assert stats.counts() == {IMAGES_SKIPPED: 1}
    assert stats.tags_of(IMAGES_SKIPPED)[0]["reason"] == "already_succeeded"


# ----------------------------------------------------------------------------------------- the API
def test_metrics_api_for_the_batch_operator(stats: StatsStub) -> None:
    m = MpsMetrics(operator="MpsBatchProcessImageOperator", dag_id="d", task_id="t")
    m.submitted(250)
    m.succeeded(240)
    m.failed(3, code="FailedOperation.X")
    m.skipped(7, reason="output_exists")
    m.throttled(2, action="ProcessImage")
    m.submitted(0)  # nothing to say: nothing emitted
    with m.timing_submit():
        pass
    assert stats.counts() == {
        IMAGES_SUBMITTED: 250,
        IMAGES_SUCCEEDED: 240,
        IMAGES_FAILED: 3,
        IMAGES_SKIPPED: 7,
        CALLS_THROTTLED: 2,
        SUBMIT_LATENCY: 1,
    }
    assert stats.tags_of(CALLS_THROTTLED) == [
        {"operator": "MpsBatchProcessImageOperator", "dag_id": "d", "task_id": "t", "action": "ProcessImage"}
    ]


def test_metrics_never_fail_a_task(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def incr(self, *a: Any, **k: Any) -> None:
            raise RuntimeError("statsd down")

        timing = incr

    m = MpsMetrics(operator="X", stats=Broken())
    m.submitted()
    m.submit_latency(1.0)
    monkeypatch.setattr(metrics_module, "_airflow_stats", lambda: None)
    MpsMetrics(operator="X").succeeded()  # an Airflow without Stats: nothing happens


def test_airflow_stats_is_found_and_accepts_our_calls() -> None:
    stats = metrics_module._airflow_stats()
    assert stats is not None and callable(stats.incr) and callable(stats.timing)
    stats.incr(IMAGES_SUBMITTED, 1, tags={"operator": "X", "dag_id": "d"})
    stats.timing(SUBMIT_LATENCY, timedelta(seconds=0.2), tags={"operator": "X"})


def test_watch_throttling_counts_each_throttled_attempt_and_delegates(stats: StatsStub) -> None:
    from airflow_mps.hooks._retry import Arrival, Decision, RetryPolicy

    class Hook:
        retry_policy = RetryPolicy(max_retry_seconds=7.0)

    hook = Hook()
    m = MpsMetrics(operator="X")
    assert m.watch_throttling(hook) is hook
    m.watch_throttling(hook)  # idempotent: one wrapper
    policy = hook.retry_policy
    assert policy.max_retry_seconds == 7.0 and policy.backoff(0) >= 0
    decided = policy.decide(retryable=True, throttled=True, arrival=Arrival.REFUSED, idempotent=False)
    assert decided is Decision.RETRY
    policy.decide(retryable=False, throttled=False, arrival=Arrival.ANSWERED, idempotent=True)
    assert stats.counts() == {CALLS_THROTTLED: 1}
    assert m.watch_throttling(object()) is not None  # a hook without a policy is left alone


def test_operator_hook_is_watched() -> None:
    op = MpsProcessImageOperator(task_id="p", input="x")
    assert type(op.hook.retry_policy).__name__ == "_ThrottleCountingPolicy"


# ----------------------------------------------------------------------------------------- trigger logs
def test_trigger_repr_is_short_and_readable() -> None:
    from airflow_mps.triggers.mps import MpsImageTaskTrigger

    trigger = MpsImageTaskTrigger(
        mps_task_id="1250000000-WorkflowTask-0723542d0c164c958ba116874fa9b0c4",
        end_time=1_900_000_000,
        region="ap-guangzhou",
        request_id="fbd0c315-8e48-4fd6-82fd-49455e2a1801",
        created_after=1_899_999_000,
        poll_interval=5,
    )
    text = repr(trigger)
    assert text == (
        "<MpsImageTaskTrigger 1250000000-WorkflowTask-0723542d0c164c958ba116874fa9b0c4 on "
        "tencentcloud_default/ap-guangzhou until 2030-03-17T17:46:40Z, shared polling every 5s>"
    )
    assert "request_id" not in text and "=" not in text.split(" on ")[0]


def test_long_error_reprs_are_cut_in_log_lines() -> None:
    from airflow_mps.utils.events import brief

    blob = "x" * 5000
    text = brief(OSError(blob))
    assert len(text) < 320 and text.endswith(f"({len(repr(OSError(blob)))} chars)")
    assert brief("short") == "short"
