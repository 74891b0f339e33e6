"""Unit tests of MpsImageTaskTrigger's logic (deadline, error classes, event shape) with a scripted hook.

The real path (async SDK → HTTP → emulator) is covered in tests/integration/operators/test_operator_mps_emulator.py; here a
small scripted hook stands in so every branch can be driven deterministically without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from airflow_mps.errors import MpsResourceNotFoundError, MpsThrottledError, MpsTransientError
from airflow_mps.models import ImageTaskStatus
from airflow_mps.triggers.mps import MpsImageTaskTrigger
from tests.hook_contract import DescribesImageTasksAsync, PollsImageTasksAsync


def _status(state: str, *, err: str | None = None, task_id: str = "t-1") -> ImageTaskStatus:
    body: dict[str, Any] = {"Status": state, "RequestId": "req-describe"}
    if state == "FINISH":
        body["ImageProcessTaskResultSet"] = [
            {
                "Status": "FAIL" if err else "SUCCESS",
                "ErrMsg": err or "",
                "Message": "input not found" if err else "",
                "Output": {
                    "Path": "/out/a.webp",
                    "OutputStorage": {
                        "Type": "COS",
                        "CosOutputStorage": {"Bucket": "b-1", "Region": "ap-guangzhou"},
                    },
                    "SignedUrl": "http://x/out/a.webp?sign=1",
                },
            }
        ]
    return ImageTaskStatus.from_api(body, task_id=task_id)


class ScriptedHook(DescribesImageTasksAsync):
    """Answers adescribe_image_task from a script: ImageTaskStatus values are returned, exceptions raised."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.calls = 0

    async def adescribe_image_task(self, task_id: str) -> ImageTaskStatus:
        self.calls += 1
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, BaseException):
            raise item
        return item


def _run(trigger: MpsImageTaskTrigger, hook: ScriptedHook) -> list[dict[str, Any]]:
    trigger._hook = lambda: hook  # type: ignore[method-assign]

    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def _trigger(**kw: Any) -> MpsImageTaskTrigger:
    args: dict[str, Any] = {"mps_task_id": "t-1", "end_time": time.time() + 60, "poll_interval": 0.05}
    args.update(kw)
    return MpsImageTaskTrigger(**args)


