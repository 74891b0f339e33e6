"""Unit tests of the adaptive bucket's rules, one at a time, on a fake clock (issue 13).

``test_pacing_sim.py`` checks what the rules add up to (K processes sharing one account); these pin
each rule: alone (the jitter margin, slow start, holding back behind a late request), storms (the
group and rank from the service's counts, the pause, measuring sends at short round trips, the
latecomer), the grid (turns, the ceiling), contests, probing, voided and late reservations, and
the module's shared-bucket registry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import math
import random
import threading
from collections.abc import Callable

import pytest

from airflow_mps.hooks import _buckets
from airflow_mps.hooks._adaptive import AdaptiveBucket
from airflow_mps.hooks._buckets import reset_shared_buckets, shared_bucket, use_adaptive_pacing
from airflow_mps.hooks._pacing import (
    HEADROOM,
    AdaptiveParams,
    TokenBucket,
    most_in_window,
    storm_rank,
    throttle_counts,
)

#: Slow start off: these tests drive the other rules without answering every request.
OPEN = AdaptiveParams(start_window=1_000_000)
WIDTH = OPEN.window * (1 + OPEN.shared_margin) / 20  # a grid slot at 20/s


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


def paced(
    bucket: AdaptiveBucket,
    clock: FakeClock,
    n: int,
    rtt: Callable[[int], float] = lambda i: 0.15,
    seen: Callable[[int], int | None] = lambda i: None,
) -> list[float]:
    """``n`` requests sent as fast as the bucket lets (several workers, as the batch operator runs
    them), request ``i`` answered ``rtt(i)`` after it left: accepted, or refused with the count
    ``seen(i)``. Answers due while a worker waits are delivered first, at their time."""
    pending: list[tuple[float, float, int | None]] = []
    times: list[float] = []

    def deliver(until: float) -> None:
        while pending and pending[0][0] <= until:
            at, sent, count = heapq.heappop(pending)
            clock.now = max(clock.now, at)
            if count is None:
                bucket.on_success(sent)
            else:
                bucket.on_throttled(sent, message(count))

    for i in range(n):
        for delay in bucket._waits():  # acquire's own waits, each on the fake clock
            target = clock.now + delay
            deliver(target)
            clock.now = max(clock.now, target)
        times.append(clock.now)
        heapq.heappush(pending, (clock.now + rtt(i), clock.now, seen(i)))
    deliver(clock.now + 10.0)
    return times


def storm(
    bucket: AdaptiveBucket, clock: FakeClock, first_ticket: int, group: int, n: int = 1 + OPEN.gaps
) -> list[float]:
    """Our part of a storm of ``group`` processes at the full rate: ``n`` sends (the first refusal
    and the ``gaps`` that measure the group), then their refusals come back a round trip later, each
    ticket ``group`` above our previous one."""
    times = send(bucket, clock, n)
    clock.now = times[-1] + 0.15
    for i, t in enumerate(times):
        bucket.on_throttled(t, message(first_ticket + i * group))
    return times


def grid_slot(t: float) -> int:
    return math.floor(t / WIDTH)


# ---- parsing -----------------------------------------------------------------------------------
def test_throttle_counts_reads_the_documented_message() -> None:
    assert throttle_counts(message(21)) == (21, 20)
    assert throttle_counts(message(160, 100)) == (160, 100)
    assert throttle_counts("RequestLimitExceeded") is None
    assert throttle_counts("") is None and throttle_counts(None) is None


# ---- alone -------------------------------------------------------------------------------------
def test_alone_starts_with_a_margin_and_narrows_it_while_nothing_is_refused() -> None:
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, params=OPEN)
    start = 20 / (1 + OPEN.start_margin)
    assert bucket.rate == bucket.ceiling == 20 and bucket.share == 1.0
    assert bucket.pacing_rate == pytest.approx(start, rel=1e-3)
    times = send(bucket, clock, 3)
    assert times[1] - times[0] == pytest.approx(1 / start, rel=1e-3)
    for t in send(bucket, clock, 600):  # 30 s of successes
        bucket.on_success(t)
    assert bucket.pacing_rate == pytest.approx(20 / (1 + OPEN.min_margin), rel=1e-3)
    assert not bucket.shared() and bucket.throttles == 0
    assert bucket.max_in_window(1.0) <= 20


def test_alone_a_jitter_throttle_widens_the_margin_once_and_keeps_the_full_share() -> None:
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, params=OPEN)
    paced(bucket, clock, 200)
    before = bucket.pacing_rate
    (t,) = send(bucket, clock)
    bucket.on_throttled(t, message(21))  # 21 seen, 20 of them ours: jitter, not company
    bucket.on_throttled(t + 0.01, message(21))  # the same moment: widened once, not twice
    assert bucket.widenings == 1 and bucket.storms == 0
    assert bucket.share == 1.0 and not bucket.shared()
    assert bucket.pacing_rate == pytest.approx(20 / ((20 / before) + OPEN.margin_step), rel=1e-2)


def test_slow_start_waits_for_steady_answers_before_the_full_rate() -> None:
    """A fresh bucket keeps at most ``start_window`` requests unanswered until two answers in a row
    took about as long; then only the rate paces. A host answering late and unevenly (every process
    starting at once) keeps it closed."""
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock)
    trips = iter([0.8, 1.0, 0.25, 0.6] + [0.15] * 20)  # uneven while the host catches up
    times = paced(bucket, clock, 12, rtt=lambda i: next(trips))
    assert max(sum(1 for t in times[:i] if t > times[i] - 1.0) for i in range(4)) <= 2
    assert times[3] - times[0] > 0.8  # nothing more went out before the first answers came
    assert times[-1] - times[-5] == pytest.approx(4 * (1 + bucket._margin) / 20, rel=0.05)  # open


def test_alone_a_request_that_reached_the_service_late_holds_back_the_one_a_window_later() -> None:
    """Request 40's answer took 30 ms longer than the others': it may have been counted 30 ms late,
    so request 60 (``limit`` sends later) waits that much more — else it would find 20 in the
    window and be refused. The others keep their pace."""
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, params=OPEN)
    times = paced(bucket, clock, 80, rtt=lambda i: 0.18 if i == 40 else 0.15)
    period = OPEN.window * (1 + bucket._margin)
    assert times[60] - times[40] >= period + 0.03 - 1e-6
    assert times[59] - times[39] == pytest.approx(period, abs=0.002)
    assert times[61] - times[60] < times[60] - times[59]  # back to the pace at once
    assert bucket.throttles == 0 and bucket.max_in_window(1.0) <= 20


# ---- storms: the group and our rank from the service's counts -----------------------------------
def test_a_storm_measures_the_group_takes_a_rank_and_waits_for_the_window_to_drain() -> None:
    """Four processes started together at the full rate: our refusals come back with counts 4
    apart (one request of each per interval). We keep one turn in four (our place in the interval,
    23 mod 4 = 3) and send nothing until our oldest request in the window has aged out."""
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, params=OPEN, seed=1)
    early = send(bucket, clock, 5)  # accepted: the window was filling
    storm(bucket, clock, first_ticket=23, group=4)
    assert bucket.storms == 1 and bucket.shared()
    delay = bucket.reserve()  # paused: one window (and a slot) after our oldest request
    assert clock.now + delay >= early[0] + OPEN.window
    times = send(bucket, clock, 10)
    assert bucket.group == 4 and bucket.rank == 3 and bucket.share == pytest.approx(1 / 4)
    assert times[0] >= early[0] + OPEN.window
    assert {grid_slot(t) % 4 for t in times} == {3}  # our turns on the common grid
    assert all(b - a == pytest.approx(4 * WIDTH, abs=1e-6) for a, b in itertools.pairwise(times))


def test_short_round_trips_keep_sending_until_the_group_is_measured() -> None:
    """The real service from the same region, or the emulator on the same host, answers before our
    next request leaves: at the first refusal nothing of ours is in flight to measure the group
    with. Stopping there, each process would read only those that had not stopped yet (bench P8's
    K = 8 read groups of 5-12). Instead the bucket sends ``gaps`` more at its pace — every process
    does, so the count grows by the whole group between ours — and then pauses as before."""
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, params=OPEN, seed=3)
    tickets = iter(range(26, 200, 8))  # eight processes; our first refusal was the window's 26th
    times = paced(
        bucket, clock, 6 + OPEN.gaps, rtt=lambda i: 0.004, seen=lambda i: None if i < 5 else next(tickets)
    )
    measuring = times[5:]
    assert bucket.storms == 1 and len(measuring) == 1 + OPEN.gaps
    assert all(b - a == pytest.approx(1.01 / 20, rel=0.02) for a, b in itertools.pairwise(measuring))
    after = send(bucket, clock)[0]  # then paused until our requests have left the window
    assert after >= times[0] + OPEN.window
    assert bucket.group == 8 and bucket.rank == 26 % 8
    assert bucket.tickets_seen == list(range(26, 26 + 8 * (1 + OPEN.gaps), 8))[:8]


def test_a_request_accepted_while_measuring_is_waited_out_too() -> None:
    """A measuring send the service accepted (the window had room after all) counts against the
    account for a window: the pause lasts until it has left it as well."""
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, params=OPEN, seed=3)
    outcome = {5: 27, 6: None} | {i: 27 + 8 * (i - 5) for i in range(7, 6 + OPEN.gaps)}
    times = paced(bucket, clock, 6 + OPEN.gaps, rtt=lambda i: 0.004, seen=lambda i: outcome.get(i))
    assert bucket.storms == 1
    assert send(bucket, clock)[0] >= times[6] + OPEN.window


def test_the_group_survives_a_place_swapped_in_one_interval() -> None:
    """Jitter let a neighbour's request in ahead of ours once: one gap is 5, the next 3 — the count
    over the intervals still grew by 4 per interval, and our usual place (mod 4) is still our rank."""
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, params=OPEN, seed=2)
    send(bucket, clock, 5)
    tickets = (22, 27, 30, *range(34, 34 + 4 * (OPEN.gaps - 2), 4))
    times = send(bucket, clock, len(tickets))
    clock.now = times[-1] + 0.15
    for t, seen in zip(times, tickets, strict=True):
        bucket.on_throttled(t, message(seen))
    send(bucket, clock)
    assert bucket.group == 4 and bucket.rank == 2


@pytest.mark.parametrize(
    ("tickets", "rank"),
    [
        # Two neighbours swapping places from one interval to the next, as in a P8 run (K = 8):
        # counting the first ticket too, both took turn 6 there and turn 7 stayed empty.
        ((22, 31, 39, 46, 55, 63, 70, 79), 7),
        ((23, 30, 38, 47, 54, 62, 71, 78), 6),
        # Usual places (the first ticket agrees, or is outvoted by the later ones).
        ((21, 29, 37, 45, 53, 61, 69, 77), 5),
        ((21, 28, 36, 44, 52, 60, 68, 76), 4),
        # No later place repeats: the first ticket's place decides.
        ((24, 33, 42, 51, 60, 69, 78, 80), 0),
    ],
)
def test_the_rank_is_our_usual_place_after_the_first_interval(tickets: tuple[int, ...], rank: int) -> None:
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, params=OPEN, seed=2)
    send(bucket, clock, 5)
    times = send(bucket, clock, len(tickets))
    clock.now = times[-1] + 0.15
    for t, seen in zip(times, tickets, strict=True):
        bucket.on_throttled(t, message(seen))
    send(bucket, clock)
    assert bucket.group == 8 and bucket.rank == rank


def test_two_neighbours_swapping_places_every_interval_take_different_turns() -> None:
    """Two processes' requests reach the service in either order from one interval to the next:
    each one's places are the other's complement (5, 6, 5, 6, ... and 6, 5, 6, 5, ...), so their
    usual places over the later intervals differ — and each keeps the other's as where to move."""
    rng = random.Random(1)
    first = [(i, 21 + 8 * i + i % 2) for i in range(1 + OPEN.gaps)]
    second = [(i, 22 + 8 * i - i % 2) for i in range(1 + OPEN.gaps)]
    assert storm_rank(first, 8, OPEN.gaps, rng) == (6, [5])
    assert storm_rank(second, 8, OPEN.gaps, rng) == (5, [6])
    assert storm_rank([], 8, OPEN.gaps, rng)[0] in range(8)  # no ticket: a random turn


