"""Emulator hardening, part 2 (issue 12, Build item 6): hostile bodies never get a 500.

Through real HTTP against a private emulator:
- correctly signed MPS bodies with deep nesting (up to 100k levels), huge numbers (5,000 digits,
  ``1e999``, ``NaN``), lone surrogates, odd unicode (BOM, NUL, RTL override, emoji, combining marks),
  invalid UTF-8 and truncated valid bodies → HTTP 200, ``Content-Type: application/json`` exactly, an
  ``InvalidParameter``-style envelope (mps-api.md §5.1); never a 500, never the catch-all handler;
- bodies cut short on the wire (Content-Length larger than what is sent, then a half-close), MPS and COS;
- unauthenticated COS PUTs of 3 × 200 MB (plus one chunked) against an emulator *subprocess*: its peak
  RSS grows by less than 64 MB (before the fix: 27 → 581 MB), the client reads a 403, nothing is stored.

Seeded (``SEED``): a failure reproduces with the same seed.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SEED = 20261212
CASES = 240
BUCKET = "bodies-1250000000"
CLIENT_CODES = (
    "InvalidParameter",
    "MissingParameter",
    "UnknownParameter",
    "ResourceNotFound",
    "RequestLimitExceeded",
)
ODD_TEXT = [
    "\ufeff",  # BOM
    "\x00",
    "\u202eevil",  # RTL override
    "\U0001f600\U0001f4a9",
    "e\u0301\u0301\u0301",  # combining marks
    "\uffff",
    "\U0010ffff",
    "中文/键",
    "\\",
    '"',
    "\u2028\u2029",
]
# JSON texts (as str, so escapes stay literal) that the real service refuses as InvalidParameter.
HOSTILE_JSON = [
    "[" * 100_000,
    '{"a":' * 100_000,
    "[" * 100_000 + "]" * 100_000,
    '{"Limit": ' + "9" * 5000 + ', "Status": "FINISH"}',
    "1" * 5000,
    '{"TaskId": -' + "1" * 5000 + "}",
    '{"Limit": 1e999, "Status": "FINISH"}',
    '{"Limit": -1e999, "Status": "FINISH"}',
    '{"Limit": NaN, "Status": "FINISH"}',
    '{"Limit": Infinity, "Status": "FINISH"}',
    '{"TaskId": "\\ud800"}',
    '{"TaskId": "\\udfff\\ud800"}',
    '{"\\ud83d": 1}',
    '{"Status": ["\\ud800"]}',
]


class _CrashCounter(logging.Handler):
    """Counts the server's "emulator request failed" records (its catch-all for unhandled errors)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage() + (f" {record.exc_info[1]!r}" if record.exc_info else ""))


@pytest.fixture(scope="module")
def emu() -> Iterator[tuple[Any, _CrashCounter]]:
    from airflow_mps.emulator.testing import EmulatorServer

    handler = _CrashCounter()
    logger = logging.getLogger("airflow_mps.emulator")
    logger.addHandler(handler)
    try:
        # Rate limits lifted: this file tests parsing, not throttling.
        with EmulatorServer(seed=SEED, process_image_rate=100_000, describe_rate=100_000) as server:
            server.cos_backend.create_bucket(BUCKET)
            yield server, handler
    finally:
        logger.removeHandler(handler)


def _sign_tc3(server: Any, action: str, body: bytes) -> list[tuple[str, str]]:
    """Correct TC3 headers for a raw body (test harness only; the provider signs via the official SDK)."""
    from airflow_mps.emulator.signing import canonical_request, sha256_hex, tc3_signature

    ts = int(time.time())
    signed = [("content-type", "application/json"), ("host", server.endpoint)]
    canonical = canonical_request("POST", "/", "", signed, sha256_hex(body))
    date, signature = tc3_signature(server.secret_key, "mps", ts, canonical)
    return [
        ("Host", server.endpoint),
        ("Content-Type", "application/json"),
        (
            "Authorization",
            f"TC3-HMAC-SHA256 Credential={server.secret_id}/{date}/mps/tc3_request, "
            f"SignedHeaders=content-type;host, Signature={signature}",
        ),
        ("X-TC-Action", action),
        ("X-TC-Version", "2019-06-12"),
        ("X-TC-Timestamp", str(ts)),
    ]


def _post(server: Any, headers: list[tuple[str, str]], body: bytes) -> tuple[int, dict[str, str], bytes]:
    host, _, port = server.endpoint.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.putrequest("POST", "/", skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def _envelope_error(resp: tuple[int, dict[str, str], bytes], what: str) -> dict[str, Any] | None:
    status, headers, body = resp
    assert status == 200, (what, status, body[:300])  # never a 500: errors ride in a 200 envelope
    assert headers.get("Content-Type") == "application/json", (what, headers)
    data = json.loads(body)
    assert isinstance(data.get("Response"), dict) and data["Response"].get("RequestId"), (what, data)
    return data["Response"].get("Error")


def _valid_bodies() -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            "ProcessImage",
            {
                "InputInfo": {
                    "Type": "COS",
                    "CosInputInfo": {"Bucket": BUCKET, "Region": "ap-guangzhou", "Object": "/in/a.png"},
                },
                "OutputDir": "/out/",
                "ImageTask": {"EncodeConfig": {"Format": "JPEG", "Quality": 80}},
            },
        ),
        ("DescribeImageTaskDetail", {"TaskId": "1250000000-WorkflowTask-" + "0" * 32}),
        ("DescribeImageTasks", {"Status": "FINISH", "Limit": 5}),
    ]


