"""The process-wide registry of pacing buckets: one per (account, endpoint, action).

Every hook in a process that uses the same SecretId and endpoint shares one bucket per action (the
limit is per account). The kind is chosen here, where both bucket modules are imported:
``_adaptive.AdaptiveBucket`` by default, :class:`~airflow_mps.hooks._pacing.TokenBucket` at
``HEADROOM`` when ``AIRFLOW_MPS_PACING=fixed`` (docs/connection.md).
"""

from __future__ import annotations

import os
import threading

from airflow_mps.hooks._adaptive import AdaptiveBucket
from airflow_mps.hooks._pacing import HEADROOM, PacingMode, PacingState, TokenBucket

_REGISTRY: dict[tuple[str, ...], TokenBucket] = {}
_REGISTRY_LOCK = threading.Lock()


#: Adaptive pacing (``_adaptive.AdaptiveBucket``) is the default (issue 13): alone it runs just under
#: the limit, and processes sharing one account take turns with few throttles.
#: ``AIRFLOW_MPS_PACING=fixed`` in the environment of every worker restores fixed pacing at
#: ``HEADROOM`` × the configured rate (docs/connection.md): a way to rule the controller out.
def _adaptive_from_environment() -> bool:
    return os.environ.get("AIRFLOW_MPS_PACING", "adaptive").strip().lower() != "fixed"


_ADAPTIVE = _adaptive_from_environment()


def use_adaptive_pacing(enabled: bool) -> None:
    """Choose the kind of bucket ``shared_bucket`` creates from now on (adaptive unless
    ``AIRFLOW_MPS_PACING=fixed``).

    ``False`` restores fixed pacing at ``HEADROOM`` × the configured rate — the benchmark's baseline
    (P8) and a way to rule the controller out when diagnosing. Existing buckets are forgotten.
    """
    global _ADAPTIVE
    with _REGISTRY_LOCK:
        _ADAPTIVE = bool(enabled)
        _REGISTRY.clear()


def shared_bucket(key: tuple[str, ...], rate: float, burst: int = 1) -> TokenBucket:
    """Return the process-wide bucket for ``key`` (account, endpoint, action), creating it if needed.

    ``rate`` is the configured limit: an adaptive bucket's ceiling, a fixed bucket paces at
    ``HEADROOM`` of it. The most recently configured rate wins, so all hooks sharing the account
    follow one rate.
    """
    with _REGISTRY_LOCK:
        bucket = _REGISTRY.get(key)
        if bucket is None:
            if _ADAPTIVE:
                bucket = _REGISTRY[key] = AdaptiveBucket(rate, burst)
            else:
                bucket = _REGISTRY[key] = TokenBucket(rate * HEADROOM, burst)
        else:
            wanted = float(rate) if bucket.adaptive else float(rate) * HEADROOM
            if bucket.ceiling != wanted:
                bucket.set_rate(wanted)
        return bucket


def reset_shared_buckets() -> None:
    """Forget every shared bucket (tests use this to start from an idle limiter)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()


def pacing_state(bucket: TokenBucket, action: str) -> PacingState:
    """A snapshot of ``bucket``, the process-wide bucket of ``action``, fixed or adaptive (read
    without its lock: a line for a log, taken when the calls it describes have been answered)."""
    mode: PacingMode = "fixed"
    rate, share, group, measured, storms = bucket.rate, 1.0, None, False, 0
    if isinstance(bucket, AdaptiveBucket):
        group = bucket.group
        if not bucket.shared():
            mode = "alone"
        elif bucket.measuring:  # a storm's pause: its tickets are still being read
            mode = "measuring"
        else:
            mode = "turns" if group is not None else "late"
        measured = group is not None and not bucket.guessed  # an incumbent's "2" when tickets were few
        rate, share, storms = bucket.pacing_rate, bucket.share, bucket.storms
    return PacingState(
        action=action,
        mode=mode,
        rate=rate,
        ceiling=bucket.ceiling,
        share=share,
        group=group,
        measured=measured,
        accepted=bucket.successes,
        throttled=bucket.throttles,
        storms=storms,
        bucket=id(bucket),
    )
