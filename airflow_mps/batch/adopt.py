"""Retry adoption: which tasks of an earlier try are this batch's, so a retry never pays twice.

The ledger (``task_state_store``) names most of them. What it lost — a worker that died between
``ProcessImage`` and the ledger write, or Airflow < 3.3 with no store at all — is found by listing the
tasks created since the first try's window start (:func:`reconcile`): the ownership rule
(:func:`airflow_mps.ownership.match_listed_rows`, pure) picks the listed rows whose input is one of ours, and each candidate is described and kept only when
nothing proves it is someone else's. Adopted tasks are then checked once (:func:`check_adopted`):
FINISHed with a failure, or gone, → resubmitted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from airflow_mps.batch.plan import BatchItem, CosLocation
from airflow_mps.errors import MpsInvalidParameterError, MpsResourceNotFoundError

if TYPE_CHECKING:
    from airflow_mps.waits.batch import WaitLog

#: Statuses listed when reconciling a retry (WAITING is not accepted everywhere; errors are tolerated).
RECONCILE_STATUSES = ("WAITING", "PROCESSING", "FINISH")

_log = logging.getLogger(__name__)


def listed_candidates(rows: Iterable[Any], items: Sequence[BatchItem]) -> dict[str, list[str]]:
    """Input URI → ids of listed tasks that may be that item's, newest first: the one ownership rule,
    :func:`airflow_mps.ownership.match_listed_rows` (the caller verifies each candidate)."""
    from airflow_mps.ownership import match_listed_rows

    return match_listed_rows(rows, {(item.input_bucket, item.input_key): item.input_uri for item in items})


def _list_recent(hook: Any, window_start: str, log: WaitLog) -> list[Any]:
    """Every task created since ``window_start``, status by status (a status the API refuses is skipped)."""
    rows: list[Any] = []
    for status in RECONCILE_STATUSES:
        try:
            rows.extend(hook.list_image_tasks(status, start_time=window_start))
        except MpsInvalidParameterError as err:
            log.info("Listing %s tasks is not supported (%s); skipping that status", status, err.code)
    return rows


def reconcile(
    hook: Any,
    items: Sequence[BatchItem],
    window_start: str,
    *,
    image_task: Mapping[str, Any] | None,
    destination: CosLocation,
    workers: int,
    log: WaitLog | None = None,
) -> dict[str, str]:
    """Find tasks an earlier try created for ``items`` but never recorded: input URI → task id.

    Every candidate is described and kept only when nothing proves it is someone else's: its echoed
    ImageTask agrees with ours and, once finished, its output is at our output key
    (``ImageTaskStatus.conflicts_with``). Newest candidate first; a refused one is logged.
    """
    logger: WaitLog = log or _log
    candidates = listed_candidates(_list_recent(hook, window_start, logger), items)
    if not candidates:
        return {}
    by_uri = {item.input_uri: item for item in items}

    def verify(entry: tuple[str, list[str]]) -> tuple[str, str | None]:
        uri, task_ids = entry
        for task_id in task_ids:
            try:
                status = hook.describe_image_task(task_id)
            except MpsResourceNotFoundError:
                continue
            reason = status.conflicts_with(
                image_task=image_task, output_bucket=destination.bucket, output_key=by_uri[uri].output_key
            )
            if reason is None:
                return uri, task_id
            logger.info("Not adopting task %s for %s: %s", task_id, uri, reason)
        return uri, None

    with ThreadPoolExecutor(workers) as pool:
        verified = dict(pool.map(verify, candidates.items()))
    return {uri: task_id for uri, task_id in verified.items() if task_id is not None}


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