def late() -> tuple[AdaptiveBucket, FakeClock]:
    """A bucket whose storm counted only its own requests: it came late to a full account."""
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, params=OPEN, seed=4)
    storm(bucket, clock, first_ticket=21, group=1)
    return bucket, clock


def test_a_latecomer_to_a_full_account_starts_with_one_slot_per_window() -> None:
    """The account was already full when we started: the count grew by one per request of ours
    (only we were adding to a window that others keep full). No group to measure: one slot of the
    grid, then probes."""
    bucket, clock = late()
    times = send(bucket, clock, 3)
    assert bucket.group is None and bucket.shared() and bucket.share == pytest.approx(1 / 20)
    assert len({grid_slot(t) % 20 for t in times}) == 1


def test_refusals_of_requests_sent_before_the_pause_are_echoes() -> None:
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, params=OPEN, seed=5)
    send(bucket, clock, 5)
    times = storm(bucket, clock, first_ticket=25, group=4)
    send(bucket, clock)
    share = bucket.share
    for t in times:  # retries of the storm's refusals, answered late: nothing changes
        bucket.on_throttled(t, message(31))
    assert bucket.share == share and bucket.storms == 1 and bucket.cuts == 0


def test_a_pause_makes_sleeping_workers_reserve_again() -> None:
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, params=OPEN, seed=6)
    times = send(bucket, clock, 2 + OPEN.gaps)  # as many sent after the refused one as measure a group
    delay, ticket = bucket._reserve()  # a worker is sleeping toward this send ...
    bucket.on_throttled(times[1], message(24))  # ... when the storm arrives
    assert bucket.storms == 1 and not bucket.still_valid(ticket)
    waited = bucket.acquire(sleep=clock.sleep)  # acquire reserves again after the pause
    assert clock.now >= times[0] + 1.0 and waited > delay


