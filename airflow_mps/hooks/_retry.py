"""Our retry policy for MPS calls (never the SDK's ``StandardRetryer``, which is broken — see docs).

One decision table, shared by the sync and async paths of the hook:

============================  =====================  =============================================
failure                        reads (Describe*)      ProcessImage (not idempotent)
============================  =====================  =============================================
throttled (RequestLimit*),     retry                  retry (the request was refused)
LimitExceeded.CreateTask
never arrived (refused, DNS,   retry                  retry (provably no task was created)
connect timeout)
ambiguous (read timeout, reset  retry                  reconcile: list recent tasks, match the input
after sending, HTTP 5xx)
transient MPS code             retry                  retry only if the code says nothing was created
(InternalError, ...)                                  (throttling); otherwise reconcile
TLS certificate not trusted    raise at once          raise at once (never sent; a configuration error)
terminal (Auth*, Invalid*...)  raise at once          raise at once
============================  =====================  =============================================

Backoff is exponential with full jitter (``uniform(0, min(cap, base * 2**attempt))``), and the total
time spent retrying one call is bounded by ``max_retry_seconds``.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class Arrival(enum.Enum):
    """What we know about whether a failed request reached the service."""

    REFUSED = "refused"  # the service answered with a throttling error: nothing was done
    NEVER_ARRIVED = "never_arrived"  # connection never established / request never sent
    ANSWERED = "answered"  # the service answered with an error envelope (it did not do the action)
    AMBIGUOUS = "ambiguous"  # sent (maybe partly), no usable answer: it may have been executed


class Decision(enum.Enum):
    """What the hook does next with a failed attempt."""

    RETRY = "retry"
    RECONCILE = "reconcile"
    RAISE = "raise"


@dataclass
class RetryPolicy:
    """Backoff parameters and the bound on total retry time for one logical call."""

    max_retry_seconds: float = 120.0
    base_delay: float = 0.2
    max_delay: float = 10.0
    max_attempts: int = 50
    rng: random.Random = field(default_factory=random.Random)

    def backoff(self, attempt: int) -> float:
        """Full-jitter delay before retry number ``attempt`` (0-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** min(attempt, 30)))
        return self.rng.uniform(0.0, ceiling)

    def decide(self, *, retryable: bool, throttled: bool, arrival: Arrival, idempotent: bool) -> Decision:
        """Apply the decision table above to one failed attempt."""
        if throttled or arrival is Arrival.REFUSED:
            return Decision.RETRY
        if arrival is Arrival.NEVER_ARRIVED:  # nothing was sent: retry, unless retrying cannot help
            return Decision.RETRY if retryable else Decision.RAISE
        if arrival is Arrival.AMBIGUOUS:
            return Decision.RETRY if idempotent else Decision.RECONCILE
        # The service answered with an error code.
        if not retryable:
            return Decision.RAISE
        # A transient server error (InternalError, ServiceUnavailable, ...) was answered: for a read
        # it is safe to ask again; for ProcessImage the backend might have created the task before
        # failing, so we reconcile instead of resubmitting blindly.
        return Decision.RETRY if idempotent else Decision.RECONCILE


class RetryClock:
    """Tracks the retry budget of one logical call (attempt count and deadline)."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self.started = clock()
        self.attempt = 0

    def next_delay(self) -> float | None:
        """Delay before the next attempt, or None when the budget (time or attempts) is spent."""
        if self.attempt + 1 >= self.policy.max_attempts:
            return None
        delay = self.policy.backoff(self.attempt)
        if self._clock() + delay - self.started > self.policy.max_retry_seconds:
            return None
        self.attempt += 1
        return delay
