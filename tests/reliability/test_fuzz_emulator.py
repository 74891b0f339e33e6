"""Emulator hardening: seeded fuzzing of the MPS and COS endpoints over real sockets.

Every case sends a raw HTTP request (random bodies, headers, huge payloads, path-traversal keys,
broken signatures) and checks that the emulator answers with the error code the real service would use
(MPS: a JSON envelope with an ``AuthFailure.*``/``InvalidParameter*``/… code; COS: an XML error), that
no request hits the catch-all "emulator internal error" path (an unhandled exception), that the server
is still healthy after the whole run, and that nothing was written outside its data directory.

The seeds and case counts are fixed: a failure reproduces with the same seed.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import random
import string
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BUCKET = "fuzz-1250000000"
SEED = 20261101
MPS_CASES = 160
SIGNED_CASES = 160
COS_CASES = 160

# Codes a signature-less / wrongly signed MPS request may legitimately get.
AUTH_CODES_PREFIX = ("AuthFailure.",)
# Codes a correctly signed but malformed MPS request may get (client errors, never InternalError).
CLIENT_CODE_PREFIXES = (
    "InvalidParameter",
    "MissingParameter",
    "UnknownParameter",
    "InvalidAction",
    "NoSuchVersion",
    "ResourceNotFound",
    "UnsupportedOperation",
    "RequestLimitExceeded",
    "RequestSizeLimitExceeded",
    "FailedOperation",
)
# XML error codes the COS side may answer a broken request with.
COS_CLIENT_CODES = {
    "AccessDenied",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "RequestTimeTooSkewed",
    "NoSuchKey",
    "NoSuchBucket",
    "InvalidBucketName",
    "InvalidArgument",
    "KeyTooLong",
    "MethodNotAllowed",
    "InvalidRequest",
    "InvalidURI",
    "MissingContentLength",
    "EntityTooLarge",
    "MalformedXML",
    "InvalidDigest",
    "BadDigest",
    "InvalidRange",
    "NotImplemented",
    "ExpiredToken",
    "InvalidToken",
    "MissingSecurityHeader",
    "PreconditionFailed",
}


class _CrashCounter(logging.Handler):
    """Counts the server's "emulator request failed" log records (its catch-all for unhandled errors)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage() + (f" {record.exc_info[1]!r}" if record.exc_info else ""))


