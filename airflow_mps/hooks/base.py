"""TencentCloudBaseHook: one ``tencentcloud`` connection → settings, masking, pacing, retries, SDK clients.

What every Tencent Cloud service hook shares (the role ``AwsGenericHook`` plays for the Amazon provider's
service hooks); :class:`~airflow_mps.hooks.mps.MpsHook` and :class:`~airflow_mps.hooks.cos.CosHook`
add their service's actions on top:

* **Connection → settings** (``_credentials.py``): SecretId/SecretKey/token from the connection, the
  environment or the SDK default chain; region, endpoint, protocol, timeouts, CA bundle, proxy. Sync
  (``get_settings``) or without blocking the event loop (``aget_settings``).
* **Requests go out exactly as validated**: the body is sent as JSON through the SDK's generic call
  (sync ``call_json``, async ``call_and_deserialize(..., dict)``), never through an SDK request model —
  a model silently drops members its SDK version does not know (mps-api.md §0.8, issue 11 item 7).
  The SDK still signs, sends and raises ``TencentCloudSDKException`` as for its own methods.
* **No secret leaves**: SecretKey, token and any secret-named field of a request body are registered
  with Airflow's secrets masker and the SDK-log redaction filter (``_redact.py``); SDK debug logging
  stays off unless a user turned it on.
* **Pacing** (``_pacing.py``): a process-wide token bucket per account and quota, shared by every hook.
* **The retry driver** (``_retry.py`` + :mod:`~airflow_mps.hooks.failures`): one API 3.0 call is a
  step machine (``_call_steps``) — pace, send, classify a failure, back off — driven by ``_call`` on a
  thread and ``_acall`` on an event loop. Never the SDK's own retryer (docs/reliability.md).
* **SDK clients**: one sync client per thread; async clients shared per event loop and connection
  identity (``_clients.py``), released with ``aclose``.
* **The connection form** (Airflow 3.0/3.1 UI) and its field behaviour.

Nothing heavy at import: the SDK, httpx and the form libraries are imported inside methods.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, cast

from airflow.providers.common.compat.sdk import BaseHook

from airflow_mps.hooks import _redact
from airflow_mps.hooks._buckets import pacing_state, shared_bucket
from airflow_mps.hooks._clients import (
    SharedAsyncClient,
    acquire_async_client,
    client_identity,
    keepalive_http_client,
    preload_modules,
    release_async_client,
)
from airflow_mps.hooks._credentials import (
    DEFAULT_DESCRIBE_RATE,
    ClientSettings,
    connection_extras,
    proxy_password,
    resolve_settings,
)
from airflow_mps.hooks._pacing import HEADROOM, PacingState, TokenBucket
from airflow_mps.hooks._retry import Decision, RetryClock, RetryPolicy
from airflow_mps.hooks._steps import Sleep, Steps, adrive, drive
from airflow_mps.hooks.failures import Failure, classify_failure

__all__ = ["DESCRIBE_RATE", "PACING_HEADROOM", "NeedsReconcile", "TencentCloudBaseHook", "response_of"]

log = logging.getLogger(__name__)

#: Default rate of the account's read quota (MPS ``Describe*``): 20 requests/second, the strictest
#: documented value (mps-api.md §0.12); a connection raises it with the ``describe_rate`` extra.
DESCRIBE_RATE = DEFAULT_DESCRIBE_RATE
#: Fraction of the configured rate fixed pacing (``AIRFLOW_MPS_PACING=fixed``) sends at: the service
#: counts a sliding one-second window, and at 97 % twenty requests span 1.03 s, absorbing ~30 ms of
#: jitter. The default (adaptive) bucket alone keeps a narrower margin that follows the jitter it sees.
PACING_HEADROOM = HEADROOM
#: SDK loggers and the level we set when nobody configured them. qcloud_cos logs every HEAD 404 as a
#: warning (object_exists) and its DEBUG output includes the security token; we report errors ourselves.
_SDK_LOGGERS = {"tencentcloud_sdk_common": logging.WARNING, "qcloud_cos": logging.ERROR}
_SECRET_KEYS = frozenset({"S3SecretKey", "SecretKey", "Token"})

_HookT = TypeVar("_HookT", bound="TencentCloudBaseHook")


# --------------------------------------------------------------------------------------------------
# secret masking
# --------------------------------------------------------------------------------------------------
def quiet_sdk_loggers() -> None:
    """Keep the SDKs' debug logging off: it prints request headers (X-TC-Token, COS sign keys).

    Only loggers nobody configured (level NOTSET) are raised; a deliberate user setting wins, and
    for that case the SDK loggers also carry a filter that blanks credentials (`_redact`).
    """
    _redact.install()
    for name, level in _SDK_LOGGERS.items():
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(level)


def mask_secret_value(value: str | None) -> None:
    """Register a secret with Airflow's secrets masker (task logs) and the SDK-log redaction filter."""
    if not value:
        return
    _redact.register_secret(value)
    try:
        from airflow.providers.common.compat.sdk import mask_secret
    except ImportError:  # pragma: no cover - every supported Airflow has it
        return
    mask_secret(value)