# ---- the grid: turns, contests --------------------------------------------------------------------
def settled(
    group: int, rank: int, seed: int = 7, params: AdaptiveParams = OPEN
) -> tuple[AdaptiveBucket, FakeClock]:
    """A bucket that took turn ``rank`` of ``group`` after a storm."""
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, params=params, seed=seed)
    send(bucket, clock, 3)
    storm(bucket, clock, first_ticket=21 + rank + group - 21 % group, group=group)
    send(bucket, clock)
    assert bucket.group == group and bucket.rank == rank
    return bucket, clock


def test_turns_on_the_grid_never_exceed_the_ceiling() -> None:
    bucket, clock = settled(
        group=3, rank=1, params=AdaptiveParams(start_window=1_000_000, probe_interval=1e6)
    )
    times = send(bucket, clock, 200)
    for t in times:
        bucket.on_success(t)
    assert most_in_window(times, 1.0) <= 7  # ceil(20 / 3): the turns, not the storm before them
    assert len(bucket._reserved) <= 4 * 20 + 1  # what it remembers of its turns stays small
    assert bucket.pacing_rate == pytest.approx(20 / 3 / (1 + OPEN.shared_margin), rel=1e-3)


def test_a_lone_refusal_on_the_grid_is_jitter_and_costs_nothing() -> None:
    bucket, clock = settled(group=4, rank=2)
    times = send(bucket, clock, 20)
    bucket.on_throttled(times[5], message(21))
    bucket.on_throttled(times[12], message(21))
    assert bucket.share == pytest.approx(1 / 4) and bucket.cuts == 0 and bucket.moves == 0


