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
* Shared polling (``share_polling=True``, the default, for a trigger that knows ``created_after``): the
  triggers of one event loop, connection and region register with ONE :class:`SharedTaskPoller`, which
  lists ``DescribeImageTasks(Status=FINISH, StartTime=min(created_after) - skew)`` once per round and
  wakes exactly the triggers whose task it saw; each woken trigger then makes one
  ``DescribeImageTaskDetail`` for its outputs/error (FINISH is not success). 1,000 waits cost one listing
  call per round instead of 1,000 detail calls. Safety nets: a trigger without ``created_after`` polls
  its own detail; every trigger also checks its own detail at least every
  ``max(SAFETY_ROUNDS × poll_interval, SAFETY_SECONDS)`` (the listing may miss a task: 7-day window,
  eventual consistency); a listing that fails terminally (e.g. ``UnauthorizedOperation`` — a CAM policy
  may allow the detail but not the list) switches the poller's triggers to per-task polling, logged once.

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
import logging
import random
import threading
import time
import weakref
from collections.abc import AsyncIterator
from datetime import datetime, timezone
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


def parse_api_time(value: str | None) -> float | None:
    """Epoch seconds of an API time string (``YYYY-MM-DDThh:mm:ssZ``); ``None`` when unset or unparsable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


# ------------------------------------------------------------------------------------------------
# shared polling: one DescribeImageTasks listing per round for every trigger of a loop
# ------------------------------------------------------------------------------------------------
#: The listing's ``StartTime`` is this much before the earliest ``created_after``: the client's clock
#: (submission time) and MPS's (CreateTime) may disagree, and StartTime has whole-second resolution.
LISTING_SKEW_SECONDS = 300.0
#: ``DescribeImageTasks`` only reaches this far back (7 days); older StartTimes are clamped.
LISTING_WINDOW_SECONDS = 7 * 24 * 3600.0
#: Page size of the listing (the API's maximum).
LISTING_PAGE_SIZE = 100
#: Every shared-polling trigger still checks its own detail at least every
#: ``max(SAFETY_ROUNDS * poll_interval, SAFETY_SECONDS)`` seconds, in case the listing misses its task.
SAFETY_ROUNDS = 10
SAFETY_SECONDS = 300.0

_poller_log = logging.getLogger(__name__ + ".SharedTaskPoller")


class _Registration:
    """One trigger's place in a :class:`SharedTaskPoller`: what to look for and how to wake it."""

    __slots__ = ("created_after", "fallback", "found", "poll_interval", "task_id")

    def __init__(self, task_id: str, created_after: float, poll_interval: float) -> None:
        self.task_id = task_id
        self.created_after = created_after
        self.poll_interval = poll_interval
        #: Set by the poller when the listing shows the task FINISHed (or when it falls back).
        self.found = asyncio.Event()
        #: True once the poller cannot list: the trigger polls its own detail from then on.
        self.fallback = False


