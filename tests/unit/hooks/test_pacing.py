"""Unit tests of the adaptive bucket's rules, one at a time, on a fake clock (issue 13).

``test_pacing_sim.py`` checks what the rules add up to (K processes sharing one account); these pin
each rule: the jitter margin while alone, the slot grid once shared, storms, contests, probing, the
ceiling, voided reservations, and the module's shared-bucket registry.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from airflow_mps.hooks import _pacing
from airflow_mps.hooks._pacing import (
    HEADROOM,
    AdaptiveBucket,
    AdaptiveParams,
    TokenBucket,
    reset_shared_buckets,
    shared_bucket,
    throttle_counts,
    use_adaptive_pacing,
)


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def message(seen: int, limit: int = 20) -> str:
    return (
        f"Your current request times equals to `{seen}` in a second, which exceeds the frequency limit "
        f"`{limit}` for a second. Please reduce the frequency of calls."
    )


def send(bucket: AdaptiveBucket, clock: FakeClock, n: int = 1) -> list[float]:
    """Acquire ``n`` slots one after the other (as one worker thread does); return the send times."""
    times = []
    for _ in range(n):
        bucket.acquire(sleep=clock.sleep)
        times.append(bucket.now())
    return times


# ---- parsing -----------------------------------------------------------------------------------
def test_throttle_counts_reads_the_documented_message() -> None:
    assert throttle_counts(message(21)) == (21, 20)
    assert throttle_counts(message(160, 100)) == (160, 100)
    assert throttle_counts("RequestLimitExceeded") is None
    assert throttle_counts("") is None and throttle_counts(None) is None


# ---- alone: even spacing, a jitter margin that follows the service -----------------------------
def test_alone_starts_with_a_margin_and_narrows_it_while_nothing_is_refused() -> None:
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock)
    params = AdaptiveParams()
    start = 20 / (1 + params.start_margin)
    assert bucket.rate == bucket.ceiling == 20
    assert bucket.pacing_rate == pytest.approx(start, rel=1e-3)
    times = send(bucket, clock, 3)
    assert times[1] - times[0] == pytest.approx(1 / start, rel=1e-3)
    for t in send(bucket, clock, 600):  # 30 s of successes
        bucket.on_success(t)
    assert bucket.pacing_rate == pytest.approx(20 / (1 + params.min_margin), rel=1e-3)
    assert not bucket.shared() and bucket.throttles == 0
    assert bucket.max_in_window(1.0) <= 20


def test_alone_a_jitter_throttle_widens_the_margin_once_and_keeps_every_slot() -> None:
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock)
    for t in send(bucket, clock, 200):
        bucket.on_success(t)
    before = bucket.pacing_rate
    (t,) = send(bucket, clock)
    bucket.on_throttled(t, message(21))  # 21 seen, 20 of them ours: jitter, not company
    bucket.on_throttled(t + 0.01, message(21))  # the same moment: widened once, not twice
    assert bucket.widenings == 1 and bucket.cuts == 0
    assert bucket.budget == 20 and not bucket.shared()
    assert bucket.pacing_rate == pytest.approx(20 / ((20 / before) + AdaptiveParams().margin_step), rel=1e-2)


# ---- shared: the common grid, contests ----------------------------------------------------------
def test_a_throttle_showing_other_processes_moves_the_bucket_onto_the_grid() -> None:
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, seed=1)
    for t in send(bucket, clock, 60):  # 3 s old: not "young" any more
        bucket.on_success(t)
    (t,) = send(bucket, clock)
    bucket.on_throttled(t, message(25))  # 25 seen, ~20 ours: the window had others too
    assert bucket.shared()
    assert bucket.budget == 19  # the contested slot was given up (not a storm: 22 < 1.5 × 20)
    params = AdaptiveParams()
    period = params.window * (1 + params.shared_margin)
    width = period / 20
    for t in send(bucket, clock, 40):
        position = (t % period) / width  # slot index + the yield offset (bigger holders send later)
        offset = min(params.max_yield, params.yield_step * (bucket.budget - 1)) / width
        assert position - offset == pytest.approx(round(position - offset), abs=1e-6)
    assert bucket.max_in_window(1.0) <= 20


def test_losing_a_contest_voids_the_reservations_already_made_in_that_slot() -> None:
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, seed=2)
    send(bucket, clock, 60)
    (t,) = send(bucket, clock)
    bucket.on_throttled(t, message(25))  # onto the grid
    delay, ticket = bucket._reserve()
    _, slot = ticket
    assert bucket.still_valid(ticket)
    bucket.on_throttled(clock.now + delay, message(21))  # that slot's next instance lost a contest
    assert slot not in bucket._owned and not bucket.still_valid(ticket)


def test_the_smaller_holder_sends_first_within_a_slot() -> None:
    """Two processes in one slot: the service keeps the earlier request, so contests move slots
    from larger holders to smaller ones."""
    clock = FakeClock()
    small, large = AdaptiveBucket(20, clock=clock, seed=3), AdaptiveBucket(20, clock=clock, seed=4)
    small._hold({5})
    large._hold({5, 6, 7, 8})
    for b in (small, large):
        b._shared_until = clock.now + 60
    d_small, _ = small._reserve()
    d_large, _ = large._reserve()
    assert d_small < d_large < d_small + AdaptiveParams().max_yield + 1e-9


# ---- storms -------------------------------------------------------------------------------------
def test_a_storm_keeps_our_share_of_the_growth_and_waits_for_the_window_to_drain() -> None:
    """Four processes start together at full speed: between two of our throttles the service's count
    grew by 4x our own requests, so we keep a quarter of the slots and send nothing until the
    window that the start-up burst filled has drained."""
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, seed=5)
    sent = send(bucket, clock, 10)
    bucket.on_throttled(sent[1], message(24))  # young: a storm, but nothing to compare with yet ...
    assert bucket.storms == 0 and bucket.budget == 19  # ... so handled as a lost contest
    bucket.on_throttled(sent[9], message(24 + 32))  # 32 more seen, 8 of them ours (>= min_growth)
    assert bucket.storms == 1 and bucket.budget == 5  # share 8 / 32 of 20 slots
    delay = bucket.reserve()  # paused: one window after our oldest request in it
    assert clock.now + delay >= sent[0] + 1.0


def test_growth_does_not_favour_the_process_that_started_first() -> None:
    """Alone for a while, a process fills most of the window itself; when others arrive, its share
    is measured on what the service saw since, not on the window's total."""
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, seed=6)
    sent = send(bucket, clock, 16)  # ~0.8 s alone: 16 of the window's requests are ours
    bucket.on_throttled(sent[11], message(30))  # others arrived: 30 seen, ~12 ours
    bucket.on_throttled(sent[15], message(50))  # 20 more seen, 4 of them ours
    assert bucket.budget == 4  # 4 / 20 of the limit, not 16 / 50


