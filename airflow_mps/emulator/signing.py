"""TC3-HMAC-SHA256 signature verification for the emulator's MPS API (server side).

The official SDK signs every API 3.0 request with TC3-HMAC-SHA256 (see mps-api.md §6). The emulator
re-derives the signature from the bytes it actually received (raw body, raw Host and Content-Type
header values) so that a client which signs differently from the real service fails here too.

Only verification lives here: clients in this project never sign by hand, they use the SDK.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

ALGORITHM = "TC3-HMAC-SHA256"
SERVICE = "mps"
#: Maximum allowed distance between X-TC-Timestamp and the server clock, in seconds.
MAX_SKEW_SECONDS = 300
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"

_AUTH_RE = re.compile(
    r"^TC3-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-fA-F]{64})\s*$"
)


class SignatureError(Exception):
    """A request failed authentication; `code` is the AuthFailure.* code the real service returns."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _hmac_sha256(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_request(
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    payload_hash: str,
) -> str:
    """Build the TC3 canonical request from the signed headers (name, value) in signing order."""
    canonical_headers = "".join(f"{name.lower()}:{value.strip().lower()}\n" for name, value in headers)
    signed_headers = ";".join(name.lower() for name, _ in headers)
    return "\n".join([method.upper(), path or "/", query, canonical_headers, signed_headers, payload_hash])


def tc3_signature(secret_key: str, service: str, timestamp: int, canonical: str) -> tuple[str, str]:
    """Return (credential scope date, hex signature) for a canonical request."""
    date = datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d")
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join([ALGORITHM, str(timestamp), scope, sha256_hex(canonical.encode("utf-8"))])
    k_date = _hmac_sha256(("TC3" + secret_key).encode("utf-8"), date)
    k_service = _hmac_sha256(k_date, service)
    k_signing = _hmac_sha256(k_service, "tc3_request")
    signature = hmac.new(k_signing, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return date, signature


@dataclass(frozen=True)
class VerifiedCaller:
    """Who signed a request that passed verification."""

    secret_id: str
    timestamp: int


def verify_tc3(
    *,
    method: str,
    path: str,
    query: str,
    header_lookup: Callable[[str], str | None],
    body: bytes,
    secret_lookup: Callable[[str], str | None],
    now: float,
    expected_token: str | None = None,
    service: str = SERVICE,
) -> VerifiedCaller:
    """Verify a TC3-HMAC-SHA256 request; raise `SignatureError` with the real service's code.

    Order of checks follows mps-api.md §6: malformed Authorization → InvalidAuthorization; timestamp
    skew → SignatureExpire; unknown SecretId → SecretIdNotFound; mismatch → SignatureFailure; wrong
    or missing session token (when the emulator is configured with one) → TokenFailure.
    """
    auth = _parse_authorization(header_lookup("Authorization"))
    timestamp = _checked_timestamp(header_lookup("X-TC-Timestamp"), now)
    _check_scope(auth, timestamp, service)
    if "content-type" not in auth.signed_names or "host" not in auth.signed_names:
        raise SignatureError(
            "AuthFailure.InvalidAuthorization", "SignedHeaders must include content-type and host."
        )
    secret_key = secret_lookup(auth.secret_id)
    if secret_key is None:
        raise SignatureError(
            "AuthFailure.SecretIdNotFound",
            "The SecretId is not found, please ensure that your SecretId is correct.",
        )
    signed_headers = _signed_headers(auth.signed_names, header_lookup)
    canonical_query = "" if method.upper() == "POST" else query
    payload_hash = _payload_hash(header_lookup, body)
    canonical = canonical_request(method, path or "/", canonical_query, signed_headers, payload_hash)
    _, expected = tc3_signature(secret_key, service, timestamp, canonical)
    if not hmac.compare_digest(expected, auth.signature):
        raise SignatureError(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated. Please check your signature is correct.",
        )
    if expected_token:
        token = header_lookup("X-TC-Token")
        if not token or not hmac.compare_digest(token, expected_token):
            raise SignatureError(
                "AuthFailure.TokenFailure", "The token is missing or invalid. Please check your token."
            )
    return VerifiedCaller(secret_id=auth.secret_id, timestamp=timestamp)


@dataclass(frozen=True)
class _Authorization:
    """The parts of a well-formed ``Authorization`` header."""

    secret_id: str
    date: str  # the credential scope's
    service: str
    terminator: str
    signed_names: list[str]  # lower-cased, in signing order
    signature: str  # lower-case hex


def _parse_authorization(authorization: str | None) -> _Authorization:
    """Split ``TC3-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…``; InvalidAuthorization if
    missing or malformed."""
    if not authorization:
        raise SignatureError(
            "AuthFailure.InvalidAuthorization", "Authorization header is missing. Please check it."
        )
    match = _AUTH_RE.match(authorization.strip())
    if not match:
        raise SignatureError(
            "AuthFailure.InvalidAuthorization",
            "Authorization header format error; expected "
            "`TC3-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.",
        )
    credential = match.group("credential").split("/")
    if len(credential) != 4:
        raise SignatureError(
            "AuthFailure.InvalidAuthorization",
            "Credential must be `SecretId/Date/Service/tc3_request`.",
        )
    secret_id, cred_date, cred_service, terminator = credential
    return _Authorization(
        secret_id=secret_id,
        date=cred_date,
        service=cred_service,
        terminator=terminator,
        signed_names=[n.strip().lower() for n in match.group("signed").split(";") if n.strip()],
        signature=match.group("signature").lower(),
    )


def _checked_timestamp(raw_ts: str | None, now: float) -> int:
    """``X-TC-Timestamp`` as an int within `MAX_SKEW_SECONDS` of ``now``."""
    try:
        timestamp = int(raw_ts or "")
    except ValueError:
        raise SignatureError(
            "AuthFailure.InvalidAuthorization", "X-TC-Timestamp header is missing or not an integer."
        ) from None
    if abs(now - timestamp) > MAX_SKEW_SECONDS:
        raise SignatureError(
            "AuthFailure.SignatureExpire",
            f"Signature expired. Timestamp({timestamp}) is not within {MAX_SKEW_SECONDS} seconds of "
            f"the server time({int(now)}).",
        )
    return timestamp


def _check_scope(auth: _Authorization, timestamp: int, service: str) -> None:
    """The credential scope is ``<the timestamp's UTC date>/<service>/tc3_request``."""
    ts_date = datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d")
    if auth.date != ts_date or auth.service != service or auth.terminator != "tc3_request":
        raise SignatureError(
            "AuthFailure.InvalidAuthorization",
            f"Credential scope must be `{ts_date}/{service}/tc3_request` for this request.",
        )


def _signed_headers(
    signed_names: list[str], header_lookup: Callable[[str], str | None]
) -> list[tuple[str, str]]:
    """(name, received value) of each signed header; InvalidAuthorization if one is absent."""
    signed_headers: list[tuple[str, str]] = []
    for name in signed_names:
        value = header_lookup(name)
        if value is None:
            raise SignatureError(
                "AuthFailure.InvalidAuthorization", f"Signed header `{name}` is not present in the request."
            )
        signed_headers.append((name, value))
    return signed_headers


def _payload_hash(header_lookup: Callable[[str], str | None], body: bytes) -> str:
    """SHA-256 of the body, or of ``UNSIGNED-PAYLOAD`` when the client declared it so."""
    if (header_lookup("X-TC-Content-SHA256") or "").strip() == UNSIGNED_PAYLOAD:
        return sha256_hex(UNSIGNED_PAYLOAD.encode())
    return sha256_hex(body)
