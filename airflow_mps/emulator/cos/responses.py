"""COS emulator wire layer: one ``EmulatorRequest`` in, one ``EmulatorResponse`` out.

Entry point (called by the server for every request that is neither admin nor MPS)::

    handle(request, backend, auth, *, bucket=None, region="ap-guangzhou") -> EmulatorResponse

- ``backend``: a ``CosBackend``; ``auth``: a ``CosAuthConfig`` (see ``cos/auth.py``).
- Bucket and key are found by ``resolve_target(request)``: a ``<bucket>.cos[-internal].<region>.
  (myqcloud.com|tencentcos.cn)`` Host header (cos-python-sdk-v5 in ``IP=``/``Port=`` mode) selects
  virtual-host style, key = the whole path; any other Host means path style, ``/<bucket>/<key>``
  (the emulator's own presigned URLs). Passing ``bucket=`` forces virtual-host style with that bucket.
- The body must already be de-chunked (the server does that); the received headers, including
  ``Transfer-Encoding``, must be passed unchanged because they may be signed.

Operations: PUT/GET (Range, conditional)/HEAD/DELETE object; GET bucket (list objects with
prefix/delimiter/marker/max-keys/encoding-type), HEAD/PUT/DELETE bucket, POST ``?delete``
(multi-delete); PUT with ``x-cos-copy-source`` (copy). Anything else (multipart upload, ACL, CORS,
versions, ...) gets a real-looking ``NotImplemented`` error that names it. Responses use exactly
the header casing the SDK indexes (``ETag``, ``Content-Length``, ``x-cos-request-id``, ...), and
errors are COS XML bodies with Code, Message, Resource, RequestId and TraceId. This module decides
what to answer; the XML it answers (and the multi-delete XML it reads) is written in `cos/xml.py`.

Headers as COS sends them (doc 436/7729, common response headers): ``x-cos-storage-class`` only for
objects that are not STANDARD (COS omits it for STANDARD, so code that reads it must not rely on it),
and ``x-cos-trace-id`` on every error response — the same id as the body's ``TraceId``, and the only
place a HEAD error carries it (``CosServiceError.get_trace_id()`` reads it there).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import parse_qsl, unquote, urlsplit

from airflow_mps.emulator.cos.auth import CosAuthConfig, CosAuthError, verify_request
from airflow_mps.emulator.cos.errors import CosError, CosInvalidArgument, CosNoSuchBucket
from airflow_mps.emulator.cos.listing import MAX_LIST_KEYS
from airflow_mps.emulator.cos.models import CosBackend, CosObjectMeta
from airflow_mps.emulator.cos.xml import (
    common_headers,
    copy_object_result,
    delete_result,
    error_response,
    list_bucket_result,
    new_request_id,
    parse_delete_request,
    xml_response,
)
from airflow_mps.emulator.http import EmulatorRequest, EmulatorResponse

__all__ = ["CosTarget", "handle", "resolve_target"]

_VHOST_RE = re.compile(
    r"^(?P<bucket>[^.]+)\.cos(?:-internal)?\.(?P<region>[a-z0-9-]+)\.(?:myqcloud\.com|tencentcos\.cn)(?::\d+)?$",
    re.IGNORECASE,
)
_LIST_PARAMS = {"prefix", "delimiter", "marker", "max-keys", "encoding-type"}
_AUTH_PARAMS = {
    "q-sign-algorithm",
    "q-ak",
    "q-sign-time",
    "q-key-time",
    "q-header-list",
    "q-url-param-list",
    "q-signature",
    "x-cos-security-token",
}
_RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
_STORED_HEADERS = ("Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Expires")


class CosTarget:
    """Where a request points: bucket (None for the service root), key ('' for bucket ops)."""

    __slots__ = ("bucket", "host", "key", "path_style", "region")

    def __init__(
        self, bucket: str | None, key: str, *, path_style: bool, region: str | None, host: str
    ) -> None:
        self.bucket = bucket
        self.key = key
        self.path_style = path_style
        self.region = region
        self.host = host

    @property
    def sign_path(self) -> str:
        return "/" + self.key

    @property
    def resource(self) -> str:
        """The ``Resource`` of an error body (non-empty, as the SDK requires)."""
        if self.path_style:
            return f"{self.host}/{self.bucket or ''}/{self.key}".rstrip("/") or self.host or "/"
        return f"{self.host}/{self.key}"


def resolve_target(request: EmulatorRequest, bucket: str | None = None) -> CosTarget:
    """Bucket, key and addressing style of ``request`` (see the module docstring)."""
    host = request.headers.get("Host") or ""
    raw_path = request.path
    if raw_path.startswith(("http://", "https://")):  # absolute-form target (HTTP proxy mode)
        parts = urlsplit(raw_path)
        host = host or parts.netloc
        raw_path = parts.path or "/"
    path = unquote(raw_path, encoding="utf-8", errors="strict") if raw_path else "/"
    if not path.startswith("/"):
        path = "/" + path
    if bucket is not None:
        return CosTarget(bucket, path[1:], path_style=False, region=None, host=host)
    match = _VHOST_RE.match(host)
    if match:
        return CosTarget(match["bucket"], path[1:], path_style=False, region=match["region"], host=host)
    segment, _, key = path[1:].partition("/")
    return CosTarget(segment or None, key, path_style=True, region=None, host=host)


# --------------------------------------------------------------------------------------------
# response helpers


def _error(
    request: EmulatorRequest,
    target: CosTarget,
    request_id: str,
    status: int,
    code: str,
    message: str,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> EmulatorResponse:
    return error_response(
        status,
        code,
        message,
        target.resource,
        method=request.method,
        request_id=request_id,
        extra_headers=extra_headers,
    )


def _empty(request_id: str, status: int = 200, extra: Iterable[tuple[str, str]] = ()) -> EmulatorResponse:
    return EmulatorResponse(
        status=status, headers=[("Content-Length", "0"), *common_headers(request_id), *extra], body=b""
    )


def _object_headers(meta: CosObjectMeta) -> list[tuple[str, str]]:
    headers = [
        ("Content-Type", meta.content_type),
        ("ETag", f'"{meta.etag}"'),
        ("Last-Modified", formatdate(meta.last_modified, usegmt=True)),
        ("Accept-Ranges", "bytes"),
        ("x-cos-hash-crc64ecma", str(meta.crc64)),
    ]
    if meta.storage_class != "STANDARD":  # COS sends it only for the other classes (doc 436/7729)
        headers.append(("x-cos-storage-class", meta.storage_class))
    for name in _STORED_HEADERS:
        value = meta.headers.get(name)
        if value is not None:
            headers.append((name, value))
    headers.extend((name, value) for name, value in sorted(meta.metadata.items()))
    return headers


# --------------------------------------------------------------------------------------------
# entry point


def handle(
    request: EmulatorRequest,
    backend: CosBackend,
    auth: CosAuthConfig,
    *,
    bucket: str | None = None,
    region: str = "ap-guangzhou",
) -> EmulatorResponse:
    """Serve one COS API request (see the module docstring). Never raises for client errors."""
    request_id = new_request_id()
    try:
        target = resolve_target(request, bucket)
    except UnicodeDecodeError:
        target = CosTarget(None, "", path_style=True, region=None, host=request.headers.get("Host") or "")
        return _error(request, target, request_id, 400, "InvalidURI", "The request path is not valid UTF-8.")
    try:
        verify_request(request, auth, sign_path=target.sign_path)
    except CosAuthError as exc:
        return _error(request, target, request_id, exc.status, exc.code, exc.message)
    try:
        params = parse_qsl(request.query, keep_blank_values=True)
        query = {k: v for k, v in params}
        if target.bucket is None:
            return _error(
                request,
                target,
                request_id,
                405,
                "MethodNotAllowed",
                "Listing buckets (GET Service) is not supported by the emulator; address a bucket.",
            )
        if target.key:
            return _object_op(request, backend, target, query, request_id)
        return _bucket_op(request, backend, target, query, request_id, target.region or region)
    except CosError as exc:
        return _error(request, target, request_id, exc.status, exc.code, exc.message)


def _unsupported(query: dict[str, str], allowed: set[str]) -> str | None:
    extra = sorted(
        k for k in query if k not in allowed and k not in _AUTH_PARAMS and not k.startswith("response-")
    )
    return extra[0] if extra else None


def _method_not_allowed(request: EmulatorRequest, target: CosTarget, request_id: str) -> EmulatorResponse:
    """405 for a method the addressed resource (object or bucket) does not support."""
    return _error(
        request,
        target,
        request_id,
        405,
        "MethodNotAllowed",
        f"The specified method {request.method.upper()} is not allowed against this resource.",
    )


def _not_implemented(
    request: EmulatorRequest, target: CosTarget, request_id: str, what: str
) -> EmulatorResponse:
    return _error(
        request,
        target,
        request_id,
        501,
        "NotImplemented",
        f"{request.method.upper()} with ?{what} is not supported by the emulator"
        + (
            " (multipart upload: use put_object for files, e.g. upload_file(PartSize=...) large enough)"
            if what in {"uploads", "uploadId", "partNumber"}
            else ""
        )
        + ".",
    )


# --------------------------------------------------------------------------------------------
# object operations


def _object_op(
    request: EmulatorRequest, backend: CosBackend, target: CosTarget, query: dict[str, str], request_id: str
) -> EmulatorResponse:
    method = request.method.upper()
    bucket, key = target.bucket, target.key
    assert bucket is not None
    extra = _unsupported(query, set())
    if extra is not None:
        return _not_implemented(request, target, request_id, extra)
    if method == "PUT":
        return _put_object(request, backend, target, request_id)
    if method in ("GET", "HEAD"):
        meta = backend.head_object(bucket, key)
        cond = _conditional(request, meta)
        if cond is not None:
            if cond == 412:
                return _error(
                    request,
                    target,
                    request_id,
                    412,
                    "PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold.",
                )
            return _empty(request_id, 304, [("ETag", f'"{meta.etag}"')])
        if method == "HEAD":
            return EmulatorResponse(
                status=200,
                headers=[
                    ("Content-Length", str(meta.size)),
                    *_apply_overrides(_object_headers(meta), query),
                    *common_headers(request_id),
                ],
                body=b"",
            )
        obj = backend.get_object(bucket, key)
        data = obj.data
        headers = _apply_overrides(_object_headers(obj.meta), query)
        range_header = request.headers.get("Range")
        if range_header:
            parsed = _parse_range(range_header, len(data))
            # An unparseable Range header ("invalid") is ignored, as HTTP says: the whole object follows.
            if parsed is None:
                return _error(
                    request,
                    target,
                    request_id,
                    416,
                    "InvalidRange",
                    "The requested range is not satisfiable.",
                    [("Content-Range", f"bytes */{len(data)}")],
                )
            elif isinstance(parsed, tuple):
                first, last = parsed
                body = data[first : last + 1]
                return EmulatorResponse(
                    status=206,
                    headers=[
                        ("Content-Length", str(len(body))),
                        ("Content-Range", f"bytes {first}-{last}/{len(data)}"),
                        *headers,
                        *common_headers(request_id),
                    ],
                    body=body,
                )
        return EmulatorResponse(
            status=200,
            headers=[("Content-Length", str(len(data))), *headers, *common_headers(request_id)],
            body=data,
        )
    if method == "DELETE":
        backend.delete_object(bucket, key)
        return _empty(request_id, 204)
    return _method_not_allowed(request, target, request_id)


def _apply_overrides(headers: list[tuple[str, str]], query: dict[str, str]) -> list[tuple[str, str]]:
    """Apply ``response-content-type`` & co. (GET/HEAD query params) to the object's headers."""
    overrides = {h: query[p] for p, h in _RESPONSE_OVERRIDES.items() if p in query}
    result = [(name, overrides.pop(name, value)) for name, value in headers]
    return result + list(overrides.items())


