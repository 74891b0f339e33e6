"""Waiting for a batch of MPS tasks cheaply, and describing the outcome compactly.

``BatchWaitState`` is the one implementation of "which of my tasks finished, and how", driven either
by ``MpsImageBatchTrigger`` (async hook, in the triggerer) or by the operator's in-process poll loop
(sync hook). Per poll: one ``DescribeImageTasks`` listing of FINISHed tasks created since the batch's
window start (paged, 100 per page) tells which of our pending tasks finished; then
``DescribeImageTaskDetail`` is called exactly once per finished task for its outputs or error code.
So the status calls per image are 1 + (listing pages × polls) / N — about 1.05 for a 1,000-image batch.

Records travel between the operator, the trigger and the event as compact lists, zlib-compressed and
base64-encoded (:func:`pack` / :func:`unpack`) so that a 1,000-task batch stays a few tens of KB.
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

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


def pack(value: Any) -> str:
    """JSON → zlib → base64 text (what trigger kwargs and events carry)."""
    raw = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
    return base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def unpack(text: str) -> Any:
    return json.loads(zlib.decompress(base64.b64decode(text.encode("ascii"))).decode())


def _cut(text: Any) -> str | None:
    if text in (None, ""):
        return None
    text = str(text)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


@dataclass
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
        """From an ``ImageTaskStatus`` (helper C's model) that is ``done``."""
        outputs = [
            f"{o.bucket}/{o.path}"
            for o in (getattr(status, "outputs", None) or ())
            if getattr(o, "path", None)
        ]
        if getattr(status, "succeeded", False):
            return cls(
                task_id, input_uri, SUCCEEDED, outputs, None, None, getattr(status, "request_id", None)
            )
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
    """Progress of one batch wait. Rebuilt from scratch when a trigger restarts (re-derives progress)."""

    def __init__(self, tasks: Iterable[tuple[str, str]], *, started: float | None = None) -> None:
        #: task id → input URI, for every task of the batch.
        self.inputs: dict[str, str] = dict(tasks)
        self.pending: set[str] = set(self.inputs)
        self.results: dict[str, TaskResult] = {}
        self.started = time.monotonic() if started is None else started
        self.last_direct_check = self.started
        self.listing_calls = 0
        self.detail_calls = 0

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
        self.results[task_id] = TaskResult.from_status(task_id, self.inputs[task_id], status)
        self.pending.discard(task_id)
        return True

    def record_error(self, task_id: str, code: str, message: str, request_id: str | None) -> None:
        """A task that cannot be described any more (e.g. ResourceNotFound): resolved as failed."""
        if task_id in self.pending:
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


def manifest_lines(records: Iterable[Mapping[str, Any]]) -> bytes:
    """JSON lines, one per image, in input order (see docs/batch.md for the fields)."""
    return b"".join(
        json.dumps(dict(r), sort_keys=False, ensure_ascii=False).encode() + b"\n" for r in records
    )