def test_throttles_during_the_storm_pause_are_echoes() -> None:
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, seed=7)
    times = send(bucket, clock, 8)
    bucket.on_throttled(times[1], message(24))
    bucket.on_throttled(times[5], message(40))
    assert bucket.storms == 1
    kept = bucket.budget
    for t in times[6:]:
        bucket.on_throttled(t, message(44))  # sent before the cut took effect
    assert bucket.budget == kept and bucket.storms == 1


def test_a_pause_makes_sleeping_workers_reserve_again() -> None:
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, seed=8)
    times = send(bucket, clock, 6)
    bucket.on_throttled(times[1], message(24))
    delay, ticket = bucket._reserve()  # a worker is sleeping toward this slot ...
    bucket.on_throttled(times[4], message(60))  # ... when the storm cut arrives
    assert bucket.storms == 1 and not bucket.still_valid(ticket)
    waited = bucket.acquire(sleep=clock.sleep)  # acquire re-reserves after the pause
    assert clock.now >= times[0] + 1.0 and waited > delay


# ---- probing ------------------------------------------------------------------------------------
def test_probing_takes_a_slot_and_gives_it_back_if_refused() -> None:
    clock = FakeClock()
    params = AdaptiveParams(probe_interval=2.0)
    bucket = AdaptiveBucket(20, clock=clock, seed=9, params=params)
    bucket._hold({0, 1, 2})
    bucket._target = 3
    bucket._shared_until = clock.now + 600
    bucket._next_probe = clock.now
    bucket.on_success(clock.now)
    assert bucket.budget == 4 and bucket.probes == 1
    (probe,) = bucket._probing
    clock.now += 0.3
    period = params.window * (1 + params.shared_margin)
    sent = (clock.now // period + 1) * period + probe * period / 20
    bucket.on_throttled(sent, message(21))  # someone smaller already sends in that slot
    assert bucket.budget == 3 and bucket.failed_probes == 1 and probe not in bucket._owned


def test_unrefused_probes_keep_the_slot_and_come_faster() -> None:
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, seed=10, params=AdaptiveParams(probe_interval=4.0))
    bucket._hold({0})
    bucket._target = 1
    bucket._shared_until = clock.now + 600
    bucket._next_probe = clock.now
    held = []
    for _ in range(200):  # 20 s of successes, nobody else on the account
        clock.now += 0.1
        bucket.on_success(clock.now)
        held.append(bucket.budget)
    assert held[-1] == 20  # back to the ceiling ...
    assert held.index(20) < 150  # ... within 15 s, by probes that came faster and faster
    assert bucket.failed_probes == 0


