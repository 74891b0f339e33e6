"""COS request signatures (``q-sign-algorithm=sha1``): server-side verification and presigned URLs.

The algorithm is the one cos-python-sdk-v5 implements in ``CosS3Auth`` (reference cos-api.md §2):

1. ``enc(s) = quote(s, safe="-_.~")``; signed headers and URL params become ``enc(name).lower() =
   enc(value)`` pairs, sorted and joined by ``&``; their names joined by ``;`` are the header/param
   lists;
2. ``HttpString = method.lower() + "\\n" + path + "\\n" + params + "\\n" + headers + "\\n"`` where
   ``path`` is ``"/" + key`` as raw text (not percent-encoded);
3. ``StringToSign = "sha1\\n" + KeyTime + "\\n" + sha1_hex(HttpString) + "\\n"``;
4. ``SignKey = hmac_sha1_hex(SecretKey, KeyTime)``; ``Signature = hmac_sha1_hex(SignKey, StringToSign)``.

Verification rebuilds the string from the *received* request (headers named in ``q-header-list``,
query params named in ``q-url-param-list``), from the ``Authorization`` header or, for presigned
URLs, from the same ``q-*`` fields in the query string. It checks the ``q-sign-time`` window against
the clock and the ``x-cos-security-token`` (header or query param) when a token is configured.
Failures raise ``CosAuthError`` with the COS code and HTTP status the real service uses.

Presigned URLs never carry the STS token (issue 12 item 4: a URL ends up in logs, XCom and browser
history, the token would outlive the link's purpose). The emulator's own ``SignedUrl`` plays the part
of MPS's, which the service signs with its own credentials: with a token configured,
:func:`presign_url` signs with a key bound to the token (:func:`token_bound_key`) instead of putting
the token in the URL, and :func:`verify_request` accepts a query-signed request without a token when
its signature was made with that key. It cannot be forged without the SecretKey, and it stops working
when the token changes, like a URL signed with temporary credentials that expired.

This is server code: hand-written signing is fine here (clients use the official SDK).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, urlsplit

from airflow_mps.emulator.http import EmulatorRequest

__all__ = [
    "SIGNED_HEADER_NAMES",
    "CosAuthConfig",
    "CosAuthError",
    "http_string",
    "presign_url",
    "sign",
    "token_bound_key",
    "verify_request",
]

#: Headers the SDK includes in a signature (plus every ``x-cos-*`` / ``x-ci-*``).
SIGNED_HEADER_NAMES = frozenset(
    {
        "cache-control",
        "content-disposition",
        "content-encoding",
        "content-type",
        "content-md5",
        "content-length",
        "expect",
        "expires",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-unmodified-since",
        "origin",
        "range",
        "transfer-encoding",
        "pic-operations",
    }
)

_AUTH_FIELDS = (
    "q-sign-algorithm",
    "q-ak",
    "q-sign-time",
    "q-key-time",
    "q-header-list",
    "q-url-param-list",
    "q-signature",
)


class CosAuthError(Exception):
    """A refused request: ``code`` and ``status`` as COS answers them. Never carries a secret."""

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass
class CosAuthConfig:
    """Who may call the COS emulator.

    ``credentials`` maps SecretId -> SecretKey, or is a callable doing that lookup (None = unknown).
    ``token``: when set, every request must carry it in ``x-cos-security-token`` (header or, for
    presigned URLs, query param). ``clock`` returns epoch seconds (injectable for tests).
    ``allow_anonymous``: accept requests without a signature (off by default, as on a private bucket).
    """

    credentials: Mapping[str, str] | Callable[[str], str | None] = field(default_factory=dict)
    token: str | None = None
    clock: Callable[[], float] = time.time
    allow_anonymous: bool = False

    @classmethod
    def single(cls, secret_id: str, secret_key: str, token: str | None = None) -> CosAuthConfig:
        return cls(credentials={secret_id: secret_key}, token=token)

    def secret_for(self, secret_id: str) -> str | None:
        if callable(self.credentials):
            return self.credentials(secret_id)
        return self.credentials.get(secret_id)

    def __repr__(self) -> str:  # never show secrets
        return f"CosAuthConfig(token={'***' if self.token else None}, allow_anonymous={self.allow_anonymous})"


def _enc(value: str) -> str:
    return quote(value.encode("utf-8"), safe="-_.~")


def _pairs(items: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """(name list, k=v string) of encoded, lower-cased, sorted pairs, as the SDK builds them."""
    encoded = sorted((_enc(k).lower(), _enc(v)) for k, v in items)
    return ";".join(k for k, _ in encoded), "&".join(f"{k}={v}" for k, v in encoded)


def http_string(method: str, path: str, params: Mapping[str, str], headers: Mapping[str, str]) -> str:
    """The SDK's ``HttpString`` for already-selected params and headers (raw, unencoded values)."""
    _, param_str = _pairs(params.items())
    _, header_str = _pairs(headers.items())
    return f"{method.lower()}\n{path}\n{param_str}\n{header_str}\n"