def _no_new_crashes(env: dict[str, Any], before: int) -> None:
    new = env["crashes"].records[before:]
    assert not new, f"unhandled exceptions in the emulator: {new}"


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A private emulator whose data dir sits inside a sandbox dir watched for stray writes."""
    from airflow_mps.emulator.testing import EmulatorServer

    sandbox = tmp_path_factory.mktemp("fuzz-sandbox")
    data_dir = sandbox / "data"
    (sandbox / "sentinel.txt").write_text("outside the data dir")
    before_outside = _files(sandbox)
    handler = _CrashCounter()
    logger = logging.getLogger("airflow_mps.emulator")
    logger.addHandler(handler)
    try:
        with EmulatorServer(data_dir=data_dir, seed=SEED) as server:
            server.cos_backend.create_bucket(BUCKET)
            yield {"server": server, "sandbox": sandbox, "data_dir": data_dir, "crashes": handler}
            assert server.admin("health") is not None
    finally:
        logger.removeHandler(handler)
    stray = {f for f in _files(sandbox) - before_outside if not f.startswith("data")}
    assert not stray, f"the emulator wrote outside its data dir: {sorted(stray)}"


def _request(
    endpoint: str, method: str, path: str, headers: dict[str, str] | list[tuple[str, str]], body: bytes = b""
) -> tuple[int, dict[str, str], bytes] | None:
    """One raw request on a fresh connection; ``None`` if the server dropped the connection."""
    host, _, port = endpoint.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        items = headers.items() if isinstance(headers, dict) else headers
        names = set()
        for name, value in items:
            conn.putheader(name, value)
            names.add(name.lower())
        if "content-length" not in names and "transfer-encoding" not in names:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    except (ConnectionError, http.client.HTTPException, TimeoutError):
        return None
    finally:
        conn.close()


def _rand_text(rng: random.Random, n: int) -> str:
    alphabet = string.printable + "é中\u202e\x00"
    return "".join(rng.choice(alphabet) for _ in range(n))


def _rand_header(rng: random.Random) -> str:
    """A header value http.client will send: latin-1, no CR/LF/NUL."""
    alphabet = string.ascii_letters + string.digits + string.punctuation + " \t\xe9\xff"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40))).strip() or "x"


def _rand_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**63, 1.5, float("1e308"), rng.randint(-(10**9), 10**9)])
    if kind == 3:
        return _rand_text(rng, rng.randrange(0, 40))
    if kind == 4:
        return rng.choice(["COS", "URL", "AWS-S3", "../../etc/passwd", "cos://b/k", "", " "])
    if kind == 5:
        return [_rand_json(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    keys = [
        "InputInfo",
        "OutputStorage",
        "OutputDir",
        "OutputPath",
        "ImageTask",
        "Definition",
        "Type",
        "CosInputInfo",
        "Bucket",
        "Region",
        "Object",
        "UrlInputInfo",
        "Url",
        "EncodeConfig",
        "Format",
        "Quality",
        "EnhanceConfig",
        "TaskId",
        "Status",
        "Limit",
        "ScrollToken",
        "StartTime",
        "EndTime",
        "S3InputInfo",
        "S3SecretKey",
        _rand_text(rng, 6),
    ]
    return {rng.choice(keys): _rand_json(rng, depth + 1) for _ in range(rng.randrange(0, 6))}


def _mps_envelope(resp: tuple[int, dict[str, str], bytes] | None) -> dict[str, Any]:
    assert resp is not None, "the MPS endpoint dropped a connection no fault asked it to drop"
    status, headers, body = resp
    assert status == 200, (status, body[:300])
    assert headers.get("content-type") == "application/json", headers
    data = json.loads(body)
    assert isinstance(data.get("Response"), dict) and data["Response"].get("RequestId"), data
    return data["Response"]


def _sign_tc3(
    server: Any, action: str, body: bytes, *, content_type: str = "application/json"
) -> list[tuple[str, str]]:
    """Correct TC3 headers for a raw body, computed with the emulator's own verifier primitives (test
    harness only: the provider itself signs through the official SDK)."""
    from airflow_mps.emulator.signing import canonical_request, sha256_hex, tc3_signature

    ts = int(time.time())
    host = server.endpoint
    signed = [("content-type", content_type), ("host", host)]
    canonical = canonical_request("POST", "/", "", signed, sha256_hex(body))
    date, signature = tc3_signature(server.secret_key, "mps", ts, canonical)
    auth = (
        f"TC3-HMAC-SHA256 Credential={server.secret_id}/{date}/mps/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={signature}"
    )
    return [
        ("Host", host),
        ("Content-Type", content_type),
        ("Authorization", auth),
        ("X-TC-Action", action),
        ("X-TC-Version", "2019-06-12"),
        ("X-TC-Timestamp", str(ts)),
        ("X-TC-Region", "ap-guangzhou"),
    ]


def test_mps_unsigned_and_broken_signatures(fuzz_env: dict[str, Any]) -> None:
    crashes_before = len(fuzz_env["crashes"].records)
    server = fuzz_env["server"]
    rng = random.Random(SEED)
    ts = int(time.time())
    auth_variants = [
        None,
        "",
        "garbage",
        "TC3-HMAC-SHA256",
        "TC3-HMAC-SHA256 Credential=, SignedHeaders=, Signature=",
        f"TC3-HMAC-SHA256 Credential={server.secret_id}/2020-01-01/mps/tc3_request, "
        "SignedHeaders=content-type;host, Signature=" + "0" * 64,
        "TC3-HMAC-SHA256 Credential=AKIDunknown/2020-01-01/mps/tc3_request, SignedHeaders=content-type;host, "
        "Signature=" + "f" * 64,
        "HMAC-SHA1 Credential=x",
        "TC3-HMAC-SHA256 Credential=" + "A" * 5000,
    ]
    codes: set[str] = set()
    for _ in range(MPS_CASES):
        headers: list[tuple[str, str]] = [("Host", server.endpoint)]
        action = rng.choice(
            ["ProcessImage", "DescribeImageTaskDetail", "DescribeImageTasks", "Nope", "", "../x"]
        )
        headers.append(("X-TC-Action", action))
        if rng.random() < 0.8:
            headers.append(
                ("Content-Type", rng.choice(["application/json", "text/plain", "", "application/json; x"]))
            )
        if rng.random() < 0.7:
            headers.append(("X-TC-Timestamp", rng.choice([str(ts), "0", "-5", "abc", str(ts + 10**6), ""])))
        if rng.random() < 0.7:
            headers.append(("X-TC-Version", rng.choice(["2019-06-12", "1999-01-01", ""])))
        auth = rng.choice(auth_variants)
        if auth is not None:
            headers.append(("Authorization", auth))
        for _ in range(rng.randrange(0, 4)):
            headers.append(
                (rng.choice(["X-TC-Token", "X-Junk", "X-TC-Language", "Cookie"]), _rand_header(rng))
            )
        body_kind = rng.randrange(4)
        body = (
            json.dumps(_rand_json(rng)).encode()
            if body_kind == 0
            else bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
            if body_kind == 1
            else b""
            if body_kind == 2
            else b"{" * rng.randrange(1, 2000)
        )
        resp = _request(server.endpoint, "POST", "/", headers, body)
        if not action:  # an empty X-TC-Action is not an MPS call: the COS side answers (XML 4xx)
            _cos_error(resp)
            continue
        response = _mps_envelope(resp)
        code = response.get("Error", {}).get("Code")
        assert code and code.startswith(AUTH_CODES_PREFIX), response
        codes.add(code)
    assert "AuthFailure.InvalidAuthorization" in codes and len(codes) >= 2, codes
    _no_new_crashes(fuzz_env, crashes_before)


def test_mps_signed_random_bodies_get_client_errors(fuzz_env: dict[str, Any]) -> None:
    crashes_before = len(fuzz_env["crashes"].records)
    server = fuzz_env["server"]
    rng = random.Random(SEED + 1)
    created_before = server.stats()["tasks_created"]
    codes: set[str] = set()
    for i in range(SIGNED_CASES):
        action = rng.choice(
            [
                "ProcessImage",
                "ProcessImage",
                "DescribeImageTaskDetail",
                "DescribeImageTasks",
                "DeleteEverything",
                "processimage",
            ]
        )
        kind = rng.randrange(5)
        if kind == 0:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        elif kind == 1:
            body = json.dumps([_rand_json(rng)]).encode()
        elif kind == 2:
            body = b'{"InputInfo": ' * rng.randrange(1, 50)
        else:
            body = json.dumps(_rand_json(rng, depth=2 if kind == 3 else 0), ensure_ascii=False).encode()
        if i % 40 == 0:  # rate windows are per second; stay under them so validation is what answers
            server.reset()
        response = _mps_envelope(
            _request(server.endpoint, "POST", "/", _sign_tc3(server, action, body), body)
        )
        error = response.get("Error")
        if error is None:
            # A random body can be valid for the listing action (all its fields are optional).
            assert action == "DescribeImageTasks", (action, body[:200], response)
            continue
        assert error["Code"].startswith(CLIENT_CODE_PREFIXES), (action, body[:200], error)
        assert not error["Code"].startswith(("InternalError", "AuthFailure")), error
        codes.add(error["Code"].split(".")[0])
    assert {"InvalidParameter", "InvalidAction"} <= codes, codes
    # One flipped hex digit of an otherwise correct signature → SignatureFailure.
    body = b"{}"
    headers = _sign_tc3(server, "DescribeImageTasks", body)
    tampered = [
        (k, v[:-1] + ("0" if v[-1] != "0" else "1")) if k == "Authorization" else (k, v) for k, v in headers
    ]
    response = _mps_envelope(_request(server.endpoint, "POST", "/", tampered, body))
    assert response["Error"]["Code"] == "AuthFailure.SignatureFailure", response
    _no_new_crashes(fuzz_env, crashes_before)
    assert server.stats()["tasks_created"] == created_before  # no garbage body created a task


def test_mps_huge_and_lying_bodies(fuzz_env: dict[str, Any]) -> None:
    crashes_before = len(fuzz_env["crashes"].records)
    server = fuzz_env["server"]
    from airflow_mps.emulator.mps.responses import MAX_BODY_BYTES

    huge = b"{" + b" " * (MAX_BODY_BYTES + 10) + b"}"
    resp = _request(server.endpoint, "POST", "/", _sign_tc3(server, "ProcessImage", huge), huge)
    # Refused unread: the answer may race the client still sending (then the socket is reset).
    if resp is not None:
        assert _mps_envelope(resp)["Error"]["Code"] == "RequestSizeLimitExceeded"
    # A Content-Length announcing more than the limit is refused before the body is read.
    headers = [*_sign_tc3(server, "ProcessImage", b"{}"), ("Content-Length", str(MAX_BODY_BYTES * 50))]
    response = _mps_envelope(_request(server.endpoint, "POST", "/", headers, b"{}"))
    assert response["Error"]["Code"] == "RequestSizeLimitExceeded"
    # Chunked body with a valid signature.
    body = json.dumps({"TaskId": "nope"}).encode()
    headers = [*_sign_tc3(server, "DescribeImageTaskDetail", body), ("Transfer-Encoding", "chunked")]
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    response = _mps_envelope(_request(server.endpoint, "POST", "/", headers, chunked))
    assert response["Error"]["Code"].startswith(("ResourceNotFound", "InvalidParameter")), response
    assert server.admin("health") is not None
    _no_new_crashes(fuzz_env, crashes_before)


@pytest.mark.parametrize(
    "content_length",
    [
        "abc",
        "-1",
        "1e3",
        " ",
        "99999999999999999999999",
    ],
)
def test_nonsense_content_length_is_a_client_error(fuzz_env: dict[str, Any], content_length: str) -> None:
    """A malformed Content-Length is the client's fault: answered (or the connection closed), never an
    unhandled server exception; the server stays healthy."""
    server = fuzz_env["server"]
    before = len(fuzz_env["crashes"].records)
    for headers, path in (
        (_sign_tc3(server, "DescribeImageTasks", b"{}"), "/"),
        ([("Host", server.endpoint)], f"/{BUCKET}/k.bin"),
    ):
        resp = _request(
            server.endpoint,
            "POST" if path == "/" else "PUT",
            path,
            [*headers, ("Content-Length", content_length)],
            b"{}",
        )
        if resp is not None:
            assert resp[0] < 500, resp
    assert len(fuzz_env["crashes"].records) == before, fuzz_env["crashes"].records[before:]
    assert server.admin("health") is not None


def _cos_error(resp: tuple[int, dict[str, str], bytes] | None) -> str:
    assert resp is not None, "the COS endpoint dropped a connection no fault asked it to drop"
    status, _headers, body = resp
    assert 400 <= status < 500, (status, body[:300])
    if not body:  # HEAD
        return f"HEAD {status}"
    import xml.etree.ElementTree as ET

    root = ET.fromstring(body)
    assert root.tag == "Error", body[:300]
    code = root.findtext("Code") or ""
    assert code in COS_CLIENT_CODES, (code, body[:300])
    return code


TRAVERSAL_KEYS = [
    "../escape.txt",
    "../../escape.txt",
    "a/../../../escape.txt",
    "..%2f..%2fescape.txt",
    "%2e%2e/%2e%2e/escape.txt",
    "/etc/passwd",
    "....//....//escape.txt",
    "a/./b/../../c",
    "..\\..\\escape.txt",
    "\u202eevil/../x",
    "key with spaces/..",
    ".",
    "..",
]


def test_cos_unsigned_and_broken_signatures(fuzz_env: dict[str, Any]) -> None:
    crashes_before = len(fuzz_env["crashes"].records)
    server = fuzz_env["server"]
    rng = random.Random(SEED + 2)
    codes: set[str] = set()
    bad_auth = [
        None,
        "",
        "q-sign-algorithm=sha1",
        f"q-sign-algorithm=sha1&q-ak={server.secret_id}&q-sign-time=0;1&q-key-time=0;1&q-header-list=host"
        "&q-url-param-list=&q-signature=" + "0" * 40,
        "q-sign-algorithm=sha1&q-ak=AKIDnobody&q-sign-time=1;9999999999&q-key-time=1;9999999999"
        "&q-header-list=&q-url-param-list=&q-signature=abc",
        "q-sign-algorithm=md5&q-ak=x",
        "&&&===",
    ]
    for _ in range(COS_CASES):
        method = rng.choice(["GET", "PUT", "HEAD", "DELETE", "POST", "PATCH"])
        key = rng.choice([*TRAVERSAL_KEYS, "ok.png", "", "a" * 900, _rand_text(rng, 10).replace("\x00", "")])
        from urllib.parse import quote

        raw_ok = key.isascii() and key.isprintable() and " " not in key  # http.client refuses others raw
        path = f"/{BUCKET}/" + (key if raw_ok and rng.random() < 0.5 else quote(key.encode(), safe="/"))
        if rng.random() < 0.1:
            path = "/" + quote(_rand_text(rng, 8).encode(), safe="") + "/x"
        if rng.random() < 0.1:
            path += "?" + rng.choice(["prefix=../", "max-keys=-1", "marker=%ff", "acl", "uploads", "a=b&a=c"])
        headers: list[tuple[str, str]] = [
            (
                "Host",
                rng.choice(
                    [
                        server.endpoint,
                        f"{BUCKET}.cos.ap-guangzhou.myqcloud.com",
                        "evil..cos.x.myqcloud.com",
                        "x",
                    ]
                ),
            )
        ]
        auth = rng.choice(bad_auth)
        if auth is not None:
            headers.append(("Authorization", auth))
        if rng.random() < 0.3:
            headers.append(
                ("Range", rng.choice(["bytes=0-", "bytes=-1", "bytes=9-1", "chars=1-2", "bytes=a-b"]))
            )
        if rng.random() < 0.2:
            headers.append(("Content-MD5", rng.choice(["", "xx", "AAAAAAAAAAAAAAAAAAAAAA=="])))
        body = (
            bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
            if method in ("PUT", "POST")
            else b""
        )
        codes.add(_cos_error(_request(server.endpoint, method, path, headers, body)))
    assert codes & {"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId"}, codes
    _no_new_crashes(fuzz_env, crashes_before)


def test_cos_signed_traversal_keys_stay_inside_the_data_dir(fuzz_env: dict[str, Any]) -> None:
    """Correctly signed PUT/GET of path-traversal keys: stored under the data dir (by hash), read back
    byte for byte, listed under their literal names, never written anywhere else."""
    crashes_before = len(fuzz_env["crashes"].records)
    from urllib.parse import urlsplit

    from airflow_mps.emulator.cos.auth import presign_url

    server = fuzz_env["server"]
    base = f"http://{server.endpoint}"
    stored = 0
    for i, key in enumerate(TRAVERSAL_KEYS):
        data = f"payload {i} {key}".encode()
        url = urlsplit(presign_url(base, BUCKET, key, server.secret_id, server.secret_key, method="PUT"))
        target = url.path + "?" + url.query
        resp = _request(server.endpoint, "PUT", target, [("Host", server.endpoint)], data)
        assert resp is not None
        if resp[0] != 200:
            _cos_error(resp)  # refused as a client error (e.g. an empty key after normalisation)
            continue
        stored += 1
        url = urlsplit(presign_url(base, BUCKET, key, server.secret_id, server.secret_key))
        got = _request(server.endpoint, "GET", url.path + "?" + url.query, [("Host", server.endpoint)])
        assert got is not None and got[0] == 200 and got[2] == data, (key, got and got[:2])
    assert stored >= len(TRAVERSAL_KEYS) - 3, stored
    data_dir: Path = fuzz_env["data_dir"]
    assert not any(p.name == "escape.txt" for p in fuzz_env["sandbox"].rglob("*"))
    assert not (data_dir.parent / "escape.txt").exists() and not Path("/etc/escape.txt").exists()
    # Every stored file name is a digest or the emulator's own bookkeeping, never a user-chosen name.
    names = {p.name for p in data_dir.rglob("*") if p.is_file()}
    assert not any(".." in n or n == "passwd" or n.startswith("escape") for n in names), sorted(names)[:20]
    _no_new_crashes(fuzz_env, crashes_before)


def test_cos_huge_put_with_a_bad_signature_is_refused(fuzz_env: dict[str, Any]) -> None:
    crashes_before = len(fuzz_env["crashes"].records)
    server = fuzz_env["server"]
    data_dir: Path = fuzz_env["data_dir"]
    size_before = sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file())
    body = os.urandom(1024) * (24 * 1024)  # 24 MiB
    resp = _request(
        server.endpoint,
        "PUT",
        f"/{BUCKET}/huge.bin",
        [("Host", server.endpoint), ("Authorization", "q-sign-algorithm=sha1&q-ak=x")],
        body,
    )
    if resp is not None:  # the server may also close the connection without reading 24 MiB
        _cos_error(resp)
    size_after = sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file())
    assert size_after - size_before < len(body) // 2, "an unauthenticated body was stored"
    assert hashlib.sha256(body).hexdigest() not in {p.name for p in data_dir.rglob("*")}
    assert server.admin("health") is not None
    _no_new_crashes(fuzz_env, crashes_before)
