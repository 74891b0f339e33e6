"""Unit tests of the hook's pure parts: token bucket, retry policy, failure classification, settings."""

from __future__ import annotations

import random
import threading

import pytest

from airflow_mps.errors import MpsAuthError, MpsThrottledError, MpsTransientError, MpsValidationError
from airflow_mps.hooks._buckets import reset_shared_buckets, shared_bucket, use_adaptive_pacing
from airflow_mps.hooks._credentials import resolve_settings
from airflow_mps.hooks._pacing import HEADROOM, TokenBucket
from airflow_mps.hooks._retry import Arrival, Decision, RetryClock, RetryPolicy
from airflow_mps.hooks.failures import classify_cos_failure, classify_failure
from airflow_mps.ownership import input_matches


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


# ---- token bucket ------------------------------------------------------------------------------
def test_bucket_spaces_grants_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(20, clock=clock)
    for _ in range(100):
        bucket.acquire(sleep=clock.sleep)
    assert bucket.max_in_window(1.0) == 20
    assert len(bucket.ledger) == 100
    # 100 grants at 20/s span 99 intervals of 50 ms.
    assert clock.now - 1000.0 == pytest.approx(99 / 20)


def test_bucket_burst_allows_back_to_back_after_idle() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=5, clock=clock)
    delays = [bucket.reserve() for _ in range(5)]
    assert delays == pytest.approx([0.0] * 5, abs=1e-9)
    assert bucket.reserve() > 0


def test_bucket_is_thread_safe_under_contention() -> None:
    clock = FakeClock()
    lock = threading.Lock()
    bucket = TokenBucket(50, clock=clock)
    grants: list[float] = []

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
    grants.sort()
    # 200 distinct slots, 20 ms apart: no two threads got the same slot.
    assert len(set(round(g, 6) for g in grants)) == 200
    assert bucket.max_in_window(1.0) == 50


def test_bucket_rejects_bad_rates() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1, burst=0)


def test_shared_bucket_is_per_key_and_follows_latest_rate() -> None:
    reset_shared_buckets()
    a = shared_bucket(("AKID@x", "ProcessImage"), 20)
    assert shared_bucket(("AKID@x", "ProcessImage"), 20) is a
    assert shared_bucket(("AKID@y", "ProcessImage"), 20) is not a
    shared_bucket(("AKID@x", "ProcessImage"), 5)
    # Adaptive pacing (the default): the configured rate is the ceiling; fixed pacing sends at HEADROOM of it.
    assert a.adaptive and a.ceiling == pytest.approx(5)
    use_adaptive_pacing(False)
    try:
        fixed = shared_bucket(("AKID@x", "ProcessImage"), 5)
        assert not fixed.adaptive and fixed.rate == pytest.approx(5 * HEADROOM)
    finally:
        use_adaptive_pacing(True)
    reset_shared_buckets()


# ---- retry policy ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("retryable", "throttled", "arrival", "idempotent", "expected"),
    [
        (True, True, Arrival.REFUSED, False, Decision.RETRY),  # throttled ProcessImage
        (True, False, Arrival.NEVER_ARRIVED, False, Decision.RETRY),  # refused connection
        (True, False, Arrival.AMBIGUOUS, False, Decision.RECONCILE),  # reset after sending
        (True, False, Arrival.AMBIGUOUS, True, Decision.RETRY),  # read timeout on a read
        (True, False, Arrival.ANSWERED, True, Decision.RETRY),  # InternalError on Describe
        (True, False, Arrival.ANSWERED, False, Decision.RECONCILE),  # InternalError on ProcessImage
        (False, False, Arrival.ANSWERED, True, Decision.RAISE),  # AuthFailure
        (False, False, Arrival.ANSWERED, False, Decision.RAISE),
    ],
)
def test_decision_table(retryable, throttled, arrival, idempotent, expected) -> None:
    decision = RetryPolicy().decide(
        retryable=retryable, throttled=throttled, arrival=arrival, idempotent=idempotent
    )
    assert decision is expected


def test_full_jitter_backoff_is_bounded_and_grows() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8, rng=random.Random(1))
    samples = {n: [policy.backoff(n) for _ in range(200)] for n in range(8)}
    for n, values in samples.items():
        assert all(0 <= v <= min(8, 0.5 * 2**n) for v in values)
    assert max(samples[5]) > max(samples[0])


