"""TLS and proxies end to end (issue 11 item 9): the provider against ``airflow-mps-emulator --tls``
with the connection's ``ca_bundle`` set and nothing else, and through a local HTTP proxy that counts
what it carries — sync MPS, async MPS and COS each. Also the SDK facts docs/connection.md states
(REQUESTS_CA_BUNDLE is ignored by the sync SDK; the async SDK reads SSL_CERT_FILE)."""

from __future__ import annotations

import asyncio
import io
import select
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from airflow_mps.errors import MpsError
from airflow_mps.hooks._buckets import reset_shared_buckets
from airflow_mps.hooks._retry import RetryPolicy
from airflow_mps.hooks.failures import CERTIFICATE_ERROR_CODE
from airflow_mps.hooks.mps import MpsHook
from airflow_mps.models import ProcessImageRequest

BUCKET = "transport-1250000000"
REGION = "ap-guangzhou"
FAST = RetryPolicy(max_retry_seconds=20, base_delay=0.05, max_delay=0.5)


# ---- a tiny proxy: CONNECT tunnels and absolute-form forwarding, counted -------------------------------
class CountingProxy:
    """An HTTP proxy on 127.0.0.1 for tests: tunnels ``CONNECT host:port`` and forwards absolute-form
    requests (``POST http://host:port/path``), one request per client connection (it answers with
    ``Connection: close``). ``counts`` holds ``("CONNECT", "host:port")`` / ``("FORWARD", "host:port")``."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self.counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._server.close()

    def total(self, kind: str) -> int:
        with self._lock:
            return sum(n for (k, _target), n in self.counts.items() if k == kind)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _addr = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            head, rest = _read_head(client)
            if head is None:
                return
            method, target, _version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            if method == "CONNECT":
                with self._lock:
                    self.counts[("CONNECT", target)] += 1
                host, port = target.rsplit(":", 1)
                with socket.create_connection((host, int(port))) as upstream:
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    if rest:
                        upstream.sendall(rest)
                    _pipe(client, upstream)
                return
            url = urlsplit(target)
            with self._lock:
                self.counts[("FORWARD", url.netloc)] += 1
            lines = head.split(b"\r\n")[1:]
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in lines
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            body = rest
            while len(body) < length:
                chunk = client.recv(65536)
                if not chunk:
                    break
                body += chunk
            kept = [
                line
                for line in lines
                if line
                and not line.lower().startswith((b"connection:", b"proxy-connection:", b"keep-alive:"))
            ]
            path = (url.path or "/") + (f"?{url.query}" if url.query else "")
            request = f"{method} {path} HTTP/1.1\r\n".encode() + b"\r\n".join([*kept, b"Connection: close"])
            with socket.create_connection((url.hostname, url.port or 80)) as upstream:
                upstream.sendall(request + b"\r\n\r\n" + body)
                answer = b""
                while chunk := upstream.recv(65536):
                    answer += chunk
            status, _, remainder = answer.partition(b"\r\n\r\n")
            headers = [
                line
                for line in status.split(b"\r\n")
                if not line.lower().startswith((b"connection:", b"keep-alive:"))
            ]
            client.sendall(b"\r\n".join([*headers, b"Connection: close"]) + b"\r\n\r\n" + remainder)


def _read_head(sock: socket.socket) -> tuple[bytes | None, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes (a CONNECT tunnel)."""
    sockets = [a, b]
    while True:
        readable, _, _ = select.select(sockets, [], [], 30)
        if not readable:
            return
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            (b if sock is a else a).sendall(data)


# ---- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An emulator serving HTTPS with its self-signed certificate (``airflow-mps-emulator --tls``)."""
    from airflow_mps.emulator.testing import EmulatorServer

    with EmulatorServer(data_dir=tmp_path_factory.mktemp("tls-emulator"), tls=True) as server:
        server.cos_backend.create_bucket(BUCKET)
        yield server