def test_serialize_round_trip_is_exact() -> None:
    trig = MpsImageTaskTrigger(
        mps_task_id="t-9",
        end_time=1_800_000_000.25,
        tencentcloud_conn_id="my_conn",
        region="ap-shanghai",
        poll_interval=3,
        request_id="req-submit",
    )
    classpath, kwargs = trig.serialize()
    assert classpath == "airflow_mps.triggers.mps.MpsImageTaskTrigger"
    rebuilt = MpsImageTaskTrigger(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["end_time"] == 1_800_000_000.25
    # Every value is plain JSON (the triggerer stores kwargs in the database).
    import json

    assert json.loads(json.dumps(kwargs)) == kwargs


def test_success_event_carries_result_and_request_id() -> None:
    hook = ScriptedHook([_status("WAITING"), _status("PROCESSING"), _status("FINISH")])
    events = _run(_trigger(request_id="req-submit"), hook)
    assert len(events) == 1
    ev = events[0]
    assert ev["status"] == "success"
    assert ev["mps_task_id"] == "t-1"
    assert ev["request_id"] == "req-submit"
    assert ev["error"] is None
    assert ev["result"]["outputs"][0]["bucket"] == "b-1"
    assert ev["result"]["outputs"][0]["path"] == "out/a.webp"
    assert hook.calls == 3


def test_failed_task_yields_failed_event_at_once() -> None:
    hook = ScriptedHook([_status("FINISH", err="ResourceNotFound.DownloadError")])
    events = _run(_trigger(), hook)
    assert [e["status"] for e in events] == ["failed"]
    assert events[0]["error"]["code"] == "ResourceNotFound.DownloadError"
    assert events[0]["error"]["message"] == "input not found"
    assert hook.calls == 1


def test_transient_errors_are_polled_through() -> None:
    hook = ScriptedHook(
        [
            MpsTransientError("InternalError", "boom", "req-a"),
            MpsThrottledError("RequestLimitExceeded", "slow down", "req-b"),
            ConnectionResetError("reset"),
            _status("FINISH"),
        ]
    )
    events = _run(_trigger(), hook)
    assert [e["status"] for e in events] == ["success"]
    assert hook.calls == 4


def test_terminal_error_yields_error_event_at_once() -> None:
    hook = ScriptedHook([MpsResourceNotFoundError("ResourceNotFound", "no such task", "req-x")])
    events = _run(_trigger(), hook)
    assert len(events) == 1
    assert events[0]["status"] == "error"
    assert events[0]["error"] == {
        "code": "ResourceNotFound",
        "message": "no such task",
        "request_id": "req-x",
        "retryable": False,
    }
    assert hook.calls == 1


def test_deadline_yields_timeout_event_with_last_status() -> None:
    hook = ScriptedHook([_status("PROCESSING")])
    events = _run(_trigger(end_time=time.time() + 0.3, poll_interval=0.05), hook)
    assert [e["status"] for e in events] == ["timeout"]
    assert events[0]["result"]["state"] == "PROCESSING"
    assert hook.calls >= 1


def test_transient_errors_until_deadline_end_in_timeout_not_error() -> None:
    hook = ScriptedHook([MpsTransientError("InternalError", "down", "req-a")])
    events = _run(_trigger(end_time=time.time() + 0.3, poll_interval=0.05), hook)
    assert [e["status"] for e in events] == ["timeout"]


def test_rebuilt_trigger_keeps_the_original_deadline() -> None:
    """A triggerer restart rebuilds from serialize(): the deadline is absolute, so a trigger whose
    deadline passed while it was down times out without a single poll, not after a fresh timeout."""
    original = _trigger(end_time=time.time() - 1, poll_interval=30)
    rebuilt = MpsImageTaskTrigger(**original.serialize()[1])
    hook = ScriptedHook([_status("PROCESSING")])
    events = _run(rebuilt, hook)
    assert [e["status"] for e in events] == ["timeout"]
    assert hook.calls == 0


def test_two_triggers_on_the_same_task_both_finish() -> None:
    """HA triggerers may run the same trigger twice; polling is read-only so both just finish."""
    hook = ScriptedHook([_status("PROCESSING"), _status("PROCESSING"), _status("FINISH")])
    t1, t2 = _trigger(), _trigger()
    t1._hook = lambda: hook  # type: ignore[method-assign]
    t2._hook = lambda: hook  # type: ignore[method-assign]

    async def both() -> list[list[dict[str, Any]]]:
        async def one(t: MpsImageTaskTrigger) -> list[dict[str, Any]]:
            return [e.payload async for e in t.run()]

        return list(await asyncio.gather(one(t1), one(t2)))

    results = asyncio.run(both())
    assert [[e["status"] for e in r] for r in results] == [["success"], ["success"]]


@pytest.mark.parametrize("interval", [0.0, -1.0])
def test_poll_interval_never_busy_loops(interval: float) -> None:
    from airflow_mps.utils.events import MIN_POLL_INTERVAL, jittered

    assert jittered(interval) >= MIN_POLL_INTERVAL


class HangingHook(DescribesImageTasksAsync):
    """A DescribeImageTaskDetail call that never answers (a stalled connection); records cancellation."""

    def __init__(self) -> None:
        self.calls = 0
        self.cancelled = 0
        self.closed = 0
        self.others = 0  # unrelated finished tasks listed before ours (newest first)
        self.rows_listed: list[int] = []

    async def adescribe_image_task(self, task_id: str) -> ImageTaskStatus:
        self.calls += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        self.closed += 1


def test_deadline_holds_while_a_poll_is_in_flight() -> None:
    """A poll that stalls past the deadline is cut off at the deadline: the trigger yields its timeout
    event instead of waiting for the SDK's own request timeout (and the hook's retries) to run out."""
    hook = HangingHook()
    trigger = _trigger(end_time=time.time() + 0.2)
    trigger._hook = lambda: hook  # type: ignore[method-assign]

    async def collect() -> list[dict[str, Any]]:
        # The outer bound only turns a hang into a test failure; the trigger must finish long before.
        return await asyncio.wait_for(_collect(trigger), timeout=30)

    events = asyncio.run(collect())
    assert [e["status"] for e in events] == ["timeout"]
    assert hook.calls == 1 and hook.cancelled == 1 and hook.closed == 1


async def _collect(trigger: MpsImageTaskTrigger) -> list[dict[str, Any]]:
    return [e.payload async for e in trigger.run()]


def test_cancellation_propagates_and_closes_the_client() -> None:
    """The triggerer cancels a trigger whose task was cleared: CancelledError must propagate (never be
    swallowed into an event) and the async client must still be closed."""
    hook = HangingHook()
    trigger = _trigger()
    trigger._hook = lambda: hook  # type: ignore[method-assign]

    async def main() -> None:
        task = asyncio.ensure_future(_collect(trigger))
        while hook.calls == 0:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert hook.cancelled == 1 and hook.closed == 1


def test_serialize_carries_no_secret_and_only_known_keys() -> None:
    _, kwargs = _trigger(request_id="r").serialize()
    assert set(kwargs) == {
        "mps_task_id",
        "end_time",
        "tencentcloud_conn_id",
        "region",
        "poll_interval",
        "request_id",
        "created_after",
        "share_polling",
        "include_signed_urls",
    }


def test_jitter_spreads_polls_within_ten_percent() -> None:
    import random

    from airflow_mps.utils.events import jittered

    random.seed(7)
    values = [jittered(10.0) for _ in range(200)]
    assert all(9.0 <= v <= 11.0 for v in values)
    assert len({round(v, 3) for v in values}) > 100  # not in lockstep


# ------------------------------------------------------------------------------------------------
# shared polling: one listing per round for every trigger of a loop
# ------------------------------------------------------------------------------------------------
from airflow_mps.errors import MpsTransientError as _Transient  # noqa: E402
from airflow_mps.errors import MpsUnauthorizedError  # noqa: E402
from airflow_mps.models import ImageTaskInfo, constants  # noqa: E402
from airflow_mps.triggers import _poller as poller_mod  # noqa: E402
from airflow_mps.waits import task as wait_mod  # noqa: E402


class FleetHook(PollsImageTasksAsync):
    """Stands in for MPS for many triggers and their shared poller: ``finished`` is the set of task ids
    that DescribeImageTasks(FINISH) lists; ``done`` the ones whose detail says FINISH (by default the
    same). ``list_script`` items are raised before the listing answers normally."""

    def __init__(self) -> None:
        self.finished: set[str] = set()
        self.done: set[str] | None = None
        self.failed: set[str] = set()
        self.list_script: list[BaseException] = []
        self.list_calls = 0
        self.list_args: list[dict[str, Any]] = []
        self.detail_calls: dict[str, int] = {}
        self.closed = 0
        self.others = 0  # unrelated finished tasks listed before ours (newest first)
        self.rows_listed: list[int] = []

    async def adescribe_image_task(self, task_id: str) -> ImageTaskStatus:
        self.detail_calls[task_id] = self.detail_calls.get(task_id, 0) + 1
        done = self.finished if self.done is None else self.done
        if task_id in done:
            return _status("FINISH", err="X" if task_id in self.failed else None, task_id=task_id)
        return _status("PROCESSING", task_id=task_id)

    async def alist_image_tasks(
        self, status: str, start_time: Any = None, page_size: int = 100, **kw: Any
    ) -> Any:
        self.list_calls += 1
        self.list_args.append({"status": status, "start_time": start_time, "page_size": page_size})
        if self.list_script:
            raise self.list_script.pop(0)
        self.rows_listed.append(0)
        for task_id in [f"other-{i}" for i in range(self.others)] + sorted(self.finished):
            self.rows_listed[-1] += 1
            yield ImageTaskInfo(task_id=task_id, status="FINISH")

    async def aclose(self) -> None:
        self.closed += 1

    def total_details(self) -> int:
        return sum(self.detail_calls.values())


def _shared(task_id: str, hook: FleetHook, **kw: Any) -> MpsImageTaskTrigger:
    args: dict[str, Any] = {
        "mps_task_id": task_id,
        "end_time": time.time() + 60,
        "poll_interval": 0.02,
        "created_after": time.time() - 5,
    }
    args.update(kw)
    trig = MpsImageTaskTrigger(**args)
    trig._hook = lambda: hook  # type: ignore[method-assign]
    return trig


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch) -> FleetHook:
    hook = FleetHook()
    monkeypatch.setattr(poller_mod.SharedTaskPoller, "_hook", lambda self: hook)
    return hook


