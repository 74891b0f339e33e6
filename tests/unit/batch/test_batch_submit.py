"""The batch submitter (airflow_mps/batch/submit.py): every thread started before the first request,
so a process's first second is paced like the rest (issue 13, bench P8); and the summary it logs —
the batch's rate and how the account was paced while it submitted."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_mps.batch import submit as submit_mod
from airflow_mps.batch.ledger import SubmissionLedger
from airflow_mps.batch.plan import BatchItem
from airflow_mps.batch.submit import BatchSubmitter
from airflow_mps.hooks._buckets import pacing_state
from airflow_mps.hooks._pacing import HEADROOM, TokenBucket
from tests.hook_contract import ReportsPacing, SendsImageTasks


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


class Lines:
    """A task log that keeps what it was told (``WaitLog``)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: Any, /, *args: Any) -> None:
        self.lines.append(msg % args)

    warning = error = info


class PacedHook(RecordingHook, ReportsPacing):
    """A hook with a real (fixed) bucket that is told of each answer, as ``MpsHook`` tells its own;
    ``pacing`` raises when ``broken`` (a connection that cannot be read)."""

    def __init__(self, broken: bool = False) -> None:
        super().__init__()
        self.broken = broken
        self.bucket = TokenBucket(20 * HEADROOM)

    def pacing(self, action: str) -> Any:
        if self.broken:
            raise RuntimeError("the connection could not be read")
        return pacing_state(self.bucket, action)

    def process_image(self, request: Any) -> Any:
        self.bucket.on_success(0.0)
        return super().process_image(request)


def _logged(hook: RecordingHook, n: int) -> list[str]:
    log = Lines()
    submitter = BatchSubmitter(
        hook, lambda item: item.input_key, SubmissionLedger(None), concurrency=4, log=log
    )
    submitted, _ = submitter.run(_items(n))
    assert len(submitted) == n
    return log.lines


def test_the_summary_names_the_rate_and_the_pacing_with_this_batchs_answers_only() -> None:
    hook = PacedHook()
    for _ in range(5):  # an earlier batch in this worker process
        hook.bucket.on_success(0.0)
    lines = _logged(hook, 12)
    assert any(line.startswith("Submitted 12 tasks (0 rejected) in ") for line in lines)
    assert lines[-1] == (
        "ProcessImage pacing: fixed pacing at 19.4/s (AIRFLOW_MPS_PACING=fixed); "
        "ProcessImage: 12 accepted, 0 throttled (0.0%)"
    )


def test_a_hook_that_cannot_say_how_it_paces_costs_only_the_pacing_line() -> None:
    for hook in (PacedHook(broken=True), RecordingHook()):
        lines = _logged(hook, 6)
        assert any(line.startswith("Submitted 6 tasks (0 rejected) in ") for line in lines)
        assert not any("pacing" in line for line in lines)
