"""Retry adoption: which tasks of an earlier try are this batch's, so a retry never pays twice.

The ledger (``task_state_store``) names most of them. What it lost — a worker that died between
``ProcessImage`` and the ledger write, or Airflow < 3.3 with no store at all — is found by listing the
tasks created since the first try's window start (:func:`reconcile`) and matching their inputs with the
one ownership rule, :func:`airflow_mps.ownership.match_listed_rows`; each candidate is described and
kept only when nothing proves it is someone else's. Adopted tasks are then checked once
(:func:`check_adopted`): FINISHed with a failure, or gone, → resubmitted.

What the documented service lets a listing see (issue 11; docs/batch.md, "Durability"):

* ``DescribeImageTasks`` takes ``Status`` FINISH or PROCESSING only: a WAITING task is invisible to
  every listing. Tasks the ledger recorded are adopted by id whatever their state (a detail call
  answers for a WAITING task); before listing for unrecorded ones, :func:`wait_until_started` lets the
  previous try's newest recorded task leave WAITING, so the few sent after it are listable too.
* A listing row need not carry ``Input`` (its format is unpublished; the official example omits it).
  Rows that name no input are described, newest first and at most :func:`describe_cap` of them, and
  matched on the detail's ``InputInfo`` — the rule of :func:`airflow_mps.ownership.task_finder`
  ("the listing names no input → ask the task itself"), applied here through the same
  ``match_listed_rows`` with the detail's ``InputInfo`` in place of the listing's ``Input``. The
  detail that names the input also verifies it: one call per candidate.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from airflow_mps.batch.plan import BatchItem, CosLocation
from airflow_mps.errors import MpsError, MpsInvalidParameterError, MpsResourceNotFoundError
from airflow_mps.models.constants import FINISH, PROCESSING, WAITING

if TYPE_CHECKING:
    from airflow_mps.models import ImageTaskInfo
    from airflow_mps.waits.batch import WaitLog

#: The statuses a retry lists, in lifecycle order (a task moving on between two listings is seen in
#: the later one). ``DescribeImageTasks`` documents only these two (api.json: ``Status`` required,
#: FINISH | PROCESSING; the strict emulator refuses WAITING with InvalidParameterValue).
RECONCILE_STATUSES = (PROCESSING, FINISH)

#: Rows that name no input are described to learn it, newest first, at most
#: ``max(MIN_DESCRIBE_CAP, DESCRIBES_PER_ITEM × gap)`` of them: describing one costs a Describe call
#: (1/20 s at the strictest documented limit), about what resubmitting the image would cost in time
#: — without paying MPS twice — so a few per missing image are worth it, and no more.
MIN_DESCRIBE_CAP = 500
DESCRIBES_PER_ITEM = 4

#: How long a retry lets the previous try's newest recorded task leave WAITING before listing.
SETTLE_MAX_SECONDS = 600.0

_log = logging.getLogger(__name__)


def describe_cap(gap: int) -> int:
    """How many input-less listing rows a retry describes for ``gap`` items without a known task."""
    return max(MIN_DESCRIBE_CAP, DESCRIBES_PER_ITEM * gap)


def listed_candidates(rows: Iterable[Any], items: Sequence[BatchItem]) -> dict[str, list[str]]:
    """Input URI → ids of listed tasks that may be that item's, newest first: the one ownership rule,
    :func:`airflow_mps.ownership.match_listed_rows` (the caller verifies each candidate)."""
    from airflow_mps.ownership import match_listed_rows

    return match_listed_rows(rows, {(item.input_bucket, item.input_key): item.input_uri for item in items})


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


def _as_row(task_id: str, create_time: str | None, detail: Mapping[str, Any]) -> ImageTaskInfo:
    """A listing row naming the input the task's detail names (what ``match_listed_rows`` reads)."""
    from airflow_mps.models import ImageTaskInfo

    info = detail.get("InputInfo")
    named = json.dumps(info, sort_keys=True) if isinstance(info, Mapping) else None
    return ImageTaskInfo(task_id=task_id, create_time=create_time, input=named)


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

    Rows are matched by their ``Input``; rows without one are described — newest first, at most
    :func:`describe_cap` of ``needed``, and only until every ``needed`` item is matched — and matched
    by the detail's ``InputInfo``. ``needed`` are the input URIs that would otherwise be submitted
    (no output yet; default: all): items whose output exists are adopted when their task turns up,
    but never paid a describe call for. Every candidate is kept only when nothing proves it is
    someone else's: its echoed ImageTask agrees with ours and, once finished, its output is at our
    output key (``ImageTaskStatus.conflicts_with``). ``known_ids`` (tasks already adopted) are never
    candidates.
    """
    logger: WaitLog = log or _log
    if not items:
        return {}
    known = set(known_ids)
    rows = [row for row in list_recent(hook, window_start, logger) if row.task_id not in known]
    by_uri = {item.input_uri: item for item in items}
    wanted = set(by_uri) if needed is None else set(needed) & set(by_uri)
    details: dict[str, Mapping[str, Any] | None] = {}
    found: dict[str, str] = {}

    def verify(candidates: Mapping[str, list[str]]) -> None:
        """Keep, for each item still unmatched, its newest candidate that is provably not another's."""
        todo = {uri: ids for uri, ids in candidates.items() if uri not in found}
        missing = sorted({t for ids in todo.values() for t in ids if t not in details})
        details.update(_describe_all(hook, missing, workers))
        for uri, task_ids in todo.items():
            task_id = _first_ours(task_ids, details, by_uri[uri], image_task, destination, logger)
            if task_id is not None:
                found[uri] = task_id

    named = [row for row in rows if row.input]
    verify(listed_candidates(named, items))
    unnamed = sorted((row for row in rows if not row.input), key=_newest_first, reverse=True)
    if not wanted:
        unnamed = []  # nothing would be submitted: no describe call is worth paying
    cap = describe_cap(len(wanted))
    if len(unnamed) > cap:
        logger.warning(
            "Adoption: %d tasks listed since %s name no input; describing the newest %d of them (cap). "
            "An image whose earlier task is among the %d older ones may be submitted twice.",
            len(unnamed),
            window_start,
            cap,
            len(unnamed) - cap,
        )
        unnamed = unnamed[:cap]
    chunk = max(1, 4 * workers)
    for start in range(0, len(unnamed), chunk):
        if wanted <= found.keys():
            break  # every item that needs one has its task: older rows cannot change that
        batch = unnamed[start : start + chunk]
        fetched = _describe_all(hook, [r.task_id for r in batch], workers)
        details.update(fetched)
        described = [_as_row(r.task_id, r.create_time, d) for r in batch if (d := fetched[r.task_id])]
        verify(listed_candidates(described, [by_uri[u] for u in by_uri if u not in found]))
    return found


