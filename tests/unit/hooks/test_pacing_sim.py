"""Adaptive pacing, simulated: K processes share one account's 20/s sliding-window limit (issue 13).

The simulator (the service's sliding window, the network, clients with real buckets) is
``tests/pacing_sim.py``.

The assertions are the issue's, measured as bench P1/P8 measure them (from the first request sent
to the last answer): one process alone at ≥ 98 % of the limit; K = 4 and 8 processes that start
together at ≥ 95 % of the limit with ≤ 5 % of requests refused, each at limit ÷ K, finishing
together, none ever above the ceiling — also when the host is too busy to answer in order while
they meet; a process recovers after another one's burst; the fixed pacer does far worse on the
same world. Processes that start seconds apart are only shown to stay safe (no failures, few
refusals): the first keeps most of the limit until it finishes (see that test).
"""

from __future__ import annotations

import math
import random

import pytest

from airflow_mps.hooks._adaptive import AdaptiveBucket
from airflow_mps.hooks._pacing import AdaptiveParams, TokenBucket
from tests.pacing_sim import (
    LIMIT,
    Client,
    Network,
    SimClock,
    processes,
    simulate,
    stalls,
    whole_run,
)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_process_alone_runs_just_under_the_limit(seed: int) -> None:
    """P1: alone, the bucket narrows its jitter margin while nothing is refused, and holds back a
    request whose predecessor a window earlier answered late (2 % of requests here are up to 30 ms
    late, harsher than the bench) instead of having it refused."""
    clock, clients = processes(1, 600, seed=seed)
    start = clock.now
    outcome = simulate(clients, clock, seed=seed)
    (client,) = clients
    assert client.accepted == 600 and client.failed == 0
    aggregate, refused, _ = whole_run(outcome, start)
    assert aggregate >= 0.98
    assert refused <= 0.005
    assert client.bucket.max_in_window(1.0) <= LIMIT


def _share(k: int, images: int, seed: int, network: Network | None = None, aggregate: float = 0.95) -> None:
    clock, clients = processes(k, images, seed)
    start = clock.now
    outcome = simulate(clients, clock, seed=seed, network=network)
    measured, refused, spread = whole_run(outcome, start)
    assert measured >= aggregate  # the whole run, start-up and tail included
    assert refused <= 0.05
    # Equal turns, equal work: they finish together, apart by the turns their refused requests cost
    # each (storms and probes: up to six more for one of eight, 0.4 s a turn). A share taken from
    # one of them shows as tens of seconds (bench P8's misses: 41 s).
    turn = k * AdaptiveParams().window * (1 + AdaptiveParams().shared_margin) / LIMIT
    assert spread <= 10 * turn
    # Fair: while all K submit, each gets limit ÷ K (within 5 %).
    t0 = start + 2.0
    t1 = min(c.done_at for c in clients if c.done_at is not None)
    for client in clients:
        rate = outcome.accepted_between(t0, t1, client.index) / (t1 - t0)
        assert rate == pytest.approx(LIMIT / k, rel=0.05), client.index
    assert all(c.failed == 0 and c.accepted == images for c in clients)
    assert all(c.bucket.max_in_window(1.0) <= LIMIT for c in clients)


@pytest.mark.parametrize(("k", "images"), [(4, 300), (8, 300)])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_processes_that_start_together_take_turns(k: int, images: int, seed: int) -> None:
    """P8: K processes start within 50 ms at the full rate; the storm's counts give each the group
    size and a rank of its own; they take turns on the common grid."""
    _share(k, images, seed)


@pytest.mark.parametrize(("k", "images"), [(2, 600), (4, 300)])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_processes_that_start_together_take_turns_at_short_round_trips(
    k: int, images: int, seed: int
) -> None:
    """The same at a 5 ms round trip (the real service from its own region; the emulator on the
    same host): an answer is back before the next request leaves, so a refusal finds nothing of
    ours in flight to measure the group with — the bucket keeps measuring for ``gaps`` more sends.
    (Without it: 0.59-0.78 of the limit over eight seeds. K = 8 × 300 here, the pacing board's ten
    seeds at 34cef65: P8's targets met in eight; in the other two the turns are misread, down to
    0.73, docs/performance.md.)"""
    _share(k, images, seed, network=Network(base=0.005, jitter_mean=0.002))


@pytest.mark.parametrize(("k", "images"), [(4, 300), (8, 300)])
@pytest.mark.parametrize("seed", [1, 2])
def test_processes_that_meet_while_the_host_is_too_busy_still_take_turns(
    k: int, images: int, seed: int
) -> None:
    """A 2-core host with the service on it, K processes starting at once: requests sent in the
    first 0.7 s reach the service only when it catches up, in any order. Slow start keeps each at
    two unanswered requests until the answers come back steadily, so the processes meet in the
    service's window afterwards, in order. (The 0.7 s lost count in the whole run: ≥ 0.94.)"""
    _share(k, images, seed, network=Network(busy_for=0.7, busy_delay=0.1), aggregate=0.94)