def test_retry_clock_stops_at_the_time_budget() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_retry_seconds=30, base_delay=1, max_delay=10, rng=random.Random(2))
    rc = RetryClock(policy, clock=clock)
    delays = []
    while (delay := rc.next_delay()) is not None:
        delays.append(delay)
        clock.sleep(delay)
    assert clock.now - 1000.0 <= 30
    assert len(delays) >= 3


# ---- failure classification ----------------------------------------------------------------------
def _sdk_exc(code: str, message: str = "m", request_id: str = "rid-1"):
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

    return TencentCloudSDKException(code, message, request_id)


def test_classify_answered_codes() -> None:
    f = classify_failure(_sdk_exc("RequestLimitExceeded"))
    assert isinstance(f.error, MpsThrottledError) and f.throttled and f.arrival is Arrival.REFUSED
    f = classify_failure(_sdk_exc("AuthFailure.SignatureFailure", "bad sig", "rid-9"))
    assert isinstance(f.error, MpsAuthError) and f.error.request_id == "rid-9"
    f = classify_failure(_sdk_exc("InternalError"))
    assert isinstance(f.error, MpsTransientError) and f.arrival is Arrival.ANSWERED


def _wrapped_network_error(inner: BaseException):
    """What the sync SDK does: raise ClientNetworkError inside ``except`` (so __context__ is kept)."""
    try:
        try:
            raise inner
        except Exception as e:
            raise _sdk_exc("ClientNetworkError", str(e), None) from None
    except Exception as outer:
        outer.__context__ = inner
        return outer


def test_classify_transport_errors_never_arrived_vs_ambiguous() -> None:
    import requests
    import urllib3

    refused = requests.exceptions.ConnectionError(
        urllib3.exceptions.MaxRetryError(None, "/", urllib3.exceptions.NewConnectionError(None, "refused"))
    )
    assert classify_failure(_wrapped_network_error(refused)).arrival is Arrival.NEVER_ARRIVED
    assert (
        classify_failure(_wrapped_network_error(requests.exceptions.ConnectTimeout("x"))).arrival
        is Arrival.NEVER_ARRIVED
    )
    reset = requests.exceptions.ConnectionError(
        urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
    )
    assert classify_failure(_wrapped_network_error(reset)).arrival is Arrival.AMBIGUOUS
    assert (
        classify_failure(_wrapped_network_error(requests.exceptions.ReadTimeout("x"))).arrival
        is Arrival.AMBIGUOUS
    )


def test_classify_httpx_errors() -> None:
    import httpx

    assert classify_failure(httpx.ConnectError("refused")).arrival is Arrival.NEVER_ARRIVED
    assert classify_failure(httpx.ReadTimeout("slow")).arrival is Arrival.AMBIGUOUS
    assert classify_failure(httpx.RemoteProtocolError("Server disconnected")).arrival is Arrival.AMBIGUOUS
    assert classify_failure(httpx.ReadTimeout("slow")).error.code == "ClientNetworkError"


def test_classify_server_network_error_is_ambiguous() -> None:
    f = classify_failure(_sdk_exc("ServerNetworkError", b"<html>502 Bad Gateway</html>", None))
    assert f.arrival is Arrival.AMBIGUOUS and "502" in f.error.message


# ---- reconciliation matching ----------------------------------------------------------------------
COS_BODY = {
    "InputInfo": {
        "Type": "COS",
        "CosInputInfo": {"Bucket": "b-125", "Region": "ap-guangzhou", "Object": "/raw/a b.jpg"},
    }
}
URL_BODY = {"InputInfo": {"Type": "URL", "UrlInputInfo": {"Url": "https://example.com/x.png"}}}


@pytest.mark.parametrize(
    ("listed", "body", "expected"),
    [
        ("cos://b-125/raw/a b.jpg", COS_BODY, True),
        ("/raw/a b.jpg", COS_BODY, True),
        ("https://b-125.cos.ap-guangzhou.myqcloud.com/raw/a%20b.jpg", COS_BODY, True),
        ("cos://other-125/raw/a b.jpg", COS_BODY, False),
        ("/raw/other.jpg", COS_BODY, False),
        ("https://example.com/x.png", URL_BODY, True),
        ("https://example.com/y.png", URL_BODY, False),
        (None, COS_BODY, None),
        ("", COS_BODY, None),
    ],
)
def test_input_matching(listed, body, expected) -> None:
    assert input_matches(listed, body) is expected