def test_somebodys_storm_costs_nobody_a_slot() -> None:
    bucket, clock = settled(group=4, rank=2)
    times = send(bucket, clock, 6)
    for t in times[:2]:  # a newcomer at the full rate: counts far above the limit
        bucket.on_throttled(t, message(45))
    assert bucket.share == pytest.approx(1 / 4) and bucket.cuts == 0


def test_refused_again_and_again_halves_our_share_whatever_the_slots() -> None:
    """Shares that add up to more than the limit (a group measured wrong): a steady stream of
    refusals, even with counts that look like somebody's storm, halves what we hold."""
    bucket, clock = settled(group=2, rank=1)
    clock.now += 2.0  # the storm's sends are out of the picture
    times = send(bucket, clock, 8)
    for t in (times[0], times[2], times[5]):  # not one slot's pattern: refused all over
        bucket.on_throttled(t, message(40))
    assert bucket.share == pytest.approx(1 / 4) and bucket.cuts == 1 and bucket.moves == 0


def test_losing_every_instance_of_our_turn_moves_us_to_the_turn_our_tickets_named() -> None:
    """Two processes drew the same rank (jitter swapped them in the storm): the one that keeps
    losing moves — first to the other place its tickets showed — and keeps it if it is free."""
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, params=OPEN, seed=8)
    send(bucket, clock, 3)
    tickets = (22, 26, 31, *range(34, 34 + 4 * (OPEN.gaps - 2), 4))  # places 2, 2, 3, 2, ... (mod 4)
    times = send(bucket, clock, len(tickets))
    clock.now = times[-1] + 0.15
    for t, seen in zip(times, tickets, strict=True):
        bucket.on_throttled(t, message(seen))
    send(bucket, clock)
    assert bucket.rank == 2
    lost = send(bucket, clock, 3)
    clock.now += 0.15
    for t in lost:  # three instances in a row refused: another process holds turn 2
        bucket.on_throttled(t, message(21))
    assert bucket.moves == 1 and bucket._probing == frozenset({3})
    for t in send(bucket, clock, 20 // 4):  # a window of turn 3's instances, all accepted
        bucket.on_success(t)
    assert bucket._held == frozenset({3}) and not bucket._probing


def test_losing_on_a_grain_of_its_own_leaves_the_other_process_that_grain() -> None:
    """We hold turn 1 of 4; a latecomer holds slot 5 of every 20 (one per window, inside our turn)
    and wins it: our losses are 20 slots apart. We keep turn 1 except that slot (4 of 20)."""
    bucket, clock = settled(group=4, rank=1)
    times = send(bucket, clock, 20)
    lost = [t for t in times if grid_slot(t) % 20 == 5][:3]
    assert len(lost) == 3
    clock.now += 0.15
    for t in lost:
        bucket.on_throttled(t, message(21))
    assert bucket._mod == 20 and bucket._held == frozenset({1, 9, 13, 17})
    assert bucket.share == pytest.approx(4 / 20)


def test_a_turn_shared_with_an_equal_holder_is_left_not_split_finer_than_a_window() -> None:
    """Two processes took turn 2 of 8 and win it in turn as jitter falls: our losses can land
    every third instance (24 slots apart), which is no grain of one slot per window. We do not keep
    two instances in three of a 24-slot grain (both would, and neither move): we move."""
    bucket, clock = settled(group=8, rank=2)
    times = send(bucket, clock, 7)
    lost = times[::3]
    assert [grid_slot(t) % 24 for t in lost] == [grid_slot(lost[0]) % 24] * 3
    clock.now += 0.15
    for t in lost:
        bucket.on_throttled(t, message(21))
    assert bucket._mod == 8 and bucket.moves == 1
    assert bucket._held == bucket._probing and 2 not in bucket._held


def test_the_smaller_holder_sends_first_within_a_slot() -> None:
    """Two processes in one slot: the service keeps the earlier request, so contests move slots
    from larger holders to smaller ones."""
    small, clock = settled(group=8, rank=5, seed=9)
    large, _ = settled(group=4, rank=1, seed=10)
    large._clock = clock
    small_at = small._next_slot(clock.now)[0] % WIDTH
    large_at = large._next_slot(clock.now)[0] % WIDTH
    assert small_at < large_at < OPEN.max_yield + OPEN.tie_break + 1e-9


# ---- probing ------------------------------------------------------------------------------------
def test_a_refused_probe_is_given_back_and_the_next_one_waits_twice_as_long() -> None:
    bucket, clock = settled(
        group=4, rank=0, params=AdaptiveParams(start_window=1_000_000, probe_interval=4.0)
    )
    bucket._next_probe = clock.now
    (t,) = send(bucket, clock)
    bucket.on_success(t)
    assert bucket.probes == 1 and len(bucket._probing) == 1
    (probe,) = bucket._probing
    times = send(bucket, clock, 4)
    sent = next(t for t in times if grid_slot(t) % 4 == probe)
    assert sent % WIDTH >= bucket._yield_offset() + OPEN.probe_delay - 1e-9  # later than the holder
    wait = bucket._next_probe - clock.now
    bucket.on_throttled(sent, message(21))  # the holder of that turn was first
    assert bucket.failed_probes == 1 and bucket._held == frozenset({0})
    assert bucket._next_probe - clock.now > wait


def refuse_probes(bucket: AdaptiveBucket, clock: FakeClock, n: int) -> None:
    """``n`` probes in a row, each started at once and refused at its first instance (a full account)."""
    for _ in range(n):
        bucket._next_probe = clock.now
        (t,) = send(bucket, clock)
        bucket.on_success(t)
        (probe,) = bucket._probing
        mod = bucket._mod
        sent = next(t for t in send(bucket, clock, mod) if grid_slot(t) % mod == probe)
        bucket.on_throttled(sent, message(21))


def test_refused_probes_in_a_row_lengthen_the_wait_only_so_far() -> None:
    """A full account refuses every probe; the wait doubles at most ``max_probe_backoff`` times, so
    that the room others leave when they finish is found in seconds, not minutes."""
    params = AdaptiveParams(start_window=1_000_000, probe_interval=4.0, max_probe_backoff=2)
    bucket, clock = settled(group=4, rank=0, params=params)
    refuse_probes(bucket, clock, 6)
    assert bucket.failed_probes == 6
    assert bucket._next_probe - clock.now <= 4.0 * math.sqrt(1 / 4) * 1.5 * 2**2  # not 2**6


def test_a_probe_refused_in_each_of_its_turns_is_one_failure() -> None:
    """A probe of two turns into a full account is refused in both: one failed probe, one doubling
    of the wait. Counted per turn, a probe of two backed off twice and one of eight to the limit at
    once (pacing board, sixty seeds: K = 8 with 10 ms jitter 0.764 -> 0.817)."""
    params = AdaptiveParams(start_window=1_000_000, probe_interval=4.0, max_probe_backoff=3)
    bucket, clock = settled(group=4, rank=0, params=params)
    bucket._wins = 1  # the last probe was kept: this one takes two turns
    bucket._next_probe = clock.now
    (t,) = send(bucket, clock)
    bucket.on_success(t)
    probes, mod = set(bucket._probing), bucket._mod
    assert len(probes) == 2
    times = send(bucket, clock, 2 * mod)
    for probe in probes:
        bucket.on_throttled(next(t for t in times if grid_slot(t) % mod == probe), message(21))
    assert bucket._probing == frozenset() and bucket._held == frozenset({0})
    assert bucket.failed_probes == 1 and bucket._fails == 1


def budget_run(budget: float, n: int) -> AdaptiveBucket:
    """A bucket at its fair share of four whose waits back off to minutes, then ``n`` calls in which
    every probe is refused (a full account) and every other call accepted."""
    params = AdaptiveParams(
        start_window=1_000_000, probe_interval=100.0, max_probe_backoff=2, probe_budget=budget
    )
    bucket, clock = settled(group=4, rank=0, params=params)
    refuse_probes(bucket, clock, 2)
    for _ in range(n):
        (t,) = send(bucket, clock)
        if grid_slot(t) % bucket._mod in bucket._probing:
            bucket.on_throttled(t, message(21))
        else:
            bucket.on_success(t)
    return bucket


def test_probes_spend_the_refusal_budget_and_no_more() -> None:
    """Backed off to minutes, a bucket still probes every couple of seconds while its refusals are
    few — three in a hundred accepted calls buy one — so that in a long run the room a finished
    process leaves does not stand idle for the back-off (pacing board, partitions of 1,000 to 4,000
    images: 0.899 -> 0.955 of the limit); in a full account it pays at most what it earned."""
    spent = budget_run(0.03, 2_000)
    kept = budget_run(0.0, 2_000)
    assert kept.failed_probes <= 2 + 4  # the two it started with, then the backed-off waits only
    budgeted = spent.failed_probes - kept.failed_probes
    assert budgeted >= 0.02 * 2_000  # most of what it earned, after the debt of its start
    assert spent.throttles <= 0.03 * spent.successes + spent.params.probe_debt + 1 + 2


def first_probe_after_a_storm(params: AdaptiveParams, guessed: bool = False) -> float:
    """Seconds from a storm's settling to the bucket's first probe, every call accepted meanwhile."""
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, params=params, seed=5)
    if guessed:  # the window was ours, somebody came, one ticket: a group of 2 taken, not measured
        paced(bucket, clock, 60)
        storm(bucket, clock, first_ticket=24, group=4, n=1)
        send(bucket, clock, 1 + params.gaps)
    else:
        send(bucket, clock, 3)
        storm(bucket, clock, first_ticket=24, group=4)
        send(bucket, clock)
    assert bucket.group in (2, 4) and bucket.guessed == guessed and bucket.probes == 0
    settled_at = clock.now
    while bucket.probes == 0 and clock.now < settled_at + 300:
        paced(bucket, clock, 1)
    assert bucket.probes == 1
    return clock.now - settled_at