def mask_request_secrets(body: Any) -> None:
    """Register every S3SecretKey (or other secret-named field) found in an API body."""
    if isinstance(body, Mapping):
        for key, value in body.items():
            if key in _SECRET_KEYS and isinstance(value, str):
                mask_secret_value(value)
            else:
                mask_request_secrets(value)
    elif isinstance(body, list):
        for item in body:
            mask_request_secrets(item)


# --------------------------------------------------------------------------------------------------
# the steps of one API 3.0 call (see _steps.py)
# --------------------------------------------------------------------------------------------------
class NeedsReconcile(Exception):
    """Raised by the retry driver when a non-idempotent call failed ambiguously: the service may have
    acted on it. Carries the classified failure; the service hook reconciles (MpsHook.process_image)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(str(failure.error))
        self.failure = failure


@dataclass(frozen=True)
class _Ready:
    """Resolve the connection's settings (async: off the loop, and load the SDK off the loop too)."""

    def run(self, hook: TencentCloudBaseHook) -> ClientSettings:
        return hook.get_settings()

    async def arun(self, hook: TencentCloudBaseHook) -> ClientSettings:
        settings = await hook.aget_settings()
        await preload_modules(hook._async_sdk_modules())
        return settings


@dataclass(frozen=True)
class _Pace:
    """Wait for this call's slot in the account's bucket."""

    bucket: TokenBucket

    def run(self, hook: TencentCloudBaseHook) -> float:
        return self.bucket.acquire()

    async def arun(self, hook: TencentCloudBaseHook) -> float:
        return await self.bucket.aacquire()


@dataclass(frozen=True)
class _Send:
    """Send one API 3.0 request, the body exactly as given (JSON), with the hook's SDK client; the
    answer is the decoded JSON document (``{"Response": {...}}``).

    Sync: ``AbstractClient.call_json``. Async: the async ``AbstractClient`` has no ``call_json``; its
    ``call_and_deserialize(action, params, dict)`` is the same thing (what its generated methods call
    with a model class instead of ``dict``). Both sign, send and raise ``TencentCloudSDKException`` for
    an error envelope and a non-200 status exactly as the SDK's per-action methods do.
    """

    action: str
    params: Mapping[str, Any]

    def run(self, hook: TencentCloudBaseHook) -> Any:
        client = hook._sync_client()
        try:
            return client.call_json(self.action, dict(self.params))
        except Exception as exc:
            wrapped = _sdk_exception(exc)
            if wrapped is exc:
                raise
            raise wrapped from exc

    async def arun(self, hook: TencentCloudBaseHook) -> Any:
        client = await hook._async_client()
        try:
            return await client.call_and_deserialize(self.action, dict(self.params), dict)
        except Exception as exc:
            if type(exc).__module__.startswith("httpx") or isinstance(exc, OSError):
                raise  # transport failures, as the async SDK raises them (hooks/failures.py reads them)
            wrapped = _sdk_exception(exc)
            if wrapped is exc:
                raise
            raise wrapped from exc


def _is_sdk_exception(exc: BaseException) -> bool:
    return callable(getattr(exc, "get_code", None))


