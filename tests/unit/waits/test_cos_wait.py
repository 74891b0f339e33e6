"""The I/O-free core of the COS waits (airflow_mps.waits.cos): what is refused before any call, how a
listing is reduced, and the decisions of both step machines, driven with a fake clock."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from airflow_mps.errors import MpsAuthError, MpsThrottledError, MpsTransientError
from airflow_mps.waits.cos import (
    CosArgumentError,
    CosTarget,
    FindMatch,
    HeadObject,
    ListingSummary,
    QuietMemory,
    Remember,
    ScanPrefix,
    Sleep,
    first_match,
    literal_prefix,
    observe,
    parse_key_target,
    parse_prefix_target,
    perform_check,
    summarize,
    wait_for_key,
    wait_for_quiet,
)
from tests.hook_contract import ChecksCosObjects

LOG = logging.getLogger("test_cos_wait")
B = "photos-1250000000"


@dataclass(frozen=True)
class Obj:
    key: str
    size: int = 1
    etag: str = "e"
    last_modified: str = "2026-11-01T00:00:00.000Z"


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize("value", [None, "", "  ", "None", "none", "null", "NULL", "[]", "undefined", [], {}])
def test_rendered_nothing_is_refused_naming_the_field(value: Any) -> None:
    with pytest.raises(CosArgumentError, match=r"^bucket_key: .*is empty \(did a template render nothing"):
        parse_key_target(value, wildcard=False)
    with pytest.raises(CosArgumentError, match=r"^prefix: "):
        parse_prefix_target(value)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("s3://photos-1250000000/a", "is not a cos:// URI"),
        ("photos-1250000000/a", "is not a cos:// URI"),
        ("https://photos-1250000000.cos.ap-guangzhou.myqcloud.com/a", "is not a cos:// URI"),
        ("cos:///a", "has no bucket"),
        ("cos://photos/a", "invalid bucket 'photos'"),  # no -<appid>
        ("cos://Photos-1250000000/a", "invalid bucket"),  # uppercase
        ("cos://photos-/a", "invalid bucket"),
        ("cos://-1250000000/a", "invalid bucket"),
        (f"cos://{'x' * 40}-1250000000/a", "invalid bucket"),  # longer than 50
        (f"cos://{B}", "names no object"),
        (f"cos://{B}/", "names no object"),
        (f"cos://{B}/raw/dt=2026-11-01/", "names a folder"),
        (f"cos://{B}/raw/dt=None/_SUCCESS", "segment 'dt=None'"),
        (f"cos://{B}/raw/dt=/_SUCCESS", "segment 'dt='"),
        (f"cos://{B}/raw/dt=null/_SUCCESS", "segment 'dt=null'"),
        (f"cos://{B}/raw/../_SUCCESS", "'..' path segment"),
        (f"cos://{B}//raw/_SUCCESS", "empty, '.' or '..'"),
        (f"cos://{B}/raw//_SUCCESS", "empty, '.' or '..'"),
        (f"cos://{B}/raw/a\nb", "control character"),
        (f"cos://{B}/{'k' * 851}", "longer than 850 bytes"),
        (42, "is not a string"),
    ],
)
def test_bad_bucket_keys_are_refused_with_the_reason(value: Any, reason: str) -> None:
    with pytest.raises(CosArgumentError) as info:
        parse_key_target(value, wildcard=False)
    assert info.value.field == "bucket_key"
    assert reason in str(info.value)
    assert "expected cos://<bucket>-<appid>/<key>" in str(info.value)


def test_good_bucket_keys() -> None:
    assert parse_key_target(f"cos://{B}/raw/dt=2026-11-01/_SUCCESS", wildcard=False) == CosTarget(
        B, "raw/dt=2026-11-01/_SUCCESS"
    )
    # Hadoop's cosn:// (the scheme this provider's own output URIs use) is the same thing.
    assert parse_key_target(f" cosn://{B}/a.jpg ", wildcard=False) == CosTarget(B, "a.jpg")
    # A pattern only with wildcard_match and a wildcard character in it; otherwise one object.
    assert parse_key_target(f"cos://{B}/raw/*.jpg", wildcard=True).wildcard is True
    assert parse_key_target(f"cos://{B}/raw/*.jpg", wildcard=False).wildcard is False
    assert parse_key_target(f"cos://{B}/raw/a.jpg", wildcard=True).wildcard is False
    # A folder is fine as part of a pattern, not as a literal key.
    assert parse_key_target(f"cos://{B}/raw/dt=*/", wildcard=True).key == "raw/dt=*/"
    with pytest.raises(CosArgumentError, match="names a folder"):
        parse_key_target(f"cos://{B}/raw/", wildcard=True)
    # The field name is the caller's.
    with pytest.raises(CosArgumentError, match=r"^marker: "):
        parse_key_target("None", wildcard=False, field="marker")


def test_prefixes() -> None:
    assert parse_prefix_target(f"cos://{B}/") == CosTarget(B, "")
    assert parse_prefix_target(f"cos://{B}") == CosTarget(B, "")
    assert parse_prefix_target(f"cos://{B}/raw/dt=2026-11-01/").key == "raw/dt=2026-11-01/"
    assert parse_prefix_target(f"cos://{B}/raw/dt=2026-").key == "raw/dt=2026-"
    with pytest.raises(CosArgumentError, match="segment 'dt=None'"):
        parse_prefix_target(f"cos://{B}/raw/dt=None/")


def test_literal_prefix() -> None:
    assert literal_prefix("raw/dt=2026-11-01/*.jpg") == "raw/dt=2026-11-01/"
    assert literal_prefix("raw/dt=2026-11-0?/x") == "raw/dt=2026-11-0"
    assert literal_prefix("raw/[ab]/x") == "raw/"
    assert literal_prefix("*") == ""
    assert literal_prefix("raw/a.jpg") == "raw/a.jpg"


# ------------------------------------------------------------------------------------ listings
def test_summary_fingerprint_follows_every_object_field() -> None:
    base = [Obj("a"), Obj("b")]
    same = summarize([Obj("a"), Obj("b")])
    assert summarize(base) == same and same.count == 2
    for changed in (
        [Obj("a"), Obj("c")],
        [Obj("a"), Obj("b", size=2)],
        [Obj("a"), Obj("b", etag="f")],
        [Obj("a"), Obj("b", last_modified="2026-11-01T00:00:01.000Z")],  # same bytes written again
        [Obj("a")],  # a deletion
        [Obj("a"), Obj("b"), Obj("c")],
    ):
        assert summarize(changed).fingerprint != same.fingerprint
    assert summarize([]) == ListingSummary(0, summarize([]).fingerprint)


def test_summary_streams_and_first_match_stops_early() -> None:
    consumed: list[str] = []

    def listing() -> Iterator[Obj]:
        for key in ("raw/a.png", "raw/b.jpg", "raw/c.jpg", "raw/d.jpg"):
            consumed.append(key)
            yield Obj(key)

    assert first_match(listing(), "raw/*.jpg") == "raw/b.jpg"
    assert consumed == ["raw/a.png", "raw/b.jpg"]  # later pages are never asked for
    assert first_match(listing(), "raw/*.gif") is None
    assert first_match([Obj("raw/A.JPG")], "raw/*.jpg") is None  # COS keys are case-sensitive
    assert first_match([Obj("raw/x/y.jpg")], "raw/*.jpg") == "raw/x/y.jpg"  # * crosses '/' (fnmatch)


def test_observe_is_conservative() -> None:
    first = observe(None, ListingSummary(2, "f1"), 100.0)
    assert first == QuietMemory("f1", 2, 100.0)  # a first look starts the clock now
    assert observe(first, ListingSummary(2, "f1"), 200.0) is first  # unchanged: same since
    assert observe(first, ListingSummary(2, "f2"), 200.0) == QuietMemory("f2", 2, 200.0)
    assert QuietMemory.from_dict(first.to_dict()) == first
    assert QuietMemory.from_dict({"fingerprint": "f"}) is None
    assert QuietMemory.from_dict("junk") is None


class ScriptedCosHook(ChecksCosObjects):
    """HEAD finds only the key ``there``; every listing holds ``x.jpg`` and ``y.png``; records the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def object_exists(self, bucket: str, key: str, region: str | None = None) -> bool:
        self.calls.append(("head", bucket, key))
        return key == "there"

    def list_objects(self, bucket: str, prefix: str = "", region: str | None = None) -> Iterator[Obj]:
        self.calls.append(("list", bucket, prefix))
        yield from (Obj(prefix + "x.jpg"), Obj(prefix + "y.png"))


