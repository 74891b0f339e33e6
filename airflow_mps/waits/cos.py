"""Waiting for COS objects, written once: the rules of ``CosKeySensor``/``CosKeysUnchangedSensor``'s
pokes and of their triggers (issue 14 item 4; the pattern of :mod:`airflow_mps.waits`).

What is waited on, parsed and refused before any call (:func:`parse_key_target`,
:func:`parse_prefix_target`): ``cos://<name>-<appid>/<key>``. A value a template rendered as nothing
(``None``, ``"None"``, ``""``, ``"null"``, ``"[]"``…) or a Hive-style segment rendered empty
(``dt=None``, ``dt=``) is refused naming the argument — a sensor that waits for
``raw/dt=None/_SUCCESS`` would otherwise wait, silently, until its timeout.

Two step machines (generators that yield the I/O they need and are sent the reply):

* :func:`wait_for_key` — one object (``HEAD``), or with a wildcard the first key that matches
  (``fnmatch``, case-sensitive, ``*`` also crosses ``/``) in a listing of the pattern's longest literal
  prefix. Done as soon as it exists.
* :func:`wait_for_quiet` — a prefix whose listing has not changed for ``inactivity_period`` seconds and
  holds at least ``min_objects`` objects. The listing is reduced to a :class:`ListingSummary` (count and a
  fingerprint of every key, ETag, size and LastModified — constant size, however many objects). What the
  wait remembers is a :class:`QuietMemory`: that fingerprint and ``since``, the time from which the
  listing is known to have looked like this. The rule is conservative, like Amazon's
  ``S3KeysUnchangedSensor``: a listing seen for the first time, or different from the remembered one,
  starts the clock *now* — a change between two looks is dated to the later one, never guessed earlier
  from LastModified (a multipart upload's LastModified can predate its completion; a deletion leaves no
  date at all). So a memory lost or outdated (a triggerer restart, a rescheduled poke without a store)
  can only make the wait longer, never end it early. Activity that leaves the listing exactly as it was
  (an object written and deleted between two looks) is invisible to any listing-based wait.

Replies: ``HeadObject`` → ``bool``; ``FindMatch`` → the matching key or ``None``; ``ScanPrefix`` →
:class:`ListingSummary`; for each, the exception the call raised may be sent instead (an ``MpsError``
from the hook's COS error mapping, or a network error): terminal errors (``AuthFailure``, a bucket that
does not exist for a listing) end the wait as ``error``; throttling and transient errors are logged and
polled through. The deadline (absolute, epoch seconds) is checked before every call.

:func:`perform_check` is the one place that turns a step into ``CosHook`` calls (the sensor runs it in
its worker, the trigger in a thread: ``CosHook`` is synchronous).
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import re
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_mps.errors import MpsError
from airflow_mps.utils.events import (
    EVENT_ERROR,
    EVENT_SUCCESS,
    EVENT_TIMEOUT,
    MIN_POLL_INTERVAL,
    error_payload,
    jittered,
)

__all__ = [
    "CosArgumentError",
    "CosTarget",
    "CosWaitOutcome",
    "FindMatch",
    "HeadObject",
    "ListingSummary",
    "QuietMemory",
    "Remember",
    "ScanPrefix",
    "Sleep",
    "first_match",
    "literal_prefix",
    "observe",
    "parse_key_target",
    "parse_prefix_target",
    "perform_check",
    "summarize",
    "wait_for_key",
    "wait_for_quiet",
]

#: What a template renders when the value it pulled was missing (compared case-insensitively).
RENDERED_NOTHING = frozenset({"", "none", "null", "undefined", "[]", "{}", "()"})
#: ``<name>-<appid>``: lowercase letters, digits and ``-``, then the account's APPID (COS naming rules,
#: docs/connection.md; e.g. ``photos-1250000000``); at most 50 characters.
_BUCKET_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?-[0-9]+")
_MAX_BUCKET_LEN = 50
#: Longest key COS accepts, in UTF-8 bytes.
_MAX_KEY_BYTES = 850
_WILDCARD_RE = re.compile(r"[*?\[]")
_EXAMPLE_KEY = "cos://photos-1250000000/raw/dt=2026-11-01/_SUCCESS"


class CosArgumentError(ValueError):
    """A sensor argument is invalid; ``field`` names it. Raised before any COS call."""

    def __init__(self, field: str, value: Any, reason: str, allowed: str) -> None:
        self.field = field
        super().__init__(f"{field}: {value!r} {reason}; expected {allowed}")


@dataclass(frozen=True)
class CosTarget:
    """What a wait looks at: ``bucket`` and ``key`` (a key, a wildcard pattern or a prefix)."""

    bucket: str
    key: str
    wildcard: bool = False

    @property
    def uri(self) -> str:
        return f"cos://{self.bucket}/{self.key}"


def _split(value: Any, field: str, allowed: str) -> tuple[str, str]:
    """``cos://bucket/rest`` → (bucket, rest), refusing rendered-empty values and bad buckets."""
    if value is None or (isinstance(value, (list, tuple, dict)) and not value):
        raise CosArgumentError(field, value, "is empty (did a template render nothing?)", allowed)
    if not isinstance(value, str):
        raise CosArgumentError(field, value, "is not a string", allowed)
    text = value.strip()
    if text.lower() in RENDERED_NOTHING:
        raise CosArgumentError(field, value, "is empty (did a template render nothing?)", allowed)
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ("cos", "cosn"):
        raise CosArgumentError(field, value, "is not a cos:// URI", allowed)
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise CosArgumentError(field, value, "has no bucket", allowed)
    if len(bucket) > _MAX_BUCKET_LEN or not _BUCKET_RE.fullmatch(bucket):
        raise CosArgumentError(
            field,
            value,
            f"has an invalid bucket {bucket!r} (COS buckets are <name>-<appid>: lowercase letters, "
            "digits and '-', then the APPID, e.g. photos-1250000000)",
            allowed,
        )
    _check_key_text(key, value, field, allowed)
    return bucket, key


