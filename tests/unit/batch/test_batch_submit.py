"""The batch submitter's threads (airflow_mps/batch/submit.py): every one started before the first
request, so a process's first second is paced like the rest (issue 13, bench P8)."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_mps.batch import submit as submit_mod
from airflow_mps.batch.ledger import SubmissionLedger
from airflow_mps.batch.plan import BatchItem
from airflow_mps.batch.submit import BatchSubmitter
from tests.hook_contract import SendsImageTasks


class RecordingHook(SendsImageTasks):
    """``process_image`` that records how many submitter threads were running at each call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.threads_at_call: list[int] = []

    def process_image(self, request: Any) -> Any:
        running = sum(1 for t in threading.enumerate() if t.name.startswith("mps-submit"))
        with self.lock:
            self.threads_at_call.append(running)
        return SimpleNamespace(task_id=f"task-{request}")


def _items(n: int) -> list[BatchItem]:
    return [BatchItem("photos-1250000000", f"raw/{i}.jpg", f"out/{i}.jpg") for i in range(n)]


def _submitter(hook: RecordingHook, concurrency: int) -> BatchSubmitter:
    return BatchSubmitter(hook, lambda item: item.input_key, SubmissionLedger(None), concurrency=concurrency)


def test_every_thread_is_running_before_the_first_request() -> None:
    # Without the start-up barrier the first request goes out while the pool is still starting
    # threads (one per submission): on a busy host the rest followed half a second later.
    hook = RecordingHook()
    submitted, rejected = _submitter(hook, 6).run(_items(40))
    assert len(submitted) == 40 and not rejected
    assert hook.threads_at_call[0] == 6
    assert min(hook.threads_at_call) == 6


def test_no_more_threads_than_items() -> None:
    hook = RecordingHook()
    submitted, _ = _submitter(hook, 8).run(_items(3))
    assert len(submitted) == 3
    assert max(hook.threads_at_call) <= 3


def test_a_thread_that_cannot_start_delays_the_batch_but_does_not_stop_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A barrier that breaks (a thread that did not start in time) is logged; the batch goes on.
    monkeypatch.setattr(submit_mod, "THREAD_START_SECONDS", 0.01)
    real_barrier = threading.Barrier

    def barrier_for_one_more(parties: int) -> threading.Barrier:
        return real_barrier(parties + 1)  # nobody is the last party: wait() times out

    monkeypatch.setattr(submit_mod.threading, "Barrier", barrier_for_one_more)
    hook = RecordingHook()
    submitted, _ = _submitter(hook, 4).run(_items(10))
    assert len(submitted) == 10
