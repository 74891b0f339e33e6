"""Waiting for a batch of MPS tasks, written once: every decision, none of the I/O.

Three drivers wait on a batch and differ only in how they talk to MPS:

* the operator's in-place poll (``deferrable=False``; sync hook) — :func:`airflow_mps.batch.poll.poll_in_place`;
* the overlap watcher (sync hook, threads, while the batch is still submitting) —
  :class:`airflow_mps.batch.overlap.SubmitTimeWatcher`;
* :class:`airflow_mps.triggers.batch.MpsImageBatchTrigger` (async hook, in the triggerer).

The decisions live here as step machines, the pattern of ``_task_finder`` in ``hooks/mps.py``: a
generator *yields* the I/O it needs and the driver answers with ``send(reply)``, or ``throw(error)``
when that I/O raised. The state stays :class:`~airflow_mps.batch.progress.BatchWaitState`.

=========================================  =====================================================
step (yielded)                             the driver's reply
=========================================  =====================================================
``ListFinished(start, until)``             ``Listed(rows, pages)``: every ``DescribeImageTasks``
                                           row with Status=FINISH created since ``start`` (all
                                           pages); or ``throw`` what the listing raised
``DescribeTasks(task_ids, until)``         ``{task_id: ImageTaskStatus | the exception that call
                                           raised}``; an id left out was abandoned (not described)
``Sleep(seconds)``                         ``None`` after sleeping
=========================================  =====================================================

``until`` (epoch seconds) is when the round's I/O should be abandoned: the async driver bounds its
calls by it, so a stalled call never carries the wait past the deadline; a sync driver may ignore it.
An abandoned call is answered with a ``TimeoutError`` (thrown for a listing; for a detail, the id is
left out of the reply or mapped to the error).

Two machines:

* :func:`wait_for_batch` — the whole wait (rounds, progress lines, deadline) → :class:`WaitOutcome`.
  Driven by the in-place poll and the trigger.
* :func:`finished_tasks` — the listing half of one round → the ids to describe. Driven by the overlap
  watcher, whose worker threads describe those ids and record each answer with :func:`apply_detail`
  (the same rule :func:`describe_tasks` applies).

Call counts (docs/batch.md, P2): one listing per round, and exactly one detail call per task that
finished (plus a direct check of tasks the listings have not shown for :data:`DIRECT_CHECK_AFTER` s).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from airflow_mps.batch.progress import BatchWaitState, CreateClock
from airflow_mps.errors import MpsError, MpsResourceNotFoundError

#: Outcomes of a wait (also the statuses of the trigger's event).
SUCCESS = "success"
TIMEOUT = "timeout"
ERROR = "error"

#: What a detail answer meant for its task (:func:`apply_detail`).
RESOLVED = "resolved"  # finished (succeeded or failed) and recorded; never described again
RUNNING = "running"  # described, not finished: stays pending
RETRY = "retry"  # the call failed transiently (or was abandoned): stays pending, described again later
TERMINAL = "terminal"  # the call failed for good (bad credentials, ...): the wait stops

#: Rows per ``DescribeImageTasks`` page (the most the API returns).
PAGE_SIZE = 100

#: Detail calls asked for in one :class:`DescribeTasks` step: a round with thousands of finished tasks
#: is described in steps of this many, so a driver never holds thousands of answers at once (a
#: 20,000-task wait kept ~25 objects per finished task alive until its round ended; issue 12).
DESCRIBE_CHUNK = 256

#: A round started at (or past) the deadline still gets this long before its I/O is abandoned.
MIN_CALL_SECONDS = 1.0


class WaitLog(Protocol):
    """The logger methods the core uses (a stdlib logger, a LoggerAdapter, Airflow's task logger)."""

    def info(self, msg: Any, /, *args: Any) -> Any: ...

    def warning(self, msg: Any, /, *args: Any) -> Any: ...

    def error(self, msg: Any, /, *args: Any) -> Any: ...


@dataclass(frozen=True)
class ListFinished:
    """I/O request: every FINISHed task created since ``start`` (``DescribeImageTasks``, all pages)."""

    start: str | None
    until: float


@dataclass(frozen=True)
class Listed:
    """Reply to :class:`ListFinished`: the rows (``.task_id``, optional ``.create_time``) and, when the
    driver's hook counts them, the pages actually read (else derived from the row count)."""

    rows: Sequence[Any]
    pages: int | None = None


class Row(NamedTuple):
    """What a wait keeps of a listing row: the task id and (for the overlap's clock) its CreateTime."""

    task_id: str
    create_time: str | None = None


def keep_rows(rows: Iterable[Any], wanted: Container[str]) -> tuple[list[Row], int]:
    """The rows of ``wanted`` tasks, slimmed to :class:`Row`, and how many rows were read.

    A listing returns every task of the account since the window start — other batches', other
    pipelines', and ours already resolved; keeping only the rows a wait can use keeps its memory
    proportional to what finished, not to everything listed (issue 12: a 20,000-task wait). The
    count gives the pages read (:data:`PAGE_SIZE` rows each) when the driver cannot count them.
    """
    kept: list[Row] = []
    seen = 0
    for row in rows:
        seen += 1
        if row.task_id in wanted:
            kept.append(Row(row.task_id, getattr(row, "create_time", None)))
    return kept, seen


def pages_for(rows_read: int) -> int:
    """Listing pages read for ``rows_read`` rows (at least one: an empty listing is one call)."""
    return max(1, -(-rows_read // PAGE_SIZE))


@dataclass(frozen=True)
class DescribeTasks:
    """I/O request: ``DescribeImageTaskDetail`` of each id (concurrently, as the driver likes)."""

    task_ids: tuple[str, ...]
    until: float


@dataclass(frozen=True)
class Sleep:
    """I/O request: sleep ``seconds`` before the next round."""

    seconds: float


WaitStep = ListFinished | DescribeTasks | Sleep


@dataclass(frozen=True)
class WaitOutcome:
    """How a wait ended: ``status`` is :data:`SUCCESS`, :data:`TIMEOUT` or :data:`ERROR`; ``error`` is
    ``{"code", "message", "request_id"}`` for the last two. The results are in the state."""

    status: str
    error: dict[str, Any] | None = None


def error_dict(err: BaseException) -> dict[str, Any]:
    """``{"code", "message", "request_id"}`` of any error (an MPS one keeps its code and RequestId)."""
    if isinstance(err, MpsError):
        return err.to_dict()
    return {"code": type(err).__name__, "message": str(err), "request_id": None}


def _describe_error(err: BaseException) -> str:
    return str(err) if isinstance(err, MpsError) else f"{type(err).__name__}: {err}"


def apply_detail(state: BatchWaitState, task_id: str, reply: Any) -> str:
    """Record one ``DescribeImageTaskDetail`` answer (a status, or the error its call raised) in
    ``state`` and say what it meant: :data:`RESOLVED`, :data:`RUNNING`, :data:`RETRY` or :data:`TERMINAL`.

    FINISH is not success: the status's own verdict (ErrCode/ErrMsg, each result's Status) decides.
    A task MPS no longer knows (``ResourceNotFound``: expired or never ours) is resolved as failed.
    ``detail_calls`` counts the calls MPS answered with a status or not-found.
    """
    if isinstance(reply, MpsResourceNotFoundError):
        state.detail_calls += 1
        state.record_error(task_id, reply.code, reply.message, reply.request_id)
        return RESOLVED
    if isinstance(reply, MpsError) and not reply.retryable:
        return TERMINAL
    if isinstance(reply, BaseException):
        return RETRY
    state.detail_calls += 1
    return RESOLVED if state.record(task_id, reply) else RUNNING


def finished_tasks(
    state: BatchWaitState,
    window_start: str | None,
    *,
    until: float = float("inf"),
    clock: CreateClock | None = None,
    direct_checks: bool = True,
) -> Generator[ListFinished, Listed, list[str]]:
    """The listing half of a round: which pending tasks to describe now.

    The listing starts just before the oldest pending task when every one has a creation floor
    (:meth:`BatchWaitState.listing_start`). With ``clock`` (the overlap watcher, which knows each
    task's send and receive times) the floors are refreshed first and each listed row tightens the
    clock's offset. ``direct_checks`` adds the pending tasks the listings have not shown for a long
    time (a listing blind spot); the watcher leaves them to the wait, where they are rare and cheap.
    """
    if clock is not None:
        state.refresh_floors(clock.floor)
    listed = yield ListFinished(state.listing_start(window_start), until)
    if clock is not None:
        for row in listed.rows:
            clock.observe(row.task_id, getattr(row, "create_time", None))
    pages = listed.pages if listed.pages is not None else pages_for(len(listed.rows))
    state.listing_calls += pages
    finished = state.finished_in(row.task_id for row in listed.rows)
    if direct_checks:
        seen = set(finished)
        finished += [t for t in state.direct_check_due() if t not in seen]
    return finished


def describe_tasks(
    state: BatchWaitState, task_ids: Sequence[str], *, until: float, log: WaitLog
) -> Generator[DescribeTasks, Mapping[str, Any], None]:
    """The detail half of a round: one ``DescribeImageTaskDetail`` per id, each answer recorded.

    Raises what stops the round after recording everything that came back: a terminal error (the
    wait ends), or ``TimeoutError`` when calls were abandoned at ``until`` (those tasks stay pending).
    Transient failures of single calls are logged; those tasks are described again next round. The
    ids are asked for in steps of :data:`DESCRIBE_CHUNK`.
    """
    for start in range(0, len(task_ids), DESCRIBE_CHUNK):
        chunk = task_ids[start : start + DESCRIBE_CHUNK]
        replies = yield DescribeTasks(tuple(chunk), until)
        _apply_replies(state, chunk, replies, log)


def _apply_replies(
    state: BatchWaitState, task_ids: Sequence[str], replies: Mapping[str, Any], log: WaitLog
) -> None:
    """Record one step's answers; raise what stops the round (see :func:`describe_tasks`)."""
    terminal: BaseException | None = None
    abandoned = 0
    for task_id in task_ids:
        reply = replies.get(task_id, None)
        if reply is None or isinstance(reply, TimeoutError):
            abandoned += 1
            continue
        verdict = apply_detail(state, task_id, reply)
        if verdict == TERMINAL and terminal is None:
            terminal = reply
        elif verdict == RETRY:
            log.warning(
                "Describing %s failed, retrying on the next poll: %s", task_id, _describe_error(reply)
            )
    if terminal is not None:
        raise terminal
    if abandoned:
        raise TimeoutError(f"{abandoned} detail calls abandoned at the round's bound")


def poll_round(
    state: BatchWaitState, window_start: str | None, *, until: float, log: WaitLog
) -> Generator[ListFinished | DescribeTasks, Any, None]:
    """One round: a FINISH listing, then one detail call per newly finished (or due) task."""
    finished = yield from finished_tasks(state, window_start, until=until)
    yield from describe_tasks(state, finished, until=until, log=log)


def _round_failed(err: Exception, end_time: float, log: WaitLog) -> WaitOutcome | None:
    """A round raised ``err``: the outcome when it ends the wait (terminal), else log and go on."""
    if isinstance(err, MpsError) and not err.retryable:
        log.error("Batch wait stopped by a terminal MPS error: %s", err)
        return WaitOutcome(ERROR, error_dict(err))
    if isinstance(err, TimeoutError):  # the round's bound, or a socket timeout the hook let through
        log.warning("A poll did not complete in time (deadline %.0f); abandoned", end_time)
    else:  # throttling, transient errors, transport trouble the hook could not classify
        log.warning("Polling the batch failed, retrying: %s", _describe_error(err))
    return None


def wait_for_batch(
    state: BatchWaitState,
    *,
    window_start: str | None,
    end_time: float,
    poll_interval: float,
    log: WaitLog,
    now: Callable[[], float] = time.time,
) -> Generator[WaitStep, Any, WaitOutcome]:
    """Wait until every task of ``state`` finished, a terminal error, or ``end_time`` (epoch seconds).

    Each round is bounded by the time left to the deadline (at least :data:`MIN_CALL_SECONDS`), and
    what was recorded before a bound hit stays recorded. Throttling and transient errors are logged
    and polled through; a terminal MPS error ends the wait at once. The progress line is logged when
    it changes. Returns the outcome; the results are ``state.result_rows()``.
    """
    last_line = ""
    while True:
        # Rounds keep a cadence of ``poll_interval`` from their start: a round that spent the interval
        # describing a burst of finished tasks is followed by the next at once, not a full interval
        # later (P4: the tail after the last submission is mostly such bursts).
        round_started = now()
        if state.pending:
            until = now() + max(MIN_CALL_SECONDS, end_time - now())
            try:
                yield from poll_round(state, window_start, until=until, log=log)
            except Exception as err:
                stop = _round_failed(err, end_time, log)
                if stop is not None:
                    return stop
        line = state.progress_line()
        if line != last_line:
            log.info("%s", line)
            last_line = line
        if state.done:
            return WaitOutcome(SUCCESS)
        remaining = end_time - now()
        if remaining <= 0:
            log.error("Deadline passed with %d tasks unfinished (%s)", len(state.pending), line)
            message = f"{len(state.pending)} tasks unfinished at the deadline"
            return WaitOutcome(TIMEOUT, {"code": "Timeout", "message": message, "request_id": None})
        pause = min(poll_interval - (now() - round_started), remaining)
        if pause > 0:
            yield Sleep(pause)


def result_of(steps: Generator[Any, Any, Any], reply: Any) -> Any:
    """Send the last ``reply`` to a step machine and return its result (it must ask for no more I/O)."""
    try:
        steps.send(reply)
    except StopIteration as done:
        return done.value
    steps.close()
    raise RuntimeError("the step machine asked for more I/O than its driver answers")