def _check_key_text(key: str, value: str, field: str, allowed: str) -> None:
    if len(key.encode("utf-8")) > _MAX_KEY_BYTES:
        raise CosArgumentError(field, value, f"has a key longer than {_MAX_KEY_BYTES} bytes", allowed)
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise CosArgumentError(field, value, "contains a control character", allowed)
    segments = key.split("/")
    inner = segments[:-1] if key.endswith("/") else segments
    if key and any(part in ("", ".", "..") for part in inner):
        raise CosArgumentError(field, value, "has an empty, '.' or '..' path segment", allowed)
    for part in segments:
        name, eq, rendered = part.partition("=")
        if eq and name and rendered.strip().lower() in RENDERED_NOTHING:
            raise CosArgumentError(
                field, value, f"has the segment {part!r} (did a template render nothing into it?)", allowed
            )


def parse_key_target(value: Any, *, wildcard: bool, field: str = "bucket_key") -> CosTarget:
    """``bucket_key`` → :class:`CosTarget`: one object, or a pattern when ``wildcard``."""
    allowed = f"cos://<bucket>-<appid>/<key>, e.g. {_EXAMPLE_KEY}"
    bucket, key = _split(value, field, allowed)
    if not key:
        raise CosArgumentError(field, value, "names no object (only a bucket)", allowed)
    is_pattern = bool(wildcard) and _WILDCARD_RE.search(key) is not None
    if key.endswith("/") and not is_pattern:
        raise CosArgumentError(
            field,
            value,
            "names a folder, not an object (to wait for any object under it, use wildcard_match=True "
            "with a pattern such as '.../*', or CosKeysUnchangedSensor for a quiet prefix)",
            allowed,
        )
    return CosTarget(bucket, key, wildcard=is_pattern)


def parse_prefix_target(value: Any, *, field: str = "prefix") -> CosTarget:
    """``prefix`` → :class:`CosTarget` (``cos://bucket/`` is the whole bucket)."""
    allowed = "cos://<bucket>-<appid>/<prefix>, e.g. cos://photos-1250000000/raw/dt=2026-11-01/"
    bucket, key = _split(value, field, allowed)
    return CosTarget(bucket, key)


def literal_prefix(pattern: str) -> str:
    """The longest prefix of a wildcard pattern with no wildcard in it (what to list)."""
    match = _WILDCARD_RE.search(pattern)
    return pattern if match is None else pattern[: match.start()]