async def _until(predicate: Any, limit: int = 20000) -> None:
    """Yield to the loop until ``predicate()`` holds (bounded by a count, not by time)."""
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never held")


def test_shared_polling_lists_once_per_round_and_details_only_finished_tasks(fleet: FleetHook) -> None:
    """20 triggers on one loop: the poller lists once per round (not 20 detail calls per round) and each
    trigger makes exactly ONE detail call, after the listing showed its task finished."""
    ids = [f"t-{i:02d}" for i in range(20)]

    async def main() -> list[dict[str, Any]]:
        tasks = [asyncio.ensure_future(_collect(_shared(t, fleet))) for t in ids]
        await _until(lambda: fleet.list_calls >= 5)
        assert fleet.total_details() == 0  # nothing finished yet: waiting costs no detail call at all
        assert poller_mod.active_pollers(asyncio.get_running_loop()) == 1
        fleet.finished.update(ids[:10])
        await _until(lambda: sum(t.done() for t in tasks) == 10)
        rounds_mid = fleet.list_calls
        fleet.finished.update(ids[10:])
        out = await asyncio.gather(*tasks)
        assert fleet.list_calls > rounds_mid
        return [e for events in out for e in events]

    events = asyncio.run(main())
    assert sorted(e["mps_task_id"] for e in events) == ids
    assert {e["status"] for e in events} == {"success"}
    assert fleet.detail_calls == {t: 1 for t in ids}
    assert {a["status"] for a in fleet.list_args} == {"FINISH"}
    assert {a["page_size"] for a in fleet.list_args} == {100}
    # The poller ended with its last trigger and closed its client; nothing is left for this loop.
    assert poller_mod.active_pollers() == 0
    assert fleet.closed >= 1