def _hostile_case(rng: random.Random) -> tuple[str, bytes, str]:
    """(action, body, kind): each kind is invalid for its action, so an error envelope is the answer."""
    kind = rng.choice(
        ["fixed", "deep", "number", "surrogate", "odd-unicode", "truncated", "bad-utf8", "nested-odd"]
    )
    action, valid = rng.choice(_valid_bodies())
    if kind == "fixed":
        return (
            rng.choice(["DescribeImageTasks", "DescribeImageTaskDetail", "ProcessImage"]),
            rng.choice(HOSTILE_JSON).encode(),
            kind,
        )
    if kind == "deep":
        depth = rng.choice([65, 1000, 5000, 100_000])
        opener, closer = rng.choice([("[", "]"), ('{"x":', "}"), ('{"InputInfo":[', "]}")])
        body = opener * depth + rng.choice(["1", '"s"', "null", ""]) + closer * rng.choice([0, depth])
        return action, body.encode(), kind
    if kind == "number":
        digits = rng.choice([257, 4300, 4301, 5000, 20_000])
        field = rng.choice(["Limit", "TaskId", "Quality", "x"])
        number = rng.choice(["", "-"]) + "9" * digits + rng.choice(["", ".5", "e5", "e999"])
        return action, f'{{"{field}": {number}, "Status": "FINISH"}}'.encode(), kind
    if kind == "surrogate":
        lone = rng.choice(["\\ud800", "\\udbff", "\\udc00", "\\udfff", "\\ud800\\ud800"])
        key = rng.choice(["TaskId", "Status", lone])
        tail = "" if key == "Status" else ', "Status": "FINISH"'
        return action, f'{{"{key}": "a{lone}b"{tail}}}'.encode(), kind
    if kind == "odd-unicode":
        text = "".join(rng.choice(ODD_TEXT) for _ in range(rng.randrange(1, 6)))
        if action == "DescribeImageTasks":
            body: dict[str, Any] = {"Status": text}  # not a status: InvalidParameterValue
        elif action == "DescribeImageTaskDetail":
            body = {"TaskId": text}  # not a task: ResourceNotFound
        else:
            body = {"InputInfo": {"Type": text}, "OutputDir": text}
        return (
            action,
            json.dumps(body, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass"),
            kind,
        )
    if kind == "truncated":
        full = json.dumps(valid).encode()
        return action, full[: rng.randrange(1, len(full) - 1)], kind
    if kind == "bad-utf8":
        full = json.dumps(valid).encode()
        cut = rng.randrange(1, len(full))
        return (
            action,
            full[:cut]
            + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
            + full[cut:],
            kind,
        )
    # nested-odd: a valid action body wrapped in a list, or with a deep tail
    return (
        action,
        (
            json.dumps([valid])
            if rng.random() < 0.5
            else json.dumps(valid)[:-1] + ', "z":' + "[" * 70 + "]" * 70 + "}"
        ).encode(),
        kind,
    )


def test_signed_hostile_mps_bodies_get_invalid_parameter_envelopes(emu: tuple[Any, _CrashCounter]) -> None:
    server, crashes = emu
    before, created = len(crashes.records), server.stats()["tasks_created"]
    # The two reproductions first, by name.
    for name, body in (("100k-deep", b"[" * 100_000), ("5000-digit", b'{"Limit": ' + b"7" * 5000 + b"}")):
        error = _envelope_error(_post(server, _sign_tc3(server, "DescribeImageTasks", body), body), name)
        assert error is not None and error["Code"] == "InvalidParameter", (name, error)
    rng = random.Random(SEED)
    seen: dict[str, set[str]] = {}
    started = time.monotonic()
    for i in range(CASES):
        action, body, kind = _hostile_case(rng)
        error = _envelope_error(_post(server, _sign_tc3(server, action, body), body), f"case {i} {kind}")
        assert error is not None, (i, kind, action, body[:200])
        assert error["Code"].startswith(CLIENT_CODES), (i, kind, action, body[:200], error)
        seen.setdefault(kind, set()).add(error["Code"])
    elapsed = time.monotonic() - started
    print(f"\n{CASES} hostile signed MPS bodies in {elapsed:.1f} s; codes by kind: {seen}")
    for kind in ("deep", "number", "surrogate", "truncated", "bad-utf8"):
        assert seen.get(kind) and seen[kind] <= {"InvalidParameter"}, (kind, seen.get(kind))
    assert crashes.records[before:] == [], crashes.records[before:]
    assert server.stats()["tasks_created"] == created  # no hostile body created a task


def _raw_exchange(endpoint: str, head: bytes, body_part: bytes) -> bytes:
    """Send a request head and part of its body, half-close, and read whatever the server answers."""
    host, _, port = endpoint.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + body_part)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def test_bodies_cut_short_on_the_wire_are_client_errors(emu: tuple[Any, _CrashCounter]) -> None:
    server, crashes = emu
    before = len(crashes.records)
    rng = random.Random(SEED + 1)
    answers: list[int] = []
    for i in range(24):
        action, valid = rng.choice(_valid_bodies())
        full = json.dumps(valid).encode()
        sent = full[: rng.randrange(0, len(full))]
        if i % 2 == 0:  # MPS, signed over the full body
            lines = ["POST / HTTP/1.1", *(f"{k}: {v}" for k, v in _sign_tc3(server, action, full))]
        else:  # COS PUT without a valid signature
            lines = [
                f"PUT /{BUCKET}/cut/{i}.bin HTTP/1.1",
                f"Host: {server.endpoint}",
                "Authorization: q-sign-algorithm=sha1&q-ak=nobody",
            ]
        if rng.random() < 0.3:
            lines.append("Transfer-Encoding: chunked")
            part = f"{len(full):x}\r\n".encode() + sent
        else:
            lines.append(f"Content-Length: {len(full) + rng.choice([0, 1, 1000])}")
            part = sent
        reply = _raw_exchange(server.endpoint, ("\r\n".join(lines) + "\r\n\r\n").encode(), part)
        if reply:  # a reply is optional (the client left); a 5xx is never allowed
            status = int(reply.split(b" ", 2)[1])
            answers.append(status)
            assert status < 500, (i, reply[:400])
    assert answers, "the server answered none of the cut-short requests"
    assert crashes.records[before:] == [], crashes.records[before:]
    assert server.admin("health")["status"] == "ok"


