"""Connection transport extras (issue 11 item 9), without a socket: ``endpoint`` with a scheme,
``ca_bundle``, ``proxy`` and ``describe_rate`` — parsed, checked, and handed to each SDK the way that
SDK takes them (sync MPS: ``HttpProfile``; async MPS: the hook's own httpx client; COS: ``CosConfig``)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

from airflow_mps.errors import MpsTerminalError, MpsTransientError, MpsValidationError
from airflow_mps.hooks._clients import client_identity, keepalive_http_client
from airflow_mps.hooks._credentials import ClientSettings, proxy_password, resolve_settings
from airflow_mps.hooks._retry import Arrival, Decision, RetryPolicy
from airflow_mps.hooks.base import DESCRIBE_RATE, TencentCloudBaseHook
from airflow_mps.hooks.cos import CosHook
from airflow_mps.hooks.failures import CERTIFICATE_ERROR_CODE, classify_cos_failure, classify_failure


def _settings(**extras: Any) -> ClientSettings:
    return resolve_settings(login="AKIDtest", password="secret-key", extras=extras, environ={})


@pytest.fixture
def pem(tmp_path: Path) -> str:
    """A real CA certificate file (the emulator's self-signed one), so ``ssl`` can load it."""
    from airflow_mps.emulator.tls import ensure_self_signed

    cert, _key = ensure_self_signed(tmp_path)
    return str(cert)


# ---- endpoint ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("endpoint", "protocol", "expected"),
    [
        ("127.0.0.1:9100", None, ("http", "127.0.0.1:9100")),  # protocol extra "http" below
        ("http://127.0.0.1:9100", None, ("http", "127.0.0.1:9100")),
        ("http://127.0.0.1:9100/", None, ("http", "127.0.0.1:9100")),
        ("HTTPS://mps.example.internal", None, ("https", "mps.example.internal")),
        ("https://127.0.0.1:9443", "https", ("https", "127.0.0.1:9443")),
        ("http://127.0.0.1:9100", "HTTP", ("http", "127.0.0.1:9100")),
    ],
)
def test_endpoint_with_a_scheme_sets_the_protocol(endpoint: str, protocol: str | None, expected) -> None:
    extras = {"endpoint": endpoint}
    if protocol:
        extras["protocol"] = protocol
    elif "://" not in endpoint:
        extras["protocol"] = "http"
    s = _settings(**extras)
    assert (s.protocol, s.endpoint) == expected
    assert s.host == expected[1].rsplit(":", 1)[0]


def test_endpoint_scheme_and_protocol_extra_must_agree() -> None:
    with pytest.raises(MpsValidationError) as info:
        _settings(endpoint="http://127.0.0.1:9100", protocol="https")
    assert info.value.field == "protocol" and "http" in str(info.value)


@pytest.mark.parametrize(
    "endpoint", ["ftp://h:1", "http://h:1/api", "http://user@h:1", "http://", "h:0", "http://h:x"]
)
def test_malformed_endpoints_are_refused_before_any_call(endpoint: str) -> None:
    with pytest.raises(MpsValidationError) as info:
        _settings(endpoint=endpoint)
    assert info.value.field == "endpoint"


# ---- ca_bundle, proxy, describe_rate -----------------------------------------------------------------
def test_defaults_trust_certifi_use_the_environment_proxy_and_pace_describe_at_20() -> None:
    s = _settings()
    assert (s.ca_bundle, s.proxy, s.describe_rate) == (None, None, 20.0)
    assert DESCRIBE_RATE == 20.0