@pytest.fixture
def proxy() -> Iterator[CountingProxy]:
    server = CountingProxy()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _clean(monkeypatch) -> Iterator[None]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    reset_shared_buckets()
    yield
    reset_shared_buckets()


def _connect(monkeypatch, emulator: Any, **extras: str) -> None:
    """Point the default connection at ``emulator`` with exactly ``extras`` (plus region)."""
    query = "&".join(
        f"{name}={quote(value, safe='')}" for name, value in {"region": REGION, **extras}.items()
    )
    secret = quote(emulator.secret_key, safe="")
    monkeypatch.setenv(
        "AIRFLOW_CONN_TENCENTCLOUD_DEFAULT", f"tencentcloud://{emulator.secret_id}:{secret}@/?{query}"
    )


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "green").save(buf, "PNG")
    return buf.getvalue()


def _exercise(bucket: str) -> dict[str, Any]:
    """COS write + read, sync ProcessImage + DescribeImageTaskDetail + DescribeImageTasks, async
    DescribeImageTaskDetail: one of each path through the provider."""
    hook = MpsHook(retry_policy=FAST)
    key = f"raw/{uuid.uuid4().hex}.png"
    hook.write_object(bucket, key, _png(), "image/png")
    assert hook.read_object(bucket, key) == _png()
    request = ProcessImageRequest.build(
        input=f"cos://{bucket}/{key}", region=REGION, image_task={"EncodeConfig": {"Format": "PNG"}}
    )
    submission = hook.process_image(request)
    status = hook.describe_image_task(submission.task_id)
    ok, message = hook.test_connection()
    assert ok, message

    async def run() -> Any:
        try:
            return await hook.adescribe_image_task(submission.task_id)
        finally:
            await hook.aclose()

    async_status = asyncio.run(run())
    assert status.task_id == async_status.task_id == submission.task_id
    return {"task_id": submission.task_id}


# ---- TLS ---------------------------------------------------------------------------------------------
def test_tls_emulator_with_ca_bundle_and_nothing_else(tls_emulator, monkeypatch) -> None:
    """``endpoint=https://127.0.0.1:PORT`` + ``ca_bundle=<emulator cert>``: sync MPS, async MPS and
    COS all verify the emulator's certificate and work."""
    _connect(
        monkeypatch,
        tls_emulator,
        endpoint=f"https://{tls_emulator.endpoint}",
        ca_bundle=str(tls_emulator.tls_cert),
    )
    settings = MpsHook().get_settings()
    assert (settings.protocol, settings.endpoint) == ("https", tls_emulator.endpoint)
    task_id = _exercise(BUCKET)["task_id"]
    assert tls_emulator.app.mps.get(task_id).request["InputInfo"]["CosInputInfo"]["Bucket"] == BUCKET


@pytest.mark.parametrize("path", ["sync", "async", "cos"])
def test_tls_without_ca_bundle_fails_at_once_naming_the_fix(tls_emulator, monkeypatch, path: str) -> None:
    """Without ``ca_bundle`` the self-signed certificate is not trusted: a clear terminal error, not
    minutes of retries. REQUESTS_CA_BUNDLE does not help the sync SDK (it passes verify= itself)."""
    import time

    _connect(monkeypatch, tls_emulator, endpoint=f"https://{tls_emulator.endpoint}")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_emulator.tls_cert))  # ignored by the sync SDK
    hook = MpsHook(retry_policy=RetryPolicy(max_retry_seconds=60))
    started = time.monotonic()
    with pytest.raises(MpsError) as info:
        if path == "sync":
            hook.describe_image_task("any-task")
        elif path == "async":

            async def run() -> Any:
                try:
                    return await hook.adescribe_image_task("any-task")
                finally:
                    await hook.aclose()

            asyncio.run(run())
        else:
            monkeypatch.delenv("REQUESTS_CA_BUNDLE")  # COS would honour it (requests' default verify)
            hook.object_exists(BUCKET, "any/key")
    assert info.value.code == CERTIFICATE_ERROR_CODE and "ca_bundle" in str(info.value)
    assert time.monotonic() - started < 10  # raised at once, not retried for a minute


