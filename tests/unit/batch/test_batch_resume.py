"""A retry soon after a try that died before its first record (issue 12's SIGKILL trials): the ledger
knows when that try started submitting, and the retry lets its tasks leave WAITING before it lists."""

from __future__ import annotations

import logging
import time
from typing import Any

from airflow_mps.batch.ledger import SubmissionLedger
from airflow_mps.batch.plan import BatchConfig, BatchItem, CosLocation
from airflow_mps.batch.resume import Try, TryContext, open_try, skip_existing
from tests.hook_contract import ListsImageTasks

BUCKET = "b-1250000000"
DEST = CosLocation(BUCKET, "out/")
CFG = BatchConfig(CosLocation(BUCKET, "raw/"), DEST, (".png",), {"EncodeConfig": {"Format": "JPEG"}}, "jpg")
LOG = logging.getLogger("test")


class Store(dict):  # type: ignore[type-arg]
    """``task_state_store``'s interface over a dict."""

    def set(self, key: str, value: Any) -> None:
        self[key] = value


class EmptyListings(ListsImageTasks):
    """An account whose listings show nothing (the previous try's tasks are all still WAITING)."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def list_image_tasks(self, status: str, start_time: Any = None, **_: Any) -> Any:
        self.events.append(f"list {status}")
        return iter(())


def _items(n: int = 3) -> list[BatchItem]:
    return [BatchItem(BUCKET, f"raw/{i}.png", f"out/{i}.jpg") for i in range(n)]


def _previous_try(store: Store, submitted_ago: float) -> None:
    """A first try that began, started submitting ``submitted_ago`` seconds ago, and died unrecorded."""
    ledger = SubmissionLedger(store)
    ledger.load()
    ledger.begin("2026-11-30T00:00:00Z", fresh=True)
    ledger.submitting(time.time() - submitted_ago)


def _ctx(store: Store, events: list[str], try_number: int) -> TryContext:
    return TryContext(
        hook=EmptyListings(events),
        store=store,
        log=LOG,
        try_number=try_number,
        run_start=None,
        workers=2,
        poll_interval=1.0,
        deadline=time.time() + 3600,
        patience=60.0,
        sleep=lambda seconds: events.append(f"sleep {round(seconds)}"),
    )


def _retry(store: Store, events: list[str]) -> Try:
    return open_try(_ctx(store, events, try_number=2), _items(), CFG, existing=set())


def test_the_ledger_keeps_when_a_try_started_submitting() -> None:
    store = Store()
    _previous_try(store, submitted_ago=5.0)
    state = SubmissionLedger(store).load()
    assert state.newest is None and state.submit_at is not None
    assert 4.0 <= time.time() - state.submit_at <= 6.0


def test_a_retry_soon_after_an_unrecorded_try_waits_out_the_patience_before_listing() -> None:
    store, events = Store(), []
    _previous_try(store, submitted_ago=5.0)
    _retry(store, events)
    assert events[0] == "sleep 55", events  # 60 s of patience from the previous try's first request
    assert events[1:] == ["list PROCESSING", "list FINISH"], events


def test_a_retry_after_the_patience_lists_at_once() -> None:
    store, events = Store(), []
    _previous_try(store, submitted_ago=300.0)  # Airflow's default retry_delay
    _retry(store, events)
    assert events == ["list PROCESSING", "list FINISH"], events


def test_a_first_try_never_waits_and_records_when_it_starts_submitting() -> None:
    store, events = Store(), []
    ctx = _ctx(store, events, try_number=1)
    run = open_try(ctx, _items(), CFG, existing=set())
    assert events == []
    assert SubmissionLedger(store).load().submit_at is None  # nothing sent yet
    skip_existing(EmptyListings(events), run, existing=set(), workers=2, log=LOG)
    assert len(run.to_submit) == 3
    assert SubmissionLedger(store).load().submit_at is not None


def test_nothing_to_submit_records_no_submission() -> None:
    store, events = Store(), []
    _previous_try(store, submitted_ago=300.0)
    run = _retry(store, events)
    before = SubmissionLedger(store).load().submit_at
    skip_existing(EmptyListings(events), run, existing={i.output_key for i in run.items}, workers=2, log=LOG)
    assert run.to_submit == [] and SubmissionLedger(store).load().submit_at == before
