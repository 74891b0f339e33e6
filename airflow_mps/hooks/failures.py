"""Failure classification: one failed SDK call → (typed error, did the request arrive?, throttled?).

The retry driver of :class:`~airflow_mps.hooks.base.TencentCloudBaseHook` decides retry, reconcile or
raise from three facts about a failed attempt (the table in ``_retry.py``); this module computes them
and nothing else, so every rule here is a pure function of the exception and unit tested alone.

* **Answered** failures carry an API code: :func:`airflow_mps.errors.error_from_exception` maps it to a
  typed error; throttling (and ``LimitExceeded.CreateTask``) says the service refused the request.
* **Transport** failures carry no code. A connect failure proves the request was never sent; a read
  timeout, a reset or a broken pipe after the connection was open may come after the service acted
  (docs/reliability.md: "ambiguous"). The sync SDK wraps ``requests`` errors in
  ``TencentCloudSDKException("ClientNetworkError")`` and keeps the cause in ``__context__``; the async
  SDK lets raw ``httpx`` errors through: both are read by the exception *names* in their cause chain,
  so neither library is imported here. A TLS certificate the client does not trust (a missing or wrong
  ``ca_bundle``) fails the handshake, before anything is sent: terminal, so a configuration error is
  reported at once instead of being retried for minutes.
* **COS** failures (``qcloud_cos``): HTTP status and COS code → the same typed errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from airflow_mps.errors import (
    MpsError,
    MpsTerminalError,
    MpsThrottledError,
    MpsTransientError,
    error_from_code,
    error_from_exception,
)
from airflow_mps.hooks._retry import Arrival

__all__ = [
    "CERTIFICATE_ERROR_CODE",
    "NEVER_ARRIVED_NAMES",
    "REFUSED_CODES",
    "Failure",
    "classify_cos_failure",
    "classify_failure",
    "transport_arrival",
]


@dataclass
class Failure:
    """One failed attempt, classified: what to raise, what we know about arrival, whether throttled."""

    error: MpsError
    arrival: Arrival
    throttled: bool


#: Exception class names (anywhere in the cause chain) that prove the connection was never made.
NEVER_ARRIVED_NAMES = frozenset(
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

#: Code of the terminal error for a server certificate the client does not trust.
CERTIFICATE_ERROR_CODE = "ClientNetworkError.CertificateVerifyFailed"
#: What an untrusted certificate looks like: the stdlib exception name (anywhere in the cause chain)
#: and the OpenSSL reason in messages (qcloud_cos keeps only a message).
_CERTIFICATE_NAMES = frozenset({"SSLCertVerificationError"})
_CERTIFICATE_WORDS = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed")

#: Answered codes that say the request was refused before any task was created (besides
#: throttling): safe to resend ProcessImage after a backoff, no reconciliation needed.
REFUSED_CODES = frozenset({"LimitExceeded.CreateTask"})

#: Words of a ``CosClientError`` message that mean a transport failure (qcloud_cos wraps the
#: ``requests`` error in a message string, not a cause).
_COS_NETWORK_WORDS = ("Connection", "connect", "Timeout", "timed out", "reset", "Max retries")


def _cause_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: causes, contexts, urllib3 ``reason`` and exception args."""
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


def transport_arrival(exc: BaseException) -> Arrival:
    """NEVER_ARRIVED when the connection was never established; AMBIGUOUS otherwise.

    A connect failure (refused, DNS, connect timeout) proves the request was not sent. A read timeout,
    a reset or a broken pipe after the connection was open may have happened after the service
    received (and acted on) the request.
    """
    for item in _cause_chain(exc):
        if type(item).__name__ in NEVER_ARRIVED_NAMES:
            return Arrival.NEVER_ARRIVED
    return Arrival.AMBIGUOUS


def certificate_failure(exc: BaseException) -> Failure | None:
    """A terminal, never-arrived failure when ``exc`` is a TLS certificate verification failure."""
    for item in _cause_chain(exc):
        if type(item).__name__ in _CERTIFICATE_NAMES or any(word in str(item) for word in _CERTIFICATE_WORDS):
            message = (
                f"the server's TLS certificate is not trusted ({short(item)}); set the connection's "
                "ca_bundle extra to the PEM file of the CA that signed it"
            )
            return Failure(MpsTerminalError(CERTIFICATE_ERROR_CODE, message), Arrival.NEVER_ARRIVED, False)
    return None


