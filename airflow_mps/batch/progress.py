"""Waiting for a batch of MPS tasks cheaply, and describing the outcome compactly.

``BatchWaitState`` is the state of every batch wait — the trigger (async hook, in the triggerer), the
operator's in-place poll and the overlap watcher (sync hook); the decisions that move it are the wait
core's (:mod:`airflow_mps.waits.batch`). Per poll: one ``DescribeImageTasks`` listing of FINISHed tasks created since the batch's
window start (paged, 100 per page) tells which of our pending tasks finished; then
``DescribeImageTaskDetail`` is called exactly once per finished task for its outputs or error code.
So the status calls per image are 1 + (listing pages × polls) / N — about 1.05 for a 1,000-image batch.

Records travel between the operator, the trigger and the event as compact lists, zlib-compressed and
base64-encoded (:func:`pack` / :func:`unpack`) so that a 1,000-task batch stays a few tens of KB.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_mps.models.constants import format_api_time, parse_api_time

#: Per-task result states.
SUCCEEDED = "succeeded"
FAILED = "failed"
SKIPPED = "skipped"
SUBMITTED = "submitted"
UNFINISHED = "unfinished"

#: Error messages kept in events and manifests are cut to this many characters.
MAX_MESSAGE = 300

#: A pending task absent from the listings for this long is described directly (listing blind spot).
DIRECT_CHECK_AFTER = 300.0

#: A narrowed FINISH listing starts this many seconds before the oldest pending task's creation floor.
LISTING_MARGIN = 10.0


def pack(value: Any) -> str:
    """JSON → zlib → base64 text (what trigger kwargs and events carry)."""
    raw = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
    return base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def unpack(text: str) -> Any:
    return json.loads(zlib.decompress(base64.b64decode(text.encode("ascii"))).decode())


class CreateClock:
    """Lower bounds of our tasks' creation times on MPS's clock, from our own clock.

    MPS creates a task between our sending ``ProcessImage`` and receiving its answer, so for any task
    seen in a listing, ``offset >= CreateTime - received`` (CreateTime is rounded down, which only
    weakens the bound). Hence for any task, ``CreateTime >= sent + max(CreateTime_i - received_i)``
    over the listed ones. No assumption about the clocks' agreement, only that neither jumps during
    the batch (:data:`LISTING_MARGIN` absorbs a small step). Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: dict[str, tuple[float, float]] = {}  # task id → (sent, received), our clock
        self.offset: float | None = None

    def submitted(self, task_id: str, sent: float, received: float) -> None:
        with self._lock:
            self._times[task_id] = (sent, received)

    def observe(self, task_id: str, create_time: str | None) -> None:
        """A listing row of one of our tasks: tighten the offset bound."""
        created = parse_api_time(create_time)
        times = self._times.get(task_id)
        if created is None or times is None:
            return
        bound = created - times[1]
        with self._lock:
            if self.offset is None or bound > self.offset:
                self.offset = bound

    def floor(self, task_id: str) -> float | None:
        """A lower bound of ``task_id``'s CreateTime (MPS clock), or None while uncalibrated."""
        times = self._times.get(task_id)
        if times is None or self.offset is None:
            return None
        return times[0] + self.offset


def _cut(text: Any) -> str | None:
    if text in (None, ""):
        return None
    text = str(text)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


@dataclass(slots=True)
class TaskResult:
    """The outcome of one MPS task, compact: ``[task_id, input, state, outputs, code, message, request_id]``."""

    task_id: str
    input_uri: str
    state: str
    outputs: list[str] = field(default_factory=list)  # "bucket/key" of each output
    error_code: str | None = None
    error_message: str | None = None
    request_id: str | None = None

    def to_row(self) -> list[Any]:
        return [
            self.task_id,
            self.input_uri,
            self.state,
            self.outputs,
            self.error_code,
            self.error_message,
            self.request_id,
        ]

    @classmethod
    def from_row(cls, row: list[Any]) -> TaskResult:
        return cls(*row)

    @classmethod
    def from_status(cls, task_id: str, input_uri: str, status: Any) -> TaskResult:
        """From an ``ImageTaskStatus`` that is ``done``. A success keeps no RequestId: the manifest and
        the summary never use it (only a failure's error carries one), and a wait holds thousands."""
        outputs = [
            f"{o.bucket}/{o.path}"
            for o in (getattr(status, "outputs", None) or ())
            if getattr(o, "path", None)
        ]
        if getattr(status, "succeeded", False):
            return cls(task_id, input_uri, SUCCEEDED, outputs, None, None, None)
        return cls(
            task_id,
            input_uri,
            FAILED,
            outputs,
            _cut(getattr(status, "error_code", None)) or "FailedOperation",
            _cut(getattr(status, "error_message", None)) or "the MPS task finished with a failure",
            getattr(status, "request_id", None),
        )