def test_no_probe_for_a_while_after_a_storm_that_measured_the_group() -> None:
    """Right after a storm every process of the group holds its share and none has finished: a probe
    then finds no room, or is kept by feeding on a passing hole and pushes a neighbour off its turn.
    The first one waits ``storm_quiet`` (× 0.5–1.5); a group only guessed at probes as before."""
    fast = AdaptiveParams(start_window=1_000_000, probe_interval=4.0, storm_quiet=0.0)
    quiet = dataclasses.replace(fast, storm_quiet=40.0)
    assert first_probe_after_a_storm(fast) <= 4.0 * math.sqrt(1 / 4) * 1.5 + 1.0
    assert 0.5 * 40.0 <= first_probe_after_a_storm(quiet) <= 1.5 * 40.0 + 1.0
    assert first_probe_after_a_storm(quiet, guessed=True) <= 4.0 * math.sqrt(1 / 2) * 1.5 * 0.25 + 1.0


def test_a_process_squeezed_below_its_fair_share_probes_without_backing_off() -> None:
    """One of four that lost half its turn (a crowd halved it): the room it lost is likely still
    there, so refused probes do not lengthen its wait — unlike a process at its fair share (above)."""
    params = AdaptiveParams(start_window=1_000_000, probe_interval=4.0, max_probe_backoff=2)
    bucket, clock = settled(group=4, rank=0, params=params)
    bucket._halve(clock.now)
    assert bucket.share == pytest.approx(1 / 8) and bucket.group == 4
    refuse_probes(bucket, clock, 6)
    assert bucket.failed_probes == 6
    assert bucket._next_probe - clock.now <= 4.0 * math.sqrt(1 / 8) * 1.5  # not doubled