def _sdk_exception(exc: BaseException) -> BaseException:
    """What the SDK's own per-action methods raise for ``exc``: an SDK exception as it is; a transport
    error while reading the body (requests, urllib3, OSError) as ``ClientNetworkError`` (the caller
    raises it ``from exc``: the arrival rules read the cause chain); anything else (a body that is not
    JSON) as ``TencentCloudSDKException(<exception name>, <message>)`` — the generated methods' rule.
    """
    if _is_sdk_exception(exc):
        return exc
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

    module = type(exc).__module__ or ""
    if module.startswith(("requests", "urllib3", "http.client")) or isinstance(exc, OSError):
        return TencentCloudSDKException("ClientNetworkError", str(exc))
    return TencentCloudSDKException(type(exc).__name__, str(exc))


def response_of(action: str, answer: Any) -> dict[str, Any]:
    """The ``Response`` object of a decoded API 3.0 answer.

    An error envelope the SDK let through raises the SDK's exception for it: the SDK recognises errors
    only under ``Content-Type: application/json`` exactly (mps-api.md §0.5), so one sent as
    ``application/json; charset=utf-8`` would otherwise read as a success without a result.
    """
    response = answer.get("Response") if isinstance(answer, Mapping) else None
    if isinstance(response, Mapping) and not isinstance(response.get("Error"), Mapping):
        return dict(response)
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

    if isinstance(response, Mapping):
        error = response["Error"]
        raise TencentCloudSDKException(
            str(error.get("Code") or "InternalError"),
            str(error.get("Message") or ""),
            response.get("RequestId"),
        )
    raise TencentCloudSDKException("InvalidResponse", f"{action} answered without a Response object")


