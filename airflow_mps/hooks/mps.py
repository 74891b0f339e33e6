"""MpsHook: a ``tencentcloud`` connection → official MPS SDK clients (sync + async) and COS access.

Everything an operator, sensor or trigger needs goes through this hook, under one policy:

* **Requests are SDK models** built from ``ProcessImageRequest.to_api()`` — never hand-signed.
* **Retry is ours** (``_retry.py``): throttling is retried on any call; transient failures on reads;
  ``ProcessImage`` only when it provably never arrived. An *ambiguous* ``ProcessImage`` failure
  (read timeout, reset after sending, 5xx, answered InternalError) is **reconciled**: we list recent
  tasks with ``DescribeImageTasks`` and match our input. The SDK's own retryer is never used (it
  re-sends successful calls and raises a stale error; see docs/reliability.md).
* **Pacing** (``_pacing.py``): a process-wide token bucket per account paces ``ProcessImage`` at the
  connection's ``process_image_rate`` (default 20/s, the API limit) and ``Describe*`` at 100/s.
* **No secret leaves**: SecretKey, token and any ``S3SecretKey`` in a request are registered with
  Airflow's secrets masker, SDK debug logging stays off, ``repr`` and exceptions never carry them.
* **Nothing heavy at import**: the SDKs are imported inside methods (DAG-parse cost).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseHook

from airflow_mps.errors import (
    MpsAmbiguousSubmissionError,
    MpsError,
    MpsThrottledError,
    MpsTransientError,
    MpsValidationError,
    error_from_code,
    error_from_exception,
)
from airflow_mps.hooks import _redact
from airflow_mps.hooks._credentials import ClientSettings, get_extra, resolve_settings
from airflow_mps.hooks._pacing import HEADROOM, TokenBucket, shared_bucket
from airflow_mps.hooks._retry import Arrival, Decision, RetryClock, RetryPolicy

if TYPE_CHECKING:
    from airflow_mps.models import ImageTaskInfo, ImageTaskStatus, ProcessImageRequest

log = logging.getLogger(__name__)

DESCRIBE_RATE = 100.0
#: Fraction of the configured rate the fixed pacer sends at (see ``_pacing.use_adaptive_pacing``).
PACING_HEADROOM = HEADROOM
TASK_STATUSES = ("WAITING", "PROCESSING", "FINISH")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: SDK loggers and the level we set when nobody configured them. qcloud_cos logs every HEAD 404 as a
#: warning (object_exists) and its DEBUG output includes the security token; we report errors ourselves.
_SDK_LOGGERS = {"tencentcloud_sdk_common": logging.WARNING, "qcloud_cos": logging.ERROR}
_SECRET_KEYS = frozenset({"S3SecretKey", "SecretKey", "Token"})


@dataclass(frozen=True)
class Submission:
    """The result of one ``ProcessImage``: the MPS task id and the RequestId of the call that created it.

    ``reconciled`` is True when the id was found by listing after an ambiguous failure (then
    ``request_id`` is the RequestId of the failed call, if any).
    """

    task_id: str
    request_id: str | None
    reconciled: bool = False


@dataclass(frozen=True)
class CosObject:
    """One object of a COS listing (``key`` is unquoted, without a leading slash)."""

    key: str
    size: int
    etag: str
    last_modified: str


@dataclass
class _Failure:
    """One failed attempt, classified."""

    error: MpsError
    arrival: Arrival
    throttled: bool


class _NeedsReconcile(Exception):
    """Internal: a ProcessImage attempt failed ambiguously; carries the classified failure."""

    def __init__(self, failure: _Failure) -> None:
        super().__init__(str(failure.error))
        self.failure = failure


def _quiet_sdk_loggers() -> None:
    """Keep the SDKs' debug logging off: it prints request headers (X-TC-Token, COS sign keys).

    Only loggers nobody configured (level NOTSET) are raised; a deliberate user setting wins, and
    for that case the SDK loggers also carry a filter that blanks credentials (`_redact`).
    """
    _redact.install()
    for name, level in _SDK_LOGGERS.items():
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(level)


#: Modules the async path needs. Their first import (the SDK's models.py alone is 3.6 MB; httpx
#: is imported with it) takes long enough to stall every trigger sharing the event loop,
#: so :func:`_aimport_sdk` performs it in a worker thread.
_ASYNC_SDK_MODULES = (
    "tencentcloud.common.credential",
    "tencentcloud.common.profile.client_profile",
    "tencentcloud.common.profile.http_profile",
    "tencentcloud.mps.v20190612.models",
    "tencentcloud.mps.v20190612.mps_client_async",
)


def _load_modules(names: tuple[str, ...]) -> None:
    import importlib

    for name in names:
        importlib.import_module(name)


async def _aimport_sdk() -> None:
    """Import the SDK off the event loop (once per process; afterwards a dict lookup)."""
    if all(name in sys.modules for name in _ASYNC_SDK_MODULES):
        return
    await asyncio.to_thread(_load_modules, _ASYNC_SDK_MODULES)


def _mask(value: str | None) -> None:
    """Register a secret with Airflow's secrets masker (task logs) and the SDK-log redaction filter."""
    if not value:
        return
    _redact.register_secret(value)
    try:
        from airflow.providers.common.compat.sdk import mask_secret
    except ImportError:  # pragma: no cover - every supported Airflow has it
        return
    mask_secret(value)


def _mask_request_secrets(body: Any) -> None:
    """Register every S3SecretKey (or other secret-named field) found in an API body."""
    if isinstance(body, Mapping):
        for key, value in body.items():
            if key in _SECRET_KEYS and isinstance(value, str):
                _mask(value)
            else:
                _mask_request_secrets(value)
    elif isinstance(body, list):
        for item in body:
            _mask_request_secrets(item)