def test_a_probe_of_a_coarse_turn_is_kept_after_a_window_of_its_instances() -> None:
    """At a share of 1/4 one turn stands for five slots of every window, any of which another sender
    may hold (a latecomer's one slot per window): three acceptances are not enough, five are."""
    bucket, clock = settled(group=4, rank=0)
    bucket._next_probe = clock.now
    (t,) = send(bucket, clock)
    bucket.on_success(t)
    (probe,) = bucket._probing
    instances = [t for t in send(bucket, clock, 40) if grid_slot(t) % 4 == probe]
    for t in instances[:3]:
        bucket.on_success(t)
    assert bucket._probing == frozenset({probe})
    for t in instances[3:5]:
        bucket.on_success(t)
    assert not bucket._probing and bucket._held == frozenset({0, probe})


def test_a_process_that_lost_its_turn_tries_every_other_turn_before_halving() -> None:
    """Two processes of eight drew the same turn; the loser looks for the free one among all seven
    others (each try costs one refusal) before it settles for half a turn."""
    bucket, clock = settled(group=8, rank=3)
    lost = send(bucket, clock, 3)
    clock.now += 0.15
    for t in lost:  # three instances in a row refused: another process holds turn 3
        bucket.on_throttled(t, message(21))
    assert bucket.moves == 1
    while bucket.cuts == 0 and bucket.moves < 20:
        (t,) = send(bucket, clock)
        bucket.on_throttled(t, message(21))  # that turn is somebody's too
    assert bucket.moves == 7 and bucket.cuts == 1 and bucket.share == pytest.approx(1 / 16)