# --------------------------------------------------------------------------------------------------
# the hook
# --------------------------------------------------------------------------------------------------
class TencentCloudBaseHook(BaseHook):
    """Base of the Tencent Cloud service hooks: one ``tencentcloud`` connection.

    :param tencentcloud_conn_id: Airflow connection id (type ``tencentcloud``).
    :param region: overrides the connection's ``region`` extra.
    :param max_retry_seconds: bound on the time one logical call spends retrying (default 120 s).
    :param retry_policy: the whole retry policy (backoff, attempts); overrides ``max_retry_seconds``.
    """

    conn_name_attr = "tencentcloud_conn_id"
    default_conn_name = "tencentcloud_default"
    conn_type = "tencentcloud"
    hook_name = "Tencent Cloud"

    #: API 3.0 service and version whose SDK client the hook calls: the modules
    #: ``tencentcloud.<service>.<version>.{models,<service>_client,<service>_client_async}``. Empty on a
    #: hook with no API 3.0 client (COS speaks its own XML API).
    sdk_service: ClassVar[str] = ""
    sdk_version: ClassVar[str] = ""

    def __init__(
        self,
        tencentcloud_conn_id: str = default_conn_name,
        region: str | None = None,
        *,
        max_retry_seconds: float = 120.0,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        super().__init__()
        self.tencentcloud_conn_id = tencentcloud_conn_id
        self.region = region
        self.retry_policy = retry_policy or RetryPolicy(max_retry_seconds=max_retry_seconds)
        self._settings: ClientSettings | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        # The shared client entry this hook holds a reference on, per event loop.
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SharedAsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._service_hooks: dict[type[TencentCloudBaseHook], TencentCloudBaseHook] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tencentcloud_conn_id={self.tencentcloud_conn_id!r}, region={self.region!r})"

    # ---- UI (Airflow 3.0/3.1; >= 3.2 reads conn-fields from provider info) ----------------------
    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields of the connection form (Airflow 3.0/3.1 UI). Lazy imports: web server only."""
        try:
            from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
            from flask_babel import lazy_gettext
            from wtforms import DecimalField, IntegerField, PasswordField, SelectField, StringField
            from wtforms.validators import NumberRange, Optional
        except ImportError:  # no FAB UI installed: Airflow >= 3.2 uses provider-info conn-fields
            return {}
        return {
            "region": StringField(lazy_gettext("Region"), widget=BS3TextFieldWidget()),
            "endpoint": StringField(
                lazy_gettext("Endpoint ([http(s)://]host[:port])"), widget=BS3TextFieldWidget()
            ),
            "protocol": SelectField(
                lazy_gettext("Protocol"), choices=[("https", "https"), ("http", "http")], default="https"
            ),
            "token": PasswordField(lazy_gettext("Session token"), widget=BS3PasswordFieldWidget()),
            "request_timeout": IntegerField(
                lazy_gettext("Request timeout (s)"), validators=[Optional(), NumberRange(min=1)]
            ),
            "process_image_rate": DecimalField(
                lazy_gettext("ProcessImage rate (req/s)"), validators=[Optional(), NumberRange(min=0.1)]
            ),
            "describe_rate": DecimalField(
                lazy_gettext("Describe* rate (req/s)"), validators=[Optional(), NumberRange(min=0.1)]
            ),
            "ca_bundle": StringField(lazy_gettext("CA bundle (PEM file path)"), widget=BS3TextFieldWidget()),
            "proxy": StringField(lazy_gettext("Proxy URL"), widget=BS3TextFieldWidget()),
        }

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabel login/password as SecretId/SecretKey and hide unused fields (same as provider info)."""
        from airflow_mps import get_provider_info

        behaviour = get_provider_info()["connection-types"][0]["ui-field-behaviour"]
        return {
            "hidden_fields": list(behaviour["hidden-fields"]),
            "relabeling": dict(behaviour["relabeling"]),
            "placeholders": dict(behaviour["placeholders"]),
        }

    # ---- settings / credentials ---------------------------------------------------------------
    def _settings_from(self, conn: Any, extras: Mapping[str, Any]) -> ClientSettings:
        settings = resolve_settings(
            login=conn.login, password=conn.password, extras=extras, region=self.region
        )
        mask_secret_value(settings.secret_key)
        mask_secret_value(settings.token)
        mask_secret_value(proxy_password(settings.proxy))
        quiet_sdk_loggers()
        return settings

    def _keep_settings(self, settings: ClientSettings) -> ClientSettings:
        with self._lock:
            if self._settings is None:
                self._settings = settings
            return self._settings

    def get_settings(self) -> ClientSettings:
        """Resolve (once) the connection into client settings. Sync: do not call on an event loop."""
        if self._settings is None:
            conn = self.get_connection(self.tencentcloud_conn_id)
            return self._keep_settings(self._settings_from(conn, connection_extras(conn)))
        return self._settings

    async def aget_settings(self) -> ClientSettings:
        """Resolve the connection without blocking the event loop (Airflow's async connection API)."""
        if self._settings is None:
            from airflow.providers.common.compat.connection import get_async_connection

            conn = await get_async_connection(self.tencentcloud_conn_id, hook=self)
            extras = connection_extras(conn)
            # Credential resolution may probe the SDK default chain (files, metadata server): off-loop.
            return self._keep_settings(await asyncio.to_thread(self._settings_from, conn, extras))
        return self._settings

    def _hook_for(self, cls: type[_HookT]) -> _HookT:
        """This connection's hook for another service (created once): same connection, region and retry
        policy, and the settings resolved here (one connection lookup, secrets registered once)."""
        with self._lock:
            hook = self._service_hooks.get(cls)
            if hook is None:
                hook = self._service_hooks[cls] = cls(self.tencentcloud_conn_id, self.region)
        hook.retry_policy = self.retry_policy  # follows a policy swapped on this hook (test_connection)
        if hook._settings is None and self._settings is not None:
            hook._keep_settings(self._settings)
        return cast("_HookT", hook)  # stored under its own class

    def get_conn(self) -> Any:
        """The sync SDK client of the calling thread (BaseHook API)."""
        return self._sync_client()

    # ---- SDK clients ----------------------------------------------------------------------------
    def _sdk_module(self, name: str) -> str:
        if not self.sdk_service:
            raise NotImplementedError(f"{type(self).__name__} has no Tencent Cloud API 3.0 client")
        return f"tencentcloud.{self.sdk_service}.{self.sdk_version}.{name}"

    def _client_class(self, suffix: str) -> Any:
        """``<Service>Client`` of ``<service>_client`` (sync) or ``<service>_client_async``."""
        import importlib

        module = importlib.import_module(self._sdk_module(f"{self.sdk_service}_client{suffix}"))
        return getattr(module, f"{self.sdk_service.capitalize()}Client")

    def _async_sdk_modules(self) -> tuple[str, ...]:
        """What the async path imports (preloaded off the event loop before the first request)."""
        return (
            "tencentcloud.common.credential",
            "tencentcloud.common.profile.client_profile",
            "tencentcloud.common.profile.http_profile",
            self._sdk_module("models"),
            self._sdk_module(f"{self.sdk_service}_client_async"),
        )

    @staticmethod
    def _profiles(settings: ClientSettings, *, for_async: bool = False) -> Any:
        """The SDK profiles. Sync: CA bundle and proxy go in ``HttpProfile`` (``certification`` is
        requests' ``verify``). Async: neither — there ``certification`` is a *client* certificate and
        ``proxy`` crashes on httpx >= 0.28 (``proxies`` is gone; mps-api.md §0.6, §0.13): the hook's own
        httpx client carries them (``_new_async_client``)."""
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile

        http_profile = HttpProfile(
            protocol=settings.protocol, endpoint=settings.endpoint, reqTimeout=settings.request_timeout
        )
        if not for_async:
            # None → the SDK's certifi bundle; it passes verify= explicitly, so REQUESTS_CA_BUNDLE is
            # never read. None proxy → the SDK reads HTTP(S)_PROXY itself.
            http_profile.certification = settings.ca_bundle
            http_profile.proxy = settings.proxy
        http_profile.keepAlive = True
        # No retryer (the SDK's StandardRetryer is broken), no region breaker.
        return ClientProfile(httpProfile=http_profile, request_client="airflow-mps")

    @staticmethod
    def _credential(settings: ClientSettings) -> Any:
        if settings.provider is not None:
            return settings.provider
        from tencentcloud.common.credential import Credential

        secret_id, secret_key, token = settings.credential_triplet()
        return Credential(secret_id, secret_key, token)

    def _sync_client(self) -> Any:
        """One sync SDK client per thread (its requests session is not shared between threads)."""
        client = getattr(self._local, "client", None)
        if client is None:
            settings = self.get_settings()
            client = self._client_class("")(
                self._credential(settings), settings.region, self._profiles(settings)
            )
            self._local.client = client
        return client

    def _new_async_client(self, settings: ClientSettings) -> Any:
        """An async SDK client whose httpx client keeps connections alive across poll intervals and
        carries the connection's CA bundle and proxy."""
        client = self._client_class("_async")(
            self._credential(settings), settings.region, self._profiles(settings, for_async=True)
        )
        client.http_client = keepalive_http_client(
            settings.request_timeout, ca_bundle=settings.ca_bundle, proxy=settings.proxy
        )
        return client

    async def _async_client(self) -> Any:
        """The async SDK client this hook uses on the running loop: shared by every hook of the same
        connection identity on this loop (``_clients.py``); one reference per hook."""
        loop = asyncio.get_running_loop()
        entry = self._async_clients.get(loop)
        if entry is None or entry.closed:
            settings = await self.aget_settings()
            await preload_modules(self._async_sdk_modules())
            entry = self._async_clients.get(loop)  # another coroutine of this hook may have won
            if entry is None or entry.closed:
                key = client_identity(settings, self.sdk_service)
                entry = acquire_async_client(loop, key, lambda: self._new_async_client(settings))
                self._async_clients[loop] = entry
        return entry.client

    async def aclose(self) -> None:
        """Release this hook's reference to the running loop's shared async client (triggers call this
        when done); the client itself is closed when its last hook releases it."""
        loop = asyncio.get_running_loop()
        entry = self._async_clients.pop(loop, None)
        if entry is not None:
            await release_async_client(loop, entry)

    # ---- pacing ---------------------------------------------------------------------------------
    def _pacing(self, settings: ClientSettings, action: str) -> tuple[str, float]:
        """(quota name, requests/second) ``action`` is paced by. Service hooks name their write quotas;
        every other action is its own quota at the connection's ``describe_rate`` (default
        :data:`DESCRIBE_RATE`): Tencent Cloud counts each API action's frequency limit separately per
        account (each action's page states its own, mps-api.md §0.3), and so does the emulator."""
        return action, settings.describe_rate

    def _bucket(self, settings: ClientSettings, action: str) -> TokenBucket:
        """The process-wide bucket of ``action``'s quota for this account (shared by every hook)."""
        name, rate = self._pacing(settings, action)
        return shared_bucket((settings.pacing_key, name), rate)  # the ceiling; fixed pacing keeps HEADROOM

    def pacing(self, action: str) -> PacingState:
        """How this process paces ``action`` on this connection's account now: alone, sharing the
        account, fixed; its rate and what was refused (a batch logs it when it has submitted)."""
        return pacing_state(self._bucket(self.get_settings(), action), action)

    # ---- the retry driver -----------------------------------------------------------------------
    def _after_failure(
        self,
        exc: BaseException,
        action: str,
        clock: RetryClock,
        *,
        idempotent: bool,
        bucket: TokenBucket | None = None,
        sent_at: float | None = None,
    ) -> float:
        """Classify a failed attempt; return the backoff delay, or raise (final error / reconcile).
        A throttled attempt is reported to its bucket (an adaptive bucket cuts its share)."""
        failure = classify_failure(exc)
        if failure.throttled and bucket is not None:
            bucket.on_throttled(sent_at, failure.error.message)
        decision = self.retry_policy.decide(
            retryable=failure.error.retryable,
            throttled=failure.throttled,
            arrival=failure.arrival,
            idempotent=idempotent,
        )
        if decision is Decision.RAISE:
            raise failure.error from None
        if decision is Decision.RECONCILE:
            raise NeedsReconcile(failure) from None
        delay = clock.next_delay()
        service = self.sdk_service.upper()
        if delay is None:
            log.error(
                "%s %s failed after %d attempt(s) in %.1fs: %s",
                service,
                action,
                clock.attempt + 1,
                time.monotonic() - clock.started,
                failure.error,
            )
            raise failure.error from None
        log.warning(
            "%s %s attempt %d failed (%s, %s): %s; retrying in %.2fs",
            service,
            action,
            clock.attempt,
            failure.error.category,
            failure.arrival.value,
            failure.error,
            delay,
        )
        return delay

    def _call_steps(
        self, action: str, params: Mapping[str, Any], *, idempotent: bool
    ) -> Steps[dict[str, Any]]:
        """One logical API call: pace, send ``params`` as they are, retry per policy; the ``Response``
        object as a dict (what the service sent: members it left out are absent, not None).

        Raises the classified ``MpsError`` when the policy gives up, or :class:`NeedsReconcile` when a
        non-idempotent call failed ambiguously.
        """
        settings: ClientSettings = yield _Ready()
        bucket = self._bucket(settings, action)
        clock = RetryClock(self.retry_policy)
        while True:
            yield _Pace(bucket)
            sent_at = bucket.now()
            try:
                answer = yield _Send(action, params)
                response = response_of(action, answer)
            except Exception as exc:
                delay = self._after_failure(
                    exc, action, clock, idempotent=idempotent, bucket=bucket, sent_at=sent_at
                )
            else:
                bucket.on_success(sent_at)  # an adaptive bucket probes up on success
                return response
            yield Sleep(delay)

    def _call(self, action: str, params: Mapping[str, Any], *, idempotent: bool) -> dict[str, Any]:
        """Sync driver of :meth:`_call_steps` (worker threads)."""
        return drive(self._call_steps(action, params, idempotent=idempotent), self)

    async def _acall(self, action: str, params: Mapping[str, Any], *, idempotent: bool) -> dict[str, Any]:
        """Async driver of :meth:`_call_steps` (httpx-based SDK client; never blocks the loop)."""
        return await adrive(self._call_steps(action, params, idempotent=idempotent), self)