# --------------------------------------------------------------------------------------------------
# listings reduced to what the waits decide on (constant memory, whatever the listing's length)
# --------------------------------------------------------------------------------------------------
class _Listed(Protocol):
    """One listed object (``airflow_mps.hooks.cos.CosObject``)."""

    @property
    def key(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def etag(self) -> str: ...
    @property
    def last_modified(self) -> str: ...


@dataclass(frozen=True)
class ListingSummary:
    """A listing reduced to its object count and a fingerprint that changes with any object's key,
    ETag, size or LastModified (so an overwrite with the same bytes shows too, from the next second
    on: listings give LastModified to the second)."""

    count: int
    fingerprint: str


def summarize(objects: Iterable[_Listed]) -> ListingSummary:
    """Stream a listing into a :class:`ListingSummary` (COS lists keys in a stable order)."""
    digest = hashlib.sha256()
    count = 0
    for obj in objects:
        count += 1
        digest.update(f"{obj.key}\0{obj.etag}\0{obj.size}\0{obj.last_modified}\n".encode())
    return ListingSummary(count, digest.hexdigest()[:32])


def first_match(objects: Iterable[_Listed], pattern: str) -> str | None:
    """The first listed key matching ``pattern`` (stops the listing there), else ``None``."""
    for obj in objects:
        if fnmatch.fnmatchcase(obj.key, pattern):
            return obj.key
    return None


@dataclass(frozen=True)
class QuietMemory:
    """What a quiet-prefix wait remembers between looks: the listing's fingerprint and object count,
    and ``since`` (epoch seconds) from which it is known to have looked like this. JSON round trip
    through :meth:`to_dict`/:meth:`from_dict` (trigger kwargs, ``task_state_store``)."""

    fingerprint: str
    count: int
    since: float

    def to_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "count": self.count, "since": self.since}

    @classmethod
    def from_dict(cls, data: Any) -> QuietMemory | None:
        """The memory stored as :meth:`to_dict`, or ``None`` for anything else (an old or foreign value)."""
        try:
            return cls(str(data["fingerprint"]), int(data["count"]), float(data["since"]))
        except (KeyError, TypeError, ValueError):
            return None


def observe(memory: QuietMemory | None, summary: ListingSummary, now: float) -> QuietMemory:
    """The memory after seeing ``summary`` at ``now``: unchanged listing → same ``since``; a first
    look or a changed listing → ``since = now`` (the module docstring says why never earlier)."""
    if memory is not None and memory.fingerprint == summary.fingerprint:
        return memory
    return QuietMemory(summary.fingerprint, summary.count, now)


# --------------------------------------------------------------------------------------------------
# steps, outcome
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeadObject:
    """I/O: does ``bucket``/``key`` exist? Reply: ``bool``. ``timeout`` is the time left."""

    bucket: str
    key: str
    timeout: float


@dataclass(frozen=True)
class FindMatch:
    """I/O: list ``prefix`` until a key matches ``pattern``. Reply: the key or ``None``."""

    bucket: str
    prefix: str
    pattern: str
    timeout: float


@dataclass(frozen=True)
class ScanPrefix:
    """I/O: list all of ``prefix``. Reply: its :class:`ListingSummary`."""

    bucket: str
    prefix: str
    timeout: float


