"""Describe finished tasks while the batch is still submitting (the overlap that closes P4's gap).

Submission runs at the ``ProcessImage`` limit (20/s) for N/20 seconds, and meanwhile the Describe
quotas (20/s each for the detail and the listing, at the strictest documented value) would sit idle;
waiting only after the last submission then pays ~N detail calls at the end (50 s for 1,000 tasks).
:class:`SubmitTimeWatcher` spends that idle budget during submission: every ``interval`` (at most
:data:`MAX_LIST_INTERVAL`) it lists the tasks FINISHed since the oldest pending one was created and
describes each newly finished one of ours exactly once (outputs and error codes: FINISH is not success). The decisions
(where the listing starts, which tasks are ours and finished, what a detail answer means) are the wait
core's (:mod:`airflow_mps.waits.batch`); this module is its threaded driver. When the last
submission returns, :meth:`SubmitTimeWatcher.stop` hands back the :class:`BatchWaitState` — results
known so far plus the pending tail.

Two promises pull against each other at the hand-off: "one detail call per task" (a detail answer
dropped at the hand-off would be paid again by the wait) and "the worker leaves when the last
submission returns". So the submitter calls :meth:`SubmitTimeWatcher.drain` as soon as it has queued
its last image: no new detail call starts, and the ones in flight end during the last submissions
(about ``2 × submit_concurrency / rate`` seconds, far longer than a round trip). :meth:`stop` then
waits for whatever is still in flight, bounded by :data:`STOP_WAIT` seconds — normally nothing.
Listings are never waited for (reads only; the threads are daemons).

Thread model: one listing thread and a few detail threads, all daemons, sharing the state under one
lock; the submitter's threads call :meth:`SubmitTimeWatcher.add` as each ``ProcessImage`` returns.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from airflow_mps.batch.progress import BatchWaitState, CreateClock
from airflow_mps.errors import MpsError
from airflow_mps.waits.batch import (
    RESOLVED,
    RETRY,
    TERMINAL,
    Listed,
    Row,
    WaitLog,
    apply_detail,
    finished_tasks,
    pages_for,
    result_of,
)

#: Detail calls in flight while submitting. Tasks finish at most at the submission rate (20/s); at
#: 150 ms a round trip 6 threads describe ~40/s, enough to drain a listing's burst within a poll.
DETAIL_WORKERS = 6

#: The longest pause between two listings while submitting, whatever the operator's ``poll_interval``:
#: tasks finish at up to the submission rate, and each second a finished task waits to be listed is
#: ~20 more detail calls left to the wait after the hand-off (P4). ``DescribeImageTasks`` has its own
#: quota (mps-api.md §0.3), so a listing a second (a page or two: it starts at the oldest pending
#: task) costs the account little.
MAX_LIST_INTERVAL = 1.0

#: The most :meth:`SubmitTimeWatcher.stop` waits for detail calls still in flight (a stalled call is
#: abandoned: its task stays pending and the wait describes it).
STOP_WAIT = 2.0

_log = logging.getLogger(__name__)


class SubmitTimeWatcher:
    """Resolve finished tasks of a batch while it is being submitted (sync hook, daemon threads).

    :param hook: an ``MpsHook`` (sync ``list_image_tasks`` and ``describe_image_task`` are used).
    :param window_start: the batch's listing window start (``YYYY-MM-DDThh:mm:ssZ``).
    :param interval: seconds between two listings (the operator's ``poll_interval``, at most
        :data:`MAX_LIST_INTERVAL`).
    """

    def __init__(
        self,
        hook: Any,
        window_start: str | None,
        interval: float,
        *,
        workers: int = DETAIL_WORKERS,
        log: WaitLog | None = None,
    ) -> None:
        self.hook = hook
        self.window_start = window_start
        self.interval = min(float(interval), MAX_LIST_INTERVAL)
        self.state = BatchWaitState([])
        self.clock = CreateClock()
        self.log: WaitLog = log or _log
        self._workers = max(1, int(workers))
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._draining = threading.Event()
        self._closed = threading.Event()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._queued: set[str] = set()
        self._threads: list[threading.Thread] = []

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> SubmitTimeWatcher:
        threads = [threading.Thread(target=self._list_loop, name="mps-batch-list", daemon=True)]
        threads += [
            threading.Thread(target=self._detail_loop, name=f"mps-batch-detail-{i}", daemon=True)
            for i in range(self._workers)
        ]
        for thread in threads:
            thread.start()
        self._threads = threads
        return self

    def drain(self) -> None:
        """No new listing or detail call starts from now on (the submitter queued its last image)."""
        self._draining.set()

    def stop(self, wait: float = STOP_WAIT) -> BatchWaitState:
        """Drain, let detail calls in flight finish (at most ``wait`` s), and return the state.

        Nothing mutates the state afterwards: a later answer is dropped.
        """
        self._draining.set()
        with self._lock:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=wait)
            self._closed.set()
            self.state.refresh_floors(self.clock.floor)
        for _ in range(self._workers):
            self._queue.put(None)
        return self.state

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # ---------------------------------------------------------------- inputs

    def add(
        self, task_id: str, input_uri: str, sent: float | None = None, received: float | None = None
    ) -> None:
        """A submitted (or adopted) task; ``sent``/``received`` are our wall-clock times of its ProcessImage."""
        if sent is not None and received is not None:
            self.clock.submitted(task_id, sent, received)
        with self._lock:
            if not self._closed.is_set():
                self.state.add(task_id, input_uri)

    # ---------------------------------------------------------------- work

    def poll_once(self) -> int:
        """One listing; queues our newly finished tasks for a detail call. Returns how many were queued.

        Drives the listing half of the wait core (:func:`airflow_mps.waits.batch.finished_tasks`) under
        the lock; the listing itself runs outside it and is abandoned as soon as the watcher drains.
        """
        with self._lock:
            if self._draining.is_set() or not self.state.pending:
                return 0
            steps = finished_tasks(self.state, self.window_start, clock=self.clock, direct_checks=False)
            start = next(steps).start
        rows: list[Row] = []
        seen = 0
        ours = self.state.inputs  # every task of the batch: their CreateTimes calibrate the clock
        for info in self.hook.list_image_tasks("FINISH", start_time=start):
            if self._draining.is_set():
                return 0
            seen += 1
            if info.task_id in ours:
                rows.append(Row(info.task_id, getattr(info, "create_time", None)))
        with self._lock:
            if self._closed.is_set():
                return 0
            finished = [t for t in result_of(steps, Listed(rows, pages_for(seen))) if t not in self._queued]
            self._queued.update(finished)
        for task_id in finished:
            self._queue.put(task_id)
        return len(finished)

    def _list_loop(self) -> None:
        pause = self.interval
        while not self._draining.wait(pause):
            started = time.monotonic()
            try:
                self.poll_once()
            except MpsError as err:
                self.log.warning("Listing finished tasks while submitting failed (the wait retries): %s", err)
            except Exception as err:  # never let a background thread die silently mid-batch
                self.log.warning(
                    "Listing finished tasks while submitting failed: %s: %s", type(err).__name__, err
                )
            pause = max(0.0, self.interval - (time.monotonic() - started))  # a cadence, not a gap

    def _detail_loop(self) -> None:
        while True:
            task_id = self._queue.get()
            if task_id is None:
                return
            with self._lock:
                if self._draining.is_set():  # left pending: the wait describes it
                    self._queued.discard(task_id)
                    continue
                self._in_flight += 1
            try:
                self._describe(task_id)
            finally:
                with self._lock:
                    self._in_flight -= 1
                    self._idle.notify_all()

    def _describe(self, task_id: str) -> None:
        """One detail call; the answer is recorded by the wait core's rule (:func:`apply_detail`)."""
        try:
            reply: Any = self.hook.describe_image_task(task_id)
        except Exception as err:  # recorded (not found) or left pending: the wait decides
            reply = err
        with self._lock:
            if self._closed.is_set():  # handed over: a late answer is dropped
                return
            verdict = apply_detail(self.state, task_id, reply)
            if verdict != RESOLVED:  # running, or the call failed: a later listing (or the wait) retries
                self._queued.discard(task_id)
        if verdict in (RETRY, TERMINAL):
            self.log.warning("Describing %s while submitting failed (the wait retries): %s", task_id, reply)