class SharedTaskPoller:
    """One per (event loop, connection id, region): lists finished tasks once per round for all the
    registered triggers and wakes the ones whose task it saw.

    Round interval = the smallest registered ``poll_interval`` (±10% jitter). The poller task starts
    with its first registration and ends (closing its hook) when its last registration leaves; a later
    registration starts a new one. Errors: a transient listing error is logged and the next round tries
    again (each trigger's own deadline and safety detail still hold); a terminal one switches every
    current and later registration of this poller to per-task polling, logged once.
    """

    def __init__(self, key: tuple[Any, ...], tencentcloud_conn_id: str, region: str | None) -> None:
        self.key = key
        self.tencentcloud_conn_id = tencentcloud_conn_id
        self.region = region
        self.registrations: dict[str, list[_Registration]] = {}
        self.listing_disabled = False
        self.rounds = 0
        self.over_budget_rounds = 0
        self._task: asyncio.Task[None] | None = None

    # -- registration -----------------------------------------------------------------------------
    def register(self, task_id: str, created_after: float, poll_interval: float) -> _Registration:
        """Add one trigger; starts the poller task if it is not running. Never awaits."""
        reg = _Registration(task_id, created_after, max(MIN_POLL_INTERVAL, poll_interval))
        if self.listing_disabled:
            reg.fallback = True
            reg.found.set()
        self.registrations.setdefault(task_id, []).append(reg)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"mps-shared-poller-{id(self)}")
        return reg

    def unregister(self, reg: _Registration) -> None:
        """Remove one trigger; the last one out ends the poller and removes it from the registry."""
        regs = self.registrations.get(reg.task_id)
        if regs is not None:
            with contextlib.suppress(ValueError):
                regs.remove(reg)
            if not regs:
                del self.registrations[reg.task_id]
        if not self.registrations:
            _forget_poller(self)
            if self._task is not None and not self._task.done():
                self._task.cancel()

    def __len__(self) -> int:
        return sum(len(regs) for regs in self.registrations.values())

    def _all(self) -> list[_Registration]:
        return [reg for regs in self.registrations.values() for reg in regs]

    # -- the rounds ---------------------------------------------------------------------------------
    def _hook(self) -> Any:
        from airflow_mps.hooks.mps import MpsHook

        return MpsHook(tencentcloud_conn_id=self.tencentcloud_conn_id, region=self.region, max_retry_seconds=5.0)

    async def _run(self) -> None:
        hook = self._hook()
        try:
            while self.registrations and not self.listing_disabled:
                await self._round(hook)
                self.rounds += 1
                if not self.registrations or self.listing_disabled:
                    break
                interval = min(reg.poll_interval for reg in self._all())
                await asyncio.sleep(jittered(interval))
        finally:
            aclose = getattr(hook, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    _poller_log.debug("Closing the shared poller's MPS client failed", exc_info=True)

    async def _round(self, hook: Any) -> None:
        from airflow_mps.errors import MpsError

        now = time.time()
        start = min(reg.created_after for reg in self._all()) - LISTING_SKEW_SECONDS
        start = max(start, now - LISTING_WINDOW_SECONDS + 60.0)
        wanted = set(self.registrations)
        # Page budget: listing must never cost more than polling each task would. Many OTHER tasks
        # finished in the window (a large batch) can make the listing long; past the budget the
        # unseen triggers make their own detail call this round instead (bounded: ceil(R/2) pages plus
        # one detail per unseen trigger, against R detail calls for per-task polling).
        budget_rows = max(1, -(-len(wanted) // 2)) * LISTING_PAGE_SIZE
        seen = 0
        try:
            rows = hook.alist_image_tasks(
                "FINISH",
                start_time=datetime.fromtimestamp(int(start), tz=timezone.utc),
                page_size=LISTING_PAGE_SIZE,
            )
            async with contextlib.aclosing(rows):
                async for info in rows:
                    seen += 1
                    if info.task_id in wanted:
                        wanted.discard(info.task_id)
                        for reg in self.registrations.get(info.task_id, ()):
                            reg.found.set()
                    if not wanted:
                        break  # every registered task seen: no need for the remaining pages
                    if seen >= budget_rows:
                        self._over_budget(wanted, seen)
                        break
        except MpsError as err:
            if err.retryable:
                _poller_log.warning(
                    "Listing finished MPS tasks failed transiently, next round retries: code=%s RequestId=%s %s",
                    err.code,
                    err.request_id,
                    err.message,
                )
                return
            self._fall_back(f"code={err.code} RequestId={err.request_id} {err.message}")
        except (OSError, asyncio.TimeoutError) as err:
            _poller_log.warning("Listing finished MPS tasks failed (network), next round retries: %r", err)
        except Exception as err:  # e.g. an SDK without DescribeImageTasks: per-task polling still works
            self._fall_back(repr(err))

    def _over_budget(self, unseen: set[str], rows: int) -> None:
        if not self.over_budget_rounds:
            _poller_log.info(
                "Listing finished MPS tasks needs more than %d rows this round (other tasks finished in the "
                "window); %d trigger(s) check their own detail instead",
                rows,
                len(unseen),
            )
        self.over_budget_rounds += 1
        for task_id in unseen:
            for reg in self.registrations.get(task_id, ()):
                reg.found.set()

    def _fall_back(self, why: str) -> None:
        self.listing_disabled = True
        _poller_log.error(
            "Cannot list finished MPS tasks (%s); %d trigger(s) on connection %r fall back to polling "
            "DescribeImageTaskDetail each (grant DescribeImageTasks to share one listing)",
            why,
            len(self),
            self.tencentcloud_conn_id,
        )
        for reg in self._all():
            reg.fallback = True
            reg.found.set()


#: event loop -> (connection id, region) -> poller. Weak on the loop, like the hook's shared clients.
_POLLERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str | None], SharedTaskPoller]] = (
    weakref.WeakKeyDictionary()
)
_POLLERS_LOCK = threading.Lock()