def _newest_first(row: Any) -> tuple[str, str]:
    """Sort key of a listing row: ``CreateTime``, then task id (the order ``match_listed_rows`` uses)."""
    return (row.create_time or "", row.task_id)


def _describe_all(hook: Any, task_ids: Sequence[str], workers: int) -> dict[str, Mapping[str, Any] | None]:
    """Task id → its raw detail (``None``: gone), on a few threads (the hook paces Describe calls)."""
    if not task_ids:
        return {}
    with ThreadPoolExecutor(max(1, min(workers, len(task_ids)))) as pool:
        return dict(pool.map(lambda t: (t, _describe_raw(hook, t)), task_ids))


def _first_ours(
    task_ids: Sequence[str],
    details: Mapping[str, Mapping[str, Any] | None],
    item: BatchItem,
    image_task: Mapping[str, Any] | None,
    destination: CosLocation,
    log: WaitLog,
) -> str | None:
    """The first of ``task_ids`` (newest first) that nothing proves to be another request's."""
    from airflow_mps.models import ImageTaskStatus

    for task_id in task_ids:
        detail = details.get(task_id)
        if detail is None:  # gone: nothing to adopt
            continue
        status = ImageTaskStatus.from_api(detail, task_id=task_id)
        reason = status.conflicts_with(
            image_task=image_task, output_bucket=destination.bucket, output_key=item.output_key
        )
        if reason is None:
            return task_id
        log.info("Not adopting task %s for %s: %s", task_id, item.input_uri, reason)
    return None


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
