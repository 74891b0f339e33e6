"""The hooks' step machines, driven by a scripted driver: every retry and reconciliation decision is
checked without a socket, a thread or a real sleep (the sync and async drivers only perform steps)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import pytest

from airflow_mps.errors import MpsAmbiguousSubmissionError, MpsAuthError, MpsThrottledError
from airflow_mps.hooks._buckets import reset_shared_buckets, shared_bucket
from airflow_mps.hooks._credentials import resolve_settings
from airflow_mps.hooks._retry import RetryPolicy
from airflow_mps.hooks._steps import Sleep, adrive, drive, relay
from airflow_mps.hooks.base import NeedsReconcile, _Ready, _Send
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


def _answer(body: dict[str, Any]) -> dict[str, Any]:
    """What ``call_json`` returns: the decoded document, ``{"Response": {...}}``."""
    return {"Response": body}


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
    sends = iter([_sdk_exc("RequestLimitExceeded"), _answer({"Status": "FINISH", "RequestId": "r2"})])

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
    assert trace[2].action == "DescribeImageTaskDetail" and trace[2].params == {"TaskId": "t-1"}
    # Describe* at the strictest documented limit, 20/s (mps-api.md §0.12), unless the connection says.
    assert trace[1].bucket is shared_bucket((SETTINGS.pacing_key, "DescribeImageTaskDetail"), 20)


def test_process_image_is_paced_by_its_own_quota() -> None:
    steps = _hook()._call_steps("ProcessImage", {}, idempotent=False)
    assert isinstance(next(steps), _Ready)
    pace = steps.send(SETTINGS)
    assert pace.bucket is shared_bucket((SETTINGS.pacing_key, "ProcessImage"), 20)
    # Adaptive (the default): the connection's rate is the ceiling, never exceeded in any window.
    assert pace.bucket.adaptive and pace.bucket.ceiling == pytest.approx(20)


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


# ---- ProcessImage: submit, reconcile, never resubmit -----------------------------------------------
def _request(key: str = "raw/a.jpg") -> Any:
    from airflow_mps.models import ProcessImageRequest

    return ProcessImageRequest.build(
        input=f"cos://{BUCKET}/{key}", region="ap-guangzhou", image_task={"EncodeConfig": {"Format": "PNG"}}
    )


def _listed(task_id: str, key: str | None = "raw/a.jpg") -> Any:
    from airflow_mps.models import ImageTaskInfo

    return ImageTaskInfo(
        task_id=task_id, status="FINISH", input=f"cos://{BUCKET}/{key}" if key is not None else None
    )


def _submit(
    hook: MpsHook,
    sends: list[Any],
    listings: list[list[Any]],
    details: dict[str, dict[str, Any]] | None = None,
) -> tuple[Any, list[Any]]:
    """Script ``_submission``: each Send takes the next outcome, each FINISH listing the next rows
    (then none), each detail ``details[task_id]`` (default: a finished task with nothing to tell)."""
    sent, listed = iter(sends), iter(listings)

    def answer(step: Any) -> Any:
        if isinstance(step, _Ready):
            return SETTINGS
        if isinstance(step, _Send):
            outcome = next(sent)
            if isinstance(outcome, Exception):
                raise outcome
            return _answer(outcome)
        if isinstance(step, _ListAll):
            return next(listed, []) if step.status == "FINISH" else []
        if isinstance(step, _Detail):
            return (details or {}).get(step.task_id, {"Status": "FINISH", "TaskId": step.task_id})
        return None

    return script(hook._submission(_request()), answer)


def test_submission_answered_at_once() -> None:
    result, trace = _submit(_hook(), [{"TaskId": "t-1", "RequestId": "r-1"}], [])
    assert result == Submission(task_id="t-1", request_id="r-1")
    assert _kinds(trace) == ["Ready", "Pace", "Send"]
    # The validated body itself goes out (call_json), not an SDK model built from it.
    assert trace[2].params == _request().to_api()


def test_ambiguous_submission_adopts_the_one_task_it_created() -> None:
    hook = _hook(reconcile_settle_seconds=0.5)
    result, trace = _submit(hook, [_sdk_exc("ServerNetworkError", "rid-amb")], [[_listed("t-9")]])
    assert result == Submission(task_id="t-9", request_id=None, reconciled=True)
    kinds = _kinds(trace)
    assert kinds[:4] == ["Ready", "Pace", "Send", "Sleep"] and trace[3] == Sleep(0.5)
    # Only what DescribeImageTasks can list (api.json): never WAITING. The window ends at the failure.
    listings = [s for s in trace if isinstance(s, _ListAll)]
    assert [s.status for s in listings] == ["PROCESSING", "FINISH"]
    assert all(s.end is not None and s.end >= s.start for s in listings)
    assert kinds.count("Send") == 1  # never resubmitted


def test_a_task_seen_only_on_a_later_listing_is_adopted() -> None:
    """Still WAITING (not listable) at the first listings, PROCESSING later: found, not resubmitted."""
    hook = _hook(reconcile_settle_seconds=1.0, reconcile_deadline_seconds=60.0)
    result, trace = _submit(hook, [_sdk_exc("ServerNetworkError")], [[], [], [_listed("t-late")]])
    assert result.task_id == "t-late" and result.reconciled
    assert [s.seconds for s in trace if isinstance(s, Sleep)] == [1.0, 2.0, 4.0]  # doubling waits
    assert _kinds(trace).count("Send") == 1


def test_nothing_found_by_the_deadline_is_ambiguous_and_never_resubmitted() -> None:
    """An empty listing does not prove that nothing was created (a WAITING task is invisible): after
    the settle deadline the hook gives up with a clear error instead of risking a second task."""
    hook = _hook(reconcile_settle_seconds=1.0, reconcile_deadline_seconds=10.0)
    trace: list[Any] = []
    amb = _sdk_exc("ServerNetworkError", "rid-amb")
    with pytest.raises(MpsAmbiguousSubmissionError) as info:
        _traced_submit(hook, [amb, {"TaskId": "never"}], trace)
    assert info.value.code == "AmbiguousSubmission.NotFound" and info.value.request_id is None
    assert "WAITING" in info.value.message and "not resubmitting" in info.value.message.lower()
    sleeps = [s.seconds for s in trace if isinstance(s, Sleep)]
    assert sleeps[:3] == [1.0, 2.0, 4.0] and sum(sleeps) == pytest.approx(10.0, abs=0.05)
    assert _kinds(trace).count("Send") == 1
    assert _kinds(trace).count("ListAll") == 2 * len(sleeps)


def _traced_submit(hook: MpsHook, sends: list[Any], trace: list[Any]) -> Any:
    """``_submit`` with empty listings, recording every step even when the machine raises."""
    sent = iter(sends)

    def answer(step: Any) -> Any:
        trace.append(step)
        if isinstance(step, _Ready):
            return SETTINGS
        if isinstance(step, _Send):
            outcome = next(sent)
            if isinstance(outcome, Exception):
                raise outcome
            return _answer(outcome)
        return [] if isinstance(step, _ListAll) else None

    return script(hook._submission(_request()), answer)


def test_listing_without_input_describes_each_candidate_once_over_all_polls() -> None:
    """Rows without ``Input`` (the documented listing): each is described once; one whose InputInfo
    is another image is remembered as not ours on later polls."""
    other = {"InputInfo": {"Type": "COS", "CosInputInfo": {"Bucket": BUCKET, "Object": "/raw/other.jpg"}}}
    ours = {"Status": "PROCESSING", "InputInfo": _request().to_api()["InputInfo"]}
    hook = _hook(reconcile_settle_seconds=1.0)
    result, trace = _submit(
        hook,
        [_sdk_exc("ServerNetworkError")],
        [
            [_listed("t-other", None)],
            [_listed("t-other", None)],
            [_listed("t-other", None), _listed("t-ours", None)],
        ],
        {"t-other": other, "t-ours": ours},
    )
    assert result.task_id == "t-ours"
    described = [s.task_id for s in trace if isinstance(s, _Detail)]
    assert described == ["t-other", "t-ours"]


def test_too_many_candidates_without_input_is_refused_before_describing() -> None:
    hook = _hook(reconcile_max_describes=2)
    rows = [_listed(f"t-{i}", None) for i in range(3)]
    with pytest.raises(MpsAmbiguousSubmissionError) as info:
        _submit(hook, [_sdk_exc("ServerNetworkError")], [rows])
    assert info.value.code == "AmbiguousSubmission.TooManyCandidates"
    assert "3 tasks" in info.value.message and "reconcile_max_describes" in info.value.message


def test_a_success_without_task_id_is_reconciled_not_trusted() -> None:
    result, trace = _submit(_hook(), [{"RequestId": "r-0"}], [[_listed("t-3")]])
    assert result == Submission(task_id="t-3", request_id="r-0", reconciled=True)
    assert _kinds(trace).count("Send") == 1


def test_several_matches_or_a_failed_listing_are_ambiguous() -> None:
    amb = _sdk_exc("ServerNetworkError")
    with pytest.raises(MpsAmbiguousSubmissionError, match="2 tasks") as info:
        _submit(_hook(), [amb], [[_listed("t-1"), _listed("t-2")]])
    assert info.value.code == "AmbiguousSubmission.SeveralTasks"

    def failing_listing(hook: MpsHook) -> Any:
        def answer(step: Any) -> Any:
            if isinstance(step, _Send):
                raise amb
            if isinstance(step, _ListAll):
                raise MpsThrottledError("RequestLimitExceeded", "still", "rid-list")
            return SETTINGS if isinstance(step, _Ready) else None

        return script(hook._submission(_request()), answer)

    with pytest.raises(MpsAmbiguousSubmissionError, match="listing recent tasks failed") as info:
        failing_listing(_hook())
    assert info.value.code == "AmbiguousSubmission.ListingFailed"


# ---- the answer of call_json ---------------------------------------------------------------------
def test_an_error_envelope_the_sdk_let_through_is_classified_like_any_error() -> None:
    """The SDK only recognises an error under ``Content-Type: application/json`` exactly (mps-api.md
    §0.5); with ``; charset=utf-8`` ``call_json`` returns the envelope as if it succeeded."""
    from airflow_mps.hooks.base import response_of

    envelope = {"Response": {"Error": {"Code": "RequestLimitExceeded", "Message": "slow"}, "RequestId": "r"}}
    hook = _hook()
    sends = iter([envelope, _answer({"TotalCount": 0, "TaskSet": [], "RequestId": "r2"})])

    def answer(step: Any) -> Any:
        if isinstance(step, _Send):
            return next(sends)
        return SETTINGS if isinstance(step, _Ready) else None

    response, trace = script(
        hook._call_steps("DescribeImageTasks", {"Status": "FINISH"}, idempotent=True), answer
    )
    assert response["RequestId"] == "r2" and _kinds(trace).count("Sleep") == 1  # throttled → retried
    with pytest.raises(Exception, match="without a Response"):
        response_of("DescribeImageTasks", {"Oops": 1})


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
