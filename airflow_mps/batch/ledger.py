"""Durable record of a batch's submissions, kept in Airflow's ``task_state_store`` (Airflow >= 3.3).

Why shards: a batch submits thousands of tasks at 20/s, and each record must be durable soon after its
``ProcessImage`` returns so that a retry adopts the task instead of paying for it twice. Rewriting one
giant ``{input: task_id}`` value per submission would be quadratic; instead records go to append-only
shards of :data:`SHARD_SIZE` entries (``mps_batch/0007``), flushed at most every
:data:`FLUSH_SECONDS`, plus one ``mps_batch/meta`` key (window start, shard count, generation, whether
the batch completed). A record lost because the worker died between ``ProcessImage`` and the flush is
recovered on the retry by listing the tasks created since the window start (see the operator).

Shards are never rewritten by a later try: a retry appends new shards, so a later record for the same
input (a resubmission) supersedes an earlier one while the earlier task id stays visible as history.

``store`` is anything with ``get(key, default=None)`` and ``set(key, value)`` — Airflow's
``TaskStateStoreAccessor`` or a dict-backed fake in tests.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

SHARD_SIZE = 50
FLUSH_SECONDS = 1.0
KEY_PREFIX = "mps_batch/"
META_KEY = KEY_PREFIX + "meta"
LEDGER_VERSION = 1


class KeyValueStore(Protocol):
    """The subset of ``TaskStateStoreAccessor`` the ledger uses."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


def shard_key(index: int) -> str:
    return f"{KEY_PREFIX}{index:04d}"


@dataclass
class LedgerState:
    """What a previous try left behind."""

    window_start: str | None = None
    completed: bool = False
    generation: int = 0
    #: input URI → the latest task id recorded for it.
    tasks: dict[str, str] = field(default_factory=dict)
    #: input URI → earlier task ids (oldest first) superseded by a resubmission.
    history: dict[str, list[str]] = field(default_factory=dict)
    #: The last task id recorded (the newest submission a retry knows of; see ``batch.adopt``).
    newest: str | None = None
    #: When the latest try started submitting (epoch seconds), or None: a try killed before its first
    #: record leaves no ``newest`` of its own, only this (``batch.resume`` waits on it).
    submit_at: float | None = None


class SubmissionLedger:
    """Append-only, sharded ``{input: task_id}`` records for one batch task instance.

    Thread-safe: ``add`` may be called from the submitter's threads; ``flush`` writes from the caller's
    thread (the operator calls it from the main thread).
    """

    def __init__(self, store: KeyValueStore | None) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._meta: dict[str, Any] = {}
        self._shard_index = 0
        self._shard: dict[str, str] = {}
        self._dirty = False
        self._last_flush = time.monotonic()
        self.writes = 0

    @property
    def durable(self) -> bool:
        return self.store is not None

    def load(self) -> LedgerState:
        """Read meta and every shard of the current generation."""
        state = LedgerState()
        if self.store is None:
            return state
        meta = self.store.get(META_KEY)
        if not isinstance(meta, dict) or meta.get("version") != LEDGER_VERSION:
            return state
        self._meta = dict(meta)
        state.window_start = meta.get("window_start")
        state.completed = bool(meta.get("completed"))
        state.generation = int(meta.get("generation", 0))
        submit_at = meta.get("submit_at")
        state.submit_at = float(submit_at) if isinstance(submit_at, (int, float)) else None
        index = 0
        # Read the shards meta knows about, then probe on: a shard may have been written just before a
        # crash that lost the meta update.
        while True:
            shard = self.store.get(shard_key(index))
            if not isinstance(shard, dict) or shard.get("g") != state.generation:
                if index >= int(meta.get("shards", 0)):
                    break
                index += 1
                continue
            for input_uri, task_id in (shard.get("t") or {}).items():
                previous = state.tasks.get(input_uri)
                if previous and previous != task_id:
                    state.history.setdefault(input_uri, []).append(previous)
                state.tasks[input_uri] = task_id
                state.newest = task_id
            index += 1
        self._shard_index = index
        return state

    def begin(self, window_start: str, *, fresh: bool) -> None:
        """Start recording. ``fresh`` starts a new generation (a new run of a completed batch)."""
        if self.store is None:
            return
        if fresh or not self._meta:
            generation = int(self._meta.get("generation", -1)) + 1 if self._meta else 0
            self._meta = {
                "version": LEDGER_VERSION,
                "generation": generation,
                "window_start": window_start,
                "shards": 0,
                "completed": False,
            }
            self._shard_index = 0
            self.store.set(META_KEY, self._meta)
            self.writes += 1

    def submitting(self, at: float) -> None:
        """Record that this try starts submitting at ``at`` (epoch seconds), before its first request:
        what a retry knows of submissions this try makes and dies before recording."""
        if self.store is None or not self._meta:
            return
        self._meta["submit_at"] = at
        self.store.set(META_KEY, self._meta)
        self.writes += 1

    def add(self, input_uri: str, task_id: str) -> None:
        with self._lock:
            self._shard[input_uri] = task_id
            self._dirty = True

    def maybe_flush(self) -> None:
        """Flush when a shard is full or :data:`FLUSH_SECONDS` passed since the last write."""
        with self._lock:
            due = len(self._shard) >= SHARD_SIZE or (
                self._dirty and time.monotonic() - self._last_flush >= FLUSH_SECONDS
            )
        if due:
            self.flush()

    def flush(self) -> None:
        """Write the current shard (and meta when a shard is added); start a new shard when full."""
        if self.store is None:
            return
        with self._lock:
            if not self._dirty:
                return
            records = dict(self._shard)
            index = self._shard_index
            full = len(records) >= SHARD_SIZE
            if full:
                self._shard = {}
                self._shard_index += 1
            self._dirty = False
            self._last_flush = time.monotonic()
        self.store.set(shard_key(index), {"g": self._meta["generation"], "t": records})
        self.writes += 1
        if self._meta.get("shards", 0) < index + 1:
            self._meta["shards"] = index + 1
            self.store.set(META_KEY, self._meta)
            self.writes += 1

    def mark_completed(self) -> None:
        """The batch finished (manifest written): a later run of this task instance starts afresh."""
        if self.store is None or not self._meta:
            return
        self.flush()
        self._meta["completed"] = True
        self.store.set(META_KEY, self._meta)
        self.writes += 1
