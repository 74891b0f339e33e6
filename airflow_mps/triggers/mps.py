"""Async waits on MPS image tasks, run by Airflow's triggerer instead of a worker slot.

``MpsImageTaskTrigger`` polls ``DescribeImageTaskDetail`` for one task until the task finishes or an
absolute deadline (``end_time``, epoch seconds) passes, then yields exactly one event. Design points:

* The deadline is absolute and carried in ``serialize()``: a triggerer that restarts (or a second HA
  triggerer that picks the same trigger up) rebuilds the trigger and still stops on the ORIGINAL deadline
  — a relative timeout or a poll counter would restart from zero (apache/airflow #32580).
* Everything blocking is avoided on the event loop: the hook's async path fetches the connection and
  talks HTTP without blocking (apache/airflow #53447). The hook module itself is imported inside
  ``run()`` so that parsing a DAG never imports the Tencent Cloud SDK.
* A task that FINISHes with a failure yields a ``failed`` event at once (apache/airflow #34017);
  throttling and transient errors are logged with their code and RequestId and polled through until the
  deadline; a terminal API error (bad credentials, unknown task) yields an ``error`` event at once.
* Polling is read-only, so two triggerers running the same trigger are harmless.

Event payload (JSON-safe)::

    {"status": "success" | "failed" | "error" | "timeout",
     "mps_task_id": str,
     "result": ImageTaskStatus.to_dict() | None,   # last status seen
     "error": {"code", "message", "request_id"} | None,
     "request_id": str | None}                     # the submission's RequestId, echoed for the operator
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mps.errors import MpsError

#: Event statuses a trigger in this module can yield.
EVENT_SUCCESS = "success"
EVENT_FAILED = "failed"
EVENT_ERROR = "error"
EVENT_TIMEOUT = "timeout"

#: Polling never sleeps less than this, whatever ``poll_interval`` says (protects the 100/s limit).
MIN_POLL_INTERVAL = 0.05


def jittered(interval: float, spread: float = 0.1) -> float:
    """``interval`` ± ``spread`` (fraction) so that many waits started together do not poll in lockstep."""
    return max(MIN_POLL_INTERVAL, interval * random.uniform(1.0 - spread, 1.0 + spread))


def error_payload(err: BaseException) -> dict[str, Any]:
    """The ``error`` part of an event for any exception (MPS errors keep their code and RequestId)."""
    if isinstance(err, MpsError):
        return {**err.to_dict(), "retryable": err.retryable}
    return {"code": type(err).__name__, "message": str(err), "request_id": None, "retryable": False}


def status_error(status: Any) -> dict[str, Any]:
    """The ``error`` part of a ``failed`` event, from an ``ImageTaskStatus`` that FINISHed with a failure."""
    return {
        "code": status.error_code or "FailedOperation",
        "message": status.error_message or "the MPS task finished with a failure",
        "request_id": status.request_id,
        "retryable": False,
    }


_SDK_MODULES = ("airflow_mps.hooks.mps", "tencentcloud.mps.v20190612.mps_client_async")
_sdk_loaded = False


def _import_sdk() -> None:
    for name in _SDK_MODULES:
        # A missing SDK is reported by the hook itself, with a clear message, on first use.
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


async def preload_sdk() -> None:
    """Import the hook and the async Tencent Cloud SDK in a worker thread, once per process.

    The import is lazy so that parsing a DAG never pays for it; done on the triggerer's event loop it
    would stall every other trigger for as long as it takes (~0.1 s here, much more on a cold disk).
    """
    global _sdk_loaded
    if not _sdk_loaded:
        await asyncio.to_thread(_import_sdk)
        _sdk_loaded = True


class MpsImageTaskTrigger(BaseTrigger):
    """Wait for one MPS image task to finish, without holding a worker slot.

    :param mps_task_id: the ``TaskId`` returned by ``ProcessImage``.
    :param tencentcloud_conn_id: Airflow connection of type ``tencentcloud``.
    :param region: MPS region; ``None`` uses the connection's ``region`` extra.
    :param poll_interval: seconds between two ``DescribeImageTaskDetail`` calls (±10% jitter).
    :param end_time: absolute deadline, epoch seconds; a ``timeout`` event is yielded once it passes.
    :param request_id: RequestId of the submission, echoed in the event (the operator's XCom needs it
        and ``dag.test()`` does not hand ``defer(kwargs=...)`` back to the resume method).
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
    ) -> None:
        super().__init__()
        self.mps_task_id = mps_task_id
        self.end_time = float(end_time)
        self.tencentcloud_conn_id = tencentcloud_conn_id
        self.region = region
        self.poll_interval = float(poll_interval)
        self.request_id = request_id

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
            },
        )

    def _hook(self) -> Any:
        # Imported here, not at module level: parsing a DAG must not import the Tencent Cloud SDK.
        from airflow_mps.hooks.mps import MpsHook

        # The trigger itself polls through transient errors until its deadline, so one describe call
        # need not retry for long inside the hook (that would overshoot the deadline).
        return MpsHook(
            tencentcloud_conn_id=self.tencentcloud_conn_id,
            region=self.region,
            max_retry_seconds=max(1.0, min(30.0, self.poll_interval)),
        )

    def _event(
        self, status: str, result: Any = None, error: dict[str, Any] | None = None
    ) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "mps_task_id": self.mps_task_id,
                "result": result.to_dict() if result is not None else None,
                "error": error,
                "request_id": self.request_id,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the task finishes, a terminal error occurs or ``end_time`` passes; yield one event."""
        await preload_sdk()
        hook = self._hook()
        try:
            async for event in self._poll(hook):
                yield event
        finally:
            aclose = getattr(hook, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:  # closing is best effort; the event (if any) is already out
                    self.log.debug("Closing the MPS async client failed", exc_info=True)

    async def _poll(self, hook: Any) -> AsyncIterator[TriggerEvent]:
        last: Any = None
        polls = 0
        while True:
            if time.time() >= self.end_time:
                self.log.warning(
                    "MPS task %s not finished by its deadline (%d polls, last state %s)",
                    self.mps_task_id,
                    polls,
                    getattr(last, "state", None),
                )
                yield self._event(
                    EVENT_TIMEOUT,
                    last,
                    {
                        "code": "Timeout",
                        "message": f"MPS task {self.mps_task_id} did not finish before the deadline",
                        "request_id": None,
                        "retryable": True,
                    },
                )
                return
            try:
                polls += 1
                # Bounded by the deadline: a stalled call (the SDK's own request timeout is 60 s, and
                # the hook retries) must not carry the wait past ``end_time``.
                status = await asyncio.wait_for(
                    hook.adescribe_image_task(self.mps_task_id),
                    timeout=max(MIN_POLL_INTERVAL, self.end_time - time.time()),
                )
            except MpsError as err:
                if not err.retryable:
                    self.log.error("MPS task %s: terminal error while polling: %s", self.mps_task_id, err)
                    yield self._event(EVENT_ERROR, last, error_payload(err))
                    return
                self.log.warning(
                    "MPS task %s: transient error while polling, retrying: code=%s RequestId=%s message=%s",
                    self.mps_task_id,
                    err.code,
                    err.request_id,
                    err.message,
                )
            except (OSError, asyncio.TimeoutError) as err:  # TimeoutError: the poll hit the deadline
                self.log.warning("MPS task %s: network error while polling, retrying: %r", self.mps_task_id, err)
            else:
                last = status
                if status.done:
                    if status.succeeded:
                        yield self._event(EVENT_SUCCESS, status)
                    else:
                        self.log.error(
                            "MPS task %s finished with a failure: [%s] %s",
                            self.mps_task_id,
                            status.error_code,
                            status.error_message,
                        )
                        yield self._event(EVENT_FAILED, status, status_error(status))
                    return
            remaining = self.end_time - time.time()
            await asyncio.sleep(max(0.0, min(jittered(self.poll_interval), remaining)))


# The batch trigger lives in its own module; this is its public import path (design §2).
from airflow_mps.triggers.batch import MpsImageBatchTrigger  # noqa: E402, F401
