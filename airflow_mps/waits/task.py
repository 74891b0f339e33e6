"""Waiting for one MPS image task, written once: the rules of the operator's in-worker wait, the
sensor's poke and the trigger's async wait (issue 10 item 5).

:func:`wait_for_task` is a step machine (see :mod:`airflow_mps.waits`): it yields

* :class:`Describe` — call ``DescribeImageTaskDetail``; reply: the ``ImageTaskStatus``, or the exception
  the call raised (an ``MpsError``; an async driver also a network error or a call cut off at the
  deadline: ``Describe.timeout`` is the time left);
* :class:`Sleep` — wait ``seconds`` before the next poll; reply: nothing;
* :class:`Listen` and :class:`Rearm` — only with ``shared=True`` (a trigger registered with the
  triggerer's shared poller, see :mod:`airflow_mps.triggers._poller`): wait for the poller's word,
  and forget a word the detail did not confirm;

and returns a :class:`TaskWaitOutcome`. The decisions, all here:

* FINISH is not success: a task that FINISHed with a failure ends the wait as ``failed`` at once
  (apache/airflow #34017), with the MPS code and message (:func:`~airflow_mps.utils.events.status_error`);
* a non-retryable ``MpsError`` (bad credentials, a task id MPS does not know — unknown or older than
  its 7-day retention) ends the wait as ``error`` at once; throttling, transient errors and network
  errors are logged with their code and RequestId and polled through;
* the deadline (absolute, epoch seconds; :func:`airflow_mps.utils.deadlines.wait_deadline`) ends the
  wait as ``timeout`` with the last status seen, checked before every poll; no poll is made after it;
* polls are ``poll_interval`` apart (±10% jitter, never below ``MIN_POLL_INTERVAL``), and never sleep
  past the deadline;
* shared polling: a detail call only when the poller saw the task FINISH, after an error (then every
  ``poll_interval``), or when the safety interval — ``max(SAFETY_ROUNDS × poll_interval,
  SAFETY_SECONDS)`` — has passed since the last one (the listing may miss a task: 7-day window,
  eventual consistency). The first safety check is spread over half to one and a half intervals so that
  triggers started together (a triggerer restart) do not all check at once. A listing that ran ahead
  of the detail (FINISH listed, detail still PROCESSING) sends the wait back to listening; a poller that
  fell back to per-task polling turns the wait into plain polling.

The machine reads the clock but performs no I/O; the drivers are a few lines each (the operator's
``wait_in_worker``, the sensor's ``poke``, the trigger's ``run``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from airflow_mps.errors import MpsError
from airflow_mps.utils.events import (
    EVENT_ERROR,
    EVENT_FAILED,
    EVENT_SUCCESS,
    EVENT_TIMEOUT,
    MIN_POLL_INTERVAL,
    brief,
    error_payload,
    jittered,
    status_error,
    task_event,
    timeout_error,
)

if TYPE_CHECKING:
    from airflow_mps.models import ImageTaskStatus

__all__ = [
    "SAFETY_ROUNDS",
    "SAFETY_SECONDS",
    "WAKE_FALLBACK",
    "WAKE_FOUND",
    "Describe",
    "Listen",
    "Rearm",
    "Sleep",
    "TaskStep",
    "TaskWaitOutcome",
    "WaitLog",
    "safety_interval",
    "wait_for_task",
]

#: A shared-polling wait still checks its own detail at least every
#: ``max(SAFETY_ROUNDS * poll_interval, SAFETY_SECONDS)`` seconds, in case the listing misses its task.
SAFETY_ROUNDS = 10
SAFETY_SECONDS = 300.0

#: Replies to :class:`Listen`: the poller saw the task FINISH / the poller fell back to per-task polling.
WAKE_FOUND = "found"
WAKE_FALLBACK = "fallback"


class WaitLog(Protocol):
    """Where a wait logs its decisions: a ``logging.Logger``, or an Airflow task's or trigger's ``log``."""

    def info(self, msg: Any, /, *args: Any) -> Any: ...
    def warning(self, msg: Any, /, *args: Any) -> Any: ...
    def error(self, msg: Any, /, *args: Any) -> Any: ...


@dataclass(frozen=True)
class Describe:
    """I/O: ``DescribeImageTaskDetail`` of ``task_id``, bounded by ``timeout`` seconds (the time left)."""

    task_id: str
    timeout: float


@dataclass(frozen=True)
class Sleep:
    """I/O: wait ``seconds`` before the next poll."""

    seconds: float


@dataclass(frozen=True)
class Listen:
    """I/O (shared polling): wait up to ``seconds`` for the poller's word. Reply: :data:`WAKE_FOUND`,
    :data:`WAKE_FALLBACK` (answered at once when already true), or ``None`` when the time ran out."""

    seconds: float


@dataclass(frozen=True)
class Rearm:
    """I/O (shared polling): the detail did not confirm the poller's word; forget it. Reply: ``True``
    while the poller still lists, ``False`` when it fell back to per-task polling meanwhile."""


TaskStep = Describe | Sleep | Listen | Rearm


@dataclass(frozen=True)
class TaskWaitOutcome:
    """How a wait ended: ``event`` is one of the ``EVENT_*`` names of :mod:`airflow_mps.utils.events`."""

    event: str
    mps_task_id: str
    #: The last status seen (``None`` when no poll answered).
    status: ImageTaskStatus | None
    #: The event's ``error`` part (``None`` on success).
    error: dict[str, Any] | None
    polls: int
    #: The MPS error that ended the wait (``error`` outcomes), for the caller's exception chain.
    exception: MpsError | None = None

    def payload(self, request_id: str | None, *, include_signed_urls: bool = False) -> dict[str, Any]:
        """The trigger event payload of this outcome (signed URLs only with ``include_signed_urls``)."""
        return task_event(
            self.event,
            self.mps_task_id,
            result=self.status,
            error=self.error,
            request_id=request_id,
            include_signed_urls=include_signed_urls,
        )


def safety_interval(poll_interval: float) -> float:
    """How often a shared-polling wait checks its own detail, whatever the listing says."""
    return max(SAFETY_ROUNDS * poll_interval, SAFETY_SECONDS)


class _TaskWait:
    """The state of one wait; :meth:`run` is the step machine."""

    def __init__(
        self,
        mps_task_id: str,
        *,
        end_time: float,
        poll_interval: float,
        log: WaitLog,
        shared: bool,
        report_progress: bool,
        clock: Callable[[], float],
    ) -> None:
        self.task_id = mps_task_id
        self.end_time = float(end_time)
        self.poll_interval = float(poll_interval)
        self.log = log
        self.shared = shared
        self.report_progress = report_progress
        self.clock = clock
        self.polls = 0
        self.last: ImageTaskStatus | None = None
        #: Shared polling: the poller's word was heard and not yet forgotten.
        self.woken = False
        #: Shared polling: when the next safety detail is due.
        self.next_own = clock() + safety_interval(self.poll_interval) * random.uniform(0.5, 1.5)

    def run(self) -> Generator[TaskStep, Any, TaskWaitOutcome]:
        while True:
            if self.clock() >= self.end_time:
                return self._timed_out()
            if self.shared and not self.woken and self.clock() < self.next_own:
                self._heard((yield Listen(min(self.next_own, self.end_time) - self.clock())))
                continue
            self.polls += 1
            reply = yield Describe(self.task_id, max(MIN_POLL_INTERVAL, self.end_time - self.clock()))
            outcome = self._judge(reply)
            if outcome is not None:
                return outcome
            if self.shared and not isinstance(reply, BaseException):
                # Not finished after all (the listing may run ahead of the detail): back to listening.
                self._rearmed((yield Rearm()))
                if self.shared:
                    continue
            yield Sleep(max(0.0, min(jittered(self.poll_interval), self.end_time - self.clock())))

    # -- decisions ----------------------------------------------------------------------------------
    def _judge(self, reply: ImageTaskStatus | BaseException) -> TaskWaitOutcome | None:
        """The outcome a poll's reply decides, or ``None`` to keep waiting."""
        if isinstance(reply, BaseException):
            return self._failed_call(reply)
        self.last = reply
        if not reply.done:
            if self.report_progress:
                self.log.info("MPS task %s is %s", self.task_id, reply.state)
            return None
        if reply.succeeded:
            return self._outcome(EVENT_SUCCESS, None)
        self.log.error(
            "MPS task %s finished with a failure: [%s] %s",
            self.task_id,
            reply.error_code,
            reply.error_message,
        )
        return self._outcome(EVENT_FAILED, status_error(reply))

    def _failed_call(self, err: BaseException) -> TaskWaitOutcome | None:
        if isinstance(err, MpsError):
            if not err.retryable:
                self.log.error("MPS task %s: terminal error while polling: %s", self.task_id, err)
                return self._outcome(EVENT_ERROR, error_payload(err), err)
            self.log.warning(
                "MPS task %s: transient error while polling, retrying: code=%s RequestId=%s message=%s",
                self.task_id,
                err.code,
                err.request_id,
                err.message,
            )
        else:  # a network error, or a call cut off at the deadline (the next check ends the wait)
            self.log.warning(
                "MPS task %s: network error while polling, retrying: %s", self.task_id, brief(err)
            )
        return None

    def _timed_out(self) -> TaskWaitOutcome:
        self.log.warning(
            "MPS task %s not finished by its deadline (%d polls, last state %s)",
            self.task_id,
            self.polls,
            getattr(self.last, "state", None),
        )
        return self._outcome(EVENT_TIMEOUT, timeout_error(self.task_id))

    def _heard(self, wake: str | None) -> None:
        if wake == WAKE_FALLBACK:
            self.shared = False
        self.woken = wake is not None

    def _rearmed(self, still_shared: bool) -> None:
        self.woken = False
        if still_shared:
            self.next_own = self.clock() + jittered(safety_interval(self.poll_interval))
        else:
            self.shared = False

    def _outcome(
        self, event: str, error: dict[str, Any] | None, exception: MpsError | None = None
    ) -> TaskWaitOutcome:
        return TaskWaitOutcome(event, self.task_id, self.last, error, self.polls, exception)


def wait_for_task(
    mps_task_id: str,
    *,
    end_time: float,
    poll_interval: float,
    log: WaitLog,
    shared: bool = False,
    report_progress: bool = True,
    clock: Callable[[], float] = time.time,
) -> Generator[TaskStep, Any, TaskWaitOutcome]:
    """The step machine of one task's wait (rules in the module docstring).

    :param end_time: absolute deadline, epoch seconds (``math.inf``: none — a sensor's poke, whose
        deadline Airflow keeps).
    :param poll_interval: seconds between two polls (±10% jitter).
    :param log: where the wait's decisions are logged (the task's or the trigger's logger).
    :param shared: the driver is registered with a shared poller and answers :class:`Listen` /
        :class:`Rearm`.
    :param report_progress: log each unfinished state at INFO (a worker's wait; a triggerer holding a
        thousand waits does not).
    """
    return _TaskWait(
        mps_task_id,
        end_time=end_time,
        poll_interval=poll_interval,
        log=log,
        shared=shared,
        report_progress=report_progress,
        clock=clock,
    ).run()