def short(text: Any, limit: int = 300) -> str:
    """``text`` as a string of at most ``limit`` characters (service bodies can be whole HTML pages)."""
    string = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return string if len(string) <= limit else string[: limit - 3] + "..."


def classify_failure(exc: BaseException) -> Failure:
    """Map an exception from an API 3.0 SDK call (sync or async) to a :class:`Failure`.

    Anything that is neither an ``MpsError``, an SDK exception, an httpx error nor an ``OSError`` /
    ``TimeoutError`` is a bug, not a failure: it is re-raised as it is.
    """
    if isinstance(exc, MpsError):
        return Failure(exc, Arrival.ANSWERED, isinstance(exc, MpsThrottledError))
    sdk: Any = exc  # duck-typed TencentCloudSDKException: the SDK is not imported here
    if callable(getattr(sdk, "get_code", None)):
        code = sdk.get_code()
        error: MpsError
        if code == "ClientNetworkError":
            certificate = certificate_failure(exc)
            if certificate is not None:
                return certificate
            error = MpsTransientError(
                "ClientNetworkError", short(sdk.get_message()), sdk.get_request_id() or None
            )
            return Failure(error, transport_arrival(exc), False)
        if code == "ServerNetworkError":
            error = MpsTransientError(
                "ServerNetworkError", "HTTP error status from the API endpoint: " + short(sdk.get_message())
            )
            return Failure(error, Arrival.AMBIGUOUS, False)
        error = error_from_exception(exc)
        throttled = isinstance(error, MpsThrottledError)
        refused = throttled or error.code in REFUSED_CODES
        return Failure(error, Arrival.REFUSED if refused else Arrival.ANSWERED, throttled)
    module = type(exc).__module__ or ""
    if module.startswith("httpx") or isinstance(exc, (OSError, TimeoutError)):
        certificate = certificate_failure(exc)
        if certificate is not None:
            return certificate
        error = MpsTransientError("ClientNetworkError", f"{type(exc).__name__}: {short(exc)}")
        return Failure(error, transport_arrival(exc), False)
    raise exc


def classify_cos_failure(exc: BaseException) -> Failure:
    """Map qcloud_cos errors: ``CosServiceError`` (HTTP status, code, message, request id) and
    ``CosClientError`` (no answer). 503 / ``SlowDown`` is COS throttling; other 5xx are ambiguous;
    404, 403 and the rest of 4xx map to not-found, auth and invalid-parameter errors."""
    name = type(exc).__name__
    cos: Any = exc  # duck-typed: qcloud_cos is not imported here
    if name == "CosServiceError":
        status = cos.get_status_code()
        code = cos.get_error_code() or "Unknown"
        message = cos.get_error_msg() or ""
        request_id = cos.get_request_id()
        text = f"COS HTTP {status}: {short(message)}"
        if status == 503 or code == "SlowDown":
            return Failure(MpsThrottledError(f"Cos.{code}", text, request_id), Arrival.REFUSED, True)
        if status and int(status) >= 500:
            return Failure(MpsTransientError(f"Cos.{code}", text, request_id), Arrival.AMBIGUOUS, False)
        if status == 404:
            return Failure(
                error_from_code("ResourceNotFound", f"{code}: {text}", request_id), Arrival.ANSWERED, False
            )
        if status == 403:
            return Failure(
                error_from_code("AuthFailure", f"{code}: {text}", request_id), Arrival.ANSWERED, False
            )
        return Failure(
            error_from_code("InvalidParameter", f"{code}: {text}", request_id), Arrival.ANSWERED, False
        )
    if name == "CosClientError":
        certificate = certificate_failure(exc)
        if certificate is not None:
            return certificate
        message = short(getattr(cos, "get_message", lambda: str(exc))())
        if any(word in message for word in _COS_NETWORK_WORDS):
            return Failure(
                MpsTransientError("Cos.ClientNetworkError", message), transport_arrival(exc), False
            )
        return Failure(
            error_from_code("InvalidParameter", f"COS client error: {message}"), Arrival.ANSWERED, False
        )
    raise exc