def test_a_latecomer_whose_every_move_is_refused_keeps_one_slot_per_window() -> None:
    """A latecomer (one slot per window, no group) loses its slot to the incumbent and every other
    slot it tries is full too: it stays at one slot per window rather than half of one — that slot
    is how it finds the room the incumbent leaves when it finishes, and from half a slot every
    doubling back would wait twice as long. A bucket with a measured group still halves (above)."""
    bucket, clock = late()
    send(bucket, clock)
    assert bucket.group is None and bucket.share == pytest.approx(1 / 20)
    lost = send(bucket, clock, 3)
    clock.now += 0.15
    for t in lost:  # three instances in a row refused: the incumbent sends in our slot
        bucket.on_throttled(t, message(21))
    assert bucket.moves == 1
    while bucket.moves < 40:
        moves = bucket.moves
        (t,) = send(bucket, clock)
        bucket.on_throttled(t, message(21))  # that slot is the incumbent's too
        if bucket.moves == moves:
            break  # every other slot tried: the bucket settled
    assert bucket.moves == 19 and bucket.cuts == 0
    assert bucket._mod == 20 and bucket.share == pytest.approx(1 / 20) and not bucket._probing
    times = send(bucket, clock, 3)
    assert len({grid_slot(t) % 20 for t in times}) == 1 and times[-1] - times[0] < 2 * 20 * WIDTH + 0.01


def test_reservations_voided_by_a_change_of_turn_do_not_delay_the_next_ones() -> None:
    """Eight workers sleep toward eight turns (eight windows ahead); the bucket moves to another
    turn: the void reservations give their places back, and the first worker to reserve again
    sends at the new turn's next instance, not after the eight void ones."""
    bucket, clock = settled(group=20, rank=5)
    sleeping = [bucket._reserve() for _ in range(8)]
    assert max(delay for delay, _ in sleeping) > 7 * 20 * WIDTH
    bucket._move(clock.now)  # e.g. turn 5 was lost to another process
    assert not any(bucket.still_valid(ticket) for _, ticket in sleeping)
    delay, ticket = bucket._reserve()
    assert bucket.still_valid(ticket) and delay <= 20 * WIDTH + 1e-9


def test_probes_the_service_keeps_accepting_reclaim_the_account_fast() -> None:
    """Everyone else left: each probe is accepted three times in a row and kept; the next comes at
    once and takes twice as much; holding every turn, the bucket is alone again — in seconds, not
    the tens of seconds a share of 1/8 waits between probes (``probe_interval × sqrt(1/8)``)."""
    bucket, clock = settled(group=8, rank=3, params=AdaptiveParams(start_window=1_000_000))
    start = clock.now
    bucket._next_probe = clock.now
    while bucket.shared() and clock.now < start + 60:
        paced(bucket, clock, 8)
    assert not bucket.shared() and bucket.share == 1.0
    assert bucket.probes == 3  # one turn, then two, then the other four
    assert clock.now - start < 8 and bucket.failed_probes == 0 and bucket.throttles == 1 + OPEN.gaps