def test_processes_that_start_seconds_apart_stay_safe() -> None:
    """Runs that start 2 s apart: the first has the account to itself and keeps most of it — a
    latecomer meets a full window, learns no group size from it, and takes one slot per window, then
    probes. What holds: nothing fails, few requests are refused, nobody exceeds the ceiling, and
    everyone progresses. (The whole run stays below the limit: a median of 0.79 over thirty seeds,
    0.72 at worst; 10 s apart 0.73, 0.62 at worst — benchmarks/pacing_board.py's seeding, 34cef65.)"""
    clock = SimClock()
    clients = [
        Client(i, AdaptiveBucket(LIMIT, clock=clock, seed=40 + i), 300, start=2.0 * i) for i in range(4)
    ]
    _stays_safe(clock, clients, seed=4, refused_at_most=0.06)


def _stays_safe(clock: SimClock, clients: list[Client], *, seed: int, refused_at_most: float) -> None:
    """Whatever the shares came out as: few refusals, every image submitted, never above the ceiling."""
    start = clock.now
    outcome = simulate(clients, clock, seed=seed)
    _, refused, _ = whole_run(outcome, start)
    assert refused <= refused_at_most
    assert all(c.failed == 0 and c.accepted == c.images for c in clients)
    assert all(c.bucket.max_in_window(1.0) <= LIMIT for c in clients)


def test_eight_processes_starting_within_a_third_of_a_second_stay_safe() -> None:
    """K = 8 whose starts spread over 0.3 s (bench P8's K = 8 runs that missed the target started
    their first submissions 0.26-0.28 s apart). With storms of three intervals the late ones were
    still in slow start when the counts were read: groups of about 6 where there are 8, shares
    halved and probed back slowly (0.49-0.78 of the limit over ten seeds, median 0.70). With seven:
    0.95-0.96 over the same ten seeds, but 6.7-7.5 % refused at 150 images each (the storm's cost;
    at 300 images P8's targets are met in 24 seeds of 30). What holds: nothing fails, few refusals,
    nobody exceeds the ceiling."""
    clock, clients = processes(8, 150, seed=1, spread=0.3)
    _stays_safe(clock, clients, seed=1, refused_at_most=0.10)


def test_eight_processes_that_stall_while_starting_stay_safe() -> None:
    """Bench P8's K = 8 on its 2-core host, in three runs of 2026-11-30: the emulator decided within
    4 ms of receiving a request (p99, measured), yet each process's storm tickets came back out of
    order — requests held on the client for tens of milliseconds, then sent in a bunch — while
    K = 4's were in order (four later runs, timed end to end, held nothing). Modelled as each
    process descheduled five times a second for 30 ms on average during its first 2 s: the counts
    grow unevenly, groups of 3-10 are read where there are 8 and two processes often take one
    turn. What holds: nothing fails, nobody exceeds the ceiling. (Seven-interval storms read it
    right more often — P8's targets met in 10 seeds of 30 at 300 images, was 2; 16 since turns are
    refined no finer than a window (959e568) — but not reliably; docs/performance.md.)"""
    clock, clients = processes(8, 150, seed=1)
    rng = random.Random(1)
    for client in clients:
        client.stalls = stalls(rng, clock.now + client.start)
    _stays_safe(clock, clients, seed=1, refused_at_most=0.10)


def test_fixed_pacing_on_the_same_world_throttles_far_more() -> None:
    """The baseline: every process at 97 % of the limit, relying on throttle retries."""
    rates = []
    for adaptive in (True, False):
        clock, clients = processes(8, 150, seed=2, adaptive=adaptive)
        outcome = simulate(clients, clock, seed=2)
        requests, throttled = outcome.requests_between(0, math.inf)
        rates.append(throttled / requests)
    adaptive_share, fixed_share = rates
    assert fixed_share > 0.5 and adaptive_share < fixed_share / 8


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_recovers_after_another_process_bursts(seed: int) -> None:
    """A process alone at the limit; another one bursts at 40/s for 2 s (80 requests, no pacing of
    ours, retried for a while) and stops: the first yields during the burst and finds the freed
    limit again by probing — tens of seconds, not minutes."""
    clock = SimClock()
    steady = Client(0, AdaptiveBucket(LIMIT, clock=clock, seed=seed), 3000)
    burst = Client(1, TokenBucket(40, clock=clock), 80, start=20.0)
    start = clock.now
    outcome = simulate([steady, burst], clock, seed=seed, until=120)

    def rate(t0: float, t1: float) -> float:
        return outcome.accepted_between(start + t0, start + t1, 0) / (t1 - t0)

    assert rate(10, 20) >= 0.95 * LIMIT  # before: alone, just under the limit
    assert rate(23, 25) <= 0.6 * LIMIT  # during: it yielded to the burst instead of fighting it
    assert burst.done_at is not None and burst.failed == 0
    back = burst.done_at - start + 70  # the burst's retries end; within 70 s (probing) ...
    assert rate(back, back + 10) >= 0.9 * LIMIT  # ... it is back near the limit
    assert steady.bucket.max_in_window(1.0) <= LIMIT


def test_no_process_exceeds_the_ceiling_even_when_probing() -> None:
    """Sends, not just acceptances: whatever the controller does, a bucket never sends more than the
    configured rate in any one-second window (the connection's rate is the ceiling)."""
    clock, clients = processes(4, 300, seed=5)
    simulate(clients, clock, seed=5)
    for client in clients:
        assert client.bucket.max_in_window(1.0) <= LIMIT
        assert isinstance(client.bucket, AdaptiveBucket) and client.bucket.probes > 0
