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

What the service lets us see (issue 11; api.json for DescribeImageTasks): only ``PROCESSING`` and
``FINISH`` tasks are listable (``Status`` is required and enumerates those two), and a row's ``Input``
is an unpublished string the official example omits. So the finder lists those two statuses only,
and a row that names no input is *described* — bounded: only rows created inside the window, newest
first, at most ``max_describes`` of them (past the cap it refuses with a clear error rather than
spend the account's Describe quota for minutes). A task still ``WAITING`` is invisible to the
listing, so an empty result is **not** proof that nothing was created; what a caller may conclude
from it is its own rule (the hook's: keep looking until a settle deadline, then
``MpsAmbiguousSubmissionError``, never a blind resubmission — docs/reliability.md).

Reading a listed ``Input`` is :func:`airflow_mps.models.parse_listed_input` (one parser for every
form the service, the SDK and the emulator send); the domain constants (task states, the API time
format) are :mod:`airflow_mps.models.constants`'. Stdlib, ``airflow_mps.errors`` and
``airflow_mps.models`` only.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_mps.errors import MpsAmbiguousSubmissionError
from airflow_mps.models.constants import API_TIME_FORMAT, LISTED_TASK_STATES

if TYPE_CHECKING:
    from airflow_mps.models import ImageTaskInfo

__all__ = [
    "MAX_DESCRIBES",
    "DetailStep",
    "ListStep",
    "input_matches",
    "match_listed_rows",
    "task_finder",
]

log = logging.getLogger(__name__)

#: Default cap on the listed tasks :func:`task_finder` describes because their row names no input:
#: 200 DescribeImageTaskDetail calls are 10 s of the default 20/s Describe quota.
MAX_DESCRIBES = 200
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class ListStep:
    """I/O request of :func:`task_finder`: every task in ``status`` listed from ``start`` to ``end``
    (API time strings; ``end`` None = up to now) → the ``ImageTaskInfo`` rows, all pages."""

    status: str
    start: str
    end: str | None = None


@dataclass(frozen=True)
class DetailStep:
    """I/O request of :func:`task_finder`: the DescribeImageTaskDetail ``Response`` of ``task_id`` (the
    raw dict: the rules need ``InputInfo``, which ``ImageTaskStatus`` does not keep)."""

    task_id: str


def task_finder(
    body: Mapping[str, Any],
    since: datetime,
    skew_seconds: float,
    *,
    until: datetime | None = None,
    max_describes: int = MAX_DESCRIBES,
    known: dict[str, bool] | None = None,
) -> Generator[ListStep | DetailStep, Any, list[str]]:
    """Ids of the tasks a ProcessImage of ``body`` (the API body) sent at ``since`` can have created.

    Rules:

    * **Window**: tasks created from ``since`` minus ``skew_seconds`` (client/server clock skew,
      one-second ``CreateTime`` resolution) up to ``until`` plus ``skew_seconds`` (``until`` None: up
      to now). A ProcessImage that failed at time T cannot have created a task after T.
    * **Listing**: PROCESSING and FINISH only (:data:`LISTED_TASK_STATES`; WAITING is not listable).
    * **Input**: a row whose ``Input`` names another input is dropped unread; one naming ours, or
      naming nothing, is described, newest first — for the latter the task's ``InputInfo`` decides.
      More than ``max_describes`` rows naming nothing → ``MpsAmbiguousSubmissionError``
      (code ``AmbiguousSubmission.TooManyCandidates``), before any describe.
    * **Request**: a task with our input that provably came from another request
      (``ImageTaskStatus.conflicts_with``: echoed ImageTask, outputs outside our absolute OutputPath /
      OutputDir) is not ours.
    * **Narrowing**: when some matches were created in or after ``since``'s second, only those count.

    Empty: no listable task is ours — a task still WAITING is not seen, so this is not proof that
    nothing was created. Several: ambiguous, the caller decides.

    ``known`` (optional, updated in place) remembers the tasks proven not ours (their input or their
    request never changes), so a caller that runs the finder again — the hook polls until a settle
    deadline — describes each task at most once.

    A generator that yields what it needs (:class:`ListStep`, :class:`DetailStep`) and is sent the
    answer; it returns the ids. ``since`` and ``until`` must be timezone-aware (UTC).
    """
    from airflow_mps.models import listed_input_matches, request_input

    ours = request_input(body)
    if ours is None:  # no input we could recognise a task by
        return []
    memo: dict[str, bool] = {} if known is None else known
    start = since - timedelta(seconds=skew_seconds)
    start_floor = start.replace(microsecond=0)
    end = None if until is None else until + timedelta(seconds=skew_seconds)
    end_text = None if end is None else end.strftime(API_TIME_FORMAT)
    rows: dict[str, ImageTaskInfo] = {}
    for status in LISTED_TASK_STATES:  # lifecycle order: a task moving on is seen in the later listing
        listed = yield ListStep(status, start.strftime(API_TIME_FORMAT), end_text)
        for row in listed:
            rows.setdefault(row.task_id, row)
    candidates: list[tuple[str, datetime | None, bool | None]] = []
    for task_id, row in rows.items():
        created = _parse_time(row.create_time)
        if created is not None and (created < start_floor or (end is not None and created > end)):
            continue
        if memo.get(task_id) is False:
            continue
        verdict = listed_input_matches(row.input, *ours)
        if verdict is False:
            memo[task_id] = False
            continue
        candidates.append((task_id, created, verdict))
    candidates.sort(key=_newest_first)
    unnamed = sum(1 for _task_id, _created, verdict in candidates if verdict is None)
    if unnamed > max_describes:
        raise MpsAmbiguousSubmissionError(
            "AmbiguousSubmission.TooManyCandidates",
            f"{unnamed} tasks created between {start.strftime(API_TIME_FORMAT)} and "
            f"{end_text or 'now'} are listed without an Input; telling ours among them takes one "
            f"DescribeImageTaskDetail each, more than the cap of {max_describes} (raise it with "
            "MpsHook(reconcile_max_describes=...) or find_tasks_for(max_describes=...))",
        )
    matches: list[tuple[str, datetime | None]] = []
    for task_id, created, verdict in candidates:
        # Same input (or the listing names none): the detail tells our task from another pipeline's.
        detail = yield DetailStep(task_id)
        if verdict is None:  # the listing carries no input: ask the task itself
            verdict = _input_info_matches(detail.get("InputInfo"), body)
        if verdict and _same_request(detail, body, task_id):
            matches.append((task_id, created))
        else:
            memo[task_id] = False
    return _narrow(matches, since)


def _newest_first(candidate: tuple[str, datetime | None, bool | None]) -> tuple[float, str]:
    """Sort key: newest ``CreateTime`` first (an unknown time first of all), then task id."""
    task_id, created, _verdict = candidate
    return (-created.timestamp() if created is not None else float("-inf"), task_id)


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
        return datetime.strptime(value, API_TIME_FORMAT).replace(tzinfo=timezone.utc)
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