# ---- the ceiling --------------------------------------------------------------------------------
def test_never_more_grants_than_the_ceiling_in_any_window() -> None:
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, seed=11)
    for t in send(bucket, clock, 100):
        bucket.on_success(t)
    (t,) = send(bucket, clock)
    bucket.on_throttled(t, message(25))  # onto the grid: the switch must not squeeze two grants
    for t in send(bucket, clock, 300):
        bucket.on_success(t)
    assert bucket.max_in_window(1.0) <= 20


def test_threads_get_distinct_slots() -> None:
    clock = FakeClock()
    bucket = AdaptiveBucket(50, clock=clock, seed=12)
    grants: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            delay = bucket.reserve()
            with lock:
                grants.append(clock.now + delay)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({round(g, 9) for g in grants}) == 200
    assert bucket.max_in_window(1.0) <= 50


def test_aacquire_waits_on_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock)
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.sleep(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)

    async def main() -> None:
        for _ in range(3):
            await bucket.aacquire()

    asyncio.run(main())
    assert slept == [pytest.approx((1 + AdaptiveParams().start_margin) / 20, rel=1e-3)] * 2


def test_set_rate_changes_the_ceiling() -> None:
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock)
    bucket.set_rate(5)
    assert bucket.ceiling == bucket.rate == 5 and bucket.budget == 5
    send(bucket, clock, 50)
    assert bucket.max_in_window(1.0) <= 5
    with pytest.raises(ValueError, match="rate"):
        bucket.set_rate(0)


# ---- the registry ---------------------------------------------------------------------------------
def test_shared_buckets_are_fixed_unless_adaptive_pacing_is_chosen() -> None:
    default = _pacing._ADAPTIVE
    reset_shared_buckets()
    try:
        use_adaptive_pacing(False)
        fixed = shared_bucket(("AKID@x", "ProcessImage"), 20)
        assert type(fixed) is TokenBucket and fixed.rate == pytest.approx(20 * HEADROOM)
        assert shared_bucket(("AKID@x", "ProcessImage"), 20) is fixed
        fixed.on_success(0.0)
        fixed.on_throttled(0.0, message(21))  # a fixed bucket only counts
        assert (fixed.successes, fixed.throttles, fixed.rate) == (1, 1, pytest.approx(19.4))
        shared_bucket(("AKID@x", "ProcessImage"), 10)
        assert fixed.rate == pytest.approx(10 * HEADROOM)
        use_adaptive_pacing(True)
        adaptive = shared_bucket(("AKID@x", "ProcessImage"), 20)
        assert isinstance(adaptive, AdaptiveBucket) and adaptive.ceiling == 20
        assert shared_bucket(("AKID@x", "ProcessImage"), 20) is adaptive
    finally:
        use_adaptive_pacing(default)
        reset_shared_buckets()


def test_fixed_pacing_is_the_default_and_the_environment_opts_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_MPS_PACING", raising=False)
    assert _pacing._adaptive_from_environment() is False
    monkeypatch.setenv("AIRFLOW_MPS_PACING", "adaptive")
    assert _pacing._adaptive_from_environment() is True
    monkeypatch.setenv("AIRFLOW_MPS_PACING", "fixed")
    assert _pacing._adaptive_from_environment() is False
