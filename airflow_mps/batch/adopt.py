"""Retry adoption: which tasks of an earlier try are this batch's, so a retry never pays twice.

The ledger (``task_state_store``) names most of them. What it lost — a worker that died between
``ProcessImage`` and the ledger write, or Airflow < 3.3 with no store at all — is found by listing the
tasks created since the first try's window start (:func:`reconcile`). Which listed task is an item's is
decided by :func:`airflow_mps.ownership.batch_finder` — the rules the single-image paths use too
(input, newest first, the describe cap, the conflict proof); this module is its I/O driver: it lists,
and describes what the finder asks for on a few threads. Adopted tasks are then checked once
(:func:`check_adopted`): FINISHed with a failure, or gone, → resubmitted.

What the documented service lets a listing see (issue 11; docs/batch.md, "Durability"):

* ``DescribeImageTasks`` takes ``Status`` FINISH or PROCESSING only: a WAITING task is invisible to
  every listing. Tasks the ledger recorded are adopted by id whatever their state (a detail call
  answers for a WAITING task); before listing for unrecorded ones, :func:`wait_until_started` lets the
  previous try's newest recorded task leave WAITING, so the few sent after it are listable too.
* A listing row need not carry ``Input`` (its format is unpublished; the official example omits it).
  Rows that name no input are described, newest first and at most
  :func:`airflow_mps.ownership.batch_describe_cap` of them, and matched on the detail's ``InputInfo``;
  the detail that names the input also verifies it: one call per candidate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from airflow_mps.batch.plan import BatchItem, CosLocation
from airflow_mps.errors import MpsError, MpsInvalidParameterError, MpsResourceNotFoundError
from airflow_mps.models.constants import FINISH, PROCESSING, WAITING
from airflow_mps.ownership import DetailsStep, Fingerprint, batch_finder
from airflow_mps.steps import drive

if TYPE_CHECKING:
    from airflow_mps.models import ImageTaskInfo
    from airflow_mps.waits.batch import WaitLog

#: The statuses a retry lists, in lifecycle order (a task moving on between two listings is seen in
#: the later one). ``DescribeImageTasks`` documents only these two (api.json: ``Status`` required,
#: FINISH | PROCESSING; the strict emulator refuses WAITING with InvalidParameterValue).
RECONCILE_STATUSES = (PROCESSING, FINISH)

#: Rows naming no input are described ``DESCRIBE_CHUNK_PER_WORKER × workers`` per step, so the search
#: stops soon after every missing image has its task.
DESCRIBE_CHUNK_PER_WORKER = 4

#: How long a retry lets the previous try's newest recorded task leave WAITING before listing.
SETTLE_MAX_SECONDS = 600.0

_log = logging.getLogger(__name__)


def fingerprint(
    item: BatchItem, image_task: Mapping[str, Any] | None, destination: CosLocation
) -> Fingerprint:
    """What ``item``'s request leaves on its task. The output key is the one the plan rendered (MPS
    fills the request's ``{format}`` to it), so unlike a request body's placeholder path it is checked."""
    return Fingerprint(
        "COS",
        item.input_bucket,
        item.input_key,
        image_task=image_task,
        output_bucket=destination.bucket,
        output_key=item.output_key,
    )


def list_recent(hook: Any, window_start: str, log: WaitLog | None = None) -> list[ImageTaskInfo]:
    """Every listable task created since ``window_start``: PROCESSING then FINISH, each id once.

    A status the service refuses is logged and skipped (the other still counts).
    """
    logger: WaitLog = log or _log
    rows: dict[str, ImageTaskInfo] = {}
    for status in RECONCILE_STATUSES:
        try:
            for row in hook.list_image_tasks(status, start_time=window_start):
                rows.setdefault(row.task_id, row)
        except MpsInvalidParameterError as err:
            logger.info("Listing %s tasks is not supported (%s); skipping that status", status, err.code)
    return list(rows.values())


def _describe_raw(hook: Any, task_id: str) -> Mapping[str, Any] | None:
    """The raw DescribeImageTaskDetail ``Response`` (``InputInfo`` is not kept by ``ImageTaskStatus``);
    ``None`` when MPS no longer knows the task."""
    try:
        response: Mapping[str, Any] = hook._describe_response(task_id)
    except MpsResourceNotFoundError:
        return None
    return response


def reconcile(
    hook: Any,
    items: Sequence[BatchItem],
    window_start: str,
    *,
    image_task: Mapping[str, Any] | None,
    destination: CosLocation,
    workers: int,
    known_ids: Iterable[str] = (),
    needed: Iterable[str] | None = None,
    log: WaitLog | None = None,
) -> dict[str, str]:
    """Find tasks an earlier try created for ``items`` but never recorded: input URI → task id.

    Lists, then drives :func:`airflow_mps.ownership.batch_finder` (its docstring has the rules):
    rows are matched by their ``Input``; rows without one are described — newest first, at most
    :func:`~airflow_mps.ownership.batch_describe_cap` of ``needed``, and only until every ``needed``
    item is matched. ``needed`` are the input URIs that would otherwise be submitted (no output yet;
    default: all): items whose output exists are adopted when their task turns up, but never paid a
    describe call for. Every candidate is kept only when nothing proves it is someone else's
    (:meth:`~airflow_mps.ownership.Fingerprint.conflict`). ``known_ids`` (tasks already adopted) are
    never candidates.
    """
    logger: WaitLog = log or _log
    if not items:
        return {}
    known = set(known_ids)
    rows = [row for row in list_recent(hook, window_start, logger) if row.task_id not in known]
    finder = batch_finder(
        rows,
        {item.input_uri: fingerprint(item, image_task, destination) for item in items},
        needed=needed,
        chunk=DESCRIBE_CHUNK_PER_WORKER * workers,
        listed_since=window_start,
        log=logger,
    )
    return drive(finder, lambda step: _describe_all(hook, step, workers), throw=())


def _describe_all(hook: Any, step: DetailsStep, workers: int) -> dict[str, Mapping[str, Any] | None]:
    """Task id → its raw detail (``None``: gone), on a few threads (the hook paces Describe calls)."""
    if not step.task_ids:
        return {}
    with ThreadPoolExecutor(max(1, min(workers, len(step.task_ids)))) as pool:
        return dict(pool.map(lambda t: (t, _describe_raw(hook, t)), step.task_ids))


def wait_until_started(
    hook: Any,
    task_id: str,
    *,
    until: float,
    interval: float,
    log: WaitLog | None = None,
    sleep: Callable[[float], None] | None = None,
    now: Callable[[], float] = time.time,
) -> bool:
    """Describe ``task_id`` (the previous try's newest recorded task) until it is no longer WAITING.

    Tasks the previous try sent after it — whose records a crash lost — are queued behind it: while it
    is WAITING they are too, and no listing shows them. Returns True once it left WAITING (or MPS no
    longer knows it), False when ``until`` passed first (the caller goes on, warned). A failing detail
    call is logged and retried within the bound.
    """
    logger: WaitLog = log or _log
    while True:
        try:
            status = hook.describe_image_task(task_id)
            if status.state != WAITING:
                return True
        except MpsResourceNotFoundError:
            return True
        except MpsError as err:
            logger.warning("Describing %s to see whether it left WAITING failed: %s", task_id, err)
        remaining = until - now()
        if remaining <= 0:
            return False
        logger.info(
            "The previous try's newest task %s is still WAITING; tasks sent after it are not listable "
            "yet — waiting %.0f s more at most",
            task_id,
            remaining,
        )
        (sleep or time.sleep)(min(interval, remaining))  # looked up per call, never bound at import


def check_adopted(
    hook: Any, adopted: Mapping[str, str], *, workers: int
) -> tuple[dict[str, str], dict[str, str]]:
    """Split adopted tasks into (keep, resubmit): FINISHed-with-failure and vanished ones are redone."""
    keep: dict[str, str] = {}
    redo: dict[str, str] = {}

    def describe(entry: tuple[str, str]) -> tuple[str, str, bool]:
        uri, task_id = entry
        try:
            status = hook.describe_image_task(task_id)
        except MpsResourceNotFoundError:
            return uri, task_id, False
        return uri, task_id, not status.failed

    with ThreadPoolExecutor(workers) as pool:
        for uri, task_id, kept in pool.map(describe, adopted.items()):
            (keep if kept else redo)[uri] = task_id
    return keep, redo