def test_perform_check_maps_steps_to_hook_calls() -> None:
    hook = ScriptedCosHook()
    assert perform_check(hook, HeadObject(B, "there", 1.0)) is True
    assert perform_check(hook, FindMatch(B, "raw/", "raw/*.png", 1.0)) == "raw/y.png"
    summary = perform_check(hook, ScanPrefix(B, "raw/", 1.0))
    assert isinstance(summary, ListingSummary) and summary.count == 2
    assert hook.calls == [("head", B, "there"), ("list", B, "raw/"), ("list", B, "raw/")]


# ------------------------------------------------------------------------------------ wait_for_key
def test_key_wait_heads_until_found() -> None:
    clock = Clock()
    target = parse_key_target(f"cos://{B}/raw/_SUCCESS", wildcard=False)
    steps = wait_for_key(target, end_time=clock.now + 100, poll_interval=10, log=LOG, clock=clock)
    step = next(steps)
    assert step == HeadObject(B, "raw/_SUCCESS", 100.0)
    pause = steps.send(False)
    assert isinstance(pause, Sleep) and 9.0 <= pause.seconds <= 11.0
    clock.now += pause.seconds
    assert isinstance(steps.send(None), HeadObject)
    with pytest.raises(StopIteration) as done:
        steps.send(True)
    outcome = done.value.value
    assert outcome.event == "success" and outcome.matched == f"cos://{B}/raw/_SUCCESS"
    assert outcome.payload() == {
        "status": "success",
        "uri": f"cos://{B}/raw/_SUCCESS",
        "matched": f"cos://{B}/raw/_SUCCESS",
        "objects": None,
        "error": None,
    }


