"""Shared polling: one ``DescribeImageTasks`` listing per round for every single-task trigger of a loop.

The triggers of one event loop, connection and region (with ``share_polling=True`` and a known
``created_after``) register with ONE :class:`SharedTaskPoller`, which lists
``DescribeImageTasks(Status=FINISH, StartTime=min(created_after) - skew)`` once per round and wakes
exactly the triggers whose task it saw; each woken trigger then makes one ``DescribeImageTaskDetail``
for its outputs/error (FINISH is not success — :mod:`airflow_mps.waits.task` decides). 1,000 waits cost
one listing call per round instead of 1,000 detail calls.

Safety nets: a trigger without ``created_after`` polls its own detail; every trigger also checks its own
detail at least every :func:`airflow_mps.waits.task.safety_interval` (the listing may miss a task: 7-day
window, eventual consistency); a listing that fails terminally (e.g. ``UnauthorizedOperation`` — a CAM
policy may allow the detail but not the list) switches the poller's triggers to per-task polling,
logged once.

Pollers live in a registry keyed by event loop (weakly, like the hook's shared clients), connection id
and region: :func:`shared_poller` finds or creates one, :func:`active_pollers` counts them (tests,
benchmarks). A poller ends with its last registration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import AsyncGenerator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, cast

from airflow_mps.errors import MpsError
from airflow_mps.models.constants import TASK_RETENTION_SECONDS
from airflow_mps.utils.events import MIN_POLL_INTERVAL, brief, jittered

if TYPE_CHECKING:
    from airflow_mps.hooks.mps import MpsHook
    from airflow_mps.models import ImageTaskInfo

__all__ = [
    "LISTING_PAGE_SIZE",
    "LISTING_SKEW_SECONDS",
    "LISTING_WINDOW_SECONDS",
    "Registration",
    "SharedTaskPoller",
    "active_pollers",
    "shared_poller",
]

#: The listing's ``StartTime`` is this much before the earliest ``created_after``: the client's clock
#: (submission time) and MPS's (CreateTime) may disagree, and StartTime has whole-second resolution.
LISTING_SKEW_SECONDS = 300.0
#: ``DescribeImageTasks`` only reaches this far back (MPS's 7-day retention); older StartTimes are clamped.
LISTING_WINDOW_SECONDS = float(TASK_RETENTION_SECONDS)
#: Page size of the listing (the API's maximum).
LISTING_PAGE_SIZE = 100

_poller_log = logging.getLogger(__name__ + ".SharedTaskPoller")


class Registration:
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
        self.registrations: dict[str, list[Registration]] = {}
        self.listing_disabled = False
        self.rounds = 0
        self.over_budget_rounds = 0
        self._task: asyncio.Task[None] | None = None

    # -- registration -----------------------------------------------------------------------------
    def register(self, task_id: str, created_after: float, poll_interval: float) -> Registration:
        """Add one trigger; starts the poller task if it is not running. Never awaits."""
        reg = Registration(task_id, created_after, max(MIN_POLL_INTERVAL, poll_interval))
        if self.listing_disabled:
            reg.fallback = True
            reg.found.set()
        self.registrations.setdefault(task_id, []).append(reg)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"mps-shared-poller-{id(self)}"
            )
        return reg

    def unregister(self, reg: Registration) -> None:
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

    def _all(self) -> list[Registration]:
        return [reg for regs in self.registrations.values() for reg in regs]

    # -- the rounds ---------------------------------------------------------------------------------
    def _hook(self) -> MpsHook:
        from airflow_mps.hooks.mps import MpsHook  # not at module level: DAG parsing never loads the SDK

        return MpsHook(
            tencentcloud_conn_id=self.tencentcloud_conn_id, region=self.region, max_retry_seconds=5.0
        )

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

    async def _round(self, hook: MpsHook) -> None:
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
            # An async generator (typed AsyncIterator by the hook): closed as soon as we stop paging.
            rows = cast(
                "AsyncGenerator[ImageTaskInfo, None]",
                hook.alist_image_tasks(
                    "FINISH",
                    start_time=datetime.fromtimestamp(int(start), tz=timezone.utc),
                    page_size=LISTING_PAGE_SIZE,
                ),
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
            _poller_log.warning(
                "Listing finished MPS tasks failed (network), next round retries: %s", brief(err)
            )
        except Exception as err:  # e.g. an SDK without DescribeImageTasks: per-task polling still works
            self._fall_back(brief(err))

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
_POLLERS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str | None], SharedTaskPoller]
] = weakref.WeakKeyDictionary()
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