# ---- settings ----------------------------------------------------------------------------------
def test_settings_from_connection_fields_and_prefixed_extras() -> None:
    s = resolve_settings(
        login="AKIDx",
        password="sekrit-key",
        extras={
            "extra__tencentcloud__region": "ap-beijing",
            "endpoint": "127.0.0.1:9100",
            "protocol": "HTTP",
            "token": "tok-123",
        },
        environ={},
    )
    assert (s.secret_id, s.region, s.endpoint, s.protocol, s.host, s.port) == (
        "AKIDx",
        "ap-beijing",
        "127.0.0.1:9100",
        "http",
        "127.0.0.1",
        9100,
    )
    assert s.credential_source == "connection"
    assert "sekrit" not in repr(s) and "tok-123" not in repr(s)


def test_settings_region_argument_overrides_extra_and_defaults() -> None:
    s = resolve_settings(
        login="a", password="b", extras={"region": "ap-beijing"}, region="ap-shanghai", environ={}
    )
    assert s.region == "ap-shanghai"
    assert (
        s.process_image_rate == 20.0
        and s.request_timeout == 60
        and s.protocol == "https"
        and s.endpoint is None
    )


def test_settings_from_environment_with_token() -> None:
    env = {
        "TENCENTCLOUD_SECRET_ID": "AKIDenv",
        "TENCENTCLOUD_SECRET_KEY": "kenv",
        "TENCENTCLOUD_TOKEN": "tenv",
    }
    s = resolve_settings(login=None, password=None, extras={}, environ=env)
    assert s.credential_triplet() == ("AKIDenv", "kenv", "tenv")
    assert s.credential_source == "environment"


@pytest.mark.parametrize(
    ("extras", "field"),
    [
        ({"protocol": "ftp"}, "protocol"),
        ({"endpoint": "ftp://127.0.0.1:9100"}, "endpoint"),
        ({"endpoint": "http://127.0.0.1:9100/api"}, "endpoint"),
        ({"endpoint": "http://127.0.0.1:9100", "protocol": "https"}, "protocol"),
        ({"describe_rate": "-1"}, "describe_rate"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, "ca_bundle"),
        ({"proxy": "socks5://127.0.0.1:1080"}, "proxy"),
        ({"proxy": "127.0.0.1:3128"}, "proxy"),
        ({"endpoint": "127.0.0.1:99999"}, "endpoint"),
        ({"request_timeout": "soon"}, "request_timeout"),
        ({"process_image_rate": "0"}, "process_image_rate"),
    ],
)
def test_settings_reject_malformed_extras(extras, field) -> None:
    with pytest.raises(MpsValidationError) as info:
        resolve_settings(login="a", password="b", extras=extras, environ={})
    assert info.value.field == field


def test_half_a_credential_is_an_error() -> None:
    with pytest.raises(MpsAuthError, match="password"):
        resolve_settings(login="AKID", password=None, extras={}, environ={})


def test_no_credentials_names_all_three_sources() -> None:
    with pytest.raises(MpsAuthError) as info:
        resolve_settings(login=None, password=None, extras={}, environ={}, use_default_chain=False)
    text = str(info.value)
    assert (
        "login/password" in text
        and "TENCENTCLOUD_SECRET_ID" in text
        and "~/.tencentcloud/credentials" in text
    )


# ---- COS failure classification --------------------------------------------------------------------
def _cos_error(status: int, code: str):
    from qcloud_cos.cos_exception import CosServiceError

    digest = {"code": code, "message": "m", "resource": "r", "requestid": "cos-rid", "traceid": "t"}
    return CosServiceError("GET", digest, status)


@pytest.mark.parametrize(
    ("status", "code", "category", "arrival"),
    [
        (503, "SlowDown", "throttled", Arrival.REFUSED),
        (500, "InternalError", "transient", Arrival.AMBIGUOUS),
        (404, "NoSuchKey", "terminal", Arrival.ANSWERED),
        (403, "AccessDenied", "terminal", Arrival.ANSWERED),
        (400, "InvalidArgument", "terminal", Arrival.ANSWERED),
    ],
)
def test_classify_cos_service_errors(status: int, code: str, category: str, arrival: Arrival) -> None:
    failure = classify_cos_failure(_cos_error(status, code))
    assert (failure.error.category, failure.arrival, failure.error.request_id) == (
        category,
        arrival,
        "cos-rid",
    )
    assert f"COS HTTP {status}" in failure.error.message


def test_classify_cos_client_errors() -> None:
    from qcloud_cos.cos_exception import CosClientError

    network = classify_cos_failure(
        CosClientError("HTTPConnectionPool: Max retries exceeded (Connection refused)")
    )
    assert network.error.code == "Cos.ClientNetworkError" and network.error.retryable
    assert not classify_cos_failure(CosClientError("bad argument")).error.retryable
