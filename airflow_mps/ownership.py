"""Which MPS task is ours: the rules that tell, from listings and task details, what a request created.

Three callers need to know which tasks on the service came from *their* ProcessImage requests:

* the hook, after an ambiguous ProcessImage failure (did the request arrive? reconcile, never resubmit
  blindly — docs/reliability.md);
* the single-image operator, when a try died between ProcessImage and recording the TaskId (adopt the
  task instead of creating a second one; apache/airflow#59075);
* the batch operator, on a retry, for every item a previous try submitted but never recorded.

The rules live here once, I/O-free: this module lists nothing and describes nothing. Both searches
are step machines — generators that yield the I/O they need and are sent the answers — driven by
their callers with their own I/O: :func:`task_finder` (one request; :class:`ListStep`,
:class:`DetailStep`) by the hook's sync and async paths (and the operators, through
``MpsHook.find_tasks_for``), :func:`batch_finder` (many inputs against one listing;
:class:`DetailsStep`) by :mod:`airflow_mps.batch.adopt`. They share every rule:

* **Input**: a listed row's ``Input`` is read by :func:`airflow_mps.models.parse_listed_input` (one
  parser for every form the service, the SDK and the emulator send); a row that names no input is
  described and the task's ``InputInfo`` decides (:func:`described_row`).
* **Order**: candidates newest first (:func:`newest_first`).
* **Cap**: rows naming no input cost one DescribeImageTaskDetail each and are described only up to a
  cap (:func:`_describable`); one request refuses past it, a batch describes the newest.
* **Request**: a task with our input that provably came from another request is not ours
  (:meth:`Fingerprint.conflict`, ``ImageTaskStatus.conflicts_with``).

What the service lets us see (issue 11; api.json for DescribeImageTasks): only ``PROCESSING`` and
``FINISH`` tasks are listable (``Status`` is required and enumerates those two), and a row's ``Input``
is an unpublished string the official example omits. A task still ``WAITING`` is invisible to the
listing, so an empty result is **not** proof that nothing was created; what a caller may conclude
from it is its own rule (the hook's: keep looking until a settle deadline, then
``MpsAmbiguousSubmissionError``, never a blind resubmission — docs/reliability.md).

The domain constants (task states, the API time format) are :mod:`airflow_mps.models.constants`'.
Stdlib, ``airflow_mps.errors`` and ``airflow_mps.models`` only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from airflow_mps.errors import MpsAmbiguousSubmissionError
from airflow_mps.models.constants import API_TIME_FORMAT, LISTED_TASK_STATES, parse_api_time

if TYPE_CHECKING:
    from airflow_mps.models import ImageTaskInfo

__all__ = [
    "DESCRIBES_PER_INPUT",
    "MAX_DESCRIBES",
    "MIN_BATCH_DESCRIBES",
    "DetailStep",
    "DetailsStep",
    "Fingerprint",
    "ListStep",
    "batch_describe_cap",
    "batch_finder",
    "described_row",
    "input_matches",
    "match_listed_rows",
    "newest_first",
    "task_finder",
]

log = logging.getLogger(__name__)

#: Default cap on the listed tasks :func:`task_finder` describes because their row names no input:
#: 200 DescribeImageTaskDetail calls are 10 s of the default 20/s Describe quota.
MAX_DESCRIBES = 200
#: :func:`batch_finder`'s cap: ``max(MIN_BATCH_DESCRIBES, DESCRIBES_PER_INPUT × inputs)`` for the
#: inputs that would be submitted again. Describing one row costs a Describe call (1/20 s at the
#: strictest documented limit), about what resubmitting the image would cost in time — without paying
#: MPS twice — so a few per missing image are worth it, and no more.
MIN_BATCH_DESCRIBES = 500
DESCRIBES_PER_INPUT = 4

K = TypeVar("K", bound=Hashable)
R = TypeVar("R", bound="_Listed")


class _Listed(Protocol):
    """What ordering needs of a listing row (``ImageTaskInfo``, or a test's stand-in)."""

    @property
    def task_id(self) -> str: ...

    @property
    def create_time(self) -> str | None: ...


class _Log(Protocol):
    """The logger methods :func:`batch_finder` uses (a stdlib logger, an adapter, Airflow's task log)."""

    def info(self, msg: Any, /, *args: Any) -> Any: ...

    def warning(self, msg: Any, /, *args: Any) -> Any: ...


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


@dataclass(frozen=True)
class DetailsStep:
    """I/O request of :func:`batch_finder`: the raw DescribeImageTaskDetail ``Response`` of each of
    ``task_ids`` → a mapping task id → response, ``None`` for a task MPS no longer knows. The driver
    may describe them concurrently (a batch has many)."""

    task_ids: tuple[str, ...]


@dataclass(frozen=True)
class Fingerprint:
    """What a ProcessImage request leaves on the task it creates: how to tell that task from another
    request's with the same input (another pipeline reading the same images — thumbnails next to
    enhanced copies).

    ``kind``, ``bucket``, ``key``: the input, as :func:`airflow_mps.models.request_input` reads it
    (``key`` is the URL for a URL input). ``image_task``: the ImageTask sent. ``output_bucket`` and
    ``output_key`` (or ``output_dir``): where the outputs must be; ``None`` = not checked.
    """

    kind: str | None
    bucket: str | None
    key: str
    image_task: Mapping[str, Any] | None = None
    output_bucket: str | None = None
    output_key: str | None = None
    output_dir: str | None = None

    @classmethod
    def of_body(cls, body: Mapping[str, Any]) -> Fingerprint | None:
        """The fingerprint of a ProcessImage API body; ``None`` when it has no recognisable input.

        Only an absolute ``OutputPath`` without a ``{…}`` placeholder is checked as an output key (else
        ``OutputDir``): predicting the service's naming wrongly would turn our own task into "not
        ours" and cause the duplicate reconciliation exists to prevent. A caller that knows the
        rendered key (the batch plans it) builds the fingerprint itself, with ``output_key`` set.
        """
        from airflow_mps.models import request_input

        ours = request_input(body)
        if ours is None:
            return None
        kind, bucket, key = ours
        output_path = body.get("OutputPath")
        absolute = isinstance(output_path, str) and output_path.startswith("/") and "{" not in output_path
        storage = (body.get("OutputStorage") or {}).get("CosOutputStorage") or {}
        return cls(
            kind,
            bucket,
            key,
            image_task=body.get("ImageTask"),
            output_bucket=storage.get("Bucket") or (bucket if kind == "COS" else None),
            output_key=output_path if absolute else None,
            output_dir=body.get("OutputDir") if not absolute else None,
        )

    def names(self, listed: Any) -> bool | None:
        """Whether a listed ``Input`` (or an ``InputInfo`` object) names this input; None when it
        names nothing (:func:`airflow_mps.models.listed_input_matches`)."""
        from airflow_mps.models import listed_input_matches

        return listed_input_matches(listed, self.kind, self.bucket, self.key)

    def conflict(self, detail: Mapping[str, Any], task_id: str) -> str | None:
        """Why the task of this DescribeImageTaskDetail ``Response`` is another request's, or ``None``.

        Proofs (``ImageTaskStatus.conflicts_with``): the echoed ImageTask contradicts ours, or the task
        finished with outputs outside our output key / directory. Without a proof the task counts as
        ours (null tolerance). Every search of this module asks this, and only this.
        """
        from airflow_mps.models import ImageTaskStatus

        return ImageTaskStatus.from_api(detail, task_id=task_id).conflicts_with(
            image_task=self.image_task,
            output_bucket=self.output_bucket,
            output_key=self.output_key,
            output_dir=self.output_dir,
        )


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
      (:meth:`Fingerprint.conflict`) is not ours.
    * **Narrowing**: when some matches were created in or after ``since``'s second, only those count.

    Empty: no listable task is ours — a task still WAITING is not seen, so this is not proof that
    nothing was created. Several: ambiguous, the caller decides.

    ``known`` (optional, updated in place) remembers the tasks proven not ours (their input or their
    request never changes), so a caller that runs the finder again — the hook polls until a settle
    deadline — describes each task at most once.

    A generator that yields what it needs (:class:`ListStep`, :class:`DetailStep`) and is sent the
    answer; it returns the ids. ``since`` and ``until`` must be timezone-aware (UTC).
    """
    ours = Fingerprint.of_body(body)
    if ours is None:  # no input we could recognise a task by
        return []
    memo: dict[str, bool] = {} if known is None else known
    start = since - timedelta(seconds=skew_seconds)
    start_floor = start.replace(microsecond=0)
    start_text = start.strftime(API_TIME_FORMAT)
    end = None if until is None else until + timedelta(seconds=skew_seconds)
    end_text = None if end is None else end.strftime(API_TIME_FORMAT)
    rows: dict[str, ImageTaskInfo] = {}
    for status in LISTED_TASK_STATES:  # lifecycle order: a task moving on is seen in the later listing
        listed = yield ListStep(status, start_text, end_text)
        for row in listed:
            rows.setdefault(row.task_id, row)
    candidates: list[tuple[ImageTaskInfo, bool | None]] = []
    for row in newest_first(rows.values()):
        created = _parse_time(row.create_time)
        if created is not None and (created < start_floor or (end is not None and created > end)):
            continue
        if memo.get(row.task_id) is False:
            continue
        verdict = ours.names(row.input)
        if verdict is False:
            memo[row.task_id] = False
            continue
        candidates.append((row, verdict))
    _describable(
        [row for row, verdict in candidates if verdict is None],
        max_describes,
        past_cap="refuse",
        window=(start_text, end_text or "now"),
    )
    matches: list[tuple[str, datetime | None]] = []
    for row, verdict in candidates:
        # Same input (or the listing names none): the detail tells our task from another pipeline's.
        detail = yield DetailStep(row.task_id)
        if verdict is None:  # the listing carries no input: ask the task itself
            verdict = bool(ours.names(described_row(row, detail).input))
        reason = ours.conflict(detail, row.task_id) if verdict else None
        if reason is not None:
            log.info("Reconciliation: task %s has our input but is not ours: %s", row.task_id, reason)
        if verdict and reason is None:
            matches.append((row.task_id, _parse_time(row.create_time)))
        else:
            memo[row.task_id] = False
    return _narrow(matches, since)


def batch_finder(
    rows: Iterable[ImageTaskInfo],
    wanted: Mapping[K, Fingerprint],
    *,
    needed: Iterable[K] | None = None,
    max_describes: int | None = None,
    chunk: int = 1,
    listed_since: str = "the window start",
    log: _Log = log,
) -> Generator[DetailsStep, Mapping[str, Mapping[str, Any] | None], dict[K, str]]:
    """The task each wanted input's request created, among listed ``rows``: handle → task id.

    ``wanted`` maps the caller's handle (an input URI) to the fingerprint of its request (COS inputs);
    ``rows`` are the listing rows of every status (a task id listed twice counts once). The rules of
    :func:`task_finder`, for many inputs at once:

    * **Input**: a row naming an input is a candidate for that input only (:func:`match_listed_rows`);
      a row naming none is described, and the task's ``InputInfo`` decides (:func:`described_row`) —
      the detail that names the input also verifies it: one call per row.
    * **Order**: newest first (:func:`newest_first`); rows naming no input ``chunk`` per step, and
      only until every ``needed`` handle (default: all) has its task — none at all when no handle is
      needed: the other handles' outputs exist, and are adopted only when their task names itself.
    * **Cap**: at most ``max_describes`` rows naming no input (default
      :func:`batch_describe_cap` of the needed handles). Unlike one request, a batch does not refuse
      past the cap: it describes the newest and warns — an image whose earlier task is older may be
      submitted twice, the rest of the batch goes on.
    * **Request**: :meth:`Fingerprint.conflict`, as for one request. Unlike one request — where several
      matches are an ambiguity its caller judges — a handle takes the newest candidate that nothing
      proves another's: a retry adopts one task per image, and any task of its own will do.

    A generator that yields :class:`DetailsStep` s and is sent their answers; returns the found tasks.
    """
    inputs: dict[tuple[str, str], K] = {}
    for handle, print_ in wanted.items():
        if print_.kind != "COS" or not print_.bucket:
            raise ValueError(
                f"batch_finder matches COS inputs, not {print_.kind} {print_.bucket}/{print_.key}"
            )
        inputs[(print_.bucket, print_.key)] = handle
    named: list[ImageTaskInfo] = []
    unnamed: list[ImageTaskInfo] = []
    for row in rows:
        (named if _names_input(row) else unnamed).append(row)
    need = set(wanted) if needed is None else set(needed) & set(wanted)
    details: dict[str, Mapping[str, Any] | None] = {}
    found: dict[K, str] = {}

    def verify(candidates: Mapping[K, list[str]]) -> Generator[DetailsStep, Any, None]:
        """Keep, for each handle still unmatched, its newest candidate that is provably not another's."""
        todo = {handle: ids for handle, ids in candidates.items() if handle not in found}
        missing = sorted({t for ids in todo.values() for t in ids if t not in details})
        if missing:
            details.update((yield DetailsStep(tuple(missing))))
        for handle, task_ids in todo.items():
            task_id = _first_ours(task_ids, details, wanted[handle], handle, log)
            if task_id is not None:
                found[handle] = task_id

    yield from verify(match_listed_rows(named, inputs))
    unnamed = newest_first(unnamed) if need else []
    cap = batch_describe_cap(len(need)) if max_describes is None else max_describes
    unnamed = _describable(unnamed, cap, past_cap="newest", window=(listed_since, "now"), log=log)
    step = max(1, chunk)
    for start in range(0, len(unnamed), step):
        if need <= found.keys():
            break  # every handle that needs one has its task: older rows cannot change that
        batch = unnamed[start : start + step]
        fetched = yield DetailsStep(tuple(row.task_id for row in batch))
        details.update(fetched)
        described = [described_row(row, d) for row in batch if (d := fetched.get(row.task_id))]
        open_inputs = {at: handle for at, handle in inputs.items() if handle not in found}
        yield from verify(match_listed_rows(described, open_inputs))
    return found


def batch_describe_cap(inputs: int) -> int:
    """How many rows naming no input :func:`batch_finder` describes for ``inputs`` needed handles."""
    return max(MIN_BATCH_DESCRIBES, DESCRIBES_PER_INPUT * inputs)


def _first_ours(
    task_ids: Sequence[str],
    details: Mapping[str, Mapping[str, Any] | None],
    ours: Fingerprint,
    handle: Hashable,
    log: _Log,
) -> str | None:
    """The first of ``task_ids`` (newest first) that MPS still knows and nothing proves another's."""
    for task_id in task_ids:
        detail = details.get(task_id)
        if detail is None:  # gone: nothing to adopt
            continue
        reason = ours.conflict(detail, task_id)
        if reason is None:
            return task_id
        log.info("Not adopting task %s for %s: %s", task_id, handle, reason)
    return None


def _describable(
    unnamed: list[R],
    cap: int,
    *,
    past_cap: Literal["refuse", "newest"],
    window: tuple[str, str],
    log: _Log = log,
) -> list[R]:
    """The rows naming no input (newest first) that a search describes: all, when at most ``cap``.

    Past the cap, ``past_cap`` decides — the one deliberate difference between the searches: one
    request ``"refuse"`` s (``MpsAmbiguousSubmissionError``, before any describe: its caller may look
    again, and never guesses), a batch describes the ``"newest"`` ``cap`` and warns (refusing would
    fail every image for the sake of the few whose earlier task is older). ``window`` (start, end)
    is what the messages name.
    """
    if len(unnamed) <= cap:
        return unnamed
    start, end = window
    if past_cap == "refuse":
        raise MpsAmbiguousSubmissionError(
            "AmbiguousSubmission.TooManyCandidates",
            f"{len(unnamed)} tasks created between {start} and {end} are listed without an Input; "
            f"telling ours among them takes one DescribeImageTaskDetail each, more than the cap of {cap} "
            "(raise it with MpsHook(reconcile_max_describes=...) or find_tasks_for(max_describes=...))",
        )
    log.warning(
        "Adoption: %d tasks listed since %s name no input; describing the newest %d of them (cap). "
        "An image whose earlier task is among the %d older ones may be submitted twice.",
        len(unnamed),
        start,
        cap,
        len(unnamed) - cap,
    )
    return unnamed[:cap]


def newest_first(rows: Iterable[R]) -> list[R]:
    """``rows`` newest ``CreateTime`` first — a row whose time is unset or unreadable first of all (nothing
    proves it older) — then by task id: the order every search describes and verifies candidates in."""
    return sorted(rows, key=_age)


def _age(row: _Listed) -> tuple[float, str]:
    created = parse_api_time(row.create_time)
    return (-created if created is not None else float("-inf"), row.task_id)


def described_row(row: ImageTaskInfo, detail: Mapping[str, Any]) -> ImageTaskInfo:
    """A listing row that names no input, as its task's DescribeImageTaskDetail ``Response`` names it:
    ``Input`` is the detail's ``InputInfo`` (as JSON, a form ``parse_listed_input`` reads; ``None`` when
    the detail names none either). The one way both searches learn the input a row did not name."""
    info = detail.get("InputInfo")
    return replace(row, input=json.dumps(info, sort_keys=True) if isinstance(info, Mapping) else None)


def _names_input(row: ImageTaskInfo) -> bool:
    """Whether a listing row's ``Input`` names an input at all (else the row must be described)."""
    from airflow_mps.models import parse_listed_input

    return parse_listed_input(row.input) is not None


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
    between two status listings) counts once. Each handle's candidates come newest first
    (:func:`newest_first`), the order to verify them in; handles without candidates are absent.

    Matching by input is not proof of ownership: another pipeline reading the same partition creates
    tasks with the same inputs. :func:`batch_finder` describes each candidate in this order and keeps
    the first that :meth:`Fingerprint.conflict` clears — the rule the single-task finder applies too.
    """
    from airflow_mps.models import parse_listed_input

    by_key: dict[str, list[tuple[str, K]]] = {}
    for (bucket, key), handle in wanted.items():
        by_key.setdefault(key, []).append((bucket, handle))
    found: dict[K, list[ImageTaskInfo]] = {}
    seen: set[str] = set()
    for row in rows:
        parsed = parse_listed_input(row.input)
        if parsed is None or parsed[0] not in (None, "COS") or row.task_id in seen:
            continue
        seen.add(row.task_id)
        _kind, listed_bucket, listed_key = parsed
        for bucket, handle in by_key.get(listed_key, ()):
            if listed_bucket is None or listed_bucket == bucket:
                found.setdefault(handle, []).append(row)
    return {handle: [row.task_id for row in newest_first(listed)] for handle, listed in found.items()}


def input_matches(listed: Any, body: Mapping[str, Any]) -> bool | None:
    """Whether a listed ``Input`` (or an ``InputInfo`` object) names the input of ``body``; None when
    it names nothing (or ``body`` has no recognisable input). :meth:`Fingerprint.names` of the body."""
    ours = Fingerprint.of_body(body)
    return None if ours is None else ours.names(listed)


def _parse_time(value: str | None) -> datetime | None:
    """The UTC datetime of an API time string; None when unset (``0000-…``), absent or unparsable."""
    seconds = parse_api_time(value)
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=timezone.utc)


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