def _rss_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def _stream(total: int, piece: bytes) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        chunk = piece[: total - sent]
        sent += len(chunk)
        yield chunk


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read a process's RSS")
def test_unauthenticated_cos_puts_do_not_grow_the_server(tmp_path: Path) -> None:
    """3 × 200 MB unauthenticated PUTs (+ one chunked): refused on the signed head, body drained in
    pieces — the emulator process's peak RSS grows by < 64 MB, and the client still reads the 403."""
    from airflow_mps.emulator.testing import EmulatorProcess

    size = 200 * 1024 * 1024
    piece = random.Random(SEED).randbytes(1024 * 1024)  # the test holds 1 MiB, never 200 MB
    with EmulatorProcess(tmp_path / "emu") as emulator:
        emulator.cos_client().create_bucket(Bucket=BUCKET)
        pid = emulator.proc.pid  # type: ignore[union-attr]  # running inside the with block
        host, _, port = emulator.endpoint.rpartition(":")
        before = _rss_kib(pid)
        started = time.monotonic()
        statuses = []
        for i, (auth, chunked) in enumerate(
            [
                (None, False),
                ("q-sign-algorithm=sha1&q-ak=nobody", False),
                (
                    f"q-sign-algorithm=sha1&q-ak={emulator.secret_id}&q-sign-time=1;2&q-key-time=1;2"
                    "&q-header-list=host&q-url-param-list=&q-signature=" + "0" * 40,
                    False,
                ),
                (None, True),
            ]
        ):
            conn = http.client.HTTPConnection(host, int(port), timeout=120)
            headers = {"Host": emulator.endpoint}
            if not chunked:
                headers["Content-Length"] = str(size)
            if auth:
                headers["Authorization"] = auth
            try:
                conn.request(
                    "PUT",
                    f"/{BUCKET}/big/{i}.bin",
                    body=_stream(size, piece),
                    headers=headers,
                    encode_chunked=chunked,
                )
                resp = conn.getresponse()
                statuses.append(resp.status)
                assert b"<Code>AccessDenied</Code>" in resp.read()
            finally:
                conn.close()
        elapsed = time.monotonic() - started
        after = _rss_kib(pid)
        growth_mib = (after["VmHWM"] - before["VmHWM"]) / 1024
        print(
            f"\nemulator RSS before {before['VmRSS'] / 1024:.0f} MiB (peak {before['VmHWM'] / 1024:.0f}), "
            f"after 4 x 200 MiB unauthenticated PUTs {after['VmRSS'] / 1024:.0f} MiB "
            f"(peak {after['VmHWM'] / 1024:.0f}, +{growth_mib:.1f} MiB) in {elapsed:.1f} s"
        )
        assert statuses == [403, 403, 403, 403], statuses
        assert growth_mib < 64, (before, after)
        assert emulator.cos_client().list_objects(Bucket=BUCKET).get("Contents") is None  # nothing stored
        assert emulator.admin("health")["status"] == "ok"