def test_key_wait_with_a_pattern_lists_the_literal_prefix() -> None:
    target = parse_key_target(f"cos://{B}/raw/dt=2026-11-01/*.jpg", wildcard=True)
    steps = wait_for_key(target, end_time=math.inf, poll_interval=1, log=LOG)
    assert next(steps) == FindMatch(B, "raw/dt=2026-11-01/", "raw/dt=2026-11-01/*.jpg", math.inf)
    assert isinstance(steps.send(None), Sleep)
    steps.send(None)
    with pytest.raises(StopIteration) as done:
        steps.send("raw/dt=2026-11-01/a.jpg")
    assert done.value.value.matched == f"cos://{B}/raw/dt=2026-11-01/a.jpg"


def test_key_wait_polls_through_transient_errors_and_stops_on_terminal_ones() -> None:
    target = parse_key_target(f"cos://{B}/k", wildcard=False)
    steps = wait_for_key(target, end_time=math.inf, poll_interval=1, log=LOG)
    next(steps)
    for err in (
        MpsThrottledError("Cos.SlowDown", "slow down"),
        MpsTransientError("Cos.X", "x"),
        OSError("reset"),
    ):
        assert isinstance(steps.send(err), Sleep)
        assert isinstance(steps.send(None), HeadObject)
    with pytest.raises(StopIteration) as done:
        steps.send(MpsAuthError("AuthFailure", "COS HTTP 403: denied", "req-1"))
    outcome = done.value.value
    assert outcome.event == "error"
    assert outcome.error["code"] == "AuthFailure" and outcome.error["request_id"] == "req-1"
    assert isinstance(outcome.exception, MpsAuthError)


def test_key_wait_deadline_is_absolute_and_no_sleep_passes_it() -> None:
    clock = Clock()
    target = parse_key_target(f"cos://{B}/k", wildcard=False)
    steps = wait_for_key(target, end_time=clock.now + 3, poll_interval=10, log=LOG, clock=clock)
    step = next(steps)
    assert isinstance(step, HeadObject) and step.timeout == 3.0
    clock.now += 1
    pause = steps.send(False)
    assert pause == Sleep(2.0)  # the time left, not the poll interval
    clock.now += pause.seconds
    with pytest.raises(StopIteration) as done:
        steps.send(None)  # at the deadline: no further call
    outcome = done.value.value
    assert outcome.event == "timeout" and outcome.error["code"] == "Timeout"
    assert "no object appeared" in outcome.error["message"]

    # A wait whose deadline already passed makes no call at all (a trigger rebuilt too late).
    late = wait_for_key(target, end_time=clock.now - 1, poll_interval=10, log=LOG, clock=clock)
    with pytest.raises(StopIteration) as done:
        next(late)
    assert done.value.value.event == "timeout"