def _format_time(value: datetime | str | None, field: str) -> str | None:
    """API time string ``YYYY-MM-DDThh:mm:ssZ`` (UTC) from a datetime or an already formatted string."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            datetime.strptime(value, _TIME_FORMAT)
        except ValueError:
            raise MpsValidationError(field=field, value=value, allowed="YYYY-MM-DDThh:mm:ssZ (UTC)") from None
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).strftime(_TIME_FORMAT)
    raise MpsValidationError(field=field, value=value, allowed="a datetime or a YYYY-MM-DDThh:mm:ssZ string")


def _parse_time(value: str | None) -> datetime | None:
    if not value or value.startswith("0000"):
        return None
    try:
        return datetime.strptime(value, _TIME_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------
# failure classification (sync: requests inside TencentCloudSDKException; async: raw httpx errors)
# --------------------------------------------------------------------------------------------------
def _cause_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nxt in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(nxt, BaseException):
                stack.append(nxt)
        for arg in getattr(current, "args", ()):
            if isinstance(arg, BaseException):
                stack.append(arg)


_NEVER_ARRIVED_NAMES = frozenset(
    {
        # requests / urllib3
        "ConnectTimeout",
        "ConnectTimeoutError",
        "NewConnectionError",
        "NameResolutionError",
        "ProxyError",
        # httpx
        "ConnectError",
        "PoolTimeout",
        "UnsupportedProtocol",
        # stdlib
        "ConnectionRefusedError",
        "gaierror",
    }
)


#: Answered codes that say the request was refused before any task was created (besides
#: throttling): safe to resend ProcessImage after a backoff, no reconciliation needed.
_REFUSED_CODES = frozenset({"LimitExceeded.CreateTask"})


def _transport_arrival(exc: BaseException) -> Arrival:
    """NEVER_ARRIVED when the connection was never established; AMBIGUOUS otherwise.

    A connect failure (refused, DNS, connect timeout) proves the request was not sent. A read timeout,
    a reset or a broken pipe after the connection was open may have happened after the service
    received (and acted on) the request.
    """
    for item in _cause_chain(exc):
        if type(item).__name__ in _NEVER_ARRIVED_NAMES:
            return Arrival.NEVER_ARRIVED
    return Arrival.AMBIGUOUS


def _short(text: Any, limit: int = 300) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def classify_failure(exc: BaseException) -> _Failure:
    """Map an exception from an SDK call to (typed error, what we know about arrival, throttled?)."""
    if isinstance(exc, MpsError):
        return _Failure(exc, Arrival.ANSWERED, isinstance(exc, MpsThrottledError))
    get_code = getattr(exc, "get_code", None)
    if callable(get_code):  # TencentCloudSDKException
        code = get_code()
        if code == "ClientNetworkError":
            error = MpsTransientError(
                "ClientNetworkError", _short(exc.get_message()), exc.get_request_id() or None
            )
            return _Failure(error, _transport_arrival(exc), False)
        if code == "ServerNetworkError":
            error = MpsTransientError(
                "ServerNetworkError", "HTTP error status from the API endpoint: " + _short(exc.get_message())
            )
            return _Failure(error, Arrival.AMBIGUOUS, False)
        error = error_from_exception(exc)
        throttled = isinstance(error, MpsThrottledError)
        refused = throttled or error.code in _REFUSED_CODES
        return _Failure(error, Arrival.REFUSED if refused else Arrival.ANSWERED, throttled)
    module = type(exc).__module__ or ""
    if module.startswith("httpx") or isinstance(exc, (OSError, TimeoutError)):
        error = MpsTransientError("ClientNetworkError", f"{type(exc).__name__}: {_short(exc)}")
        return _Failure(error, _transport_arrival(exc), False)
    raise exc


def _cos_failure(exc: BaseException) -> _Failure:
    """Map qcloud_cos errors: CosServiceError (HTTP status, code, message, request id), CosClientError."""
    name = type(exc).__name__
    if name == "CosServiceError":
        status = exc.get_status_code()  # type: ignore[attr-defined]
        code = exc.get_error_code() or "Unknown"  # type: ignore[attr-defined]
        message = exc.get_error_msg() or ""  # type: ignore[attr-defined]
        request_id = exc.get_request_id()  # type: ignore[attr-defined]
        text = f"COS HTTP {status}: {_short(message)}"
        if status == 503 or code == "SlowDown":
            return _Failure(MpsThrottledError(f"Cos.{code}", text, request_id), Arrival.REFUSED, True)
        if status and int(status) >= 500:
            return _Failure(MpsTransientError(f"Cos.{code}", text, request_id), Arrival.AMBIGUOUS, False)
        if status == 404:
            return _Failure(
                error_from_code("ResourceNotFound", f"{code}: {text}", request_id), Arrival.ANSWERED, False
            )
        if status == 403:
            return _Failure(
                error_from_code("AuthFailure", f"{code}: {text}", request_id), Arrival.ANSWERED, False
            )
        return _Failure(
            error_from_code("InvalidParameter", f"{code}: {text}", request_id), Arrival.ANSWERED, False
        )
    if name == "CosClientError":
        message = _short(getattr(exc, "get_message", lambda: str(exc))())
        if any(
            word in message
            for word in ("Connection", "connect", "Timeout", "timed out", "reset", "Max retries")
        ):
            return _Failure(
                MpsTransientError("Cos.ClientNetworkError", message), _transport_arrival(exc), False
            )
        return _Failure(
            error_from_code("InvalidParameter", f"COS client error: {message}"), Arrival.ANSWERED, False
        )
    raise exc


# --------------------------------------------------------------------------------------------------
# shared async SDK clients (one per event loop and connection identity)
# --------------------------------------------------------------------------------------------------
#: httpx keep-alive of the shared async clients. httpx's default (5 s) is shorter than a trigger's poll
#: interval, so every poll opened (and TLS-handshook) a new connection; idle connections are checked
#: before reuse, so one the server closed meanwhile is replaced, not failed.
ASYNC_KEEPALIVE_SECONDS = 120.0
#: Connections one shared client may open (and keep idle) towards the API: bounded in practice by the
#: Describe pacing (100/s) times the round trip, far below this.
ASYNC_MAX_CONNECTIONS = 100


class _SharedAsyncClient:
    """One async ``MpsClient`` shared by the hooks of one event loop and connection identity."""

    __slots__ = ("client", "closed", "key", "refs")

    def __init__(self, key: tuple[str, ...], client: Any) -> None:
        self.key = key
        self.client = client
        self.refs = 0
        self.closed = False


#: event loop → connection identity → shared client. Weak on the loop: a loop that is gone takes its
#: clients with it; closed loops are also purged whenever a client is created.
_SHARED_ASYNC: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, ...], _SharedAsyncClient]] = (
    weakref.WeakKeyDictionary()
)
_SHARED_ASYNC_LOCK = threading.Lock()  # loops of different threads share the mapping


def _client_identity(settings: ClientSettings) -> tuple[str, ...]:
    """What makes two hooks' async clients interchangeable: where they connect and as whom.

    Secrets only enter a SHA-256 digest. For the SDK default chain (a provider that refreshes itself,
    e.g. a CVM role's STS token) the provider class and the SecretId seen at resolution count; the
    shared client keeps asking its provider per request, so rotation keeps working.
    """
    secret = "\0".join((settings.secret_id or "", settings.secret_key or "", settings.token or ""))
    provider = type(settings.provider).__qualname__ if settings.provider is not None else ""
    return (
        settings.protocol,
        settings.endpoint or "",
        settings.region,
        str(settings.request_timeout),
        settings.credential_source,
        provider,
        hashlib.sha256(secret.encode("utf-8")).hexdigest(),
    )


def _new_async_client(settings: ClientSettings, profiles: Any, credential: Any) -> Any:
    """An async ``MpsClient`` whose httpx client keeps connections alive across poll intervals.

    The SDK builds its ``httpx.AsyncClient`` itself with httpx's default limits and exposes it as
    ``http_client`` (every request goes through ``self.http_client.send``, the timeout is read from it
    too); it is replaced here by one with the same timeout and a longer keep-alive.
    """
    import httpx
    from tencentcloud.mps.v20190612 import mps_client_async

    client = mps_client_async.MpsClient(credential(settings), settings.region, profiles(settings))
    # The SDK's own httpx client is dropped unopened (httpx holds no socket or finalizer until a send).
    client.http_client = httpx.AsyncClient(
        timeout=settings.request_timeout,
        limits=httpx.Limits(
            max_connections=ASYNC_MAX_CONNECTIONS,
            max_keepalive_connections=ASYNC_MAX_CONNECTIONS,
            keepalive_expiry=ASYNC_KEEPALIVE_SECONDS,
        ),
    )
    return client


def _acquire_async_client(
    loop: asyncio.AbstractEventLoop,
    settings: ClientSettings,
    profiles: Callable[[ClientSettings], Any],
    credential: Callable[[ClientSettings], Any],
) -> _SharedAsyncClient:
    """Take one reference on the loop's client for ``settings`` (created on first use).

    Runs without awaiting between the lookup and the insert, so hooks starting together on one loop
    (a triggerer picking up 1,000 triggers) all find the same client.
    """
    key = _client_identity(settings)
    with _SHARED_ASYNC_LOCK:
        for other in [other for other in _SHARED_ASYNC if other.is_closed()]:
            _SHARED_ASYNC.pop(other, None)
        clients = _SHARED_ASYNC.setdefault(loop, {})
        entry = clients.get(key)
        if entry is None:
            entry = _SharedAsyncClient(key, _new_async_client(settings, profiles, credential))
            clients[key] = entry
        entry.refs += 1
        return entry


async def _release_async_client(loop: asyncio.AbstractEventLoop, entry: _SharedAsyncClient) -> None:
    """Drop one reference; the last one out closes the client (and forgets it, so a later hook on this
    loop gets a fresh one)."""
    with _SHARED_ASYNC_LOCK:
        entry.refs -= 1
        if entry.refs > 0 or entry.closed:
            return
        entry.closed = True
        clients = _SHARED_ASYNC.get(loop) or {}
        if clients.get(entry.key) is entry:
            del clients[entry.key]
        if not clients:
            _SHARED_ASYNC.pop(loop, None)
    await entry.client.close()


def shared_async_clients(loop: asyncio.AbstractEventLoop | None = None) -> int:
    """How many shared async clients are open (on ``loop``, or on every live loop): for tests and
    diagnostics."""
    with _SHARED_ASYNC_LOCK:
        if loop is not None:
            return len(_SHARED_ASYNC.get(loop) or {})
        return sum(len(clients) for other, clients in _SHARED_ASYNC.items() if not other.is_closed())


# --------------------------------------------------------------------------------------------------
# the hook
# --------------------------------------------------------------------------------------------------
class MpsHook(BaseHook):
    """Tencent Cloud MPS image processing + COS access for one ``tencentcloud`` connection.

    :param tencentcloud_conn_id: Airflow connection id (type ``tencentcloud``).
    :param region: overrides the connection's ``region`` extra.
    :param max_retry_seconds: bound on the time one logical call spends retrying (default 120 s).
    :param reconcile_settle_seconds: wait before listing tasks after an ambiguous ProcessImage failure,
        so a request still in flight on the service side has created its task (default 1 s).
    :param reconcile_clock_skew_seconds: how far before our send time a task's ``CreateTime`` may be
        and still count as ours (client/server clock skew and second truncation; default 5 s).
    """

    conn_name_attr = "tencentcloud_conn_id"
    default_conn_name = "tencentcloud_default"
    conn_type = "tencentcloud"
    hook_name = "Tencent Cloud"

    def __init__(
        self,
        tencentcloud_conn_id: str = default_conn_name,
        region: str | None = None,
        *,
        max_retry_seconds: float = 120.0,
        retry_policy: RetryPolicy | None = None,
        reconcile_settle_seconds: float = 1.0,
        reconcile_clock_skew_seconds: float = 5.0,
    ) -> None:
        super().__init__()
        self.tencentcloud_conn_id = tencentcloud_conn_id
        self.region = region
        self.retry_policy = retry_policy or RetryPolicy(max_retry_seconds=max_retry_seconds)
        self.reconcile_settle_seconds = reconcile_settle_seconds
        self.reconcile_clock_skew_seconds = reconcile_clock_skew_seconds
        self._settings: ClientSettings | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        # The shared client entry this hook holds a reference on, per event loop.
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SharedAsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._cos_clients: dict[tuple[str, int], Any] = {}

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
            "endpoint": StringField(lazy_gettext("Endpoint (host[:port])"), widget=BS3TextFieldWidget()),
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
        _mask(settings.secret_key)
        _mask(settings.token)
        _quiet_sdk_loggers()
        return settings

    def get_settings(self) -> ClientSettings:
        """Resolve (once) the connection into client settings. Sync: do not call on an event loop."""
        if self._settings is None:
            conn = self.get_connection(self.tencentcloud_conn_id)
            settings = self._settings_from(conn, conn.extra_dejson)
            with self._lock:
                if self._settings is None:
                    self._settings = settings
        return self._settings

    async def aget_settings(self) -> ClientSettings:
        """Resolve the connection without blocking the event loop (Airflow's async connection API)."""
        if self._settings is None:
            from airflow.providers.common.compat.connection import (
                get_async_connection,
                get_async_extra_dejson,
            )

            conn = await get_async_connection(self.tencentcloud_conn_id, hook=self)
            extras = await get_async_extra_dejson(conn)
            # Credential resolution may probe the SDK default chain (files, metadata server): off-loop.
            settings = await asyncio.to_thread(self._settings_from, conn, extras)
            with self._lock:
                if self._settings is None:
                    self._settings = settings
        return self._settings

    def get_conn(self) -> Any:
        """The sync MPS client of the calling thread (BaseHook API)."""
        return self._sync_client()

    # ---- SDK clients ----------------------------------------------------------------------------
    @staticmethod
    def _profiles(settings: ClientSettings) -> Any:
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile

        http_profile = HttpProfile(
            protocol=settings.protocol, endpoint=settings.endpoint, reqTimeout=settings.request_timeout
        )
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
        """One sync ``MpsClient`` per thread (its requests session is not shared between threads)."""
        client = getattr(self._local, "client", None)
        if client is None:
            from tencentcloud.mps.v20190612 import mps_client

            settings = self.get_settings()
            client = mps_client.MpsClient(
                self._credential(settings), settings.region, self._profiles(settings)
            )
            self._local.client = client
        return client

    async def _async_client(self) -> Any:
        """The async ``MpsClient`` this hook uses on the running loop: shared by every hook of the same
        connection identity on this loop (see :func:`_acquire_async_client`); one reference per hook."""
        loop = asyncio.get_running_loop()
        entry = self._async_clients.get(loop)
        if entry is None or entry.closed:
            settings = await self.aget_settings()
            await _aimport_sdk()
            entry = self._async_clients.get(loop)  # another coroutine of this hook may have won
            if entry is None or entry.closed:
                entry = _acquire_async_client(loop, settings, self._profiles, self._credential)
                self._async_clients[loop] = entry
        return entry.client

    async def aclose(self) -> None:
        """Release this hook's reference to the running loop's shared async client (triggers call this
        when done); the client itself is closed when its last hook releases it."""
        loop = asyncio.get_running_loop()
        entry = self._async_clients.pop(loop, None)
        if entry is not None:
            await _release_async_client(loop, entry)

    def _buckets(self, settings: ClientSettings) -> tuple[TokenBucket, TokenBucket]:
        return (
            shared_bucket((settings.pacing_key, "ProcessImage"), settings.process_image_rate),
            shared_bucket((settings.pacing_key, "Describe"), DESCRIBE_RATE),
        )

    # ---- the one call path (sync + async share all but the I/O) ---------------------------------
    @staticmethod
    def _build_request(action: str, params: Mapping[str, Any]) -> Any:
        from tencentcloud.mps.v20190612 import models as sdk_models

        request = getattr(sdk_models, f"{action}Request")()
        request.from_json_string(json.dumps(params))
        return request

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
        """Classify a failed attempt; return the backoff delay, or raise (final error / reconcile)."""
        failure = classify_failure(exc)
        if failure.throttled and bucket is not None:
            bucket.on_throttled(sent_at, failure.error.message)  # adaptive pacing (issue 13)
        decision = self.retry_policy.decide(
            retryable=failure.error.retryable,
            throttled=failure.throttled,
            arrival=failure.arrival,
            idempotent=idempotent,
        )
        if decision is Decision.RAISE:
            raise failure.error from None
        if decision is Decision.RECONCILE:
            raise _NeedsReconcile(failure) from None
        delay = clock.next_delay()
        if delay is None:
            log.error(
                "MPS %s failed after %d attempt(s) in %.1fs: %s",
                action,
                clock.attempt + 1,
                time.monotonic() - clock.started,
                failure.error,
            )
            raise failure.error from None
        log.warning(
            "MPS %s attempt %d failed (%s, %s): %s; retrying in %.2fs",
            action,
            clock.attempt,
            failure.error.category,
            failure.arrival.value,
            failure.error,
            delay,
        )
        return delay

    def _call(self, action: str, params: Mapping[str, Any], *, idempotent: bool) -> dict[str, Any]:
        """Sync: pace, send through the SDK, retry per policy; return the response as a dict."""
        settings = self.get_settings()
        submit_bucket, describe_bucket = self._buckets(settings)
        bucket = submit_bucket if action == "ProcessImage" else describe_bucket
        clock = RetryClock(self.retry_policy)
        request = self._build_request(action, params)
        while True:
            bucket.acquire()
            sent_at = bucket.now()
            try:
                response = getattr(self._sync_client(), action)(request)
                bucket.on_success(sent_at)
                return json.loads(response.to_json_string())
            except Exception as exc:
                delay = self._after_failure(
                    exc, action, clock, idempotent=idempotent, bucket=bucket, sent_at=sent_at
                )
            time.sleep(delay)

    async def _acall(self, action: str, params: Mapping[str, Any], *, idempotent: bool) -> dict[str, Any]:
        """Async twin of ``_call`` (httpx-based SDK client; never blocks the loop)."""
        settings = await self.aget_settings()
        await _aimport_sdk()
        submit_bucket, describe_bucket = self._buckets(settings)
        bucket = submit_bucket if action == "ProcessImage" else describe_bucket
        clock = RetryClock(self.retry_policy)
        request = self._build_request(action, params)
        while True:
            await bucket.aacquire()
            sent_at = bucket.now()
            try:
                client = await self._async_client()
                response = await getattr(client, action)(request)
                bucket.on_success(sent_at)
                return json.loads(response.to_json_string())
            except Exception as exc:
                delay = self._after_failure(
                    exc, action, clock, idempotent=idempotent, bucket=bucket, sent_at=sent_at
                )
            await asyncio.sleep(delay)

    # ---- ProcessImage ---------------------------------------------------------------------------
    def process_image(self, request: ProcessImageRequest) -> Submission:
        """Submit one ProcessImage; never creates a second task for one call.

        Throttled / never-arrived attempts are retried. After an ambiguous failure the hook waits
        ``reconcile_settle_seconds`` and lists recent tasks (all statuses) created since just before
        the first attempt: exactly one task with our input → that task is returned; none (in two
        complete listings) → the request is resubmitted once; several, or a listing that fails →
        ``MpsAmbiguousSubmissionError``.
        """
        body = request.to_api()
        _mask_request_secrets(body)
        first_sent = datetime.now(timezone.utc)
        resubmitted = False
        while True:
            try:
                response = self._call("ProcessImage", body, idempotent=False)
                return Submission(task_id=response["TaskId"], request_id=response.get("RequestId"))
            except _NeedsReconcile as pending:
                failure = pending.failure
            log.warning(
                "MPS ProcessImage outcome unknown (%s); reconciling by listing recent tasks", failure.error
            )
            time.sleep(self.reconcile_settle_seconds)
            matches = self._reconcile_sync(body, first_sent, failure)
            if len(matches) == 0:
                # A second complete listing after another settle period must agree before resubmitting.
                time.sleep(self.reconcile_settle_seconds)
                matches = self._reconcile_sync(body, first_sent, failure)
            outcome = self._reconcile_outcome(matches, failure, resubmitted)
            if outcome is not None:
                return outcome
            resubmitted = True

    async def aprocess_image(self, request: ProcessImageRequest) -> Submission:
        """Async twin of ``process_image`` (same reconciliation)."""
        body = request.to_api()
        _mask_request_secrets(body)
        first_sent = datetime.now(timezone.utc)
        resubmitted = False
        while True:
            try:
                response = await self._acall("ProcessImage", body, idempotent=False)
                return Submission(task_id=response["TaskId"], request_id=response.get("RequestId"))
            except _NeedsReconcile as pending:
                failure = pending.failure
            log.warning(
                "MPS ProcessImage outcome unknown (%s); reconciling by listing recent tasks", failure.error
            )
            await asyncio.sleep(self.reconcile_settle_seconds)
            matches = await self._reconcile_async(body, first_sent, failure)
            if len(matches) == 0:
                await asyncio.sleep(self.reconcile_settle_seconds)
                matches = await self._reconcile_async(body, first_sent, failure)
            outcome = self._reconcile_outcome(matches, failure, resubmitted)
            if outcome is not None:
                return outcome
            resubmitted = True

    def _reconcile_outcome(
        self, matches: list[str], failure: _Failure, resubmitted: bool
    ) -> Submission | None:
        """Submission for one match; None to resubmit (once); raise for several or a second miss."""
        if len(matches) == 1:
            log.warning("MPS ProcessImage reconciled: the failed attempt created task %s", matches[0])
            return Submission(task_id=matches[0], request_id=failure.error.request_id, reconciled=True)
        if len(matches) > 1:
            raise MpsAmbiguousSubmissionError(
                message=f"ProcessImage failed ambiguously ({failure.error}) and {len(matches)} tasks with the "
                f"same input were created since: {', '.join(sorted(matches))}",
                request_id=failure.error.request_id,
            )
        if resubmitted:
            raise MpsAmbiguousSubmissionError(
                message=f"ProcessImage failed ambiguously twice ({failure.error}) and no task with this input "
                "could be found; not resubmitting again",
                request_id=failure.error.request_id,
            )
        log.warning("MPS ProcessImage created no task (two complete listings agree); resubmitting once")
        return None

    def _reconcile_sync(self, body: Mapping[str, Any], first_sent: datetime, failure: _Failure) -> list[str]:
        try:
            return self.find_tasks_for(body, first_sent)
        except MpsError as exc:
            raise _listing_failed(failure, exc) from exc

    async def _reconcile_async(
        self, body: Mapping[str, Any], first_sent: datetime, failure: _Failure
    ) -> list[str]:
        try:
            return await self.afind_tasks_for(body, first_sent)
        except MpsError as exc:
            raise _listing_failed(failure, exc) from exc

    # ---- which tasks did a ProcessImage create? (reconciliation, retry adoption) ----------------
    def find_tasks_for(
        self,
        request: ProcessImageRequest | Mapping[str, Any],
        since: datetime,
        *,
        clock_skew_seconds: float | None = None,
    ) -> list[str]:
        """Ids of the tasks a ``ProcessImage`` of ``request`` sent at ``since`` can have created.

        The one implementation of "find the task this request created", used by the hook's own
        reconciliation after an ambiguous failure and by the operators when a try died before it
        recorded the TaskId. Rules (:func:`_task_finder`): tasks of every status listed from
        ``since`` minus ``clock_skew_seconds`` (default: the hook's ``reconcile_clock_skew_seconds``);
        our input named by the listing's ``Input`` (or, when the listing names none, by the task's
        ``InputInfo``); not provably another request's (``ImageTaskStatus.conflicts_with``: echoed
        ImageTask, or outputs outside our absolute OutputPath / OutputDir); when some were created in
        or after ``since``'s second, only those. Empty: nothing was created; several: ambiguous, the
        caller decides. Listing/describe failures raise the hook's ``MpsError`` classes.

        :param request: a ``ProcessImageRequest`` or its API body (``to_api()``).
        :param since: when the request was (first) sent; a naive datetime is taken as UTC.
        """
        body, floor, skew = self._finder_args(request, since, clock_skew_seconds)
        steps = _task_finder(body, floor, skew)
        reply: Any = None
        try:
            while True:
                step = steps.send(reply)
                if isinstance(step, _ListStep):
                    reply = list(self.list_image_tasks(step.status, start_time=step.start))
                else:
                    reply = self._describe_response(step.task_id)
        except StopIteration as done:
            return done.value

    async def afind_tasks_for(
        self,
        request: ProcessImageRequest | Mapping[str, Any],
        since: datetime,
        *,
        clock_skew_seconds: float | None = None,
    ) -> list[str]:
        """Async twin of :meth:`find_tasks_for` (same rules, async SDK client)."""
        body, floor, skew = self._finder_args(request, since, clock_skew_seconds)
        steps = _task_finder(body, floor, skew)
        reply: Any = None
        try:
            while True:
                step = steps.send(reply)
                if isinstance(step, _ListStep):
                    reply = [row async for row in self.alist_image_tasks(step.status, start_time=step.start)]
                else:
                    reply = await self._adescribe_response(step.task_id)
        except StopIteration as done:
            return done.value

    def _finder_args(
        self, request: Any, since: Any, clock_skew_seconds: float | None
    ) -> tuple[Mapping[str, Any], datetime, float]:
        body = request.to_api() if hasattr(request, "to_api") else request
        if not isinstance(body, Mapping):
            raise MpsValidationError(
                field="request", value=type(request).__name__, allowed="a ProcessImageRequest or its API body"
            )
        if not isinstance(since, datetime):
            raise MpsValidationError(field="since", value=since, allowed="a datetime (naive = UTC)")
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        skew = self.reconcile_clock_skew_seconds if clock_skew_seconds is None else clock_skew_seconds
        if isinstance(skew, bool) or not isinstance(skew, (int, float)) or skew < 0:
            raise MpsValidationError(field="clock_skew_seconds", value=skew, allowed="a number >= 0")
        return body, since.astimezone(timezone.utc), float(skew)

    def _describe_response(self, task_id: str) -> dict[str, Any]:
        """The raw DescribeImageTaskDetail ``Response`` (the finder needs ``InputInfo``, which
        ``ImageTaskStatus`` does not keep)."""
        return self._call("DescribeImageTaskDetail", {"TaskId": task_id}, idempotent=True)

    async def _adescribe_response(self, task_id: str) -> dict[str, Any]:
        return await self._acall("DescribeImageTaskDetail", {"TaskId": task_id}, idempotent=True)

    # ---- DescribeImageTaskDetail ----------------------------------------------------------------
    @staticmethod
    def _check_task_id(task_id: Any) -> str:
        if not isinstance(task_id, str) or not task_id.strip():
            raise MpsValidationError(
                field="mps_task_id",
                value=task_id,
                allowed="a non-empty MPS TaskId string",
                code="MissingParameter",
            )
        return task_id.strip()

    def describe_image_task(self, task_id: str) -> ImageTaskStatus:
        """Status and outputs of one task (DescribeImageTaskDetail)."""
        from airflow_mps.models import ImageTaskStatus

        task_id = self._check_task_id(task_id)
        response = self._call("DescribeImageTaskDetail", {"TaskId": task_id}, idempotent=True)
        return ImageTaskStatus.from_api(response, task_id=task_id)

    async def adescribe_image_task(self, task_id: str) -> ImageTaskStatus:
        """Async twin of ``describe_image_task`` (for triggers)."""
        from airflow_mps.models import ImageTaskStatus

        task_id = self._check_task_id(task_id)
        response = await self._acall("DescribeImageTaskDetail", {"TaskId": task_id}, idempotent=True)
        return ImageTaskStatus.from_api(response, task_id=task_id)

    # ---- DescribeImageTasks ---------------------------------------------------------------------
    @staticmethod
    def _list_params(
        status: str,
        start_time: datetime | str | None,
        end_time: datetime | str | None,
        sub_task_has_failed: bool | None,
        page_size: int,
    ) -> dict[str, Any]:
        if status not in TASK_STATUSES:
            raise MpsValidationError(field="status", value=status, allowed=", ".join(TASK_STATUSES))
        if not isinstance(page_size, int) or isinstance(page_size, bool) or not 1 <= page_size <= 100:
            raise MpsValidationError(field="page_size", value=page_size, allowed="an integer 1-100")
        if sub_task_has_failed is not None and not isinstance(sub_task_has_failed, bool):
            raise MpsValidationError(
                field="sub_task_has_failed", value=sub_task_has_failed, allowed="True, False, None"
            )
        params: dict[str, Any] = {"Status": status, "Limit": page_size}
        start = _format_time(start_time, "start_time")
        end = _format_time(end_time, "end_time")
        if start:
            params["StartTime"] = start
        if end:
            params["EndTime"] = end
        if sub_task_has_failed is not None:
            params["SubTaskHasFailed"] = sub_task_has_failed
        return params

    def _iter_task_pages(
        self, status: str, start_time: Any, end_time: Any, sub_task_has_failed: bool | None, page_size: int
    ) -> Iterator[dict[str, Any]]:
        params = self._list_params(status, start_time, end_time, sub_task_has_failed, page_size)
        while True:
            response = self._call("DescribeImageTasks", params, idempotent=True)
            yield from response.get("TaskSet") or []
            token = response.get("ScrollToken")
            if not token:
                return
            params = {**params, "ScrollToken": token}

    async def _aiter_task_pages(
        self, status: str, start_time: Any, end_time: Any, sub_task_has_failed: bool | None, page_size: int
    ) -> AsyncIterator[dict[str, Any]]:
        params = self._list_params(status, start_time, end_time, sub_task_has_failed, page_size)
        while True:
            response = await self._acall("DescribeImageTasks", params, idempotent=True)
            for item in response.get("TaskSet") or []:
                yield item
            token = response.get("ScrollToken")
            if not token:
                return
            params = {**params, "ScrollToken": token}

    def list_image_tasks(
        self,
        status: str,
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
        sub_task_has_failed: bool | None = None,
        page_size: int = 100,
    ) -> Iterator[ImageTaskInfo]:
        """Every task in ``status`` (WAITING, PROCESSING, FINISH) in the time window, page by page."""
        params = self._list_params(
            status, start_time, end_time, sub_task_has_failed, page_size
        )  # validate now
        del params
        return self._list_image_tasks(status, start_time, end_time, sub_task_has_failed, page_size)

    def _list_image_tasks(self, *args: Any) -> Iterator[ImageTaskInfo]:
        for item in self._iter_task_pages(*args):
            yield _task_info(item)

    async def alist_image_tasks(
        self,
        status: str,
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
        sub_task_has_failed: bool | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[ImageTaskInfo]:
        """Async twin of ``list_image_tasks`` (an async generator)."""
        async for item in self._aiter_task_pages(
            status, start_time, end_time, sub_task_has_failed, page_size
        ):
            yield _task_info(item)

    # ---- connection test ------------------------------------------------------------------------
    def test_connection(self) -> tuple[bool, str]:
        """One cheap authenticated read (DescribeImageTasks, Limit 1) — what the UI's Test button runs."""
        try:
            settings = self.get_settings()
            saved, self.retry_policy = self.retry_policy, RetryPolicy(max_retry_seconds=10)
            try:
                response = self._call("DescribeImageTasks", {"Status": "FINISH", "Limit": 1}, idempotent=True)
            finally:
                self.retry_policy = saved
        except MpsError as exc:
            request_id = f" (RequestId {exc.request_id})" if exc.request_id else ""
            return False, f"{exc.code}: {exc.message}{request_id}"
        return True, (
            f"Connected to MPS at {settings.endpoint or 'mps.tencentcloudapi.com'} as {settings.secret_id} "
            f"(credentials from {settings.credential_source}; RequestId {response.get('RequestId')})"
        )

    # ---- COS ------------------------------------------------------------------------------------
    def _cos_client(self, region: str | None) -> Any:
        """A ``CosS3Client`` for ``region`` (IP/Port mode when the connection sets an endpoint)."""
        settings = self.get_settings()
        region = region or settings.region
        key = (region, threading.get_ident())
        client = self._cos_clients.get(key)
        if client is None:
            from qcloud_cos import CosConfig, CosS3Client

            _quiet_sdk_loggers()
            kwargs: dict[str, Any] = {
                "Region": region,
                "Scheme": settings.protocol,
                "Timeout": settings.request_timeout,
            }
            if settings.provider is not None:
                kwargs["CredentialInstance"] = settings.provider
            else:
                secret_id, secret_key, token = settings.credential_triplet()
                kwargs.update(SecretId=secret_id, SecretKey=secret_key, Token=token)
            if settings.endpoint:
                kwargs["IP"] = settings.host
                kwargs["Port"] = settings.port or (443 if settings.protocol == "https" else 80)
            client = CosS3Client(CosConfig(**kwargs), retry=0)  # retries are ours
            with self._lock:
                self._cos_clients[key] = client
        return client

    def _cos_call(
        self, what: str, func: Callable[[], Any], *, treat_404: Callable[[], Any] | None = None
    ) -> Any:
        clock = RetryClock(self.retry_policy)
        while True:
            try:
                return func()
            except Exception as exc:
                name = type(exc).__name__
                if name not in ("CosServiceError", "CosClientError"):
                    raise
                if treat_404 is not None and name == "CosServiceError" and exc.get_status_code() == 404:  # type: ignore[attr-defined]
                    return treat_404()
                failure = _cos_failure(exc)
                if not (failure.throttled or failure.error.retryable):
                    raise failure.error from None
                delay = clock.next_delay()
                if delay is None:
                    raise failure.error from None
                log.warning("COS %s failed (%s); retrying in %.2fs", what, failure.error, delay)
            time.sleep(delay)

    def list_objects(self, bucket: str, prefix: str = "", region: str | None = None) -> Iterator[CosObject]:
        """Every object under ``prefix`` (paged with Marker; keys come back unquoted)."""
        client = self._cos_client(region)
        marker = ""
        while True:
            response = self._cos_call(
                f"ListObjects {bucket}/{prefix}",
                lambda m=marker: client.list_objects(Bucket=bucket, Prefix=prefix, Marker=m, MaxKeys=1000),
            )
            for item in response.get("Contents") or []:
                yield CosObject(
                    key=item["Key"].lstrip("/") if item["Key"].startswith("/") else item["Key"],
                    size=int(item.get("Size") or 0),
                    etag=str(item.get("ETag") or "").strip('"'),
                    last_modified=str(item.get("LastModified") or ""),
                )
            if str(response.get("IsTruncated", "false")).lower() != "true":
                return
            marker = response.get("NextMarker") or (response.get("Contents") or [{}])[-1].get("Key", "")
            if not marker:
                return

    def object_exists(self, bucket: str, key: str, region: str | None = None) -> bool:
        """True when ``key`` exists in ``bucket`` (HEAD)."""
        client = self._cos_client(region)
        return bool(
            self._cos_call(
                f"HeadObject {bucket}/{key}",
                lambda: client.head_object(Bucket=bucket, Key=key) is not None,
                treat_404=lambda: False,
            )
        )

    def read_object(self, bucket: str, key: str, region: str | None = None) -> bytes:
        """The whole object body."""
        client = self._cos_client(region)

        def _get() -> bytes:
            response = client.get_object(Bucket=bucket, Key=key)
            return response["Body"].get_raw_stream().read()

        return self._cos_call(f"GetObject {bucket}/{key}", _get)

    def write_object(
        self,
        bucket: str,
        key: str,
        data: bytes | str,
        content_type: str | None = None,
        region: str | None = None,
    ) -> str:
        """Write (overwrite) ``key``; returns the ETag. A PUT of the same bytes is idempotent, so retried."""
        client = self._cos_client(region)
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        extra = {"ContentType": content_type} if content_type else {}
        response = self._cos_call(
            f"PutObject {bucket}/{key}",
            lambda: client.put_object(Bucket=bucket, Key=key, Body=payload, **extra),
        )
        return str((response or {}).get("ETag", "")).strip('"')


# --------------------------------------------------------------------------------------------------
# reconciliation: which listed tasks did our request create? (I/O-free; the hook drives it)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _ListStep:
    """I/O request of :func:`_task_finder`: every task in ``status`` listed from ``start`` → the
    ``ImageTaskInfo`` rows."""

    status: str
    start: str


@dataclass(frozen=True)
class _DetailStep:
    """I/O request of :func:`_task_finder`: the DescribeImageTaskDetail ``Response`` of ``task_id``."""

    task_id: str


def _task_finder(
    body: Mapping[str, Any], since: datetime, skew_seconds: float
) -> Generator[_ListStep | _DetailStep, Any, list[str]]:
    """The matching rules of :meth:`MpsHook.find_tasks_for`, without I/O.

    A generator that yields what it needs (a listing, a task's detail) and is sent the answer, so the
    sync and the async hook paths drive the very same rules with their own I/O. Returns the ids.
    """
    from airflow_mps.models import listed_input_matches, request_input

    ours = request_input(body)
    if ours is None:  # no input we could recognise a task by
        return []
    start = since - timedelta(seconds=skew_seconds)
    start_floor = start.replace(microsecond=0)
    candidates: dict[str, ImageTaskInfo] = {}
    for status in TASK_STATUSES:  # lifecycle order: a task moving on is seen in a later listing
        rows = yield _ListStep(status, start.strftime(_TIME_FORMAT))
        for row in rows:
            candidates.setdefault(row.task_id, row)
    matches: list[tuple[str, datetime | None]] = []
    for task_id, row in candidates.items():
        created = _parse_time(row.create_time)
        if created is not None and created < start_floor:
            continue
        verdict = listed_input_matches(row.input, *ours)
        if verdict is False:
            continue
        # Same input (or the listing names none): the detail tells our task from another pipeline's.
        detail = yield _DetailStep(task_id)
        if verdict is None:  # listing carries no input: ask the task itself
            verdict = _input_info_matches(detail.get("InputInfo"), body)
        if verdict and _same_request(detail, body, task_id):
            matches.append((task_id, created))
    return _narrow(matches, since)


def _narrow(matches: list[tuple[str, datetime | None]], since: datetime) -> list[str]:
    """Prefer tasks created in or after the second of ``since``.

    ``CreateTime`` has one-second resolution and the window reaches back by the clock-skew allowance,
    so an earlier submission of the same input (a previous try, a mapped sibling a few seconds ago)
    can fall inside it. When a match is at/after our own send second, only those count; only when
    none is (the server clock is behind ours) do the skew-window matches count.
    """
    floor = since.replace(microsecond=0)
    strict = [task_id for task_id, created in matches if (created or floor) >= floor]
    return strict if strict else [task_id for task_id, _created in matches]


def _listing_failed(failure: _Failure, exc: MpsError) -> MpsAmbiguousSubmissionError:
    return MpsAmbiguousSubmissionError(
        message=f"ProcessImage failed ambiguously ({failure.error}) and listing recent tasks failed: {exc}",
        request_id=failure.error.request_id,
    )


def _input_matches(listed: Any, body: Mapping[str, Any]) -> bool | None:
    """Whether DescribeImageTasks' ``Input`` names our input; None when it carries nothing.

    One parser for the hook and the batch operator: :func:`airflow_mps.models.listed_input_matches`.
    """
    from airflow_mps.models import listed_input_matches, request_input

    ours = request_input(body)
    if ours is None:
        return None
    return listed_input_matches(listed, *ours)


def _input_info_matches(info: Any, body: Mapping[str, Any]) -> bool:
    """Whether a DescribeImageTaskDetail ``InputInfo`` object is our input."""
    if not isinstance(info, Mapping):
        return False
    return bool(_input_matches(info, body))


def _same_request(detail: Mapping[str, Any], body: Mapping[str, Any], task_id: str) -> bool:
    """False when a task with our input provably came from another request (another pipeline).

    Proofs (``ImageTaskStatus.conflicts_with``): the echoed ImageTask contradicts ours, or the task
    finished with outputs outside our absolute ``OutputPath`` / our ``OutputDir``. Without a proof
    the task counts as ours (null tolerance). A relative OutputPath or the default naming is not
    checked: predicting the service's naming wrongly would turn our own task into "not ours" and
    cause the duplicate reconciliation exists to prevent.
    """
    from airflow_mps.models import ImageTaskStatus, request_input

    status = ImageTaskStatus.from_api(detail, task_id=task_id)
    output_path = body.get("OutputPath")
    absolute = isinstance(output_path, str) and output_path.startswith("/") and "{" not in output_path
    storage = (body.get("OutputStorage") or {}).get("CosOutputStorage") or {}
    ours = request_input(body)
    reason = status.conflicts_with(
        image_task=body.get("ImageTask"),
        output_bucket=storage.get("Bucket") or (ours[1] if ours and ours[0] == "COS" else None),
        output_key=output_path if absolute else None,
        output_dir=body.get("OutputDir") if not absolute else None,
    )
    if reason is not None:
        log.info("Reconciliation: task %s has our input but is not ours: %s", task_id, reason)
    return reason is None


def _task_info(item: Mapping[str, Any]) -> ImageTaskInfo:
    from airflow_mps.models import ImageTaskInfo

    return ImageTaskInfo.from_api(item)


__all__ = ["CosObject", "MpsHook", "Submission", "classify_failure", "get_extra"]
