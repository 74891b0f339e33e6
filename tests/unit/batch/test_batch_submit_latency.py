"""The batch submitter times each ``ProcessImage`` call (issue 14 item 6, ``mps.submit.latency``): once
per call that created a task, reported from the collecting thread, never for a refused call.

Against the emulator with the real operator and a ``Stats`` stub:
tests/integration/operators/test_operator_batch_metrics_emulator.py.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_mps.batch.ledger import SubmissionLedger
from airflow_mps.batch.plan import BatchItem
from airflow_mps.batch.submit import BatchSubmitter, SubmissionStopped
from airflow_mps.errors import MpsInvalidParameterError, MpsTransientError


class Hook:
    """``process_image`` answering a task id, or raising what ``errors`` holds for that input key."""

    def __init__(self, errors: dict[str, BaseException] | None = None) -> None:
        self.errors = errors or {}
        self.calls = 0
        self.lock = threading.Lock()

    def process_image(self, request: Any) -> Any:
        with self.lock:
            self.calls += 1
        if request in self.errors:
            raise self.errors[request]
        return SimpleNamespace(task_id=f"task-{request}")


class Recorder:
    """The latency callback: what it was told, and from which threads."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.threads: set[str] = set()

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)
        self.threads.add(threading.current_thread().name)


def _items(n: int) -> list[BatchItem]:
    return [BatchItem("photos-1250000000", f"raw/{i}.jpg", f"out/{i}.jpg") for i in range(n)]


def _run(hook: Hook, items: list[BatchItem], recorder: Recorder, concurrency: int = 4) -> Any:
    submitter = BatchSubmitter(
        hook,
        lambda item: item.input_key,
        SubmissionLedger(None),
        concurrency=concurrency,
        on_latency=recorder,
    )
    return submitter.run(items)


def test_one_sample_per_created_task_from_the_collecting_thread() -> None:
    hook, recorder = Hook(), Recorder()
    submitted, rejected = _run(hook, _items(50), recorder)
    assert len(submitted) == 50 and not rejected
    assert len(recorder.seconds) == hook.calls == 50
    assert all(s >= 0 for s in recorder.seconds)
    # Reported by the thread that runs the submitter, never by the mps-submit pool: Stats is called
    # one sample at a time.
    assert recorder.threads == {threading.current_thread().name}


def test_a_refused_image_is_not_timed() -> None:
    refused = MpsInvalidParameterError("InvalidParameterValue.Object", "bad key", "req")
    hook, recorder = Hook({"raw/3.jpg": refused}), Recorder()
    submitted, rejected = _run(hook, _items(10), recorder)
    assert set(rejected) == {"cos://photos-1250000000/raw/3.jpg"}
    assert len(recorder.seconds) == len(submitted) == 9 and hook.calls == 10


def test_a_stopped_batch_times_what_it_created() -> None:
    hook, recorder = Hook({"raw/0.jpg": MpsTransientError("InternalError", "down", "req")}), Recorder()
    with pytest.raises(SubmissionStopped) as info:
        _run(hook, _items(20), recorder, concurrency=1)
    assert len(recorder.seconds) == info.value.submitted


def test_without_a_callback_nothing_is_timed() -> None:
    hook = Hook()
    submitter = BatchSubmitter(hook, lambda item: item.input_key, SubmissionLedger(None), concurrency=2)
    submitted, _ = submitter.run(_items(5))
    assert len(submitted) == 5 and submitter.on_latency is None