# ------------------------------------------------------------------------------------ wait_for_quiet
def _quiet(clock: Clock, memory: QuietMemory | None = None, **kw: Any) -> Any:
    args: dict[str, Any] = {"inactivity_period": 60, "min_objects": 1, "end_time": clock.now + 1000}
    args.update(kw)
    return wait_for_quiet(CosTarget(B, "raw/"), poll_interval=10, log=LOG, clock=clock, memory=memory, **args)


def test_quiet_wait_starts_the_clock_at_the_first_look_and_restarts_it_on_change() -> None:
    clock = Clock()
    steps = _quiet(clock)
    assert next(steps) == ScanPrefix(B, "raw/", 1000.0)
    remembered = steps.send(ListingSummary(3, "f1"))
    assert remembered == Remember(QuietMemory("f1", 3, 1000.0))
    pause = steps.send(None)
    assert isinstance(pause, Sleep) and pause.seconds <= 11.0
    clock.now += 30
    steps.send(None)
    assert isinstance(steps.send(ListingSummary(3, "f1")), Sleep)  # unchanged: nothing to remember
    clock.now += 20
    steps.send(None)
    # Changed 50 s after the first look: the period restarts now.
    assert steps.send(ListingSummary(4, "f2")) == Remember(QuietMemory("f2", 4, 1050.0))
    steps.send(None)
    clock.now += 59
    steps.send(None)
    pause = steps.send(ListingSummary(4, "f2"))
    assert isinstance(pause, Sleep) and pause.seconds == pytest.approx(1.0)  # looks when it may end
    clock.now += 1
    steps.send(None)
    with pytest.raises(StopIteration) as done:
        steps.send(ListingSummary(4, "f2"))
    outcome = done.value.value
    assert outcome.event == "success" and outcome.objects == 4
    assert outcome.payload()["objects"] == 4


def test_quiet_wait_needs_min_objects() -> None:
    clock = Clock()
    steps = _quiet(clock, inactivity_period=0, min_objects=2)
    next(steps)
    steps.send(ListingSummary(1, "f1"))  # Remember
    pause = steps.send(None)
    assert isinstance(pause, Sleep)  # quiet, but one object short: keep waiting
    steps.send(None)
    assert isinstance(steps.send(ListingSummary(2, "f2")), Remember)
    with pytest.raises(StopIteration) as done:
        steps.send(None)
    assert done.value.value.objects == 2


def test_quiet_wait_with_zero_min_objects_accepts_an_empty_prefix() -> None:
    clock = Clock()
    steps = _quiet(clock, inactivity_period=0, min_objects=0)
    next(steps)
    steps.send(summarize([]))
    with pytest.raises(StopIteration) as done:
        steps.send(None)
    assert done.value.value.objects == 0


def test_quiet_wait_resumes_from_memory_only_if_the_listing_is_the_same() -> None:
    """A trigger rebuilt after a triggerer restart starts from the memory in its kwargs: the same
    listing keeps the old ``since`` (done at once here); a changed one restarts the period."""
    clock = Clock(5000.0)
    memory = QuietMemory("f1", 2, 4000.0)
    same = _quiet(clock, memory=memory)
    next(same)
    with pytest.raises(StopIteration) as done:
        same.send(ListingSummary(2, "f1"))
    assert done.value.value.event == "success"

    changed = _quiet(clock, memory=memory)
    next(changed)
    assert changed.send(ListingSummary(2, "f9")) == Remember(QuietMemory("f9", 2, 5000.0))
    assert isinstance(changed.send(None), Sleep)


def test_quiet_wait_errors_and_deadline() -> None:
    clock = Clock()
    steps = _quiet(clock, end_time=clock.now + 15)
    next(steps)
    assert isinstance(steps.send(MpsThrottledError("Cos.SlowDown", "x")), Sleep)
    clock.now += 15
    with pytest.raises(StopIteration) as done:
        steps.send(None)
    outcome = done.value.value
    assert outcome.event == "timeout" and "did not stay unchanged for 60s" in outcome.error["message"]

    steps = _quiet(Clock())
    next(steps)
    with pytest.raises(StopIteration) as done:
        steps.send(MpsAuthError("ResourceNotFound", "NoSuchBucket"))
    assert done.value.value.event == "error"