def test_listing_window_starts_at_the_earliest_created_after_minus_skew(fleet: FleetHook) -> None:
    early, late = time.time() - 3600, time.time() - 10

    async def main() -> None:
        tasks = [
            asyncio.ensure_future(_collect(_shared("a", fleet, created_after=late))),
            asyncio.ensure_future(_collect(_shared("b", fleet, created_after=early))),
        ]
        await _until(lambda: fleet.list_calls >= 3)
        fleet.finished.update({"a", "b"})
        await asyncio.gather(*tasks)

    asyncio.run(main())
    start = fleet.list_args[-1]["start_time"]
    assert start.tzinfo is not None
    assert start.timestamp() == int(early - poller_mod.LISTING_SKEW_SECONDS)


def test_failed_task_found_by_listing_yields_failed_event(fleet: FleetHook) -> None:
    fleet.finished.add("t-1")
    fleet.failed.add("t-1")
    events = asyncio.run(_collect(_shared("t-1", fleet)))
    assert [e["status"] for e in events] == ["failed"]  # FINISH is not success: the detail decides
    assert fleet.detail_calls == {"t-1": 1}


def test_listing_ahead_of_detail_keeps_waiting(fleet: FleetHook) -> None:
    """Eventual consistency: the listing says FINISH but the detail still says PROCESSING. The trigger
    goes back to waiting (no event) and finishes once the detail agrees."""
    fleet.finished.add("t-1")
    fleet.done = set()

    async def main() -> list[dict[str, Any]]:
        task = asyncio.ensure_future(_collect(_shared("t-1", fleet)))
        await _until(lambda: fleet.detail_calls.get("t-1", 0) >= 2)
        assert not task.done()
        fleet.done = {"t-1"}
        return await task

    events = asyncio.run(main())
    assert [e["status"] for e in events] == ["success"]


def test_trigger_without_created_after_polls_its_own_detail(fleet: FleetHook) -> None:
    async def main() -> list[dict[str, Any]]:
        task = asyncio.ensure_future(_collect(_shared("t-1", fleet, created_after=None)))
        await _until(lambda: fleet.detail_calls.get("t-1", 0) >= 3)
        assert poller_mod.active_pollers() == 0
        fleet.finished.add("t-1")
        return await task

    events = asyncio.run(main())
    assert [e["status"] for e in events] == ["success"]
    assert fleet.list_calls == 0


