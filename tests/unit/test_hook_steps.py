"""The hooks' step machines, driven by a scripted driver: every retry and reconciliation decision is
checked without a socket, a thread or a real sleep (the sync and async drivers only perform steps)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import pytest

from airflow_mps.errors import MpsAmbiguousSubmissionError, MpsAuthError, MpsThrottledError
from airflow_mps.hooks._credentials import resolve_settings
from airflow_mps.hooks._pacing import reset_shared_buckets, shared_bucket
from airflow_mps.hooks._retry import RetryPolicy
from airflow_mps.hooks._steps import Sleep, adrive, drive, relay
from airflow_mps.hooks.base import PACING_HEADROOM, NeedsReconcile, _Ready, _Send
from airflow_mps.hooks.cos import CosHook
from airflow_mps.hooks.mps import MpsHook, Submission, _Detail, _ListAll

BUCKET = "b-1250000000"
SETTINGS = resolve_settings(login="AKIDtest", password="secret-key", extras={}, environ={})


@pytest.fixture(autouse=True)
def _fresh_buckets() -> Generator[None, None, None]:
    reset_shared_buckets()
    yield
    reset_shared_buckets()


def _hook(**kwargs: Any) -> MpsHook:
    hook = MpsHook(retry_policy=RetryPolicy(rng=random.Random(0), base_delay=0.01), **kwargs)
    hook._settings = SETTINGS
    return hook


def _sdk_exc(code: str, request_id: str = "rid-1") -> Exception:
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

    return TencentCloudSDKException(code, "m", request_id)


@dataclass
class _Response:
    """What the SDK returns: a model with ``to_json_string``."""

    body: dict[str, Any]

    def to_json_string(self) -> str:
        return json.dumps(self.body)


def script(machine: Generator[Any, Any, Any], answer: Callable[[Any], Any]) -> tuple[Any, list[Any]]:
    """Run a machine, answering each step with ``answer(step)`` (raise = the step failed)."""
    trace: list[Any] = []
    reply: Any = None
    error: Exception | None = None
    while True:
        try:
            step = machine.send(reply) if error is None else machine.throw(error)
        except StopIteration as done:
            return done.value, trace
        trace.append(step)
        try:
            reply, error = answer(step), None
        except Exception as exc:
            reply, error = None, exc


def _kinds(trace: list[Any]) -> list[str]:
    return [type(step).__name__.strip("_") for step in trace]


# ---- the drivers -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Echo:
    value: Any

    def run(self, hook: Any) -> Any:
        if isinstance(self.value, Exception):
            raise self.value
        return (hook, self.value)

    async def arun(self, hook: Any) -> Any:
        return self.run(hook)


def _machine() -> Generator[Any, Any, list[Any]]:
    seen = [(yield _Echo(1))]
    try:
        yield _Echo(ValueError("boom"))
    except ValueError as exc:  # a step's exception arrives where the step was yielded
        seen.append(str(exc))
    inner = yield from relay(iter_requests(), lambda n: _Echo(n * 10))
    return [*seen, inner]


def iter_requests() -> Generator[int, Any, list[Any]]:
    return [(yield 2), (yield 3)]


def test_sync_and_async_drivers_run_the_same_machine() -> None:
    expected = [("h", 1), "boom", [("h", 20), ("h", 30)]]
    assert drive(_machine(), "h") == expected
    assert asyncio.run(adrive(_machine(), "h")) == expected


def test_an_exception_the_machine_does_not_catch_leaves_the_driver() -> None:
    def machine() -> Generator[Any, Any, None]:
        yield Sleep(0)
        yield _Echo(KeyError("k"))

    with pytest.raises(KeyError):
        drive(machine(), None)


# ---- one API call: pace, send, classify, back off -------------------------------------------------
def test_throttled_read_is_paced_retried_and_answered() -> None:
    hook = _hook()
    sends = iter([_sdk_exc("RequestLimitExceeded"), _Response({"Status": "FINISH", "RequestId": "r2"})])

    def answer(step: Any) -> Any:
        if isinstance(step, _Ready):
            return SETTINGS
        if isinstance(step, _Send):
            outcome = next(sends)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        return None

    response, trace = script(
        hook._call_steps("DescribeImageTaskDetail", {"TaskId": "t-1"}, idempotent=True), answer
    )
    assert response == {"Status": "FINISH", "RequestId": "r2"}
    assert _kinds(trace) == ["Ready", "Pace", "Send", "Sleep", "Pace", "Send"]
    assert trace[2].action == "DescribeImageTaskDetail" and trace[2].request.TaskId == "t-1"
    assert trace[1].bucket is shared_bucket((SETTINGS.pacing_key, "Describe"), 100 * PACING_HEADROOM)


def test_process_image_is_paced_by_its_own_quota() -> None:
    steps = _hook()._call_steps("ProcessImage", {}, idempotent=False)
    assert isinstance(next(steps), _Ready)
    pace = steps.send(SETTINGS)
    assert pace.bucket is shared_bucket((SETTINGS.pacing_key, "ProcessImage"), 20 * PACING_HEADROOM)
    assert pace.bucket.rate == pytest.approx(20 * PACING_HEADROOM)


@pytest.mark.parametrize(
    ("failure", "idempotent", "raised"),
    [
        ("AuthFailure.SignatureFailure", True, MpsAuthError),  # terminal: at once, no backoff
        ("ServerNetworkError", False, NeedsReconcile),  # ambiguous ProcessImage: reconcile
        ("InternalError", False, NeedsReconcile),  # answered but maybe created: reconcile
    ],
)
def test_failures_that_end_the_call(failure: str, idempotent: bool, raised: type[Exception]) -> None:
    def answer(step: Any) -> Any:
        if isinstance(step, _Send):
            raise _sdk_exc(failure)
        return SETTINGS if isinstance(step, _Ready) else None

    with pytest.raises(raised):
        script(_hook()._call_steps("ProcessImage", {}, idempotent=idempotent), answer)


def test_retry_budget_spent_raises_the_last_error() -> None:
    hook = _hook()
    hook.retry_policy = RetryPolicy(max_attempts=3, base_delay=0.0, rng=random.Random(0))

    def answer(step: Any) -> Any:
        if isinstance(step, _Send):
            raise _sdk_exc("RequestLimitExceeded", "rid-last")
        return SETTINGS if isinstance(step, _Ready) else None

    with pytest.raises(MpsThrottledError) as info:
        script(hook._call_steps("DescribeImageTasks", {}, idempotent=True), answer)
    assert info.value.request_id == "rid-last"


# ---- ProcessImage: submit, reconcile, resubmit at most once ---------------------------------------
def _request(key: str = "raw/a.jpg") -> Any:
    from airflow_mps.models import ProcessImageRequest

    return ProcessImageRequest.build(
        input=f"cos://{BUCKET}/{key}", region="ap-guangzhou", image_task={"EncodeConfig": {"Format": "PNG"}}
    )


def _listed(task_id: str, key: str = "raw/a.jpg") -> Any:
    from airflow_mps.models import ImageTaskInfo

    return ImageTaskInfo(task_id=task_id, status="FINISH", input=f"cos://{BUCKET}/{key}")


def _submit(hook: MpsHook, sends: list[Any], listings: list[list[Any]]) -> tuple[Any, list[Any]]:
    """Script ``_submission``: each Send takes the next outcome, each FINISH listing the next rows."""
    sent, listed = iter(sends), iter(listings)

    def answer(step: Any) -> Any:
        if isinstance(step, _Ready):
            return SETTINGS
        if isinstance(step, _Send):
            outcome = next(sent)
            if isinstance(outcome, Exception):
                raise outcome
            return _Response(outcome)
        if isinstance(step, _ListAll):
            return next(listed) if step.status == "FINISH" else []
        if isinstance(step, _Detail):
            return {"Status": "FINISH", "TaskId": step.task_id}
        return None

    return script(hook._submission(_request()), answer)


def test_submission_answered_at_once() -> None:
    result, trace = _submit(_hook(), [{"TaskId": "t-1", "RequestId": "r-1"}], [])
    assert result == Submission(task_id="t-1", request_id="r-1")
    assert _kinds(trace) == ["Ready", "Pace", "Send"]


def test_ambiguous_submission_adopts_the_one_task_it_created() -> None:
    hook = _hook(reconcile_settle_seconds=0.5)
    result, trace = _submit(hook, [_sdk_exc("ServerNetworkError", "rid-amb")], [[_listed("t-9")]])
    assert result == Submission(task_id="t-9", request_id=None, reconciled=True)
    kinds = _kinds(trace)
    assert kinds[:4] == ["Ready", "Pace", "Send", "Sleep"] and trace[3] == Sleep(0.5)
    assert [s.status for s in trace if isinstance(s, _ListAll)] == ["WAITING", "PROCESSING", "FINISH"]
    assert kinds.count("Send") == 1  # never resubmitted


def test_two_empty_listings_resubmit_once_then_give_up() -> None:
    amb = _sdk_exc("ServerNetworkError")
    result, trace = _submit(_hook(), [amb, {"TaskId": "t-2", "RequestId": "r-2"}], [[], []])
    assert result == Submission(task_id="t-2", request_id="r-2")
    assert _kinds(trace).count("Send") == 2 and _kinds(trace).count("ListAll") == 6
    with pytest.raises(MpsAmbiguousSubmissionError, match="twice"):
        _submit(_hook(), [amb, amb], [[], [], [], []])


def test_several_matches_or_a_failed_listing_are_ambiguous() -> None:
    amb = _sdk_exc("ServerNetworkError")
    with pytest.raises(MpsAmbiguousSubmissionError, match="2 tasks"):
        _submit(_hook(), [amb], [[_listed("t-1"), _listed("t-2")]])

    def failing_listing(hook: MpsHook) -> Any:
        def answer(step: Any) -> Any:
            if isinstance(step, _Send):
                raise amb
            if isinstance(step, _ListAll):
                raise MpsThrottledError("RequestLimitExceeded", "still", "rid-list")
            return SETTINGS if isinstance(step, _Ready) else None

        return script(hook._submission(_request()), answer)

    with pytest.raises(MpsAmbiguousSubmissionError, match="listing recent tasks failed"):
        failing_listing(_hook())


# ---- COS through MpsHook ----------------------------------------------------------------------------
def test_mps_hook_reaches_cos_on_the_same_connection_and_settings() -> None:
    hook = _hook(region="ap-beijing")
    cos = hook.cos
    assert isinstance(cos, CosHook) and hook.cos is cos
    assert (cos.tencentcloud_conn_id, cos.region, cos.get_settings()) == (
        "tencentcloud_default",
        "ap-beijing",
        SETTINGS,
    )
    swapped = RetryPolicy(max_retry_seconds=1)
    hook.retry_policy = swapped
    assert hook.cos.retry_policy is swapped
