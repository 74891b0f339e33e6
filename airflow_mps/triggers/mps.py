"""Async wait on one MPS image task, run by Airflow's triggerer instead of a worker slot.

``MpsImageTaskTrigger`` polls ``DescribeImageTaskDetail`` for one task until the task finishes or an
absolute deadline (``end_time``, epoch seconds) passes, then yields exactly one event. The rules of the
wait (FINISH vs success, terminal vs transient errors, the deadline, shared-polling safety checks) are
those of :func:`airflow_mps.waits.task.wait_for_task`, which the operator's in-worker wait and the
sensor's poke share; this module only performs its I/O on the event loop. Design points:

* The deadline is absolute and carried in ``serialize()``: a triggerer that restarts (or a second HA
  triggerer that picks the same trigger up) rebuilds the trigger and still stops on the ORIGINAL deadline
  — a relative timeout or a poll counter would restart from zero (apache/airflow #32580). Each poll is
  bounded by the time left, so a stalled call never carries the wait past it.
* Everything blocking is avoided on the event loop: the hook and the async SDK are imported in a worker
  thread (:func:`airflow_mps.utils.sdk.preload_sdk`), and the hook's async path fetches the connection
  and talks HTTP without blocking (apache/airflow #53447).
* Polling is read-only, so two triggerers running the same trigger are harmless.
* Shared polling (``share_polling=True``, the default, for a trigger that knows ``created_after``): the
  trigger registers with its loop's :class:`~airflow_mps.triggers._poller.SharedTaskPoller`, which
  lists finished tasks once per round for every trigger and wakes the ones whose task it saw.

The event payload is :func:`airflow_mps.utils.events.task_event`'s (``status``, ``mps_task_id``,
``result``, ``error``, ``request_id``), compacted: no signed URL unless asked for, no inline output
content. Log lines stay readable: the trigger's ``repr`` (which Airflow's ``BaseTrigger`` builds from
every serialized kwarg) is a short summary, and errors are logged by code and RequestId, long
reprs cut (:func:`airflow_mps.utils.events.brief`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mps.errors import MpsError
from airflow_mps.models.constants import API_TIME_FORMAT
from airflow_mps.steps import adrive
from airflow_mps.triggers._poller import Registration, SharedTaskPoller, shared_poller
from airflow_mps.utils.sdk import preload_sdk
from airflow_mps.waits.task import (
    WAKE_FALLBACK,
    WAKE_FOUND,
    Describe,
    Listen,
    Rearm,
    Sleep,
    TaskStep,
    wait_for_task,
)

if TYPE_CHECKING:
    from airflow_mps.hooks.mps import MpsHook

__all__ = ["MpsImageTaskTrigger"]


class MpsImageTaskTrigger(BaseTrigger):
    """Wait for one MPS image task to finish, without holding a worker slot.

    :param mps_task_id: the ``TaskId`` returned by ``ProcessImage``.
    :param tencentcloud_conn_id: Airflow connection of type ``tencentcloud``.
    :param region: MPS region; ``None`` uses the connection's ``region`` extra.
    :param poll_interval: seconds between two ``DescribeImageTaskDetail`` calls (±10% jitter).
    :param end_time: absolute deadline, epoch seconds; a ``timeout`` event is yielded once it passes.
    :param request_id: RequestId of the submission, echoed in the event (the operator's XCom needs it
        and ``dag.test()`` does not hand ``defer(kwargs=...)`` back to the resume method).
    :param created_after: epoch seconds no later than the task's creation (the operator's submission
        time, the sensor's first CreateTime); enables shared polling. ``None`` → per-task polling.
    :param share_polling: wait through the loop's shared poller (one listing per round for all
        triggers) when ``created_after`` is known; ``False`` polls this task's detail every round.
    :param include_signed_urls: keep the outputs' signed URLs in the event (stored in the metadata DB
        and logged by the triggerer); off by default: they are bearer links (issue 12 item 4).
    """

    def __init__(
        self,
        *,
        mps_task_id: str,
        end_time: float,
        tencentcloud_conn_id: str = "tencentcloud_default",
        region: str | None = None,
        poll_interval: float = 10.0,
        request_id: str | None = None,
        created_after: float | None = None,
        share_polling: bool = True,
        include_signed_urls: bool = False,
    ) -> None:
        super().__init__()
        self.mps_task_id = mps_task_id
        self.end_time = float(end_time)
        self.tencentcloud_conn_id = tencentcloud_conn_id
        self.region = region
        self.poll_interval = float(poll_interval)
        self.request_id = request_id
        self.created_after = None if created_after is None else float(created_after)
        self.share_polling = bool(share_polling)
        self.include_signed_urls = bool(include_signed_urls)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Everything needed to rebuild this trigger, including the absolute deadline."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "mps_task_id": self.mps_task_id,
                "end_time": self.end_time,
                "tencentcloud_conn_id": self.tencentcloud_conn_id,
                "region": self.region,
                "poll_interval": self.poll_interval,
                "request_id": self.request_id,
                "created_after": self.created_after,
                "share_polling": self.share_polling,
                "include_signed_urls": self.include_signed_urls,
            },
        )

    def __repr__(self) -> str:
        """``<MpsImageTaskTrigger <task id> on <conn>/<region> until <UTC deadline>, <polling>>``."""
        deadline = time.strftime(API_TIME_FORMAT, time.gmtime(self.end_time))
        polling = "shared" if self.share_polling and self.created_after is not None else "own"
        return (
            f"<{type(self).__name__} {self.mps_task_id} on {self.tencentcloud_conn_id}/"
            f"{self.region or 'connection region'} until {deadline}, {polling} polling every "
            f"{self.poll_interval:g}s>"
        )

    def _hook(self) -> MpsHook:
        # Imported here, not at module level: parsing a DAG must not import the Tencent Cloud SDK.
        from airflow_mps.hooks.mps import MpsHook

        # The trigger itself polls through transient errors until its deadline, so one describe call
        # need not retry for long inside the hook (that would overshoot the deadline).
        return MpsHook(
            tencentcloud_conn_id=self.tencentcloud_conn_id,
            region=self.region,
            max_retry_seconds=max(1.0, min(30.0, self.poll_interval)),
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the task finishes, a terminal error occurs or ``end_time`` passes; yield one event."""
        await preload_sdk()
        hook = self._hook()
        poller: SharedTaskPoller | None = None
        reg: Registration | None = None
        if self.share_polling and self.created_after is not None:
            poller = shared_poller(self.tencentcloud_conn_id, self.region)
            reg = poller.register(self.mps_task_id, self.created_after, self.poll_interval)
        try:
            steps = wait_for_task(
                self.mps_task_id,
                end_time=self.end_time,
                poll_interval=self.poll_interval,
                log=self.log,
                shared=reg is not None,
                report_progress=False,  # a triggerer holds thousands of waits: log decisions only
            )
            outcome = await adrive(steps, lambda step: self._perform(step, hook, reg))
            yield TriggerEvent(outcome.payload(self.request_id, include_signed_urls=self.include_signed_urls))
        finally:
            if poller is not None and reg is not None:
                poller.unregister(reg)
            await self._close(hook)

    async def _perform(self, step: TaskStep, hook: MpsHook, reg: Registration | None) -> Any:
        """One step of the wait, on the event loop (the reply the step machine expects)."""
        if isinstance(step, Describe):
            try:
                return await asyncio.wait_for(hook.adescribe_image_task(step.task_id), timeout=step.timeout)
            except (MpsError, OSError, asyncio.TimeoutError) as err:  # TimeoutError: cut off at the deadline
                return err
        if isinstance(step, Sleep):
            return await asyncio.sleep(step.seconds)
        if reg is None:  # Listen and Rearm come only with shared=True
            raise TypeError(f"{step!r} needs a shared-poller registration")
        if isinstance(step, Rearm):
            if not reg.fallback:
                reg.found.clear()
            return not reg.fallback
        if isinstance(step, Listen) and not (reg.fallback or reg.found.is_set()):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(reg.found.wait(), timeout=max(0.0, step.seconds))
        return WAKE_FALLBACK if reg.fallback else WAKE_FOUND if reg.found.is_set() else None

    async def _close(self, hook: MpsHook) -> None:
        aclose = getattr(hook, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:  # closing is best effort; the event (if any) is already out
                self.log.debug("Closing the MPS async client failed", exc_info=True)