def test_sdk_tls_facts_the_docs_state(tls_emulator, monkeypatch) -> None:
    """What docs/connection.md and docs/emulator.md say about the SDKs themselves, checked:
    sync ``HttpProfile(certification=path)`` works and REQUESTS_CA_BUNDLE does not; the async SDK
    verifies with ``SSL_CERT_FILE``; COS ``CosConfig(VerifySSL=path)`` works."""
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
    from tencentcloud.mps.v20190612 import mps_client, mps_client_async

    cert = str(tls_emulator.tls_cert)
    listing = {"Status": "FINISH", "Limit": 1}
    with_ca = mps_client.MpsClient(
        tls_emulator.credential(), REGION, tls_emulator.client_profile()
    )  # http_profile(): certification=<cert>
    assert with_ca.profile.httpProfile.certification == cert
    assert "Response" in with_ca.call_json("DescribeImageTasks", listing)

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
    profile = tls_emulator.client_profile()
    profile.httpProfile.certification = None  # the SDK default: certifi
    with pytest.raises(TencentCloudSDKException, match="CERTIFICATE_VERIFY_FAILED"):
        mps_client.MpsClient(tls_emulator.credential(), REGION, profile).call_json(
            "DescribeImageTasks", listing
        )
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")

    monkeypatch.setenv("SSL_CERT_FILE", cert)  # read when the async client (its httpx client) is built

    async def async_listing() -> Any:
        async with mps_client_async.MpsClient(tls_emulator.credential(), REGION, profile) as client:
            return await client.call_and_deserialize("DescribeImageTasks", listing, dict)

    assert "Response" in asyncio.run(async_listing())
    monkeypatch.delenv("SSL_CERT_FILE")

    cos = tls_emulator.cos_client()  # cos_config(): VerifySSL=<cert>
    assert cos._conf._verify_ssl == cert
    assert cos.object_exists(Bucket=BUCKET, Key="no/such/key") is False


# ---- proxies -----------------------------------------------------------------------------------------
def test_proxy_carries_sync_async_and_cos_over_http(emulator, proxy, monkeypatch) -> None:
    """Plain HTTP (the emulator's default): every request is forwarded by the proxy."""
    emulator.cos_backend.create_bucket(BUCKET)
    _connect(monkeypatch, emulator, endpoint=f"http://{emulator.endpoint}", proxy=proxy.url)
    _exercise(BUCKET)
    forwarded = proxy.counts
    # COS write + read, ProcessImage, DescribeImageTaskDetail (sync, async), DescribeImageTasks.
    assert proxy.total("FORWARD") >= 6 and set(target for _kind, target in forwarded) == {emulator.endpoint}


def test_proxy_tunnels_tls_with_ca_bundle(tls_emulator, proxy, monkeypatch) -> None:
    """HTTPS through the proxy: CONNECT tunnels, the certificate still verified with ``ca_bundle``."""
    _connect(
        monkeypatch,
        tls_emulator,
        endpoint=f"https://{tls_emulator.endpoint}",
        ca_bundle=str(tls_emulator.tls_cert),
        proxy=proxy.url,
    )
    _exercise(BUCKET)
    assert proxy.total("CONNECT") >= 2 and proxy.total("FORWARD") == 0
    assert {target for _kind, target in proxy.counts} == {tls_emulator.endpoint}


def test_without_the_proxy_extra_nothing_goes_through_it(emulator, proxy, monkeypatch) -> None:
    emulator.cos_backend.create_bucket(BUCKET)
    _connect(monkeypatch, emulator, endpoint=f"http://{emulator.endpoint}")
    _exercise(BUCKET)
    assert not proxy.counts
