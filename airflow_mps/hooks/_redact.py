"""Redaction of credentials in the Tencent Cloud SDKs' own log records.

The hook keeps the SDK loggers quiet by default, but a user who turns ``qcloud_cos`` or
``tencentcloud_sdk_common`` up to DEBUG (to debug a connection, say) would otherwise get the STS
token, the COS signing key (an HMAC of the SecretKey valid for the key time) and request signatures
in plain text: qcloud_cos prints its request headers and its string-to-sign at DEBUG. Airflow's
secrets masker only covers task-log handlers and only values registered with it, so the hook also
attaches this filter to the SDKs' loggers: it blanks every registered secret value and the derived
values above, whatever the level and wherever the record is handled.
"""

from __future__ import annotations

import logging
import re
import threading

#: The loggers the two SDKs log through (a logger's filters see only records created on it).
SDK_LOGGER_NAMES = (
    "tencentcloud_sdk_common",
    "qcloud_cos",
    "qcloud_cos.cos_auth",
    "qcloud_cos.cos_client",
    "qcloud_cos.cos_encryption_client",
    "qcloud_cos.cos_threadpool",
    "qcloud_cos.crypto",
    "qcloud_cos.resumable_downloader",
    "qcloud_cos.select_event_stream",
)

MASK = "***"

# Values derived from the SecretKey or carrying the token, in the shapes the SDKs print them.
_DERIVED = [
    re.compile(r"(?i)(x-cos-security-token['\"]?\s*[:=]\s*b?['\"]?)([^'\"&\s,}]+)"),
    re.compile(r"(?i)(x-tc-token['\"]?\s*[:=]\s*b?['\"]?)([^'\"&\s,}]+)"),
    re.compile(r"(?i)(sign_key:?\s*)([0-9a-f]{40})"),
    re.compile(r"(?i)(q-signature=)([0-9a-f]{40})"),
    re.compile(r"(?i)(\bsign:\s*)([0-9a-f]{40})"),
    re.compile(r"(?i)(Signature=)([0-9a-f]{64})"),
]

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Blank ``value`` wherever it appears in an SDK log record from now on (short values are ignored)."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret and every derived credential replaced by ``***``."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _DERIVED:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class SecretRedactingFilter(logging.Filter):
    """Rewrites a record's message with :func:`redact`; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the SDK's problem; pass it through untouched
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER = SecretRedactingFilter()


def install() -> None:
    """Attach the filter to every SDK logger (idempotent)."""
    for name in SDK_LOGGER_NAMES:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
