"""The batch wait through the sync hook: the operator's in-place poll (``deferrable=False``).

A driver of :func:`airflow_mps.waits.batch.wait_for_batch` — the decisions are there; this module only
answers its steps with sync hook calls. Detail calls of one round run on a few threads (the hook's
process-wide pacing keeps them under the API's Describe limit). An MPS error is handed back to the
core, which decides; any other exception propagates (a bug, or the worker being stopped).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow_mps.batch.progress import BatchWaitState
from airflow_mps.errors import MpsError
from airflow_mps.steps import drive
from airflow_mps.waits.batch import (
    DescribeTasks,
    Listed,
    ListFinished,
    WaitLog,
    WaitOutcome,
    WaitStep,
    keep_rows,
    pages_for,
    wait_for_batch,
)

#: Detail calls in flight per round in the worker.
DETAIL_WORKERS = 8


def describe_each(hook: Any, task_ids: Sequence[str], workers: int = DETAIL_WORKERS) -> dict[str, Any]:
    """``DescribeImageTaskDetail`` of each id on a few threads: id → status, or the MpsError it raised.

    The ids are handed out in chunks, so a round with thousands of finished tasks never holds a future
    per id (memory stays flat in N)."""

    def one(task_id: str) -> tuple[str, Any]:
        try:
            return task_id, hook.describe_image_task(task_id)
        except MpsError as err:
            return task_id, err

    replies: dict[str, Any] = {}
    chunk = 32 * workers
    with ThreadPoolExecutor(min(workers, max(1, len(task_ids)))) as pool:
        for start in range(0, len(task_ids), chunk):
            replies.update(pool.map(one, task_ids[start : start + chunk]))
    return replies


def _answer(hook: Any, step: WaitStep, state: BatchWaitState) -> Any:
    if isinstance(step, ListFinished):
        rows, seen = keep_rows(hook.list_image_tasks("FINISH", start_time=step.start), state.pending)
        return Listed(rows, pages_for(seen))
    if isinstance(step, DescribeTasks):
        return describe_each(hook, step.task_ids)
    time.sleep(step.seconds)
    return None


def poll_in_place(
    hook: Any,
    state: BatchWaitState,
    *,
    window_start: str | None,
    end_time: float,
    poll_interval: float,
    log: WaitLog,
) -> WaitOutcome:
    """Wait for ``state``'s pending tasks in this thread; the results end up in ``state``."""
    steps = wait_for_batch(
        state, window_start=window_start, end_time=end_time, poll_interval=poll_interval, log=log
    )
    # Only an MpsError is the core's to judge (it catches around its yields); anything else ends the wait.
    return drive(steps, lambda step: _answer(hook, step, state), throw=(MpsError,))