def test_ca_bundle_is_an_existing_file_made_absolute(pem: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(Path(pem).parent)
    assert _settings(ca_bundle=Path(pem).name).ca_bundle == pem
    assert _settings(extra__tencentcloud__ca_bundle=pem).ca_bundle == pem  # legacy form too
    with pytest.raises(MpsValidationError) as info:
        _settings(ca_bundle=str(tmp_path / "missing.pem"))
    assert info.value.field == "ca_bundle"
    with pytest.raises(MpsValidationError):
        _settings(ca_bundle=str(tmp_path))  # a directory is not a bundle


def test_proxy_url_is_checked_and_its_password_never_shown() -> None:
    s = _settings(proxy="http://user:p%40ss-word@proxy.internal:3128/")
    assert s.proxy == "http://user:p%40ss-word@proxy.internal:3128"
    assert "p%40ss" not in repr(s) and "proxy.internal" not in repr(s)
    assert proxy_password(s.proxy) == "p@ss-word"  # registered with the secrets masker
    assert proxy_password("http://proxy:3128") is None
    with pytest.raises(MpsValidationError) as info:
        _settings(proxy="socks5://user:hunter2@proxy:1080")
    assert info.value.field == "proxy" and "hunter2" not in str(info.value)


def test_describe_rate_extra_sets_the_describe_bucket() -> None:
    hook = TencentCloudBaseHook()
    settings = _settings(describe_rate="100")
    assert settings.describe_rate == 100.0
    assert hook._pacing(settings, "DescribeImageTasks") == ("DescribeImageTasks", 100.0)
    # Each action is its own quota (the service limits per action): the listing never slows details.
    assert hook._pacing(_settings(), "DescribeImageTaskDetail") == ("DescribeImageTaskDetail", 20.0)


# ---- how each SDK is given them ------------------------------------------------------------------
def test_sync_profile_carries_ca_bundle_and_proxy_async_profile_neither(pem: str) -> None:
    s = _settings(endpoint="https://127.0.0.1:9443", ca_bundle=pem, proxy="http://127.0.0.1:3128")
    sync = TencentCloudBaseHook._profiles(s).httpProfile
    assert (sync.protocol, sync.endpoint, sync.certification, sync.proxy) == (
        "https",
        "127.0.0.1:9443",
        pem,
        "http://127.0.0.1:3128",
    )
    # Async: certification would be a *client* certificate, proxy crashes httpx >= 0.28.
    asynchronous = TencentCloudBaseHook._profiles(s, for_async=True).httpProfile
    assert (asynchronous.certification, asynchronous.proxy) == (None, None)
    # Nothing set: the sync SDK falls back to certifi and to HTTP(S)_PROXY itself.
    plain = TencentCloudBaseHook._profiles(_settings()).httpProfile
    assert (plain.certification, plain.proxy) == (None, None)


def test_the_async_sdk_client_works_with_the_hooks_httpx_client(pem: str) -> None:
    """Built as the hook builds it (no request sent): the SDK's constructor accepts the async profile
    even on httpx 0.28, and the httpx client that replaces its own trusts the bundle, uses the proxy."""
    import asyncio

    hook = TencentCloudBaseHook()
    hook.sdk_service, hook.sdk_version = "mps", "v20190612"  # type: ignore[misc]  # an MPS client
    s = _settings(endpoint="https://127.0.0.1:9443", ca_bundle=pem, proxy="http://127.0.0.1:3128")

    async def build() -> Any:
        client = hook._new_async_client(s)
        try:
            return client.http_client
        finally:
            await client.close()

    http_client = asyncio.run(build())
    transport = http_client._transport_for_url(__import__("httpx").URL("https://127.0.0.1:9443/"))
    assert type(transport._pool).__name__ == "AsyncHTTPProxy"  # the proxy is in use
    assert transport._pool._ssl_context.get_ca_certs()[0]["subject"][0][0][1].startswith("airflow-mps")


def test_keepalive_client_verifies_against_the_bundle_only(pem: str) -> None:
    import asyncio

    async def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
        mine = keepalive_http_client(5, ca_bundle=pem)
        default = keepalive_http_client(5)
        try:
            return mine._transport._pool._ssl_context, default._transport._pool._ssl_context
        finally:
            await mine.aclose()
            await default.aclose()

    mine, default = asyncio.run(contexts())
    assert len(mine.get_ca_certs()) == 1 and len(default.get_ca_certs()) > 1


def test_cos_config_gets_verify_ssl_and_proxies(pem: str) -> None:
    hook = CosHook()
    hook._settings = _settings(
        endpoint="https://127.0.0.1:9443", ca_bundle=pem, proxy="http://127.0.0.1:3128"
    )
    conf = hook.get_conn()._conf
    assert (conf._scheme, conf._ip, conf._port) == ("https", "127.0.0.1", 9443)
    assert conf._verify_ssl == pem
    assert conf._proxies == {"http": "http://127.0.0.1:3128", "https": "http://127.0.0.1:3128"}
    plain = CosHook()
    plain._settings = _settings()
    assert (plain.get_conn()._conf._verify_ssl, plain.get_conn()._conf._proxies) == (None, None)


def test_shared_async_clients_differ_by_ca_bundle_and_proxy(pem: str) -> None:
    base = client_identity(_settings(), "mps")
    with_ca = client_identity(_settings(ca_bundle=pem), "mps")
    with_proxy = client_identity(_settings(proxy="http://u:secret-pw@p:3128"), "mps")
    assert len({base, with_ca, with_proxy}) == 3
    assert not any("secret-pw" in part for part in with_proxy)  # only inside the digest


# ---- an untrusted certificate is a configuration error, reported at once --------------------------
def _ssl_chain(outer: BaseException) -> BaseException:
    try:
        try:
            raise ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] self-signed certificate")
        except ssl.SSLError as inner:
            raise outer from inner
    except BaseException as exc:  # the chained exception, as the SDK raises it
        return exc


def test_certificate_failures_are_terminal_and_never_sent() -> None:
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

    sync = classify_failure(_ssl_chain(TencentCloudSDKException("ClientNetworkError", "SSLError(...)")))
    assert isinstance(sync.error, MpsTerminalError) and sync.error.code == CERTIFICATE_ERROR_CODE
    assert sync.arrival is Arrival.NEVER_ARRIVED and "ca_bundle" in sync.error.message
    policy = RetryPolicy()
    for idempotent in (True, False):
        assert (
            policy.decide(
                retryable=sync.error.retryable, throttled=False, arrival=sync.arrival, idempotent=idempotent
            )
            is Decision.RAISE
        )
    # Any other never-arrived failure is still retried.
    refused = classify_failure(ConnectionRefusedError(111, "refused"))
    assert isinstance(refused.error, MpsTransientError)

    class CosClientError(Exception):
        def get_message(self) -> str:
            return str(self)

    cos = classify_cos_failure(CosClientError("HTTPSConnectionPool: [SSL: CERTIFICATE_VERIFY_FAILED] x"))
    assert cos.error.code == CERTIFICATE_ERROR_CODE and not cos.error.retryable


def test_the_proxy_password_is_registered_as_a_secret() -> None:
    from types import SimpleNamespace

    from airflow_mps.hooks import _redact

    conn = SimpleNamespace(login="AKIDtest", password="secret-key")
    TencentCloudBaseHook()._settings_from(conn, {"proxy": "http://user:proxy-pw-7f3a@proxy:3128"})
    assert "proxy-pw-7f3a" not in _redact.redact("via http://user:proxy-pw-7f3a@proxy:3128")