def _signature(secret_key: str, key_time: str, http_str: str) -> str:
    string_to_sign = f"sha1\n{key_time}\n{hashlib.sha1(http_str.encode('utf-8')).hexdigest()}\n"
    sign_key = hmac.new(secret_key.encode("utf-8"), key_time.encode("utf-8"), hashlib.sha1).hexdigest()
    return hmac.new(sign_key.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha1).hexdigest()


def token_bound_key(secret_key: str, token: str) -> str:
    """The signing key of a presigned URL made under an STS token, which the URL does not carry."""
    return hmac.new(
        secret_key.encode("utf-8"), b"airflow-mps-emulator/signed-url\n" + token.encode("utf-8"), hashlib.sha1
    ).hexdigest()


def sign(
    method: str,
    path: str,
    *,
    secret_id: str,
    secret_key: str,
    key_time: str,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> str:
    """The full ``q-sign-algorithm=sha1&...`` authorization string (used by ``presign_url`` and tests)."""
    params = dict(params or {})
    headers = dict(headers or {})
    header_list, _ = _pairs(headers.items())
    param_list, _ = _pairs(params.items())
    signature = _signature(secret_key, key_time, http_string(method, path, params, headers))
    return (
        f"q-sign-algorithm=sha1&q-ak={secret_id}&q-sign-time={key_time}&q-key-time={key_time}"
        f"&q-header-list={header_list}&q-url-param-list={param_list}&q-signature={signature}"
    )


def presign_url(
    base_url: str,
    bucket: str,
    key: str,
    secret_id: str,
    secret_key: str,
    expires: int = 3600,
    *,
    method: str = "GET",
    token: str | None = None,
    now: float | None = None,
) -> str:
    """A path-style presigned URL ``<base_url>/<bucket>/<key>?q-sign-algorithm=sha1&...``.

    The emulator's own COS handler accepts it with a plain ``requests.get(url)``: the signed path is
    ``"/" + key`` (the bucket segment is not part of it, as with the SDK's IP mode), the signed
    header is ``host`` = the base URL's host name without port (the verifier retries without the
    port, exactly as for the SDK's own IP-mode presigned URLs). A token, if given, is never put in
    the URL: the signature is made with :func:`token_bound_key` instead (see the module docstring).
    """
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    start = int(time.time() if now is None else now) - 60
    key_time = f"{start};{start + 60 + int(expires)}"
    key = key.lstrip("/")
    auth = sign(
        method,
        "/" + key,
        secret_id=secret_id,
        secret_key=token_bound_key(secret_key, token) if token else secret_key,
        key_time=key_time,
        headers={"host": host},
    )
    query = "&".join(
        f"{name}={quote(value, safe='')}" for name, value in (f.split("=", 1) for f in auth.split("&"))
    )
    base = base_url.rstrip("/")
    return f"{base}/{quote(bucket, safe='')}/{quote(key.encode('utf-8'), safe='/-_.~')}?{query}"


def _parse_auth(request: EmulatorRequest, query_pairs: list[tuple[str, str]]) -> dict[str, str] | None:
    """The q-* fields from the Authorization header, else from the query; None if neither has them."""
    header = request.headers.get("Authorization")
    if header:
        fields: dict[str, str] = {}
        for part in header.split("&"):
            name, _, value = part.partition("=")
            fields[name.strip().lower()] = value.strip()
        return fields
    from_query = {k.lower(): v for k, v in query_pairs if k.lower() in _AUTH_FIELDS}
    return from_query or None


def _parse_window(value: str, field_name: str) -> tuple[int, int]:
    try:
        start_s, end_s = value.split(";")
        return int(start_s), int(end_s)
    except ValueError:
        raise CosAuthError("AccessDenied", f"Invalid {field_name} in the request signature.") from None


def verify_request(request: EmulatorRequest, config: CosAuthConfig, *, sign_path: str) -> str | None:
    """Check the request's signature; returns the SecretId (None for an allowed anonymous request).

    ``sign_path`` is ``"/" + key`` (decoded, without a path-style bucket segment) or ``"/"`` for
    bucket operations. Raises ``CosAuthError``: ``AccessDenied`` (anonymous, malformed, expired or
    bad token), ``InvalidAccessKeyId`` (unknown SecretId), ``SignatureDoesNotMatch``.
    """
    query_pairs = parse_qsl(request.query, keep_blank_values=True)
    fields = _parse_auth(request, query_pairs)
    if not fields:
        if config.allow_anonymous:
            return None
        raise CosAuthError(
            "AccessDenied", "Access Denied. Anonymous access is not allowed; sign the request."
        )
    _check_fields(fields)
    _check_window(fields, config.clock)
    secret_id = fields["q-ak"]
    secret_key = config.secret_for(secret_id)
    if secret_key is None:
        raise CosAuthError(
            "InvalidAccessKeyId", "The Access Key Id you provided does not exist in our records."
        )
    secret_key = _signing_key(request, config, query_pairs, secret_key)
    params = _signed_values(query_pairs, fields["q-url-param-list"], "Signed URL parameter")
    headers = _signed_values(request.headers, fields["q-header-list"], "Signed header")
    key_time = fields["q-key-time"]
    expected = fields["q-signature"].lower()
    for candidate in _host_variants(headers):
        # The signed names are already encoded+lower-cased; _pairs re-encodes idempotently only for
        # plain names, so pass values keyed by the decoded-safe names directly.
        got = _signature(
            secret_key, key_time, _http_string_encoded(request.method, sign_path, params, candidate)
        )
        if hmac.compare_digest(got, expected):
            return secret_id
    raise CosAuthError(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    )


def _check_fields(fields: Mapping[str, str]) -> None:
    """The q-* fields name the sha1 algorithm and are all present."""
    if fields.get("q-sign-algorithm", "").lower() != "sha1":
        raise CosAuthError("AccessDenied", "Unsupported or missing q-sign-algorithm (expected sha1).")
    missing = [name for name in _AUTH_FIELDS if name not in fields]
    if missing:
        raise CosAuthError("AccessDenied", f"The request signature is missing {', '.join(missing)}.")


def _check_window(fields: Mapping[str, str], clock: Callable[[], float]) -> None:
    """Both time windows parse, and the clock reads a time inside ``q-sign-time``."""
    start, end = _parse_window(fields["q-sign-time"], "q-sign-time")
    _parse_window(fields["q-key-time"], "q-key-time")
    now = clock()
    if now < start:
        raise CosAuthError(
            "AccessDenied", "Request has not become valid yet (q-sign-time starts in the future)."
        )
    if now > end:
        raise CosAuthError("AccessDenied", "Request has expired (q-sign-time window has passed).")


def _signing_key(
    request: EmulatorRequest, config: CosAuthConfig, query_pairs: list[tuple[str, str]], secret_key: str
) -> str:
    """The key the signature must have been made with, after the token check (when one is configured):
    ``secret_key``, or for a presigned URL without the token, the token-bound key (module docstring)."""
    if config.token is None:
        return secret_key
    token = request.headers.get("x-cos-security-token")
    if token is None:
        token = next((v for k, v in query_pairs if k.lower() == "x-cos-security-token"), None)
    if token is None and not request.headers.get("Authorization"):
        # A presigned URL without the token: valid only when signed with the token-bound key.
        return token_bound_key(secret_key, config.token)
    if token is None or not hmac.compare_digest(token.encode("utf-8"), config.token.encode("utf-8")):
        raise CosAuthError("AccessDenied", "The security token (x-cos-security-token) is missing or invalid.")
    return secret_key


def _signed_values(received: Iterable[tuple[str, str]], name_list: str, what: str) -> dict[str, str]:
    """The received values of the names in ``name_list`` (``a;b``, encoded and lower-cased), keyed by
    those names; the first received value of a name counts. A signed name that was not received is
    ``SignatureDoesNotMatch`` ("``<what> 'name' is not in the request.``")."""
    by_name: dict[str, str] = {}
    for k, v in received:
        by_name.setdefault(_enc(k).lower(), v)
    values: dict[str, str] = {}
    for name in (n for n in name_list.split(";") if n):
        if name not in by_name:
            raise CosAuthError("SignatureDoesNotMatch", f"{what} {name!r} is not in the request.")
        values[name] = by_name[name]
    return values


def _host_variants(headers: dict[str, str]) -> list[dict[str, str]]:
    """The signed headers as received, then, when ``host`` has a port, without it (the SDK's IP-mode
    presigned URLs and :func:`presign_url` sign the host name alone)."""
    candidates = [headers]
    host = headers.get("host")
    if host is not None and ":" in host and not host.endswith("]"):
        candidates.append({**headers, "host": host.rsplit(":", 1)[0]})
    return candidates


def _http_string_encoded(
    method: str, path: str, params: Mapping[str, str], headers: Mapping[str, str]
) -> str:
    """Like ``http_string`` but the names are already in their encoded, lower-cased form."""
    param_str = "&".join(f"{k}={_enc(v)}" for k, v in sorted(params.items()))
    header_str = "&".join(f"{k}={_enc(v)}" for k, v in sorted(headers.items()))
    return f"{method.lower()}\n{path}\n{param_str}\n{header_str}\n"
