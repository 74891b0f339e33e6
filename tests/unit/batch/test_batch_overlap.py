"""The batch's overlap (describing while submitting), its bounded submitter and its trigger's deadline.

Fakes stand in for the hook only where the emulator cannot produce the situation on demand (a call
that never answers, a detail call held in flight at the hand-off); the end-to-end behaviour runs
against the emulator in ``tests/integration/test_batch_emulator.py``. Counts, never elapsed time.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_mps.batch.ledger import SubmissionLedger
from airflow_mps.batch.overlap import SubmitTimeWatcher
from airflow_mps.batch.progress import (
    LISTING_MARGIN,
    SUCCEEDED,
    UNFINISHED,
    BatchWaitState,
    CreateClock,
    pack,
    unpack,
)
from airflow_mps.errors import MpsAuthError
from airflow_mps.models.constants import format_api_time, parse_api_time
from tests.hook_contract import PollsImageTasksAsync, SendsImageTasks, WatchesImageTasks

SRC = "cos://photos-1250000000/raw/dt=2026-11-01/"
DST = "cos://photos-1250000000/enhanced/dt=2026-11-01/"
WINDOW = "2026-11-01T00:00:00Z"


def _status(task_id: str, *, ok: bool = True) -> Any:
    return SimpleNamespace(
        done=True,
        succeeded=ok,
        failed=not ok,
        outputs=(SimpleNamespace(bucket="photos-1250000000", path=f"enhanced/{task_id}.jpg"),),
        error_code=None if ok else "ResourceNotFound.DownloadError",
        error_message=None if ok else "cannot download",
        request_id=f"req-{task_id}",
    )


# ---------------------------------------------------------------------------------------------- clock


def test_create_clock_floor_never_exceeds_the_true_creation_time() -> None:
    """MPS's clock 1,000.4 s ahead of ours, random round trips: every floor is a lower bound, and a
    tight one (within a round trip plus the second the API rounds away)."""
    rng = random.Random(7)
    offset = 1000.4
    clock = CreateClock()
    created: dict[str, float] = {}
    t = 1_800_000_000.0
    for i in range(300):
        t += rng.uniform(0.0, 0.1)
        sent = t
        created[f"t{i}"] = sent + offset + rng.uniform(0.0, 0.2)
        received = created[f"t{i}"] - offset + rng.uniform(0.0, 0.2)
        clock.submitted(f"t{i}", sent, received)
    assert clock.floor("t0") is None  # uncalibrated until a listing row is seen
    for i in range(0, 300, 7):  # listing rows carry CreateTime rounded down to the second
        clock.observe(f"t{i}", format_api_time(created[f"t{i}"]))
    for task_id, true_created in created.items():
        floor = clock.floor(task_id)
        assert floor is not None and floor <= true_created
        assert true_created - floor <= 0.4 + 1.0


def test_listing_start_narrows_to_the_oldest_pending_task_only_when_all_are_known() -> None:
    state = BatchWaitState([("a", "cos://b/a.png", 1_800_000_100.0), ("b", "cos://b/b.png", 1_800_000_050.5)])
    assert state.listing_start(WINDOW) == format_api_time(1_800_000_050.5 - LISTING_MARGIN)
    state.add("c", "cos://b/c.png")  # e.g. adopted from an earlier try: no floor
    assert state.listing_start(WINDOW) == WINDOW
    state.refresh_floors(lambda task_id: 1_800_000_000.0 if task_id == "c" else None)
    assert state.listing_start(WINDOW) == format_api_time(1_800_000_000.0 - LISTING_MARGIN)
    # Never earlier than the batch's own window start.
    assert state.listing_start("2099-01-01T00:00:00Z") == "2099-01-01T00:00:00Z"
    assert parse_api_time(format_api_time(1_800_000_000.9)) == 1_800_000_000.0
    assert parse_api_time("0000-00-00T00:00:00Z") is None and parse_api_time("junk") is None


def test_known_results_travel_compactly_and_come_back_in_the_event_rows() -> None:
    state = BatchWaitState([("a", "cos://b/a.png"), ("b", "cos://b/b.png"), ("c", "cos://b/c.png")])
    assert state.record("a", _status("a"))
    assert state.record("b", _status("b", ok=False))
    known = state.known_rows()
    assert {r[0]: r[6] for r in known} == {"a": None, "b": "req-b"}  # a failure keeps its RequestId
    rebuilt = BatchWaitState(unpack(pack(state.pending_rows())), known=unpack(pack(known)))
    assert rebuilt.pending == {"c"} and rebuilt.total == 3
    assert rebuilt.progress_line() == "2/3 finished, 1 failed"
    rows = {r[0]: r for r in rebuilt.result_rows()}
    assert rows["a"][2] == SUCCEEDED and rows["a"][3] == ["photos-1250000000/enhanced/a.jpg"]
    assert rows["b"][4] == "ResourceNotFound.DownloadError" and rows["c"][2] == UNFINISHED


def test_trigger_serialize_round_trips_known_results_and_floors() -> None:
    from airflow_mps.triggers.batch import MpsImageBatchTrigger

    trigger = MpsImageBatchTrigger(
        tasks=pack([["t2", "cos://b/b.png", 1_800_000_000.0]]),
        end_time=time.time() + 60,
        window_start=WINDOW,
        known=pack([["t1", "cos://b/a.png", SUCCEEDED, ["b/a.jpg"], None, None, None]]),
        prior_calls=[3, 40],
    )
    path, kwargs = trigger.serialize()
    rebuilt = MpsImageBatchTrigger(**kwargs)
    assert rebuilt.serialize() == (path, kwargs)
    assert kwargs["prior_calls"] == [3, 40] and unpack(kwargs["known"])[0][0] == "t1"


# ------------------------------------------------------------------------------------------ watcher


class FakeSyncHook(WatchesImageTasks):
    """Sync hook stand-in: a fixed set of FINISHed tasks, and detail calls that can be held in flight."""

    def __init__(self, finished: list[str], *, hold: bool = False) -> None:
        self.finished = finished
        self.created = format_api_time(time.time())
        self.list_calls = 0
        self.detail_calls: list[str] = []
        self.hold = hold
        self.entered = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def list_image_tasks(self, status: str, start_time: Any = None, **_: Any) -> Any:
        assert status == "FINISH"
        self.list_calls += 1
        return iter(
            [SimpleNamespace(task_id=t, create_time=self.created) for t in [*self.finished, "someone-elses"]]
        )

    def describe_image_task(self, task_id: str) -> Any:
        with self._lock:
            self.detail_calls.append(task_id)
        if self.hold:
            self.entered.set()
            assert self.release.wait(30)
        return _status(task_id)


def _watcher(hook: FakeSyncHook) -> SubmitTimeWatcher:
    # interval far beyond the test: the listing thread never fires; poll_once is driven by hand.
    return SubmitTimeWatcher(hook, WINDOW, interval=3600, workers=3).start()


def test_watcher_describes_each_finished_task_once_and_hands_over_the_rest() -> None:
    hook = FakeSyncHook(["t1", "t2", "t3"])
    watcher = _watcher(hook)
    for i in range(1, 6):
        watcher.add(f"t{i}", f"cos://b/{i}.png", sent=time.time(), received=time.time())
    assert watcher.poll_once() == 3
    assert watcher.poll_once() == 0  # queued or described already: never twice
    # Wait (by count) for the three details, then hand over.
    for _ in range(3000):
        if len(watcher.state.results) == 3:
            break
        time.sleep(0.01)
    state = watcher.stop()
    assert sorted(hook.detail_calls) == ["t1", "t2", "t3"]
    assert state.pending == {"t4", "t5"} and state.detail_calls == 3
    assert all(row[2] is not None for row in state.pending_rows())  # floors learnt from the listing
    watcher.add("t6", "cos://b/6.png")  # after the hand-off nothing changes the state any more
    assert "t6" not in state.inputs


def test_a_detail_call_in_flight_at_the_hand_off_is_waited_for_not_paid_twice() -> None:
    hook = FakeSyncHook(["t1"], hold=True)
    watcher = _watcher(hook)
    watcher.add("t1", "cos://b/1.png")
    watcher.add("t2", "cos://b/2.png")
    assert watcher.poll_once() == 1
    assert hook.entered.wait(30)
    result: list[BatchWaitState] = []
    stopper = threading.Thread(target=lambda: result.append(watcher.stop(wait=30)))
    stopper.start()
    hook.release.set()
    stopper.join(60)
    assert result and result[0].pending == {"t2"} and "t1" in result[0].results
    assert hook.detail_calls == ["t1"]


def test_after_drain_no_new_detail_call_starts() -> None:
    hook = FakeSyncHook(["t1", "t2"])
    watcher = _watcher(hook)
    watcher.add("t1", "cos://b/1.png")
    watcher.add("t2", "cos://b/2.png")
    watcher.drain()
    assert watcher.poll_once() == 0
    state = watcher.stop()
    assert hook.list_calls == 0 and hook.detail_calls == [] and state.pending == {"t1", "t2"}


# ---------------------------------------------------------------------------------------- submitter


class CountingSubmitHook(SendsImageTasks):
    """``process_image`` that counts its calls and, from call ``fail_at`` on, raises a terminal error."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls = 0
        self.fail_at = fail_at
        self._lock = threading.Lock()

    def process_image(self, request: Any) -> Any:
        with self._lock:
            self.calls += 1
            n = self.calls
        if self.fail_at is not None and n >= self.fail_at:
            raise MpsAuthError("AuthFailure.SecretIdNotFound", "The SecretId is not found.", "req-x")
        time.sleep(0.001)
        return SimpleNamespace(task_id=f"task-{n}")