@dataclass(frozen=True)
class Remember:
    """Keep ``memory`` (a sensor stores it for its next poke; a trigger needs do nothing). Reply: none."""

    memory: QuietMemory


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` before the next look. Reply: none."""

    seconds: float


CheckStep = HeadObject | FindMatch | ScanPrefix
CosStep = HeadObject | FindMatch | ScanPrefix | Remember | Sleep


@dataclass(frozen=True)
class CosWaitOutcome:
    """How a COS wait ended: ``event`` (``success``, ``error``, ``timeout``), what was waited on, the
    key that matched (key waits) or the object count (quiet waits), and the error."""

    event: str
    uri: str
    matched: str | None = None
    objects: int | None = None
    error: dict[str, Any] | None = None
    exception: BaseException | None = None

    def payload(self) -> dict[str, Any]:
        """The trigger event (JSON-safe)."""
        return {
            "status": self.event,
            "uri": self.uri,
            "matched": self.matched,
            "objects": self.objects,
            "error": self.error,
        }


class WaitLog(Protocol):
    def info(self, msg: Any, /, *args: Any) -> Any: ...
    def warning(self, msg: Any, /, *args: Any) -> Any: ...


def _judge(reply: BaseException, target: CosTarget, log: WaitLog) -> CosWaitOutcome | None:
    """A failed look: an ``error`` outcome when terminal, ``None`` (look again) when retryable."""
    if isinstance(reply, MpsError) and not reply.retryable:
        return CosWaitOutcome(EVENT_ERROR, target.uri, error=error_payload(reply), exception=reply)
    if not isinstance(reply, (MpsError, OSError, TimeoutError)):
        return CosWaitOutcome(EVENT_ERROR, target.uri, error=error_payload(reply), exception=reply)
    log.warning("Looking at %s failed (%s); trying again at the next poll", target.uri, reply)
    return None


def _timeout(target: CosTarget, what: str) -> CosWaitOutcome:
    error = {
        "code": "Timeout",
        "message": f"{target.uri}: {what} before the deadline",
        "request_id": None,
        "retryable": True,
    }
    return CosWaitOutcome(EVENT_TIMEOUT, target.uri, error=error)


def _pause(poll_interval: float, end_time: float, now: float, cap: float = math.inf) -> Sleep:
    return Sleep(max(0.0, min(jittered(poll_interval), end_time - now, max(cap, MIN_POLL_INTERVAL))))


def wait_for_key(
    target: CosTarget,
    *,
    end_time: float,
    poll_interval: float,
    log: WaitLog,
    clock: Callable[[], float] = time.time,
) -> Generator[CosStep, Any, CosWaitOutcome]:
    """Wait until ``target`` exists (a wildcard: until a key matches). Outcome ``matched`` is its URI."""
    while True:
        now = clock()
        if now >= end_time:
            return _timeout(target, "no object appeared")
        step: CheckStep
        if target.wildcard:
            step = FindMatch(target.bucket, literal_prefix(target.key), target.key, end_time - now)
        else:
            step = HeadObject(target.bucket, target.key, end_time - now)
        reply = yield step
        if isinstance(reply, BaseException):
            failed = _judge(reply, target, log)
            if failed is not None:
                return failed
        elif reply:
            key = reply if isinstance(reply, str) else target.key
            log.info("Found cos://%s/%s", target.bucket, key)
            return CosWaitOutcome(EVENT_SUCCESS, target.uri, matched=f"cos://{target.bucket}/{key}")
        else:
            log.info("Not there yet: %s", target.uri)
        yield _pause(poll_interval, end_time, clock())


def wait_for_quiet(
    target: CosTarget,
    *,
    inactivity_period: float,
    min_objects: int,
    end_time: float,
    poll_interval: float,
    log: WaitLog,
    memory: QuietMemory | None = None,
    clock: Callable[[], float] = time.time,
) -> Generator[CosStep, Any, CosWaitOutcome]:
    """Wait until ``target``'s listing has been unchanged for ``inactivity_period`` seconds with at
    least ``min_objects`` objects, starting from ``memory`` (a previous look, or ``None``)."""
    while True:
        now = clock()
        if now >= end_time:
            return _timeout(target, f"the prefix did not stay unchanged for {inactivity_period:g}s")
        reply = yield ScanPrefix(target.bucket, target.key, end_time - now)
        cap = math.inf
        if isinstance(reply, BaseException):
            failed = _judge(reply, target, log)
            if failed is not None:
                return failed
        else:
            now = clock()
            updated = observe(memory, reply, now)
            if updated is not memory:
                seen = "first look" if memory is None else f"changed (was {memory.count} objects)"
                log.info("%s: %d objects, %s; the quiet period starts now", target.uri, updated.count, seen)
                memory = updated
                yield Remember(memory)
            quiet_for = now - memory.since
            if quiet_for >= inactivity_period:
                if memory.count >= min_objects:
                    log.info("%s: %d objects, unchanged for %.1fs", target.uri, memory.count, quiet_for)
                    return CosWaitOutcome(EVENT_SUCCESS, target.uri, objects=memory.count)
                log.info(
                    "%s: unchanged for %.1fs but only %d of the %d objects required",
                    target.uri,
                    quiet_for,
                    memory.count,
                    min_objects,
                )
            else:
                cap = inactivity_period - quiet_for  # look again when the period could be over
        yield _pause(poll_interval, end_time, clock(), cap)


# --------------------------------------------------------------------------------------------------
# the I/O of a check step, through a CosHook (sync; the trigger runs it in a thread)
# --------------------------------------------------------------------------------------------------
class _CosAccess(Protocol):
    def object_exists(self, bucket: str, key: str, region: str | None = None) -> bool: ...
    def list_objects(self, bucket: str, prefix: str = "", region: str | None = None) -> Iterable[Any]: ...


def perform_check(hook: _CosAccess, step: CheckStep) -> bool | str | ListingSummary | None:
    """Run one check step with ``hook`` (a ``CosHook``); blocking."""
    if isinstance(step, HeadObject):
        return hook.object_exists(step.bucket, step.key)
    if isinstance(step, FindMatch):
        return first_match(hook.list_objects(step.bucket, step.prefix), step.pattern)
    return summarize(hook.list_objects(step.bucket, step.prefix))