def test_a_latecomer_whose_incumbent_left_takes_the_account_back_fast() -> None:
    """A latecomer at one slot per window finds the incumbent gone: its probes of one slot, two,
    four, eight and the last four are each kept once every slot in them was accepted and the probe
    three times in all — three windows, two, then about one each — not three windows each (here,
    answers 150 ms after each send: 12.6 s, and 21.1 s when every probe waited three windows)."""
    bucket, clock = late()
    send(bucket, clock)
    assert bucket.group is None and bucket.share == pytest.approx(1 / 20)
    start = clock.now
    bucket._next_probe = clock.now
    while bucket.shared() and clock.now < start + 60:
        paced(bucket, clock, max(2, round(bucket.share * 20)))  # about a window of sends
    assert not bucket.shared() and bucket.share == 1.0
    assert bucket.probes == 5 and bucket.failed_probes == 0
    assert clock.now - start < 15


# ---- reservations -----------------------------------------------------------------------------------
def test_a_worker_that_wakes_far_too_late_reserves_again() -> None:
    """On a busy host sleeping threads wake in bunches: sending all of them at once would put
    several requests in one slot. A worker more than ``late`` of a slot behind reserves again."""
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, params=OPEN)
    send(bucket, clock, 3)
    delay, ticket = bucket._reserve()
    clock.now += delay + 0.2  # woke up 200 ms late
    assert bucket._claim(ticket) is None
    delay, ticket = bucket._reserve()
    clock.now += delay
    assert bucket._claim(ticket) == 0.0


def test_never_more_sends_than_the_ceiling_in_any_window() -> None:
    clock = FakeClock()
    bucket = AdaptiveBucket(20, clock=clock, params=OPEN, seed=11)
    for t in send(bucket, clock, 100):
        bucket.on_success(t)
    storm(bucket, clock, first_ticket=22, group=2)  # onto the grid: the switch must not squeeze two
    for t in send(bucket, clock, 300):
        bucket.on_success(t)
    assert bucket.max_in_window(1.0) <= 20


def test_threads_get_distinct_slots() -> None:
    clock = FakeClock()
    bucket = AdaptiveBucket(50, clock=clock, params=OPEN, seed=12)
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
    bucket = AdaptiveBucket(20, clock=clock, params=OPEN)
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.sleep(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)

    async def main() -> None:
        for _ in range(3):
            await bucket.aacquire()

    asyncio.run(main())
    assert slept == [pytest.approx((1 + OPEN.start_margin) / 20, rel=1e-3)] * 2


def test_set_rate_changes_the_ceiling_and_starts_afresh() -> None:
    bucket, clock = settled(group=4, rank=1)
    bucket.set_rate(5)
    assert bucket.ceiling == bucket.rate == 5 and bucket.share == 1.0 and not bucket.shared()
    bucket.ledger.clear()
    send(bucket, clock, 50)
    assert bucket.max_in_window(1.0) <= 5
    with pytest.raises(ValueError, match="rate"):
        bucket.set_rate(0)


def test_an_idle_bucket_forgets_the_group() -> None:
    bucket, clock = settled(group=4, rank=1)
    clock.now += OPEN.idle_reset + 1
    send(bucket, clock)
    assert not bucket.shared() and bucket.share == 1.0


# ---- the registry ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "adaptive"),
    [(None, True), ("adaptive", True), ("fixed", False), (" Fixed ", False), ("", True)],
)
def test_pacing_is_adaptive_unless_the_environment_says_fixed(
    monkeypatch: pytest.MonkeyPatch, value: str | None, adaptive: bool
) -> None:
    if value is None:
        monkeypatch.delenv("AIRFLOW_MPS_PACING", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW_MPS_PACING", value)
    assert _buckets._adaptive_from_environment() is adaptive


def test_shared_buckets_adapt_unless_fixed_pacing_is_chosen() -> None:
    default = _buckets._ADAPTIVE
    reset_shared_buckets()
    try:
        use_adaptive_pacing(False)
        fixed = shared_bucket(("AKID@x", "ProcessImage"), 20)
        assert type(fixed) is TokenBucket and fixed.rate == pytest.approx(20 * HEADROOM)
        assert shared_bucket(("AKID@x", "ProcessImage"), 20) is fixed
        fixed.on_success(0.0)
        fixed.on_throttled(0.0, message(21))  # a fixed bucket only counts
        assert (fixed.successes, fixed.throttles) == (1, 1) and fixed.rate == pytest.approx(19.4)
        shared_bucket(("AKID@x", "ProcessImage"), 10)
        assert fixed.rate == pytest.approx(10 * HEADROOM)
        use_adaptive_pacing(True)
        adaptive = shared_bucket(("AKID@x", "ProcessImage"), 20)
        assert isinstance(adaptive, AdaptiveBucket) and adaptive.ceiling == 20
        assert shared_bucket(("AKID@x", "ProcessImage"), 20) is adaptive
    finally:
        use_adaptive_pacing(default)
        reset_shared_buckets()
