"""Phases 3 and 4 of a batch try: what earlier tries submitted (adopt), what already exists (skip).

A try opens the ledger, adopts the tasks it names, finds the ones a crash left unrecorded
(:mod:`airflow_mps.batch.adopt`), then splits the planned items into adopted, skipped (the output
exists) and to submit. docs/batch.md ("Durability") is the user-facing account; the operator
(``MpsBatchProcessImageOperator``) calls :func:`open_try` then :func:`skip_existing`.

No Airflow import: the hook, the store and the logger are passed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_mps.batch.adopt import SETTLE_MAX_SECONDS, check_adopted, reconcile, wait_until_started
from airflow_mps.batch.ledger import LedgerState, SubmissionLedger
from airflow_mps.batch.plan import BatchConfig, BatchItem
from airflow_mps.models.constants import format_api_time

if TYPE_CHECKING:
    from airflow_mps.waits.batch import WaitLog

#: The listing window starts this long before the first submission (clock skew between us and MPS).
WINDOW_SKEW = timedelta(minutes=5)


@dataclass
class Try:
    """What one try knows before it submits: the items, the ledger, and what it adopts or skips."""

    items: list[BatchItem]
    ledger: SubmissionLedger
    #: ``StartTime`` of every listing of this batch (a few minutes before its first submission).
    window_start: str
    #: input URI → task id of tasks an earlier try submitted, waited for instead of resubmitted.
    adopted: dict[str, str] = field(default_factory=dict)
    #: input URI → earlier task ids of a resubmitted image (the manifest's ``previous_task_ids``).
    history: dict[str, list[str]] = field(default_factory=dict)
    #: input URIs whose output exists (not submitted).
    skipped: set[str] = field(default_factory=set)
    to_submit: list[BatchItem] = field(default_factory=list)


@dataclass(frozen=True)
class TryContext:
    """What :func:`open_try` needs from the operator and the task instance."""

    hook: Any
    #: ``task_state_store`` (Airflow ≥ 3.3) or ``None``.
    store: Any
    log: WaitLog
    try_number: int
    #: The DAG run's start (where a retry without a durable ledger lists from), or ``None``.
    run_start: datetime | None
    workers: int
    poll_interval: float
    #: Absolute deadline of this try (epoch seconds): bounds the settling wait.
    deadline: float
    #: How long after the previous try started submitting a task of it may still be WAITING (the hook's
    #: ``reconcile_deadline_seconds``, the patience a single image's retry has too).
    patience: float = 60.0
    #: Injected for tests; ``time.sleep`` (looked up per call) otherwise.
    sleep: Callable[[float], None] | None = None


def open_try(ctx: TryContext, items: list[BatchItem], cfg: BatchConfig, existing: set[str]) -> Try:
    """Open this try's ledger and adopt what earlier tries submitted for ``items``.

    ``existing`` (the destination's keys, listed before any task listing) tells which items the
    search for unrecorded tasks must not miss: those without an output (the others are skipped if
    their task is not found).
    """
    ledger = SubmissionLedger(ctx.store)
    previous: LedgerState = ledger.load()
    fresh = previous.completed or previous.window_start is None
    if previous.completed:
        ctx.log.info("The previous run of this task completed; starting afresh")
        previous = LedgerState()
    window_start = previous.window_start or format_api_time(datetime.now(timezone.utc) - WINDOW_SKEW)
    ledger.begin(window_start, fresh=fresh)
    ours = {i.input_uri for i in items}
    run = Try(
        items,
        ledger,
        window_start,
        adopted={uri: tid for uri, tid in previous.tasks.items() if uri in ours},
        history={uri: list(h) for uri, h in previous.history.items() if uri in ours},
    )
    reconcile_from = _reconcile_from(ctx, previous, ledger)
    if reconcile_from is not None:
        gap = [i for i in items if i.input_uri not in run.adopted]
        needed = {i.input_uri for i in gap if i.output_key not in existing}
        if needed and ledger.durable:
            if previous.newest:
                _settle(ctx, previous.newest)
            if previous.submit_at is not None:
                _settle_unrecorded(ctx, previous.submit_at)
        _adopt_unrecorded(ctx, run, gap, needed, reconcile_from, cfg)
    return run


def _reconcile_from(ctx: TryContext, previous: LedgerState, ledger: SubmissionLedger) -> str | None:
    """Where to list for unrecorded tasks: only when a previous try happened (its window start, or
    without a durable ledger the DAG run's start on a retry)."""
    if previous.window_start is not None:
        return previous.window_start
    if ledger.durable or ctx.try_number <= 1:
        return None
    return format_api_time(ctx.run_start - WINDOW_SKEW) if ctx.run_start else None


def _settle(ctx: TryContext, newest: str) -> None:
    """Let the previous try's newest recorded task leave WAITING before listing: tasks sent after it
    (records a crash lost) queue behind it, and no listing shows a WAITING task (issue 11)."""
    until = min(time.time() + SETTLE_MAX_SECONDS, ctx.deadline)
    if not wait_until_started(ctx.hook, newest, until=until, interval=ctx.poll_interval, log=ctx.log):
        ctx.log.warning(
            "The previous try's newest task %s is still WAITING after %.0f s: tasks it sent after that "
            "one without recording them are not listable yet and may be submitted again",
            newest,
            SETTLE_MAX_SECONDS,
        )


def _settle_unrecorded(ctx: TryContext, submit_at: float) -> None:
    """Let what the previous try sent leave WAITING before listing, when that try started submitting
    less than ``ctx.patience`` ago: a try killed before its first record leaves no task to watch
    (:func:`_settle` needs one), and a retry that lists while its tasks are WAITING pays for them twice
    (found by tests/reliability/test_sigkill_trials.py). Airflow's default ``retry_delay`` (5 minutes)
    is longer than the patience, so normally this waits for nothing."""
    left = min(submit_at + ctx.patience, ctx.deadline) - time.time()
    if left <= 0:
        return
    ctx.log.info(
        "The previous try started submitting %.0f s ago; its unrecorded tasks may still be WAITING "
        "(not listable): listing in %.1f s",
        time.time() - submit_at,
        left,
    )
    (ctx.sleep or time.sleep)(left)


def _adopt_unrecorded(
    ctx: TryContext, run: Try, gap: list[BatchItem], needed: set[str], reconcile_from: str, cfg: BatchConfig
) -> None:
    """Adopt tasks an earlier try created for ``gap`` but never recorded (listed, then verified);
    ``needed`` are the gap items without an output (what the search must not miss)."""
    if gap:
        known = set(run.adopted.values()) | {t for ids in run.history.values() for t in ids}
        recovered = reconcile(
            ctx.hook,
            gap,
            reconcile_from,
            image_task=cfg.image_task,
            destination=cfg.destination,
            workers=ctx.workers,
            known_ids=known,
            needed=needed,
            log=ctx.log,
        )
        if recovered:
            ctx.log.info(
                "Adopted %d tasks found by listing (records lost by the previous try)", len(recovered)
            )
            for uri, tid in recovered.items():
                run.adopted[uri] = tid
                run.ledger.add(uri, tid)
            run.ledger.flush()
    run.window_start = min(run.window_start, reconcile_from)


def skip_existing(hook: Any, run: Try, existing: set[str], *, workers: int, log: WaitLog) -> None:
    """Split the items into adopted, skipped (output exists) and to submit.

    Adopted tasks without an output yet are described once: FINISHed with a failure or gone →
    resubmitted (a retry is a request to try again), the earlier task id kept as history.
    """
    if run.adopted:
        output_of = {i.input_uri: i.output_key for i in run.items}
        unfinished = {u: t for u, t in run.adopted.items() if output_of[u] not in existing}
        done_ok = {u: t for u, t in run.adopted.items() if u not in unfinished}
        keep, redo = check_adopted(hook, unfinished, workers=workers) if unfinished else ({}, {})
        for uri, tid in redo.items():
            run.history.setdefault(uri, []).append(tid)
            log.info("Resubmitting %s: its earlier task %s failed or vanished", uri, tid)
        run.adopted = {**done_ok, **keep}
        log.info(
            "Adopted %d tasks from the previous try; %d will be resubmitted", len(run.adopted), len(redo)
        )
    run.skipped = {
        i.input_uri for i in run.items if i.input_uri not in run.adopted and i.output_key in existing
    }
    run.to_submit = [
        i for i in run.items if i.input_uri not in run.adopted and i.input_uri not in run.skipped
    ]
    if run.to_submit:
        run.ledger.submitting(time.time())
    log.info(
        "%d images: %d to submit, %d adopted, %d skipped (output exists)",
        len(run.items),
        len(run.to_submit),
        len(run.adopted),
        len(run.skipped),
    )