def test_share_polling_false_is_plain_per_task_polling(fleet: FleetHook) -> None:
    """The P2 baseline's switch: each trigger polls its own detail, no listing at all."""
    trig = _shared("t-1", fleet, share_polling=False)
    assert MpsImageTaskTrigger(**trig.serialize()[1]).share_polling is False

    async def main() -> list[dict[str, Any]]:
        task = asyncio.ensure_future(_collect(trig))
        await _until(lambda: fleet.detail_calls.get("t-1", 0) >= 3)
        assert poller_mod.active_pollers() == 0
        fleet.finished.add("t-1")
        return await task

    assert [e["status"] for e in asyncio.run(main())] == ["success"]
    assert fleet.list_calls == 0


def test_safety_detail_finds_a_task_the_listing_misses(
    fleet: FleetHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task the listing never shows (outside its window, eventual consistency) is still found by the
    trigger's own periodic detail call: at most one per SAFETY_ROUNDS rounds, not one per round."""
    monkeypatch.setattr(wait_mod, "SAFETY_SECONDS", 0.0)
    monkeypatch.setattr(wait_mod, "SAFETY_ROUNDS", 10)
    fleet.done = set()  # the listing (``finished``) never has it

    async def main() -> list[dict[str, Any]]:
        task = asyncio.ensure_future(_collect(_shared("t-1", fleet, poll_interval=0.01)))
        await _until(lambda: fleet.detail_calls.get("t-1", 0) >= 2)
        assert not task.done()
        fleet.done = {"t-1"}
        return await task

    events = asyncio.run(main())
    assert [e["status"] for e in events] == ["success"]
    # Own detail calls are rarer than listing rounds (10 rounds apart, ±50% for the first one).
    assert fleet.detail_calls["t-1"] < fleet.list_calls


def test_terminal_listing_error_falls_back_to_per_task_polling_and_logs_once(
    fleet: FleetHook, caplog: pytest.LogCaptureFixture
) -> None:
    """Some CAM policies allow DescribeImageTaskDetail but not DescribeImageTasks: the poller stops
    listing, logs once, and every trigger (also one registering later) polls its own detail."""
    fleet.list_script = [MpsUnauthorizedError("UnauthorizedOperation", "not allowed", "req-l")]
    ids = [f"t-{i}" for i in range(5)]

    async def main() -> list[dict[str, Any]]:
        tasks = [asyncio.ensure_future(_collect(_shared(t, fleet))) for t in ids]
        await _until(lambda: all(fleet.detail_calls.get(t, 0) >= 2 for t in ids))
        late = asyncio.ensure_future(_collect(_shared("t-late", fleet)))
        await _until(lambda: fleet.detail_calls.get("t-late", 0) >= 2)
        fleet.finished.update([*ids, "t-late"])
        out = await asyncio.gather(*tasks, late)
        return [e for events in out for e in events]

    with caplog.at_level("ERROR", logger="airflow_mps.triggers._poller.SharedTaskPoller"):
        events = asyncio.run(main())
    assert {e["status"] for e in events} == {"success"} and len(events) == 6
    assert fleet.list_calls == 1
    logged = [r for r in caplog.records if "fall back" in r.getMessage()]
    assert len(logged) == 1 and "UnauthorizedOperation" in logged[0].getMessage()
    assert "not allowed" in logged[0].getMessage()


def test_transient_listing_errors_are_retried_next_round(fleet: FleetHook) -> None:
    fleet.list_script = [
        _Transient("InternalError", "boom", "req-a"),
        ConnectionResetError("reset"),
        _Transient("RequestLimitExceeded", "slow", "req-b"),
    ]
    fleet.finished.add("t-1")
    events = asyncio.run(_collect(_shared("t-1", fleet)))
    assert [e["status"] for e in events] == ["success"]
    assert fleet.list_calls == 4
    assert fleet.detail_calls == {"t-1": 1}


def test_transient_detail_error_after_wake_is_retried(fleet: FleetHook) -> None:
    fleet.finished.add("t-1")
    real = fleet.adescribe_image_task
    failures = [_Transient("InternalError", "boom", "req-d")]

    async def flaky(task_id: str) -> ImageTaskStatus:
        if failures:
            fleet.detail_calls[task_id] = fleet.detail_calls.get(task_id, 0) + 1
            raise failures.pop()
        return await real(task_id)

    fleet.adescribe_image_task = flaky  # type: ignore[method-assign]
    events = asyncio.run(_collect(_shared("t-1", fleet)))
    assert [e["status"] for e in events] == ["success"]
    assert fleet.detail_calls == {"t-1": 2}


def test_shared_trigger_deadline_times_out_without_detail_calls(fleet: FleetHook) -> None:
    events = asyncio.run(_collect(_shared("t-1", fleet, end_time=time.time() + 0.3)))
    assert [e["status"] for e in events] == ["timeout"]
    assert fleet.detail_calls == {}
    assert poller_mod.active_pollers() == 0


def test_shared_trigger_deadline_holds_while_the_listing_keeps_failing(fleet: FleetHook) -> None:
    fleet.list_script = [_Transient("InternalError", "down", "req") for _ in range(10_000)]
    events = asyncio.run(_collect(_shared("t-1", fleet, end_time=time.time() + 0.3)))
    assert [e["status"] for e in events] == ["timeout"]
    assert fleet.list_calls >= 2


def test_cancelling_a_shared_trigger_propagates_and_unregisters(fleet: FleetHook) -> None:
    async def main() -> None:
        keep = asyncio.ensure_future(_collect(_shared("keep", fleet)))
        gone = asyncio.ensure_future(_collect(_shared("gone", fleet)))
        await _until(lambda: fleet.list_calls >= 2)
        poller = poller_mod.shared_poller("tencentcloud_default", None)
        assert set(poller.registrations) == {"keep", "gone"}
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert set(poller.registrations) == {"keep"}
        keep.cancel()
        with pytest.raises(asyncio.CancelledError):
            await keep
        assert poller.registrations == {}
        assert poller_mod.active_pollers(asyncio.get_running_loop()) == 0
        await _until(lambda: poller._task is not None and poller._task.done())

    asyncio.run(main())
    assert fleet.closed >= 3  # two triggers' hooks and the poller's


def test_rebuilt_shared_trigger_resumes_mid_wait(fleet: FleetHook) -> None:
    """A triggerer restart rebuilds the trigger from serialize(): it registers again with the same
    created_after and deadline and is woken by the listing."""
    original = _shared("t-1", fleet, created_after=1_700_000_000.5)
    kwargs = original.serialize()[1]
    assert kwargs["created_after"] == 1_700_000_000.5 and kwargs["share_polling"] is True
    import json

    rebuilt = MpsImageTaskTrigger(**json.loads(json.dumps(kwargs)))
    assert rebuilt.serialize() == original.serialize()
    rebuilt._hook = lambda: fleet  # type: ignore[method-assign]

    async def main() -> list[dict[str, Any]]:
        task = asyncio.ensure_future(_collect(rebuilt))
        await _until(lambda: fleet.list_calls >= 2)
        fleet.finished.add("t-1")
        return await task

    assert [e["status"] for e in asyncio.run(main())] == ["success"]
    assert fleet.detail_calls == {"t-1": 1}


def test_no_poller_state_leaks_across_event_loops(fleet: FleetHook) -> None:
    seen: list[Any] = []

    async def one() -> None:
        task = asyncio.ensure_future(_collect(_shared("t-1", fleet)))
        await _until(lambda: poller_mod.active_pollers(asyncio.get_running_loop()) == 1)
        seen.append(poller_mod.shared_poller("tencentcloud_default", None))
        fleet.finished.add("t-1")
        await task
        fleet.finished.clear()

    asyncio.run(one())
    asyncio.run(one())
    assert seen[0] is not seen[1]
    assert poller_mod.active_pollers() == 0


def test_pollers_are_per_connection_and_region(fleet: FleetHook) -> None:
    async def main() -> None:
        tasks = [
            asyncio.ensure_future(_collect(_shared("a", fleet))),
            asyncio.ensure_future(_collect(_shared("b", fleet, region="ap-shanghai"))),
            asyncio.ensure_future(_collect(_shared("c", fleet, tencentcloud_conn_id="other"))),
            asyncio.ensure_future(_collect(_shared("d", fleet))),
        ]
        await _until(lambda: poller_mod.active_pollers(asyncio.get_running_loop()) == 3)
        assert len(poller_mod.shared_poller("tencentcloud_default", None)) == 2
        fleet.finished.update("abcd")
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert poller_mod.active_pollers() == 0


def test_parse_api_time() -> None:
    assert constants.parse_api_time("2026-04-30T06:26:49Z") == 1777530409.0
    assert constants.parse_api_time(None) is None
    assert constants.parse_api_time("garbage") is None


def test_listing_is_bounded_when_many_other_tasks_finished(fleet: FleetHook) -> None:
    """Many unrelated tasks finished in the window (say a big batch): one round never reads more than
    ceil(registered / 2) pages; past that, the unseen triggers check their own detail instead."""
    fleet.others = 1000
    fleet.finished.update({"a", "b", "c"})

    async def main() -> list[dict[str, Any]]:
        tasks = [asyncio.ensure_future(_collect(_shared(t, fleet))) for t in ("a", "b", "c")]
        out = await asyncio.gather(*tasks)
        return [e for events in out for e in events]

    events = asyncio.run(main())
    assert {e["status"] for e in events} == {"success"} and len(events) == 3
    assert fleet.rows_listed and max(fleet.rows_listed) <= 2 * poller_mod.LISTING_PAGE_SIZE
    assert fleet.detail_calls == {"a": 1, "b": 1, "c": 1}


def test_listing_stops_paging_once_every_registered_task_is_seen(fleet: FleetHook) -> None:
    fleet.finished.update({"a"})
    asyncio.run(_collect(_shared("a", fleet)))
    assert fleet.rows_listed == [1]


# ------------------------------------------------------------------------------------------------
# where created_after comes from: the operator's submission, a retry's CreateTime, the sensor's poke
# ------------------------------------------------------------------------------------------------
def _processing_since(create_time: str, task_id: str = "task-1") -> ImageTaskStatus:
    return ImageTaskStatus.from_api(
        {"Status": "PROCESSING", "CreateTime": create_time, "RequestId": "req-d"}, task_id=task_id
    )


def test_operator_defers_with_its_submission_time_as_created_after() -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    from tests.unit.operators.test_operator_mps import make as make_operator

    op, _hook, ctx = make_operator(deferrable=True)
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        op.execute(ctx)
    trig = info.value.trigger
    assert trig.share_polling is True
    assert trig.created_after is not None and before <= trig.created_after <= time.time()
    assert trig.serialize()[1]["created_after"] == trig.created_after


def test_reconnecting_operator_uses_the_tasks_create_time() -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    from tests.unit.operators.test_operator_mps import HAS_TASK_STATE_STORE
    from tests.unit.operators.test_operator_mps import make as make_operator

    if not HAS_TASK_STATE_STORE:
        pytest.skip("a retry reconnects only where task_state_store exists (Airflow >= 3.3)")
    from tests.unit.operators.test_operator_mps import retry

    op, hook, ctx = make_operator(deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute(ctx)
    hook.scripts["task-1"] = [_processing_since("2026-04-30T06:26:49Z")]
    with pytest.raises(TaskDeferred) as info:
        op.execute(retry(op, ctx))
    assert info.value.trigger.mps_task_id == "task-1"
    assert info.value.trigger.created_after == constants.parse_api_time("2026-04-30T06:26:49Z")


@pytest.mark.parametrize(("create_time", "expected"), [("2026-04-30T06:26:49Z", 1777530409.0), (None, None)])
def test_sensor_defers_with_the_create_time_of_its_first_poke(create_time: str | None, expected: Any) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    from tests.unit.sensors.test_sensor_mps import make as make_sensor

    sensor, hook, ctx = make_sensor(deferrable=True, timeout=300)
    body: dict[str, Any] = {"Status": "PROCESSING", "RequestId": "req-d"}
    if create_time:
        body["CreateTime"] = create_time
    hook.scripts["task-1"] = [ImageTaskStatus.from_api(body, task_id="task-1")]
    with pytest.raises(TaskDeferred) as info:
        sensor.execute(ctx)
    assert info.value.trigger.created_after == expected
