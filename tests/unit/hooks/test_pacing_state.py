"""The pacing snapshot a batch logs when it has submitted (``_buckets.pacing_state``, issue 13): a
batch that ran at a fraction of the limit says whether the account was shared, how, and what the
service refused — read off real buckets driven on a fake clock."""

from __future__ import annotations

import pytest

from airflow_mps.hooks._adaptive import AdaptiveBucket
from airflow_mps.hooks._buckets import pacing_state
from airflow_mps.hooks._pacing import HEADROOM, TokenBucket
from tests.unit.hooks.test_pacing import OPEN, FakeClock, message, paced, send, settled, storm


def test_a_bucket_alone_says_so_with_its_rate_and_nothing_refused() -> None:
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, params=OPEN, seed=1)
    for t in send(bucket, clock, 10):
        bucket.on_success(t)
    state = pacing_state(bucket, "ProcessImage")
    assert (state.mode, state.accepted, state.throttled, state.storms) == ("alone", 10, 0, 0)
    assert state.rate == pytest.approx(bucket.pacing_rate) and 19.5 < state.rate <= 20
    line = state.describe()
    assert line.startswith("alone on the account at 19.") and "(limit 20/s)" in line
    assert line.endswith("; ProcessImage: 10 accepted, 0 throttled (0.0%)")


def test_turns_after_a_storm_name_the_group_the_share_and_the_refusals() -> None:
    bucket, _ = settled(group=4, rank=1)
    state = pacing_state(bucket, "ProcessImage")
    assert (state.mode, state.group, state.measured, state.share, state.storms) == ("turns", 4, True, 0.25, 1)
    assert state.throttled == bucket.throttles == 1 + OPEN.gaps  # the storm's tickets
    line = state.describe()
    assert "sharing the account (the last storm found 4 processes): 25% of the 20/s limit" in line
    assert f"; ProcessImage: {state.accepted} accepted, {state.throttled} throttled (" in line
    assert line.endswith("; 1 storm")


def test_a_latecomer_points_at_the_pool() -> None:
    # Came to an account others kept full: one slot per window — the batch runs at 1/20 of the limit,
    # and the line says why and where the answer is.
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, params=OPEN, seed=4)
    storm(bucket, clock, first_ticket=21, group=1)
    send(bucket, clock, 2)
    state = pacing_state(bucket, "ProcessImage")
    assert state.mode == "late" and state.group is None and state.share == pytest.approx(1 / 20)
    assert "came to an account others kept full: 5% of the 20/s limit" in state.describe()
    assert "docs/batch.md, Pools" in state.describe()


def test_fixed_pacing_reports_its_pace() -> None:
    bucket = TokenBucket(20 * HEADROOM)
    bucket.on_success(0.0)
    bucket.on_throttled(0.0, message(21))
    state = pacing_state(bucket, "ProcessImage")
    assert (state.mode, state.accepted, state.throttled) == ("fixed", 1, 1)
    assert state.describe() == (
        "fixed pacing at 19.4/s (AIRFLOW_MPS_PACING=fixed); ProcessImage: 1 accepted, 1 throttled (50.0%)"
    )


def test_since_counts_only_what_came_after_the_earlier_state() -> None:
    # The bucket is the process's: a second batch in one worker process reports its own counts.
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, params=OPEN, seed=2)
    paced(bucket, clock, 200)
    before = pacing_state(bucket, "ProcessImage")
    paced(bucket, clock, 20)
    (t,) = send(bucket, clock)
    bucket.on_throttled(t, message(21))  # 21 seen, 20 of them ours: jitter, still alone
    delta = pacing_state(bucket, "ProcessImage").since(before)
    assert delta is not None
    assert (delta.accepted, delta.throttled, delta.storms, delta.mode) == (20, 1, 0, "alone")


def test_since_refuses_to_mix_counts_of_another_bucket() -> None:
    # No state from the start, or one of a bucket the registry has since replaced: no counts at all
    # rather than the process's whole history or a negative difference.
    clock = FakeClock()
    old, new = (AdaptiveBucket(20, clock=clock, params=OPEN, seed=s) for s in (1, 2))
    old.on_success(clock.now)
    old.on_success(clock.now)
    new.on_success(clock.now)
    assert pacing_state(new, "ProcessImage").since(None) is None
    assert pacing_state(new, "ProcessImage").since(pacing_state(old, "ProcessImage")) is None
    same = pacing_state(new, "ProcessImage")
    assert same.since(same) is not None and same.since(same).accepted == 0  # type: ignore[union-attr]


def test_a_guessed_group_is_not_reported_as_measured() -> None:
    # We had the window to ourselves, somebody came, and too few tickets came back to measure the
    # group: the bucket halves (a group of 2 taken, not found), and the line says it was a guess.
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, params=OPEN, seed=3)
    paced(bucket, clock, 60)
    storm(bucket, clock, first_ticket=24, group=4, n=1)  # three others in the window; one ticket
    assert pacing_state(bucket, "ProcessImage").mode == "measuring"  # the storm's pause
    send(bucket, clock, 1 + OPEN.gaps)  # its measuring sends (their answers never come), then a turn
    state = pacing_state(bucket, "ProcessImage")
    assert (state.mode, state.group, state.measured) == ("turns", 2, False)
    assert "sharing the account (a storm too short to measure, taken as 2 processes)" in state.describe()