def _conditional(request: EmulatorRequest, meta: CosObjectMeta) -> int | None:
    """304/412 for If-None-Match / If-Match / If-(Un)Modified-Since, None to proceed."""
    etag = f'"{meta.etag}"'
    if_match = request.headers.get("If-Match")
    if if_match is not None and if_match.strip() not in ("*", etag, meta.etag):
        return 412
    if_none = request.headers.get("If-None-Match")
    if if_none is not None:
        tags = {t.strip() for t in if_none.split(",")}
        if "*" in tags or etag in tags or meta.etag in tags:
            return 304
    modified = int(meta.last_modified)
    for name, code in (("If-Modified-Since", 304), ("If-Unmodified-Since", 412)):
        value = request.headers.get(name)
        if value is None or (name == "If-Modified-Since" and if_none is not None):
            continue
        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            continue
        if (code == 304 and modified <= when) or (code == 412 and modified > when):
            return code
    return None


def _parse_range(value: str, size: int) -> tuple[int, int] | str | None:
    """(first, last) of a single ``bytes=`` range; None if unsatisfiable; "invalid" if unparseable."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", value)
    if not match or (match[1] == "" and match[2] == ""):
        return "invalid"
    if match[1] == "":
        length = int(match[2])
        if length == 0 or size == 0:
            return None
        return max(0, size - length), size - 1
    first = int(match[1])
    last = int(match[2]) if match[2] else size - 1
    if last < first:
        return "invalid"
    if first >= size:
        return None
    return first, min(last, size - 1)


def _put_object(
    request: EmulatorRequest, backend: CosBackend, target: CosTarget, request_id: str
) -> EmulatorResponse:
    assert target.bucket is not None
    body = request.body
    declared = request.headers.get("Content-Length")
    if declared is not None and request.headers.get("Transfer-Encoding") is None:
        try:
            if int(declared) != len(body):
                raise CosInvalidArgument(
                    f"Content-Length {declared} does not match the {len(body)} bytes received."
                )
        except ValueError:
            raise CosInvalidArgument("Content-Length is not a number.") from None
    md5_header = request.headers.get("Content-MD5")
    if (
        md5_header is not None
        and base64.b64encode(hashlib.md5(body).digest()).decode("ascii") != md5_header.strip()
    ):
        raise CosError(
            "The Content-MD5 you specified did not match what we received.", code="BadDigest", status=400
        )
    copy_source = request.headers.get("x-cos-copy-source")
    metadata = {k.lower(): v for k, v in request.headers if k.lower().startswith("x-cos-meta-")}
    stored = {}
    for name in _STORED_HEADERS:
        value = request.headers.get(name)
        if value is not None:
            stored[name] = value
    content_type = request.headers.get("Content-Type")
    if copy_source is not None:
        return _copy_object(request, backend, target, request_id, copy_source, metadata, stored, content_type)
    etag = backend.put_object(
        target.bucket, target.key, body, content_type, metadata=metadata, headers=stored
    )
    meta = backend.head_object(target.bucket, target.key)
    return _empty(
        request_id,
        200,
        [("ETag", f'"{etag}"'), ("x-cos-hash-crc64ecma", str(meta.crc64))],
    )


def _copy_object(
    request: EmulatorRequest,
    backend: CosBackend,
    target: CosTarget,
    request_id: str,
    copy_source: str,
    metadata: dict[str, str],
    stored: dict[str, str],
    content_type: str | None,
) -> EmulatorResponse:
    """PUT with ``x-cos-copy-source: <bucket>.cos.<region>.myqcloud.com/<key>`` (within this emulator)."""
    assert target.bucket is not None
    source = unquote(copy_source.split("?", 1)[0])
    host, _, src_key = source.partition("/")
    match = _VHOST_RE.match(host)
    if not match or not src_key:
        raise CosInvalidArgument("x-cos-copy-source must look like <bucket>.cos.<region>.myqcloud.com/<key>.")
    src = backend.get_object(match["bucket"], src_key)
    if (request.headers.get("x-cos-metadata-directive") or "Copy").lower() == "copy":
        metadata, stored, content_type = (
            dict(src.meta.metadata),
            dict(src.meta.headers),
            src.meta.content_type,
        )
    etag = backend.put_object(
        target.bucket, target.key, src.data, content_type, metadata=metadata, headers=stored
    )
    meta = backend.head_object(target.bucket, target.key)
    return xml_response(request_id, copy_object_result(etag, meta))


# --------------------------------------------------------------------------------------------
# bucket operations


def _bucket_op(
    request: EmulatorRequest,
    backend: CosBackend,
    target: CosTarget,
    query: dict[str, str],
    request_id: str,
    region: str,
) -> EmulatorResponse:
    method = request.method.upper()
    bucket = target.bucket
    assert bucket is not None
    if method == "GET":
        extra = _unsupported(query, _LIST_PARAMS)
        if extra is not None:
            return _not_implemented(request, target, request_id, extra)
        return _list_objects(backend, bucket, query, request_id)
    if method == "HEAD":
        if not backend.bucket_exists(bucket):
            raise CosNoSuchBucket("The specified bucket does not exist.")
        return _empty(request_id, 200, [("x-cos-bucket-region", region)])
    if method == "PUT":
        extra = _unsupported(query, set())
        if extra is not None:
            return _not_implemented(request, target, request_id, extra)
        backend.create_bucket(bucket, exist_ok=False)
        return _empty(request_id, 200)
    if method == "DELETE":
        extra = _unsupported(query, set())
        if extra is not None:
            return _not_implemented(request, target, request_id, extra)
        backend.delete_bucket(bucket)
        return _empty(request_id, 204)
    if method == "POST" and "delete" in query:
        return _multi_delete(request, backend, bucket, request_id)
    if method == "POST":
        extra = _unsupported(query, set())
        if extra is not None:
            return _not_implemented(request, target, request_id, extra)
    return _method_not_allowed(request, target, request_id)


def _list_objects(
    backend: CosBackend, bucket: str, query: dict[str, str], request_id: str
) -> EmulatorResponse:
    encoding = query.get("encoding-type")
    if encoding not in (None, "", "url"):
        raise CosInvalidArgument(f"Invalid encoding-type {encoding!r}: only 'url' is supported.")
    raw_max = query.get("max-keys", "")
    if raw_max == "":
        max_keys = MAX_LIST_KEYS
    else:
        try:
            max_keys = int(raw_max)
        except ValueError:
            raise CosInvalidArgument(f"max-keys must be an integer, got {raw_max!r}.") from None
        if max_keys < 0:
            raise CosInvalidArgument("max-keys must not be negative.")
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter", "")
    marker = query.get("marker", "")
    page = backend.list_objects(bucket, prefix=prefix, delimiter=delimiter, marker=marker, max_keys=max_keys)
    return xml_response(request_id, list_bucket_result(page, encoding=encoding))


def _multi_delete(
    request: EmulatorRequest, backend: CosBackend, bucket: str, request_id: str
) -> EmulatorResponse:
    if not backend.bucket_exists(bucket):
        raise CosNoSuchBucket("The specified bucket does not exist.")
    quiet, keys = parse_delete_request(request.body)
    deleted: list[str] = []
    errors: list[tuple[str, str, str]] = []
    for key in keys:
        try:
            backend.delete_object(bucket, key)
            deleted.append(key)
        except CosError as exc:
            errors.append((key, exc.code, exc.message))
    return xml_response(request_id, delete_result(deleted, errors, quiet=quiet))