def shared_poller(tencentcloud_conn_id: str, region: str | None) -> SharedTaskPoller:
    """The running loop's poller for this connection and region (created on first use)."""
    loop = asyncio.get_running_loop()
    with _POLLERS_LOCK:
        pollers = _POLLERS.setdefault(loop, {})
        poller = pollers.get((tencentcloud_conn_id, region))
        if poller is None:
            poller = SharedTaskPoller((loop, tencentcloud_conn_id, region), tencentcloud_conn_id, region)
            pollers[(tencentcloud_conn_id, region)] = poller
        return poller


def _forget_poller(poller: SharedTaskPoller) -> None:
    loop, conn_id, region = poller.key
    with _POLLERS_LOCK:
        pollers = _POLLERS.get(loop)
        if pollers is not None and pollers.get((conn_id, region)) is poller:
            del pollers[(conn_id, region)]
            if not pollers:
                _POLLERS.pop(loop, None)


def active_pollers(loop: asyncio.AbstractEventLoop | None = None) -> int:
    """How many shared pollers exist (on ``loop``, or on every live loop): for tests and benchmarks."""
    with _POLLERS_LOCK:
        if loop is not None:
            return len(_POLLERS.get(loop) or {})
        return sum(len(p) for p in _POLLERS.values())


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
    :param share_polling: wait through the loop's :class:`SharedTaskPoller` (one listing per round for
        all triggers) when ``created_after`` is known; ``False`` polls this task's detail every round.
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
        reg: _Registration | None = None
        poller: SharedTaskPoller | None = None
        if self.share_polling and self.created_after is not None:
            poller = shared_poller(self.tencentcloud_conn_id, self.region)
            reg = poller.register(self.mps_task_id, self.created_after, self.poll_interval)
        try:
            async for event in self._poll(hook, reg):
                yield event
        finally:
            if poller is not None and reg is not None:
                poller.unregister(reg)
            aclose = getattr(hook, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:  # closing is best effort; the event (if any) is already out
                    self.log.debug("Closing the MPS async client failed", exc_info=True)

    def _safety_interval(self) -> float:
        return max(SAFETY_ROUNDS * self.poll_interval, SAFETY_SECONDS)

    async def _poll(self, hook: Any, reg: _Registration | None = None) -> AsyncIterator[TriggerEvent]:
        """Own polling (``reg is None`` or after a fallback): a detail call every ``poll_interval``.
        Shared polling: a detail call only when the poller saw the task FINISH, after an error (retry
        every ``poll_interval``), or when the safety interval has passed since the last one."""
        last: Any = None
        polls = 0
        # The first safety check is spread over half to one and a half intervals so that triggers
        # started together (a triggerer restart) do not all check at once.
        next_own = time.time() + self._safety_interval() * random.uniform(0.5, 1.5)
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
            if reg is not None and not reg.fallback and not reg.found.is_set() and time.time() < next_own:
                # Shared polling: wait for the poller's word, the safety check or the deadline.
                wait = min(next_own, self.end_time) - time.time()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(reg.found.wait(), timeout=max(0.0, wait))
                continue
            ok = False
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
                ok = True
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
            if reg is not None and not reg.fallback and ok:
                # Not finished after all (the listing may run ahead of the detail): back to waiting.
                reg.found.clear()
                next_own = time.time() + jittered(self._safety_interval())
                continue
            remaining = self.end_time - time.time()
            await asyncio.sleep(max(0.0, min(jittered(self.poll_interval), remaining)))


# The batch trigger lives in its own module; this is its public import path (design §2).
from airflow_mps.triggers.batch import MpsImageBatchTrigger  # noqa: E402, F401