class BatchWaitState:
    """Progress of one batch wait. Rebuilt from scratch when a trigger restarts (re-derives progress).

    ``tasks`` rows are ``(task_id, input_uri)`` or ``(task_id, input_uri, create_floor)``: the
    optional third element is a lower bound (epoch seconds, on MPS's clock) of the task's creation
    time, learnt while submitting (:class:`CreateClock`). When every pending task has one, the FINISH
    listing starts just before the oldest pending task instead of at the batch's window start, so a
    poll at the tail of a 1,000-task batch reads one or two pages instead of ten.
    """

    def __init__(
        self,
        tasks: Iterable[Sequence[Any]],
        *,
        started: float | None = None,
        known: Iterable[Sequence[Any]] = (),
    ) -> None:
        #: task id → input URI, for every task of the batch.
        self.inputs: dict[str, str] = {}
        #: task id → lower bound of its creation time (MPS clock, epoch seconds) or None (unknown).
        self.create_floor: dict[str, float | None] = {}
        self.pending: set[str] = set()
        self.results: dict[str, TaskResult] = {}
        for row in known:  # results resolved before this state was built (e.g. while submitting)
            result = TaskResult.from_row(list(row))
            self.inputs[result.task_id] = result.input_uri
            self.results[result.task_id] = result
        for row in tasks:
            self.add(row[0], row[1], row[2] if len(row) > 2 else None)
        self.started = time.monotonic() if started is None else started
        self.last_direct_check = self.started
        self.listing_calls = 0
        self.detail_calls = 0

    def add(self, task_id: str, input_uri: str, create_floor: float | None = None) -> None:
        """A task to wait for (the submitter adds each one as its ``ProcessImage`` returns).

        Task ids are interned: the listings and answers that name a task again carry new copies of
        its id, and keeping one object per id (not one per mention) keeps a long wait's memory flat.
        """
        task_id = sys.intern(task_id)
        if task_id in self.results:
            return
        self.inputs[task_id] = input_uri
        self.create_floor[task_id] = create_floor
        self.pending.add(task_id)

    def listing_start(self, window_start: str | None) -> str | None:
        """``StartTime`` for the next FINISH listing: just before the oldest pending task when known.

        Falls back to ``window_start`` when any pending task has no creation floor (adopted from an
        earlier try, or no listing row seen yet to calibrate the clocks) or nothing is pending.
        :data:`LISTING_MARGIN` absorbs a clock step; a task the narrowed listing still missed is
        caught by the direct check (:meth:`direct_check_due`).
        """
        floors = [self.create_floor.get(t) for t in self.pending]
        if not floors or any(f is None for f in floors):
            return window_start
        start = format_api_time(min(f for f in floors if f is not None) - LISTING_MARGIN)
        if window_start is not None and start < window_start:  # same fixed-width format: text order
            return window_start
        return start

    def refresh_floors(self, floor: Callable[[str], float | None]) -> None:
        """Fill unknown creation floors of pending tasks (``floor`` is :meth:`CreateClock.floor`)."""
        for task_id in self.pending:
            if self.create_floor.get(task_id) is None:
                self.create_floor[task_id] = floor(task_id)

    def pending_rows(self) -> list[list[Any]]:
        """``[[task_id, input, create_floor], ...]`` of the pending tasks (the trigger's ``tasks``)."""
        return [[t, self.inputs[t], self.create_floor.get(t)] for t in sorted(self.pending)]

    def known_rows(self) -> list[list[Any]]:
        """Result rows of the resolved tasks, compact for trigger kwargs.

        A succeeded task's RequestId is dropped: the manifest and the summary never use it (only a
        failure's error carries one), and random ids are what compresses worst.
        """
        rows = []
        for result in self.results.values():
            row = result.to_row()
            if result.state == SUCCEEDED:
                row[6] = None
            rows.append(row)
        return rows

    @property
    def total(self) -> int:
        return len(self.inputs)

    @property
    def done(self) -> bool:
        return not self.pending

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results.values() if r.state == FAILED)

    def finished_in(self, task_ids: Iterable[str]) -> list[str]:
        """Which of the listed (FINISHed) task ids are ours and still pending."""
        return [t for t in task_ids if t in self.pending]

    def direct_check_due(self, now: float | None = None) -> list[str]:
        """Pending tasks to describe directly because the listings have not shown them for a long time.

        Protects against a listing blind spot (clock skew between us and MPS pushing a task before the
        window start, or a listing that misses a task) at a cost of one detail call per pending task per
        :data:`DIRECT_CHECK_AFTER` seconds.
        """
        now = time.monotonic() if now is None else now
        if self.pending and now - self.last_direct_check >= DIRECT_CHECK_AFTER:
            self.last_direct_check = now
            return sorted(self.pending)
        return []

    def record(self, task_id: str, status: Any) -> bool:
        """Record a described task; returns True when it is finished (and now resolved)."""
        if task_id not in self.pending or not getattr(status, "done", False):
            return False
        task_id = sys.intern(task_id)
        self.results[task_id] = TaskResult.from_status(task_id, self.inputs[task_id], status)
        self.pending.discard(task_id)
        return True

    def record_error(self, task_id: str, code: str, message: str, request_id: str | None) -> None:
        """A task that cannot be described any more (e.g. ResourceNotFound): resolved as failed."""
        if task_id in self.pending:
            task_id = sys.intern(task_id)
            self.results[task_id] = TaskResult(
                task_id, self.inputs[task_id], FAILED, [], code, _cut(message), request_id
            )
            self.pending.discard(task_id)

    def progress_line(self) -> str:
        finished = self.total - len(self.pending)
        return f"{finished}/{self.total} finished, {self.failed} failed"

    def result_rows(self, include_pending: bool = True) -> list[list[Any]]:
        rows = [r.to_row() for r in self.results.values()]
        if include_pending:
            rows += [TaskResult(t, self.inputs[t], UNFINISHED).to_row() for t in sorted(self.pending)]
        return rows
