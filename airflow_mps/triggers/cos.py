"""Async waits for COS objects, run by Airflow's triggerer: ``CosKeyTrigger`` (an object, or a wildcard
match) and ``CosKeysUnchangedTrigger`` (a quiet prefix) — the deferrable halves of
:mod:`airflow_mps.sensors.cos`.

The rules of both waits are :mod:`airflow_mps.waits.cos`'s step machines, shared with the sensors'
pokes; this module performs their I/O on the event loop. Design points:

* **Never block the event loop.** ``CosHook`` is synchronous (cos-python-sdk-v5 is built on
  ``requests``), so each check runs in a worker thread (``asyncio.to_thread``), bounded by the time left
  before the deadline. The hook module and ``qcloud_cos`` are imported in a thread too, once per
  process, and the connection is resolved with Airflow's async connection API before the first check
  (apache/airflow #53447).
* **One hook per connection and region** for all the COS triggers of a loop (refcounted, dropped with
  the last trigger so a later one resolves the connection afresh): the SDK keeps one client per thread
  and hook, and a thousand triggers each with their own hook would keep a thousand times the clients.
* **An absolute deadline** (``end_time``, epoch seconds) is serialised, so a restarted triggerer stops
  on the original one (apache/airflow #32580). **Exactly one event.** **Small state**: the kwargs are a
  URI, a few numbers and, for the quiet prefix, the :class:`~airflow_mps.waits.cos.QuietMemory` the
  sensor had when it deferred (a fingerprint, a count and a time — never the listing).
* **Honest across a restart.** A rebuilt ``CosKeysUnchangedTrigger`` starts from the memory in its
  kwargs: if the prefix still lists exactly as it did then, the quiet period still counts from then;
  if it changed meanwhile, the period restarts at the first look after the restart — a restart can
  lengthen the wait, never shorten it.

Event payload (:meth:`~airflow_mps.waits.cos.CosWaitOutcome.payload`)::

    {"status": "success" | "error" | "timeout", "uri": str, "matched": str | None,
     "objects": int | None, "error": {"code", "message", "request_id", "retryable"} | None}
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mps.errors import MpsError
from airflow_mps.preload import preload_modules
from airflow_mps.steps import adrive
from airflow_mps.utils.events import EVENT_ERROR, error_payload
from airflow_mps.waits.cos import (
    CosArgumentError,
    CosStep,
    CosWaitOutcome,
    QuietMemory,
    Remember,
    Sleep,
    parse_key_target,
    parse_prefix_target,
    perform_check,
    wait_for_key,
    wait_for_quiet,
)

if TYPE_CHECKING:
    from airflow_mps.hooks.cos import CosHook

__all__ = ["CosKeyTrigger", "CosKeysUnchangedTrigger", "active_cos_hooks"]

#: Bound on the time one COS call spends in the hook's own retries: the trigger polls through transient
#: errors until its deadline anyway, and every call is also cut off at the deadline.
HOOK_RETRY_SECONDS = 10.0


async def _preload() -> None:
    """Import the COS hook and the COS SDK in a worker thread (afterwards: a lookup)."""
    # A missing qcloud_cos is reported by the hook on first use.
    await preload_modules(("airflow_mps.hooks.cos",), optional=("qcloud_cos",))


# --------------------------------------------------------------------------------------------------
# one CosHook per (event loop, connection, region), shared by that loop's COS triggers
# --------------------------------------------------------------------------------------------------
@dataclass
class _SharedHook:
    hook: CosHook
    users: int = 0


_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str | None], _SharedHook]] = (
    weakref.WeakKeyDictionary()
)


def _acquire(conn_id: str, region: str | None) -> _SharedHook:
    from airflow_mps.hooks.cos import CosHook  # preloaded in a thread: a dictionary lookup here

    hooks = _shared.setdefault(asyncio.get_running_loop(), {})
    entry = hooks.get((conn_id, region))
    if entry is None:
        hook = CosHook(tencentcloud_conn_id=conn_id, region=region, max_retry_seconds=HOOK_RETRY_SECONDS)
        entry = hooks[(conn_id, region)] = _SharedHook(hook)
    entry.users += 1
    return entry


def _release(conn_id: str, region: str | None, entry: _SharedHook) -> None:
    entry.users -= 1
    hooks = _shared.get(asyncio.get_running_loop(), {})
    if entry.users <= 0 and hooks.get((conn_id, region)) is entry:
        del hooks[(conn_id, region)]


def active_cos_hooks() -> int:
    """How many shared COS hooks the running loop holds (tests)."""
    return len(_shared.get(asyncio.get_running_loop(), {}))


# --------------------------------------------------------------------------------------------------
# the triggers
# --------------------------------------------------------------------------------------------------
class _CosTrigger(BaseTrigger):
    """What both COS triggers share: connection, region, poll interval, deadline, and the driver."""

    def __init__(
        self,
        *,
        end_time: float,
        tencentcloud_conn_id: str = "tencentcloud_default",
        region: str | None = None,
        poll_interval: float = 60.0,
    ) -> None:
        super().__init__()
        self.end_time = float(end_time)
        self.tencentcloud_conn_id = tencentcloud_conn_id
        self.region = region
        self.poll_interval = float(poll_interval)

    def _common_kwargs(self) -> dict[str, Any]:
        return {
            "end_time": self.end_time,
            "tencentcloud_conn_id": self.tencentcloud_conn_id,
            "region": self.region,
            "poll_interval": self.poll_interval,
        }

    def _steps(self) -> Generator[CosStep, Any, CosWaitOutcome]:
        raise NotImplementedError

    def _what(self) -> str:
        raise NotImplementedError

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Drive the wait until it ends; yield its one event."""
        try:
            steps = self._steps()
        except CosArgumentError as err:  # the sensor validated already; a hand-made trigger may not have
            yield TriggerEvent(CosWaitOutcome(EVENT_ERROR, self._what(), error=error_payload(err)).payload())
            return
        await _preload()
        entry = _acquire(self.tencentcloud_conn_id, self.region)
        try:
            try:
                # Airflow's async connection API, on the loop; the checks then reuse these settings.
                await entry.hook.aget_settings()
            except Exception as err:  # e.g. the connection does not exist: say so in the event
                outcome = CosWaitOutcome(EVENT_ERROR, self._what(), error=error_payload(err))
            else:
                outcome = await adrive(steps, lambda step: self._perform(step, entry.hook))
            yield TriggerEvent(outcome.payload())
        finally:
            _release(self.tencentcloud_conn_id, self.region, entry)

    async def _perform(self, step: CosStep, hook: CosHook) -> Any:
        """One step, on the event loop: a check in a worker thread, or a sleep."""
        if isinstance(step, Sleep):
            return await asyncio.sleep(step.seconds)
        if isinstance(step, Remember):
            return None  # the machine holds its memory itself while the trigger runs
        try:
            return await asyncio.wait_for(asyncio.to_thread(perform_check, hook, step), timeout=step.timeout)
        except asyncio.TimeoutError:  # cut off at the deadline (the thread finishes on its own)
            return TimeoutError(f"the COS call did not answer within the {step.timeout:.1f}s left")
        except (MpsError, OSError) as err:  # judged by the wait: terminal or "try again"
            return err


