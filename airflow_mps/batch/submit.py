"""Submitting a batch: ``ProcessImage`` for every item, concurrently, each record durable as it lands.

The hook's process-wide token bucket paces ``ProcessImage`` at the connection's rate, so
``concurrency`` threads keep the limit saturated even with slow round trips (8 threads at 150 ms
saturate 20/s). At most ``2 × concurrency`` submissions are queued or in flight (a bounded window,
refilled as each completes): waiting on a set of all N futures per completion was O(N²) — for 10,000
images, tens of seconds of lock churn competing with the submit threads for the GIL. Every thread is
started before the first request (:func:`_start_threads`), so the process is paced evenly from its
first second.

Each task id goes to the :class:`~airflow_mps.batch.ledger.SubmissionLedger` as its call returns (flushed
at least every :data:`~airflow_mps.batch.ledger.FLUSH_SECONDS`; the wait below wakes that often even
when nothing completes) and to the listener (the overlap watcher), which is drained once the last
image is queued (see :mod:`airflow_mps.batch.overlap`).

An image MPS refuses (``InvalidParameter*``, not found) is that image's failure; the rest goes on. Any
other error stops the batch: nothing new starts, what is in flight completes and is recorded, then
:class:`SubmissionStopped` is raised (a retry submits only what is missing).

Each call that creates a task is timed (monotonic, pacing and the hook's retries included) in its
thread and reported to ``on_latency`` by the collecting thread, one call at a time: the operator's
``mps.submit.latency`` (:mod:`airflow_mps.utils.metrics`) needs no lock, and a refused call is not
timed, as in the single-image operator.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Protocol, cast

from airflow_mps.batch.ledger import FLUSH_SECONDS, SubmissionLedger
from airflow_mps.batch.plan import BatchItem
from airflow_mps.errors import MpsError, MpsInvalidParameterError, MpsResourceNotFoundError, MpsTerminalError

if TYPE_CHECKING:
    from airflow_mps.waits.batch import WaitLog

_log = logging.getLogger(__name__)

#: One submission's result: the hook's answer (``.task_id``), our clock when it was sent / received, and
#: how long the call took (monotonic seconds).
_Sent = tuple[Any, float, float, float]


class SubmitListener(Protocol):
    """Who hears of each task as it is created (the overlap watcher)."""

    def add(
        self, task_id: str, input_uri: str, sent: float | None = None, received: float | None = None
    ) -> None: ...

    def drain(self) -> None: ...


#: How long the submitter waits for its threads to start before it submits anyway (see _start_threads).
THREAD_START_SECONDS = 30.0


def _start_threads(pool: ThreadPoolExecutor, count: int) -> None:
    """Start ``count`` threads of ``pool`` before the first request, so that the process sends at its
    paced rate from its first second.

    The pool starts a thread per submission, one at a time, each start waiting for the new thread to
    run; on a host busy with other processes (a backfill's tasks all starting at once) starting eight
    took half a second while the first thread already sent — a trickle, then a burst. Other processes
    on the account read their share from how the refusal counts grow per request of theirs (adaptive
    pacing, ``hooks/_adaptive.py``): an uneven first second misled them (bench P8, issue 13). Here
    every thread is started and parked before anything is paced; a thread that cannot start in
    :data:`THREAD_START_SECONDS` only delays the batch (the barrier breaks, submission goes on)."""
    if count <= 1:
        return
    barrier = threading.Barrier(count + 1)
    parked = [pool.submit(barrier.wait, THREAD_START_SECONDS) for _ in range(count)]
    try:
        barrier.wait(THREAD_START_SECONDS)
    except threading.BrokenBarrierError:
        _log.warning(
            "Not all %d submitter threads started in %.0fs; submitting anyway", count, THREAD_START_SECONDS
        )
    wait(parked)


class _PacingState(Protocol):
    """What ``hook.pacing(action)`` returns (``hooks._pacing.PacingState``; batch does not import hooks)."""

    def since(self, earlier: Any) -> _PacingState | None: ...

    def describe(self) -> str: ...


class SubmissionStopped(Exception):
    """A batch-level error stopped the submission after ``submitted`` of ``total`` images (all recorded)."""

    def __init__(self, cause: BaseException, submitted: int, total: int) -> None:
        self.cause = cause
        self.submitted = submitted
        self.total = total
        #: No retry can help (bad credentials, account): the operator fails without retry.
        self.terminal = isinstance(cause, MpsTerminalError)
        super().__init__(f"Submission stopped after {submitted} of {total} images: {cause}")


class BatchSubmitter:
    """Submit items through ``hook.process_image(build(item))`` in a bounded window of futures.

    :param hook: an ``MpsHook`` (sync ``process_image``).
    :param build: item → ``ProcessImageRequest`` (already validated by the operator once).
    :param ledger: where each submission is recorded as it completes.
    :param concurrency: submitter threads; the window is twice that.
    :param listener: told of each task as it is created, and drained when the last item is queued.
    :param on_latency: told how long each call that created a task took (seconds), on the collecting
        thread; it must not raise (the operator's ``metrics.submit_latency`` never does).
    """

    def __init__(
        self,
        hook: Any,
        build: Callable[[BatchItem], Any],
        ledger: SubmissionLedger,
        *,
        concurrency: int,
        listener: SubmitListener | None = None,
        log: WaitLog | None = None,
        on_latency: Callable[[float], None] | None = None,
    ) -> None:
        self.hook = hook
        self.build = build
        self.ledger = ledger
        self.concurrency = concurrency
        self.window = 2 * concurrency
        self.listener = listener
        self.log: WaitLog = log or _log
        self.on_latency = on_latency
        #: input URI → task id of what this try submitted.
        self.submitted: dict[str, str] = {}
        #: input URI → MPS's refusal of that one image.
        self.rejected: dict[str, MpsError] = {}
        self.fatal: BaseException | None = None
        self._in_flight: dict[Future[_Sent], BatchItem] = {}
        self._logged_hundreds = 0

    def run(self, items: Sequence[BatchItem]) -> tuple[dict[str, str], dict[str, MpsError]]:
        """Submit ``items``; returns (input → task id, input → rejection). Raises :class:`SubmissionStopped`."""
        if not items:
            return self.submitted, self.rejected
        upcoming = iter(items)
        pacing, started = self._pacing(), time.monotonic()
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="mps-submit") as pool:
            _start_threads(pool, min(self.concurrency, len(items)))
            self._refill(pool, upcoming)
            while self._in_flight:
                done, _ = wait(self._in_flight, timeout=FLUSH_SECONDS, return_when=FIRST_COMPLETED)
                for future in done:
                    self._collect(future)
                self.ledger.maybe_flush()
                self._log_progress(len(items))
                self._refill(pool, upcoming)
        self.ledger.flush()
        elapsed = time.monotonic() - started
        self.log.info(
            "Submitted %d tasks (%d rejected) in %.1fs (%.1f/s)",
            len(self.submitted),
            len(self.rejected),
            elapsed,
            len(self.submitted) / elapsed if elapsed > 0 else 0.0,
        )
        self._log_pacing(pacing)
        if self.fatal is not None:
            raise SubmissionStopped(self.fatal, len(self.submitted), len(items)) from self.fatal
        return self.submitted, self.rejected

    def _pacing(self) -> _PacingState | None:
        """The hook's ProcessImage pacing now (None for a hook that does not pace, or cannot say)."""
        read = getattr(self.hook, "pacing", None)
        if read is None:
            return None
        try:
            return cast("_PacingState", read("ProcessImage"))
        except Exception as err:  # the connection could not be read: the calls say why, not this line
            _log.debug("No pacing state for the summary: %s", err)
            return None

    def _log_pacing(self, before: _PacingState | None) -> None:
        """Log how ProcessImage was paced while this batch submitted (alone, sharing the account, late
        to a full one), with its answers: a slow batch says whether others shared the account. Only
        with a state from the start (the counts are this batch's); a log line never fails a batch."""
        if before is None:
            return
        try:
            after = self._pacing()
            delta = after.since(before) if after is not None else None
            if delta is not None:
                self.log.info("ProcessImage pacing: %s", delta.describe())
        except Exception as err:
            _log.debug("No pacing summary: %s", err)

    def _one(self, item: BatchItem) -> _Sent:
        request = self.build(item)
        sent, started = time.time(), time.monotonic()
        submission = self.hook.process_image(request)
        return submission, sent, time.time(), time.monotonic() - started

    def _refill(self, pool: ThreadPoolExecutor, upcoming: Iterator[BatchItem]) -> None:
        """Queue items until the window is full; drain the listener once the last one is queued."""
        while self.fatal is None and len(self._in_flight) < self.window:
            item = next(upcoming, None)
            if item is None:
                if self.listener is not None:
                    self.listener.drain()
                return
            self._in_flight[pool.submit(self._one, item)] = item

    def _collect(self, future: Future[_Sent]) -> None:
        item = self._in_flight.pop(future)
        if future.cancelled():
            return
        err = future.exception()
        if err is None:
            submission, sent, received, took = future.result()
            task_id = submission.task_id
            self.submitted[item.input_uri] = task_id
            self.ledger.add(item.input_uri, task_id)
            if self.listener is not None:
                self.listener.add(task_id, item.input_uri, sent, received)
            if self.on_latency is not None:
                self.on_latency(took)
        elif isinstance(err, (MpsInvalidParameterError, MpsResourceNotFoundError)):
            self.rejected[item.input_uri] = err  # this image only; the batch goes on
        elif self.fatal is None:
            self.fatal = err  # stop: nothing new starts; what is in flight completes and is recorded
            for other in self._in_flight:
                other.cancel()

    def _log_progress(self, total: int) -> None:
        if len(self.submitted) // 100 > self._logged_hundreds:
            self._logged_hundreds = len(self.submitted) // 100
            self.log.info("Submitted %d/%d", len(self.submitted), total)
