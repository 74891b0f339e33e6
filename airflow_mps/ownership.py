"""Which MPS task is ours: the rules that tell, from listings and task details, what a request created.

Three callers need to know which tasks on the service came from *their* ProcessImage requests:

* the hook, after an ambiguous ProcessImage failure (did the request arrive? reconcile, never resubmit
  blindly — docs/reliability.md);
* the single-image operator, when a try died between ProcessImage and recording the TaskId (adopt the
  task instead of creating a second one; apache/airflow#59075);
* the batch operator, on a retry, for every item a previous try submitted but never recorded.

The rules live here once, I/O-free: this module lists nothing and describes nothing. :func:`task_finder`
is a step machine — a generator that yields the I/O it needs (:class:`ListStep`, :class:`DetailStep`)
and is sent the answers — so the hook's sync and async paths (and the operators, through
``MpsHook.find_tasks_for``) drive the very same rules with their own I/O. :func:`match_listed_rows` is
the batch form: many wanted inputs against one set of listing rows.

Reading a listed ``Input`` is :func:`airflow_mps.models.parse_listed_input` (one parser for every
form the service, the SDK and the emulator send). ``airflow_mps.models`` is imported inside the
functions: ``airflow_mps.hooks.mps`` imports this module and DAG files import the hook, so nothing
here may cost DAG-parse time. Stdlib and ``airflow_mps.models`` only.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from airflow_mps.models import ImageTaskInfo

__all__ = [
    "TASK_STATUSES",
    "TIME_FORMAT",
    "DetailStep",
    "ListStep",
    "input_matches",
    "match_listed_rows",
    "task_finder",
]

log = logging.getLogger(__name__)

#: The task statuses DescribeImageTasks lists, in lifecycle order: listing them in this order sees a
#: task that moves on between two listings in the later one. (Moved from hooks/mps.py; one of the
#: copies ``airflow_mps.models.constants.TASK_STATES`` replaces at integration, issue 10 item 2.)
TASK_STATUSES = ("WAITING", "PROCESSING", "FINISH")
#: The API's time strings (``CreateTime``, ``StartTime``): UTC, whole seconds. (Moved from
#: hooks/mps.py; ``models.constants.API_TIME_FORMAT`` replaces it at integration.)
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class ListStep:
    """I/O request of :func:`task_finder`: every task in ``status`` listed from ``start`` (an API time
    string) → the ``ImageTaskInfo`` rows, all pages."""

    status: str
    start: str


@dataclass(frozen=True)
class DetailStep:
    """I/O request of :func:`task_finder`: the DescribeImageTaskDetail ``Response`` of ``task_id`` (the
    raw dict: the rules need ``InputInfo``, which ``ImageTaskStatus`` does not keep)."""

    task_id: str


def task_finder(
    body: Mapping[str, Any], since: datetime, skew_seconds: float
) -> Generator[ListStep | DetailStep, Any, list[str]]:
    """Ids of the tasks a ProcessImage of ``body`` (the API body) sent at ``since`` can have created.

    Rules: tasks of every status listed from ``since`` minus ``skew_seconds`` (client/server clock
    skew, one-second ``CreateTime`` resolution); our input named by the listing's ``Input`` (or, when
    the listing names none, by the task's ``InputInfo``); not provably another request's
    (``ImageTaskStatus.conflicts_with``: echoed ImageTask, or outputs outside our absolute OutputPath /
    OutputDir); when some were created in or after ``since``'s second, only those. Empty: nothing was
    created; several: ambiguous, the caller decides.

    A generator that yields what it needs (:class:`ListStep`, :class:`DetailStep`) and is sent the
    answer; it returns the ids. ``since`` must be timezone-aware (UTC).
    """
    from airflow_mps.models import listed_input_matches, request_input

    ours = request_input(body)
    if ours is None:  # no input we could recognise a task by
        return []
    start = since - timedelta(seconds=skew_seconds)
    start_floor = start.replace(microsecond=0)
    candidates: dict[str, ImageTaskInfo] = {}
    for status in TASK_STATUSES:  # lifecycle order: a task moving on is seen in a later listing
        rows = yield ListStep(status, start.strftime(TIME_FORMAT))
        for row in rows:
            candidates.setdefault(row.task_id, row)
    matches: list[tuple[str, datetime | None]] = []
    for task_id, row in candidates.items():
        created = _parse_time(row.create_time)
        if created is not None and created < start_floor:
            continue
        verdict = listed_input_matches(row.input, *ours)
        if verdict is False:
            continue
        # Same input (or the listing names none): the detail tells our task from another pipeline's.
        detail = yield DetailStep(task_id)
        if verdict is None:  # listing carries no input: ask the task itself
            verdict = _input_info_matches(detail.get("InputInfo"), body)
        if verdict and _same_request(detail, body, task_id):
            matches.append((task_id, created))
    return _narrow(matches, since)


def match_listed_rows(
    rows: Iterable[ImageTaskInfo], wanted: Mapping[tuple[str, str], K]
) -> dict[K, list[str]]:
    """Candidate task ids for many COS inputs at once, from DescribeImageTasks rows (retry adoption).

    ``wanted`` maps each COS input ``(bucket, key)`` — key without a leading slash, as in
    ``cos://bucket/key`` — to the caller's handle for it (an input URI, a batch item id). ``rows`` are
    the listing rows of every status, in any order (collect them first; a status the account cannot
    list is simply absent).

    A row is a candidate for an input when its ``Input`` names that key and no other bucket (a form
    that names no bucket, a bare ``/key``, matches that key in every wanted bucket). Rows naming
    another storage, a URL, or nothing at all match nothing. A task id listed twice (it moved on
    between two status listings) counts once. Each handle's candidates come newest first (by
    ``CreateTime``, then task id), the order to verify them in; handles without candidates are absent.

    Matching by input is not proof of ownership: another pipeline reading the same partition creates
    tasks with the same inputs. The caller describes each candidate in this order and keeps the first
    that ``ImageTaskStatus.conflicts_with(image_task=…, output_bucket=…, output_key=…)`` clears — the
    rule the single-task finder applies too.
    """
    from airflow_mps.models import parse_listed_input

    by_key: dict[str, list[tuple[str, K]]] = {}
    for (bucket, key), handle in wanted.items():
        by_key.setdefault(key, []).append((bucket, handle))
    found: dict[K, list[tuple[str, str]]] = {}
    seen: set[str] = set()
    for row in rows:
        parsed = parse_listed_input(row.input)
        if parsed is None or parsed[0] not in (None, "COS") or row.task_id in seen:
            continue
        seen.add(row.task_id)
        _kind, listed_bucket, listed_key = parsed
        for bucket, handle in by_key.get(listed_key, ()):
            if listed_bucket is None or listed_bucket == bucket:
                found.setdefault(handle, []).append((row.create_time or "", row.task_id))
    return {
        handle: [task_id for _created, task_id in sorted(pairs, reverse=True)]
        for handle, pairs in found.items()
    }


def input_matches(listed: Any, body: Mapping[str, Any]) -> bool | None:
    """Whether a listed ``Input`` (or an ``InputInfo`` object) names the input of ``body``; None when
    it names nothing (or ``body`` has no recognisable input).

    One parser for the hook and the batch operator: :func:`airflow_mps.models.listed_input_matches`.
    """
    from airflow_mps.models import listed_input_matches, request_input

    ours = request_input(body)
    if ours is None:
        return None
    return listed_input_matches(listed, *ours)


def _parse_time(value: str | None) -> datetime | None:
    """The UTC datetime of an API time string; None when unset (``0000-…``), absent or unparsable."""
    if not value or value.startswith("0000"):
        return None
    try:
        return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def _narrow(matches: list[tuple[str, datetime | None]], since: datetime) -> list[str]:
    """Prefer tasks created in or after the second of ``since``.

    ``CreateTime`` has one-second resolution and the window reaches back by the clock-skew allowance,
    so an earlier submission of the same input (a previous try, a mapped sibling a few seconds ago)
    can fall inside it. When a match is at/after our own send second, only those count; only when
    none is (the server clock is behind ours) do the skew-window matches count.
    """
    floor = since.replace(microsecond=0)
    strict = [task_id for task_id, created in matches if (created or floor) >= floor]
    return strict if strict else [task_id for task_id, _created in matches]


def _input_info_matches(info: Any, body: Mapping[str, Any]) -> bool:
    """Whether a DescribeImageTaskDetail ``InputInfo`` object is our input."""
    if not isinstance(info, Mapping):
        return False
    return bool(input_matches(info, body))


def _same_request(detail: Mapping[str, Any], body: Mapping[str, Any], task_id: str) -> bool:
    """False when a task with our input provably came from another request (another pipeline).

    Proofs (``ImageTaskStatus.conflicts_with``): the echoed ImageTask contradicts ours, or the task
    finished with outputs outside our absolute ``OutputPath`` / our ``OutputDir``. Without a proof
    the task counts as ours (null tolerance). A relative OutputPath or the default naming is not
    checked: predicting the service's naming wrongly would turn our own task into "not ours" and
    cause the duplicate reconciliation exists to prevent.
    """
    from airflow_mps.models import ImageTaskStatus, request_input

    status = ImageTaskStatus.from_api(detail, task_id=task_id)
    output_path = body.get("OutputPath")
    absolute = isinstance(output_path, str) and output_path.startswith("/") and "{" not in output_path
    storage = (body.get("OutputStorage") or {}).get("CosOutputStorage") or {}
    ours = request_input(body)
    reason = status.conflicts_with(
        image_task=body.get("ImageTask"),
        output_bucket=storage.get("Bucket") or (ours[1] if ours and ours[0] == "COS" else None),
        output_key=output_path if absolute else None,
        output_dir=body.get("OutputDir") if not absolute else None,
    )
    if reason is not None:
        log.info("Reconciliation: task %s has our input but is not ours: %s", task_id, reason)
    return reason is None
