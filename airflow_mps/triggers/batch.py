"""``MpsImageBatchTrigger``: one async wait for every task of a batch, run by Airflow's triggerer.

Completion is detected cheaply: each poll pages through ``DescribeImageTasks`` (Status=FINISH, created
since the batch's window start) to learn which of *its* tasks finished, then calls
``DescribeImageTaskDetail`` once per newly finished task for its outputs or error code. The hook paces
both calls under the API's Describe limit, and nothing blocks the event loop (the hook's async path).
Every decision is the wait core's (:func:`airflow_mps.waits.batch.wait_for_batch`, shared with the
operator's in-place poll); this trigger only answers its steps with async calls.

The operator already describes the tasks that finish while it is still submitting; it hands over only
the pending tail plus the results known so far. Each pending row may carry a floor of the task's
creation time, which narrows the listing to the tail. Every poll is bounded by the time left to
``end_time`` (a stalled call never carries the wait past the deadline), and the first run imports the
hook and the async SDK in a worker thread (:func:`airflow_mps.utils.sdk.preload_sdk`), not on the
triggerer's loop.

**Bounded state (issue 12).** The operator passes ``state`` — the ``cos://`` location of the wait
document next to the manifest (:mod:`airflow_mps.batch.state`) — and its ``state_token``, never the
task list: kwargs and the event stay a few hundred bytes at any N (Airflow stores kwargs in a TEXT
column, 64 KiB on MySQL). The trigger reads the document through the (sync) COS hook in a worker
thread, checkpoints it every :data:`CHECKPOINT_SECONDS` while results change, and writes the final
results before its event, which carries only counts and where the results are::

    {"status": "success" | "timeout" | "error", "error": {"code", "message", "request_id"} | None,
     "state": "cos://bucket/<destination><manifest>.wait.gz", "state_token": str,
     "counts": {"total", "succeeded", "failed", "unfinished"},
     "window_start": str, "listing_calls": int, "detail_calls": int}

A triggerer restart (or an HA peer) rebuilds the trigger from its kwargs, reads the last checkpoint
(tasks resolved since are described again; harmless, reads only) — or the final results, when the
previous instance wrote them and died before its event — and keeps the original deadline
(apache/airflow #32580). Throttling and transient errors are logged and retried until the deadline; a
terminal API error (bad credentials) ends the wait with an ``error`` event at once; a state object
that cannot be read or written ends it with an ``error`` event of code ``BatchStateUnavailable``.

Without ``state`` (a trigger built by an earlier version of the provider, or by hand with ``tasks``),
the task list travels in the kwargs and the results in the event, as before::

    {"status", "error", "results": pack([[task_id, input, state, outputs, code, message, request_id]]),
     "carry": <opaque text from the operator, echoed>, "window_start", "listing_calls", "detail_calls"}

Log lines stay readable: the trigger's ``repr`` (which Airflow's ``BaseTrigger`` builds from every
serialized kwarg, the packed ``tasks`` blob included) is one short line — task count, connection and
region, deadline, polling, where the state is — never the blob, the ``state_token`` or the ``carry``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Container, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mps.batch.progress import FAILED, SUCCEEDED, UNFINISHED, BatchWaitState, pack, unpack
from airflow_mps.batch.state import (
    CONTENT_TYPE,
    STATE_ERROR,
    StateObject,
    decode,
    encode,
    wait_doc,
)
from airflow_mps.models.constants import TASK_RETENTION_SECONDS, format_api_time
from airflow_mps.steps import adrive
from airflow_mps.waits.batch import (
    ERROR,
    SUCCESS,
    TIMEOUT,
    DescribeTasks,
    Listed,
    ListFinished,
    Row,
    WaitOutcome,
    WaitStep,
    pages_for,
    wait_for_batch,
)

EVENT_SUCCESS = SUCCESS
EVENT_TIMEOUT = TIMEOUT
EVENT_ERROR = ERROR

#: At most this many DescribeImageTaskDetail calls in flight (the hook paces them anyway).
DESCRIBE_CONCURRENCY = 16

#: While results keep coming, the wait document is rewritten at most this often (a restarted
#: triggerer then re-describes at most this much work).
CHECKPOINT_SECONDS = 60.0

#: An error message in the event is cut to this many characters (the event stays small).
MAX_EVENT_MESSAGE = 1000


class MpsImageBatchTrigger(BaseTrigger):
    """Wait for every MPS image task of a batch to finish, without holding a worker slot.

    :param tasks: without ``state`` only: the batch's ``[[task_id, input_uri], ...]`` packed with
        :func:`airflow_mps.batch.progress.pack` (a plain list is accepted and packed).
    :param tencentcloud_conn_id: Airflow connection of type ``tencentcloud``.
    :param region: MPS region; ``None`` uses the connection's ``region`` extra.
    :param poll_interval: seconds between two polls.
    :param end_time: absolute deadline, epoch seconds; a ``timeout`` event is yielded once it passes.
    :param window_start: ``YYYY-MM-DDThh:mm:ssZ``; the listings ask for tasks created since then (the
        operator sets it a few minutes before the first submission to absorb clock skew).
    :param carry: without ``state`` only: opaque text echoed in the event.
    :param known: without ``state`` only: result rows already resolved before deferring (packed),
        returned in the event with the others.
    :param prior_calls: ``[listing_calls, detail_calls]`` already spent before deferring (reporting).
    :param state: ``cos://bucket/key`` of the wait document (:mod:`airflow_mps.batch.state`): pending
        tasks and known results are read from it, the results written to it.
    :param state_token: the token the wait document must carry (it ties the document to this deferral).
    :param task_count: how many tasks were pending when the operator deferred; for the log line only
        (the wait document is the truth). Without it, counted from ``tasks`` when they are inline.
    """

    def __init__(
        self,
        *,
        tasks: str | list[list[str]] | None = None,
        tencentcloud_conn_id: str = "tencentcloud_default",
        region: str | None = None,
        poll_interval: float = 15.0,
        end_time: float | None = None,
        window_start: str | None = None,
        carry: str | None = None,
        known: str | None = None,
        prior_calls: list[int] | None = None,
        state: str | None = None,
        state_token: str | None = None,
        task_count: int | None = None,
    ) -> None:
        super().__init__()
        if state is None and tasks is None:
            raise ValueError("MpsImageBatchTrigger needs either state (a cos:// location) or tasks")
        self.tasks = tasks if tasks is None or isinstance(tasks, str) else pack([list(t) for t in tasks])
        self.tencentcloud_conn_id = tencentcloud_conn_id
        self.region = region
        self.poll_interval = float(poll_interval)
        self.end_time = float(end_time) if end_time is not None else time.time() + TASK_RETENTION_SECONDS
        self.window_start = window_start
        self.carry = carry
        self.known = known
        self.prior_calls = [int(n) for n in prior_calls] if prior_calls else None
        self.state = state
        self.state_token = state_token
        self.task_count = int(task_count) if task_count is not None else None
        self._tasks_counted: int | None = None  # _inline_count's memo
        self._last_checkpoint = time.monotonic()
        self._checkpointed = -1

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
                "state": self.state,
                "state_token": self.state_token,
                "task_count": self.task_count,
            },
        )

    def __repr__(self) -> str:
        """``<MpsImageBatchTrigger <n> tasks on <conn>/<region> until <UTC deadline>, polling every <s>s,
        state <cos:// location | inline>>``: no packed blob, token or carry in the triggerer's log."""
        count = self.task_count if self.task_count is not None else self._inline_count()
        tasks = f"{count} tasks" if count is not None else "a batch's tasks"
        return (
            f"<{type(self).__name__} {tasks} on {self.tencentcloud_conn_id}/"
            f"{self.region or 'connection region'} until {format_api_time(self.end_time)}, polling every "
            f"{self.poll_interval:g}s, state {self.state or 'inline'}>"
        )

    def _inline_count(self) -> int | None:
        """How many tasks the inline ``tasks`` blob holds (unpacked once, then remembered)."""
        if self.tasks is None:
            return None
        if self._tasks_counted is None:
            try:
                self._tasks_counted = len(unpack(self.tasks))
            except Exception:  # an unreadable blob: the wait reports it, the log line does not
                return None
        return self._tasks_counted

    def _hook(self) -> Any:
        from airflow_mps.hooks.mps import MpsHook  # lazy: keeps the SDK out of DAG parsing

        return MpsHook(tencentcloud_conn_id=self.tencentcloud_conn_id, region=self.region)

    def _event(self, outcome: WaitOutcome, state: BatchWaitState) -> TriggerEvent:
        """The legacy, self-contained event (no ``state``): every result inline."""
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

    def _state_event(
        self, status: str, error: dict[str, Any] | None, rows: list[list[Any]], calls: tuple[int, int]
    ) -> TriggerEvent:
        """The bounded event: counts and where the results are, never the results themselves."""
        counts = {"total": len(rows), SUCCEEDED: 0, FAILED: 0, UNFINISHED: 0}
        for row in rows:
            if row[2] in counts:
                counts[row[2]] += 1
        if error is not None and len(str(error.get("message") or "")) > MAX_EVENT_MESSAGE:
            error = {**error, "message": str(error["message"])[: MAX_EVENT_MESSAGE - 1] + "…"}
        return TriggerEvent(
            {
                "status": status,
                "error": error,
                "state": self.state,
                "state_token": self.state_token,
                "counts": counts,
                "window_start": self.window_start,
                "listing_calls": calls[0],
                "detail_calls": calls[1],
            }
        )

    # ---------------------------------------------------------------- the wait document (COS)

    def _cos(self) -> Any:
        from airflow_mps.hooks.cos import CosHook  # in a worker thread: see _read_doc/_write_doc

        return CosHook(tencentcloud_conn_id=self.tencentcloud_conn_id, region=self.region)

    def _read_doc(self) -> dict[str, Any]:
        """Blocking: fetch and decode the wait document (run in a worker thread)."""
        where = StateObject.parse(str(self.state))
        return decode(self._cos().read_object(where.bucket, where.key), self.state_token, "wait")

    def _write_doc(self, doc: dict[str, Any]) -> None:
        """Blocking: encode and store the wait document (run in a worker thread)."""
        where = StateObject.parse(str(self.state))
        self._cos().write_object(where.bucket, where.key, encode(doc), content_type=CONTENT_TYPE)

    async def _save(self, state: BatchWaitState, *, final: WaitOutcome | None = None) -> None:
        """Checkpoint (or finish) the wait document; the snapshot is taken on the loop, the encoding
        and the PUT happen in a worker thread."""
        if final is None:
            doc = wait_doc(str(self.state_token), state.pending_rows(), state.known_rows())
        else:
            outcome = {"status": final.status, "error": final.error}
            doc = wait_doc(str(self.state_token), [], [], results=state.result_rows(), outcome=outcome)
        await asyncio.to_thread(self._write_doc, doc)
        self._last_checkpoint = time.monotonic()
        self._checkpointed = len(state.results)

    async def _maybe_checkpoint(self, state: BatchWaitState) -> None:
        """Between two polls: rewrite the wait document when results changed and it is due."""
        if self.state is None or len(state.results) == self._checkpointed:
            return
        if time.monotonic() - self._last_checkpoint < CHECKPOINT_SECONDS:
            return
        try:
            await self._save(state)
        except Exception as err:  # a checkpoint only saves work after a restart: log and go on
            self.log.warning(
                "Checkpointing the batch state to %s failed (the wait goes on): %s", self.state, err
            )

    async def _list(self, hook: Any, start: str | None, wanted: Container[str]) -> Listed:
        """The FINISH rows since ``start`` of ``wanted`` tasks (slimmed as they stream by:
        :func:`~airflow_mps.waits.batch.keep_rows`); the pages read come from the hook's counter when
        it has one, else from the rows read."""
        pages_before = getattr(hook, "list_calls", None)
        kept: list[Row] = []
        seen = 0
        async for info in hook.alist_image_tasks("FINISH", start_time=start):
            seen += 1
            if info.task_id in wanted:
                kept.append(Row(info.task_id, getattr(info, "create_time", None)))
        pages_after = getattr(hook, "list_calls", None)
        if isinstance(pages_before, int) and isinstance(pages_after, int):
            return Listed(kept, pages_after - pages_before)
        return Listed(kept, pages_for(seen))

    async def _describe(self, hook: Any, task_ids: Sequence[str], timeout: float) -> dict[str, Any]:
        """Each id described once → status or error; what did not answer within ``timeout`` is left out
        (abandoned), what did stays. :data:`DESCRIBE_CONCURRENCY` workers take the ids in turn, so the
        memory of a round does not grow with the number of finished tasks (a task object per id made
        ~3 KB per image when thousands finished at once)."""
        replies: dict[str, Any] = {}
        todo = iter(task_ids)

        async def worker() -> None:
            for task_id in todo:
                try:
                    replies[task_id] = await hook.adescribe_image_task(task_id)
                except Exception as err:  # the core decides (not found, transient, terminal)
                    replies[task_id] = err

        workers = [worker() for _ in range(min(DESCRIBE_CONCURRENCY, len(task_ids)))]
        with contextlib.suppress(asyncio.TimeoutError):  # abandoned ids are left out of the replies
            await asyncio.wait_for(asyncio.gather(*workers), timeout=timeout)
        return replies

    async def _answer(self, hook: Any, step: WaitStep, state: BatchWaitState) -> Any:
        """One step of the wait core, done with the async hook, bounded by the step's ``until``."""
        if isinstance(step, ListFinished):
            listing = self._list(hook, step.start, state.pending)
            try:
                return await asyncio.wait_for(listing, timeout=step.until - time.time())
            except asyncio.TimeoutError:  # the step's bound (asyncio's own class before Python 3.11)
                raise TimeoutError("abandoned at the round's bound") from None
        if isinstance(step, DescribeTasks):
            return await self._describe(hook, step.task_ids, step.until - time.time())
        started = time.monotonic()
        await self._maybe_checkpoint(state)
        await asyncio.sleep(max(0.0, step.seconds - (time.monotonic() - started)))
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
        """Load the state, drive the wait core to its outcome, store the results; the one event."""
        if self.state is None:
            state = BatchWaitState(unpack(str(self.tasks)), known=unpack(self.known) if self.known else ())
            outcome = await self._drive(hook, state)
            return self._event(outcome, state)
        try:
            doc = await asyncio.to_thread(self._read_doc)
        except Exception as err:  # StateError, or COS failing for good: the upstream retry starts over
            return self._state_failure("reading", err)
        prior = self.prior_calls or [0, 0]
        if doc.get("results") is not None:  # a previous instance finished and died before its event
            done = doc.get("outcome") or {}
            self.log.info("The batch wait already finished (%s); reporting it", self.state)
            return self._state_event(
                done.get("status", SUCCESS), done.get("error"), doc["results"], (prior[0], prior[1])
            )
        state = BatchWaitState(doc.pop("pending", None) or [], known=doc.pop("known", None) or ())
        del doc  # the state holds what the wait needs; the decoded document is not kept for hours
        self._checkpointed = len(state.results)
        outcome = await self._drive(hook, state)
        try:
            await self._save(state, final=outcome)
        except Exception as err:
            return self._state_failure("writing", err)
        return self._state_event(
            outcome.status, outcome.error, state.result_rows(), (state.listing_calls, state.detail_calls)
        )

    def _state_failure(self, doing: str, err: BaseException) -> TriggerEvent:
        """An ``error`` event for a wait document that cannot be read or written (retryable upstream)."""
        self.log.error("%s the batch state %s failed: %s", doing.capitalize(), self.state, err)
        error = {"code": STATE_ERROR, "message": f"{doing} {self.state} failed: {err}", "request_id": None}
        prior = self.prior_calls or [0, 0]
        return self._state_event(ERROR, error, [], (prior[0], prior[1]))

    async def _drive(self, hook: Any, state: BatchWaitState) -> WaitOutcome:
        """Answer the wait core's steps with the async hook until it returns its outcome."""
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
        # Any exception of a step is thrown into the core: transient → next round, terminal → error event.
        return await adrive(steps, lambda step: self._answer(hook, step, state))
