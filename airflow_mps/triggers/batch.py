"""``MpsImageBatchTrigger``: one async wait for every task of a batch, run by Airflow's triggerer.

Completion is detected cheaply: each poll pages through ``DescribeImageTasks`` (Status=FINISH, created
since the batch's window start) to learn which of *its* tasks finished, then calls
``DescribeImageTaskDetail`` once per newly finished task for its outputs or error code. The hook paces
both calls under the API's Describe limit, and nothing blocks the event loop (the hook's async path).
Every decision is the wait core's (:func:`airflow_mps.waits.batch.wait_for_batch`, shared with the
operator's in-place poll); this trigger only answers its steps with async calls.

The operator already describes the tasks that finish while it is still submitting; it hands over only
the pending tail (``tasks``) plus the results known so far (``known``, echoed in the event). Each
pending row may carry a floor of the task's creation time, which narrows the listing to the tail.
Every poll is bounded by the time left to ``end_time`` (a stalled call never carries the wait past
the deadline), and the first run imports the hook and the async SDK in a worker thread
(:func:`airflow_mps.utils.sdk.preload_sdk`), not on the triggerer's loop.

The trigger carries everything it needs in ``serialize()`` — the task list, the absolute deadline and
the window start — so a triggerer restart (or an HA peer) rebuilds it and re-derives progress (tasks are
described again; harmless, reads only) while keeping the original deadline (apache/airflow #32580).
Throttling and transient errors are logged with their code and RequestId and retried until the deadline;
a terminal API error (bad credentials) ends the wait with an ``error`` event at once.

It yields exactly one event, self-contained because ``dag.test()`` does not hand ``defer(kwargs=…)``
back to the resume method::

    {"status": "success" | "timeout" | "error",
     "results": pack([[task_id, input, state, outputs, code, message, request_id], ...]),
     "error": {"code", "message", "request_id"} | None,
     "carry": <opaque text from the operator, echoed>,
     "window_start": str, "listing_calls": int, "detail_calls": int}
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mps.batch.progress import BatchWaitState, pack, unpack
from airflow_mps.models.constants import TASK_RETENTION_SECONDS, format_api_time
from airflow_mps.waits.batch import (
    ERROR,
    SUCCESS,
    TIMEOUT,
    DescribeTasks,
    Listed,
    ListFinished,
    WaitOutcome,
    WaitStep,
    wait_for_batch,
)

EVENT_SUCCESS = SUCCESS
EVENT_TIMEOUT = TIMEOUT
EVENT_ERROR = ERROR

#: At most this many DescribeImageTaskDetail calls in flight (the hook paces them anyway).
DESCRIBE_CONCURRENCY = 16


class MpsImageBatchTrigger(BaseTrigger):
    """Wait for every MPS image task of a batch to finish, without holding a worker slot.

    :param tasks: the batch's ``[[task_id, input_uri], ...]`` packed with
        :func:`airflow_mps.batch.progress.pack` (a plain list is accepted and packed).
    :param tencentcloud_conn_id: Airflow connection of type ``tencentcloud``.
    :param region: MPS region; ``None`` uses the connection's ``region`` extra.
    :param poll_interval: seconds between two polls.
    :param end_time: absolute deadline, epoch seconds; a ``timeout`` event is yielded once it passes.
    :param window_start: ``YYYY-MM-DDThh:mm:ssZ``; the listings ask for tasks created since then (the
        operator sets it a few minutes before the first submission to absorb clock skew).
    :param carry: opaque text echoed in the event (what the operator needs to write the manifest).
    :param known: result rows already resolved before deferring (packed; the operator describes tasks
        that finish while it is still submitting), returned in the event with the others.
    :param prior_calls: ``[listing_calls, detail_calls]`` already spent before deferring (reporting).
    """

    def __init__(
        self,
        tasks: str | list[list[str]],
        tencentcloud_conn_id: str = "tencentcloud_default",
        region: str | None = None,
        poll_interval: float = 15.0,
        end_time: float | None = None,
        window_start: str | None = None,
        carry: str | None = None,
        known: str | None = None,
        prior_calls: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.tasks = tasks if isinstance(tasks, str) else pack([list(t) for t in tasks])
        self.tencentcloud_conn_id = tencentcloud_conn_id
        self.region = region
        self.poll_interval = float(poll_interval)
        self.end_time = float(end_time) if end_time is not None else time.time() + TASK_RETENTION_SECONDS
        self.window_start = window_start
        self.carry = carry
        self.known = known
        self.prior_calls = [int(n) for n in prior_calls] if prior_calls else None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "tasks": self.tasks,
                "tencentcloud_conn_id": self.tencentcloud_conn_id,
                "region": self.region,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "window_start": self.window_start,
                "carry": self.carry,
                "known": self.known,
                "prior_calls": self.prior_calls,
            },
        )

    def _hook(self) -> Any:
        from airflow_mps.hooks.mps import MpsHook  # lazy: keeps the SDK out of DAG parsing

        return MpsHook(tencentcloud_conn_id=self.tencentcloud_conn_id, region=self.region)

    def _event(self, outcome: WaitOutcome, state: BatchWaitState) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": outcome.status,
                "results": pack(state.result_rows()),
                "error": outcome.error,
                "carry": self.carry,
                "window_start": self.window_start,
                "listing_calls": state.listing_calls,
                "detail_calls": state.detail_calls,
            }
        )

    async def _list(self, hook: Any, start: str | None) -> Listed:
        """Every FINISH row since ``start``; the pages read come from the hook's counter when it has one."""
        pages_before = getattr(hook, "list_calls", None)
        rows = [info async for info in hook.alist_image_tasks("FINISH", start_time=start)]
        pages_after = getattr(hook, "list_calls", None)
        if isinstance(pages_before, int) and isinstance(pages_after, int):
            return Listed(rows, pages_after - pages_before)
        return Listed(rows)

    async def _describe(self, hook: Any, task_ids: Sequence[str], timeout: float) -> dict[str, Any]:
        """Each id described once (bounded concurrency) → status or error; what did not answer within
        ``timeout`` is left out (abandoned), what did stays."""
        replies: dict[str, Any] = {}
        semaphore = asyncio.Semaphore(DESCRIBE_CONCURRENCY)

        async def one(task_id: str) -> None:
            async with semaphore:
                try:
                    replies[task_id] = await hook.adescribe_image_task(task_id)
                except Exception as err:  # the core decides (not found, transient, terminal)
                    replies[task_id] = err

        with contextlib.suppress(asyncio.TimeoutError):  # abandoned ids are left out of the replies
            await asyncio.wait_for(asyncio.gather(*(one(t) for t in task_ids)), timeout=timeout)
        return replies

    async def _answer(self, hook: Any, step: WaitStep) -> Any:
        """One step of the wait core, done with the async hook, bounded by the step's ``until``."""
        if isinstance(step, ListFinished):
            return await asyncio.wait_for(self._list(hook, step.start), timeout=step.until - time.time())
        if isinstance(step, DescribeTasks):
            return await self._describe(hook, step.task_ids, step.until - time.time())
        await asyncio.sleep(step.seconds)
        return None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mps.utils.sdk import preload_sdk

        # The hook module and the async SDK are imported in a worker thread, not on the triggerer's
        # loop (where the import would stall every other trigger of the process).
        await preload_sdk()
        hook = self._hook()
        try:
            yield await self._wait(hook)
        finally:
            # Each run opens an httpx client (connection pool) on this loop; a triggerer runs
            # thousands of triggers over its life, so close it on success, timeout, error or cancel.
            try:
                await hook.aclose()
            except Exception as err:  # closing must never mask the event or the cancellation
                self.log.debug("Closing the MPS client failed: %s", err)

    async def _wait(self, hook: Any) -> TriggerEvent:
        """Drive the wait core to its outcome; the one event."""
        state = BatchWaitState(unpack(self.tasks), known=unpack(self.known) if self.known else ())
        if self.prior_calls:
            state.listing_calls, state.detail_calls = self.prior_calls[0], self.prior_calls[1]
        self.log.info(
            "Waiting for %d MPS image tasks, %d already finished (window start %s, deadline %s)",
            len(state.pending),
            len(state.results),
            self.window_start,
            format_api_time(self.end_time),
        )
        steps = wait_for_batch(
            state,
            window_start=self.window_start,
            end_time=self.end_time,
            poll_interval=self.poll_interval,
            log=self.log,
        )
        reply: Any = None
        error: Exception | None = None
        while True:
            try:
                step = steps.throw(error) if error is not None else steps.send(reply)
            except StopIteration as done:
                return self._event(done.value, state)
            reply, error = None, None
            try:
                reply = await self._answer(hook, step)
            except asyncio.TimeoutError:  # the step's bound (asyncio's own class before Python 3.11)
                error = TimeoutError("abandoned at the round's bound")
            except Exception as err:  # the core decides: transient → next round, terminal → error event
                error = err