def _operator(**kwargs: Any) -> Any:
    from airflow_mps.operators.batch import MpsBatchProcessImageOperator

    return MpsBatchProcessImageOperator(
        task_id="batch",
        source=SRC,
        destination=DST,
        image_task={"EncodeConfig": {"Format": "JPEG"}},
        **kwargs,
    )


def _items(n: int) -> list[Any]:
    from airflow_mps.batch.plan import BatchItem

    return [
        BatchItem("photos-1250000000", f"raw/dt=2026-11-01/{i:05d}.png", f"enhanced/{i:05d}.jpg")
        for i in range(n)
    ]


def test_submitter_waits_on_a_bounded_window_not_on_every_future(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each wait() sees at most 2 × submit_concurrency futures (it used to see all N: O(N²))."""
    import airflow_mps.batch.submit as batch_mod

    sizes: list[int] = []
    real_wait = batch_mod.wait

    def counting_wait(fs: Any, **kwargs: Any) -> Any:
        sizes.append(len(fs))
        return real_wait(fs, **kwargs)

    monkeypatch.setattr(batch_mod, "wait", counting_wait)
    op = _operator(submit_concurrency=4)
    store: dict[str, Any] = {}
    store_api = SimpleNamespace(get=lambda k, d=None: store.get(k, d), set=store.__setitem__)
    ledger = SubmissionLedger(store_api)
    ledger.begin(WINDOW, fresh=True)
    hook = CountingSubmitHook()
    watcher_adds: list[str] = []
    watcher = SimpleNamespace(add=lambda t, u, s, r: watcher_adds.append(t), drain=lambda: None)
    submitted, rejected = op._submit(hook, _items(500), op._validate(), "ap-guangzhou", ledger, watcher)
    assert len(submitted) == 500 and not rejected and hook.calls == 500
    assert max(sizes) <= 8 and len(watcher_adds) == 500
    assert len(SubmissionLedger(store_api).load().tasks) == 500  # every record durable at the end


def test_a_terminal_error_stops_the_window_from_refilling() -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    op = _operator(submit_concurrency=2)
    hook = CountingSubmitHook(fail_at=10)
    with pytest.raises(AirflowFailException, match="AuthFailure"):
        op._submit(hook, _items(500), op._validate(), "ap-guangzhou", SubmissionLedger(None))
    assert hook.calls <= 10 + 2 * 2


# ------------------------------------------------------------------------------------------ trigger


class HangingAsyncHook(PollsImageTasksAsync):
    """An async hook whose listing never answers (a stalled connection)."""

    def __init__(self) -> None:
        self.calls = 0
        self.cancelled = 0
        self.closed = 0

    async def alist_image_tasks(self, status: str, start_time: Any = None, **_: Any) -> Any:
        self.calls += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        yield None  # pragma: no cover - never reached

    async def adescribe_image_task(self, task_id: str) -> Any:  # pragma: no cover - never reached
        raise AssertionError("no task is listed")

    async def aclose(self) -> None:
        self.closed += 1


def test_batch_deadline_holds_while_a_poll_is_in_flight() -> None:
    """A listing that stalls past end_time is cut off at the deadline: a timeout event, carrying the
    results known before deferring, instead of waiting for the SDK's own timeout and the retries."""
    from airflow_mps.triggers.batch import MpsImageBatchTrigger

    hook = HangingAsyncHook()
    trigger = MpsImageBatchTrigger(
        tasks=[["t2", "cos://b/b.png"]],
        poll_interval=0.1,
        end_time=time.time() + 0.2,
        window_start=WINDOW,
        known=pack([["t1", "cos://b/a.png", SUCCEEDED, ["b/a.jpg"], None, None, None]]),
    )
    trigger._hook = lambda: hook  # type: ignore[method-assign]

    async def collect() -> list[dict[str, Any]]:
        # The outer bound only turns a hang into a test failure; the trigger must finish long before.
        return await asyncio.wait_for(_collect(trigger), timeout=60)

    events = asyncio.run(collect())
    assert [e["status"] for e in events] == ["timeout"]
    rows = {r[0]: r[2] for r in unpack(events[0]["results"])}
    assert rows == {"t1": SUCCEEDED, "t2": UNFINISHED}
    assert hook.calls >= 1 and hook.cancelled == hook.calls and hook.closed == 1


async def _collect(trigger: Any) -> list[dict[str, Any]]:
    return [e.payload async for e in trigger.run()]