class CosKeyTrigger(_CosTrigger):
    """Wait until a COS object exists (or, with a wildcard, until a key matches), on the triggerer.

    :param bucket_key: ``cos://<bucket>-<appid>/<key>`` (as rendered by the sensor).
    :param wildcard_match: treat ``*``, ``?`` and ``[...]`` in the key as a pattern (fnmatch).
    :param end_time: absolute deadline, epoch seconds; a ``timeout`` event is yielded once it passes.
    :param tencentcloud_conn_id: Airflow connection of type ``tencentcloud``.
    :param region: the bucket's region; ``None`` uses the connection's ``region`` extra.
    :param poll_interval: seconds between two checks (±10% jitter).
    """

    def __init__(
        self,
        *,
        bucket_key: str,
        end_time: float,
        wildcard_match: bool = False,
        tencentcloud_conn_id: str = "tencentcloud_default",
        region: str | None = None,
        poll_interval: float = 60.0,
    ) -> None:
        super().__init__(
            end_time=end_time,
            tencentcloud_conn_id=tencentcloud_conn_id,
            region=region,
            poll_interval=poll_interval,
        )
        self.bucket_key = bucket_key
        self.wildcard_match = bool(wildcard_match)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"bucket_key": self.bucket_key, "wildcard_match": self.wildcard_match, **self._common_kwargs()},
        )

    def _what(self) -> str:
        return str(self.bucket_key)

    def _steps(self) -> Generator[CosStep, Any, CosWaitOutcome]:
        target = parse_key_target(self.bucket_key, wildcard=self.wildcard_match)
        return wait_for_key(target, end_time=self.end_time, poll_interval=self.poll_interval, log=self.log)


class CosKeysUnchangedTrigger(_CosTrigger):
    """Wait until a COS prefix has listed the same for ``inactivity_period`` seconds, on the triggerer.

    :param prefix: ``cos://<bucket>-<appid>/<prefix>``.
    :param inactivity_period: seconds the listing must stay unchanged.
    :param min_objects: the listing must hold at least this many objects.
    :param memory: the sensor's last look (``QuietMemory.to_dict()``), or ``None``.
    :param end_time: absolute deadline, epoch seconds.
    :param tencentcloud_conn_id: Airflow connection of type ``tencentcloud``.
    :param region: the bucket's region; ``None`` uses the connection's ``region`` extra.
    :param poll_interval: seconds between two listings (±10% jitter; sooner when the period may end).
    """

    def __init__(
        self,
        *,
        prefix: str,
        inactivity_period: float,
        end_time: float,
        min_objects: int = 1,
        memory: dict[str, Any] | None = None,
        tencentcloud_conn_id: str = "tencentcloud_default",
        region: str | None = None,
        poll_interval: float = 60.0,
    ) -> None:
        super().__init__(
            end_time=end_time,
            tencentcloud_conn_id=tencentcloud_conn_id,
            region=region,
            poll_interval=poll_interval,
        )
        self.prefix = prefix
        self.inactivity_period = float(inactivity_period)
        self.min_objects = int(min_objects)
        self.memory = dict(memory) if memory else None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "prefix": self.prefix,
                "inactivity_period": self.inactivity_period,
                "min_objects": self.min_objects,
                "memory": self.memory,
                **self._common_kwargs(),
            },
        )

    def _what(self) -> str:
        return str(self.prefix)

    def _steps(self) -> Generator[CosStep, Any, CosWaitOutcome]:
        return wait_for_quiet(
            parse_prefix_target(self.prefix),
            inactivity_period=self.inactivity_period,
            min_objects=self.min_objects,
            end_time=self.end_time,
            poll_interval=self.poll_interval,
            log=self.log,
            memory=QuietMemory.from_dict(self.memory) if self.memory else None,
        )
