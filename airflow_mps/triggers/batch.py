"""``MpsImageBatchTrigger``: one async wait for every task of a batch, run by Airflow's triggerer.

Completion is detected cheaply: each poll pages through ``DescribeImageTasks`` (Status=FINISH, created
since the batch's window start) to learn which of *its* tasks finished, then calls
``DescribeImageTaskDetail`` once per newly finished task for its outputs or error code. The hook paces
both calls under the API's Describe limit, and nothing blocks the event loop (the hook's async path).

The operator already describes the tasks that finish while it is still submitting; it hands over only
the pending tail (``tasks``) plus the results known so far (``known``, echoed in the event). Each
pending row may carry a floor of the task's creation time, which narrows the listing to the tail.
Every poll is bounded by the time left to ``end_time`` (a stalled call never carries the wait past
the deadline), and the first run imports the hook and the async SDK in a worker thread
(:func:`airflow_mps.triggers.mps.preload_sdk`), not on the triggerer's loop.

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
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mps.batch.progress import BatchWaitState, pack, unpack
from airflow_mps.errors import MpsError, MpsResourceNotFoundError

EVENT_SUCCESS = "success"
EVENT_TIMEOUT = "timeout"
EVENT_ERROR = "error"

#: At most this many DescribeImageTaskDetail calls in flight (the hook paces them anyway).
DESCRIBE_CONCURRENCY = 16
#: A poll started at (or past) the deadline still gets this long before it is abandoned.
MIN_CALL_SECONDS = 1.0


def _error_dict(err: BaseException) -> dict[str, Any]:
    if isinstance(err, MpsError):
        return {"code": err.code, "message": err.message, "request_id": err.request_id}
    return {"code": type(err).__name__, "message": str(err), "request_id": None}


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
        self.end_time = float(end_time) if end_time is not None else time.time() + 7 * 24 * 3600
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

    def _event(self, status: str, state: BatchWaitState, error: dict[str, Any] | None = None) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "results": pack(state.result_rows()),
                "error": error,
                "carry": self.carry,
                "window_start": self.window_start,
                "listing_calls": state.listing_calls,
                "detail_calls": state.detail_calls,
            }
        )

    async def _describe(self, hook: Any, state: BatchWaitState, task_ids: list[str]) -> None:
        """Describe each task once (bounded concurrency); terminal errors other than not-found propagate."""
        semaphore = asyncio.Semaphore(DESCRIBE_CONCURRENCY)

        async def one(task_id: str) -> None:
            async with semaphore:
                state.detail_calls += 1
                try:
                    status = await hook.adescribe_image_task(task_id)
                except MpsResourceNotFoundError as err:
                    state.record_error(task_id, err.code, err.message, err.request_id)
                    return
                except MpsError as err:
                    if err.retryable:
                        self.log.warning("Describing %s failed, retrying on the next poll: %s", task_id, err)
                        return
                    raise
            state.record(task_id, status)

        await asyncio.gather(*(one(t) for t in task_ids))

    async def _poll_once(self, hook: Any, state: BatchWaitState) -> None:
        """One listing, then one detail call per newly finished (or direct-check due) task."""
        finished = await self._finished_ids(hook, state)
        finished += [t for t in state.direct_check_due() if t not in finished]
        await self._describe(hook, state, finished)

    async def _finished_ids(self, hook: Any, state: BatchWaitState) -> list[str]:
        """Our pending tasks that the FINISH listing shows as finished."""
        listed: list[str] = []
        pages_before = getattr(hook, "list_calls", None)
        async for info in hook.alist_image_tasks("FINISH", start_time=state.listing_start(self.window_start)):
            listed.append(info.task_id)
        pages_after = getattr(hook, "list_calls", None)
        if isinstance(pages_before, int) and isinstance(pages_after, int):
            state.listing_calls += pages_after - pages_before
        else:
            state.listing_calls += max(1, -(-len(listed) // 100))
        return state.finished_in(listed)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mps.triggers.mps import preload_sdk

        # The hook module and the async SDK are imported in a worker thread, not on the triggerer's
        # loop (where the import would stall every other trigger of the process).
        await preload_sdk()
        hook = self._hook()
        try:
            async for event in self._wait(hook):
                yield event
        finally:
            # Each run opens an httpx client (connection pool) on this loop; a triggerer runs
            # thousands of triggers over its life, so close it on success, timeout, error or cancel.
            try:
                await hook.aclose()
            except Exception as err:  # closing must never mask the event or the cancellation
                self.log.debug("Closing the MPS client failed: %s", err)

    async def _wait(self, hook: Any) -> AsyncIterator[TriggerEvent]:
        """The poll loop; yields exactly one event."""
        state = BatchWaitState(unpack(self.tasks), known=unpack(self.known) if self.known else ())
        if self.prior_calls:
            state.listing_calls, state.detail_calls = self.prior_calls[0], self.prior_calls[1]
        self.log.info(
            "Waiting for %d MPS image tasks, %d already finished (window start %s, deadline %s)",
            len(state.pending),
            len(state.results),
            self.window_start,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.end_time)),
        )
        last_line = ""
        while True:
            try:
                if state.pending:
                    # Bounded by the deadline: a stalled call (the SDK's request timeout is 60 s, plus
                    # the hook's retries) must not carry the wait past end_time. What was described
                    # before the bound hit stays recorded in ``state``.
                    await asyncio.wait_for(
                        self._poll_once(hook, state),
                        timeout=max(MIN_CALL_SECONDS, self.end_time - time.time()),
                    )
            except MpsError as err:
                if not err.retryable:
                    self.log.error("Batch wait stopped by a terminal MPS error: %s", err)
                    yield self._event(EVENT_ERROR, state, _error_dict(err))
                    return
                self.log.warning("Polling the batch failed, retrying: %s", err)
            except asyncio.TimeoutError:  # the bound above, or a socket timeout the hook let through
                self.log.warning("A poll did not complete in time (deadline %.0f); abandoned", self.end_time)
            except Exception as err:  # transport trouble the hook could not classify: keep polling
                self.log.warning("Polling the batch failed, retrying: %s: %s", type(err).__name__, err)
            line = state.progress_line()
            if line != last_line:
                self.log.info("%s", line)
                last_line = line
            if state.done:
                yield self._event(EVENT_SUCCESS, state)
                return
            remaining = self.end_time - time.time()
            if remaining <= 0:
                self.log.error("Deadline passed with %d tasks unfinished (%s)", len(state.pending), line)
                yield self._event(
                    EVENT_TIMEOUT,
                    state,
                    {
                        "code": "Timeout",
                        "message": f"{len(state.pending)} tasks unfinished at the deadline",
                        "request_id": None,
                    },
                )
                return
            await asyncio.sleep(min(self.poll_interval, remaining))
