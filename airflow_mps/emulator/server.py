"""The emulator's HTTP server: one `ThreadingHTTPServer` serving MPS, COS and the admin API.

Why stdlib `http.server`: it keeps response header casing exactly as given (cos-python-sdk-v5 returns
the headers as a case-sensitive dict, so `ETag` must stay `ETag`), needs no dependency and is enough
for a local stand-in. On top of it this module adds HTTP/1.1 keep-alive, de-chunking of
`Transfer-Encoding: chunked` bodies, absolute-form request targets (HTTP-proxy mode), optional TLS,
injected latency and connection faults.

Dispatch (docs/internals.md): `/_emulator/...` → the admin API (`admin.handle`); a POST with an
`X-TC-Action` header → MPS; an unsigned path-style GET/HEAD of `/`, `/tasks…` or `/buckets…` → the web
pages (`web.ui`); everything else → COS (`cos.responses.handle`).

The app locks its data dir (`datadir.claim_for_server`) for its whole life and announces its endpoint
there, so the `seed` command uploads through this server instead of writing behind its in-memory index.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import TCPServer
from typing import Any
from urllib.parse import urlsplit

from airflow_mps.emulator import admin
from airflow_mps.emulator.admin import ADMIN_PREFIX, json_response
from airflow_mps.emulator.bodies import cos_refusal, cos_xml_error
from airflow_mps.emulator.config import EmulatorConfig
from airflow_mps.emulator.datadir import DataDirLock, claim_for_server, server_note
from airflow_mps.emulator.faults import FaultPlan, parse_fault_spec
from airflow_mps.emulator.http import EmulatorRequest, EmulatorResponse, Headers
from airflow_mps.emulator.mps.models import MpsBackend
from airflow_mps.emulator.mps.responses import MAX_BODY_BYTES, MpsApi, error_response, throttle_message
from airflow_mps.emulator.stats import Stats

log = logging.getLogger(__name__)

SERVER_HEADER = "airflow-mps-emulator"
#: COS action names (stats, fault patterns) by HTTP method, for object and bucket requests.
_OBJECT_ACTIONS = {"GET": "GetObject", "PUT": "PutObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}
_BUCKET_ACTIONS = dict(
    GET="ListObjects", HEAD="HeadBucket", PUT="PutBucket", DELETE="DeleteBucket", POST="DeleteObjects"
)


def _gateway_error(status: int) -> EmulatorResponse:
    reason = {502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Error")
    body = f"<html><body><h1>{status} {reason}</h1><p>injected by airflow-mps-emulator</p></body></html>".encode()
    return EmulatorResponse(status, [("Content-Type", "text/html"), ("Content-Length", str(len(body)))], body)


class EmulatorApp:
    """State and routing of one emulator instance (independent of the socket layer)."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._tmp_dir: str | None = None
        if config.data_dir is None:
            self._tmp_dir = tempfile.mkdtemp(prefix="mps-emulator-")
            config.data_dir = Path(self._tmp_dir)
        self.data_dir = Path(config.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Before anything reads the data dir: a `seed` command writing directly must finish first.
        self.dir_lock: DataDirLock = claim_for_server(self.data_dir)
        try:
            self.faults = FaultPlan(seed=config.seed)
            for spec in config.faults:
                self.faults.add_fault(parse_fault_spec(spec))
            self.stats = Stats()
            self.cos, self.cos_auth = self._make_cos()
            self.mps = MpsBackend(config=config, faults=self.faults, stats=self.stats, cos=self.cos)
        except BaseException:
            self.dir_lock.release()
            raise
        self.api = MpsApi(self.mps, signed_url=self.signed_url)
        self.base_url = f"{config.scheme}://{config.host}:{config.port}"
        self.started = time.time()
        from airflow_mps.emulator.web import WebUI

        self.web = WebUI(self)

    def announce(self, tls_cert: Path | None = None) -> None:
        """Write this server's address into the data dir lock note, for the `seed` command to find."""
        self.dir_lock.update(server_note(self.config, self.endpoint, tls_cert))

    def _make_cos(self) -> tuple[Any, Any]:
        try:
            from airflow_mps.emulator.cos.auth import CosAuthConfig
            from airflow_mps.emulator.cos.models import CosBackend
        except ImportError:  # COS part not installed yet: MPS still works for URL inputs
            return None, None
        cos = CosBackend(self.data_dir / "cos", auto_create_buckets=self.config.auto_create_buckets)
        return cos, CosAuthConfig(credentials=self.config.credentials(), token=self.config.token)

    @property
    def endpoint(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    def signed_url(self, bucket: str, region: str, key: str) -> str | None:
        """SignedUrl of an output: a COS presigned URL against this emulator's own address."""
        try:
            from airflow_mps.emulator.cos.auth import presign_url
        except ImportError:
            return None
        return presign_url(
            self.base_url,
            bucket,
            key,
            self.config.secret_id,
            self.config.secret_key,
            self.config.signed_url_expires,
            token=self.config.token,
        )

    # -- routing -----------------------------------------------------------------------------------
    def route(self, method: str, path: str, headers: Headers, query: str = "") -> tuple[str, str]:
        """(service, action) of a request known from its head: service is admin|mps|web|cos."""
        if path.startswith(ADMIN_PREFIX):
            return "admin", path[len(ADMIN_PREFIX) :]
        if method == "POST" and headers.get("X-TC-Action"):
            return "mps", headers.get("X-TC-Action") or ""
        from airflow_mps.emulator.web import is_web_request

        if is_web_request(method, path, query, headers):
            return "web", path
        return "cos", "cos:" + self._cos_action(method, path, headers)

    @staticmethod
    def _cos_action(method: str, path: str, headers: Headers) -> str:
        try:
            from airflow_mps.emulator.cos.responses import resolve_target

            target = resolve_target(EmulatorRequest(method, path, "", headers))
            has_key = bool(target.key)
        except Exception:
            has_key = path.strip("/") != ""
        return (_OBJECT_ACTIONS if has_key else _BUCKET_ACTIONS).get(method, method)

    def dispatch(self, service: str, action: str, request: EmulatorRequest) -> EmulatorResponse:
        if service == "admin":
            return admin.handle(self, action, request)
        if service == "web":
            return self.web.handle(request)
        if service == "mps":
            outcome = self.api.handle(request)
            code = outcome.error_code
            if code is None:
                self.stats.count(action, "succeeded")
            elif code.startswith("RequestLimitExceeded"):
                self.stats.count(action, "throttled", code)
            else:
                self.stats.count(action, "failed", code)
            return outcome.response
        if self.cos is None:
            response = cos_xml_error(
                501, "NotImplemented", "The COS emulator is not available.", request.path
            )
        else:
            from airflow_mps.emulator.cos import responses as cos_responses

            response = cos_responses.handle(request, self.cos, self.cos_auth, region=self.config.region)
        self.stats.count(
            action,
            "succeeded" if response.status < 400 else "failed",
            None if response.status < 400 else str(response.status),
        )
        return response

    def injected(
        self,
        service: str,
        action: str,
        kind: str,
        request_path: str,
        api_error: tuple[str, str] | None = None,
    ) -> EmulatorResponse:
        """The answer for an injected terminal fault (throttle, internal_error, api_error, http_502/503)."""
        if kind == "api_error" and api_error is not None:
            self.stats.count(action, "faulted", kind)
            code, message = api_error
            if service == "mps":
                return error_response(code, message)
            return cos_xml_error(403, code, message, request_path)
        if kind in ("http_502", "http_503"):
            self.stats.count(action, "faulted", kind)
            return _gateway_error(int(kind[-3:]))
        if kind == "throttle":
            self.stats.count(action, "throttled", "injected")
            self.stats.count(action, "faulted", kind)
            limit = self.mps._limit_for(action) or 20
            if service == "mps":
                return error_response("RequestLimitExceeded", throttle_message(limit + 1, limit))
            return cos_xml_error(503, "SlowDown", "Please reduce your request rate.", request_path)
        self.stats.count(action, "faulted", kind)
        if service == "mps":
            return error_response("InternalError", "An internal error occurred; please retry later.")
        return cos_xml_error(
            500, "InternalError", "We encountered an internal error. Please try again.", request_path
        )

    def reset(self) -> None:
        """Clear faults, counters and rate-limit windows (tasks and objects are kept)."""
        self.faults.clear()
        self.stats.reset()
        self.mps.limiter.reset()

    def start(self) -> None:
        self.mps.start()

    def stop(self) -> None:
        self.mps.stop()
        self.dir_lock.release()
        if self._tmp_dir:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)


#: Largest COS object body the emulator accepts in one PUT. Real COS allows 5 GB per PUT, but the
#: emulator holds a body in memory, so it refuses (EntityTooLarge) before reading anything larger.
COS_MAX_BODY_BYTES = 512 * 1024 * 1024


#: Largest piece of a request body read at once while receiving or draining it.
_DRAIN_PIECE = 256 * 1024


class _BadFraming(Exception):
    """The request's body framing (Content-Length / chunk sizes) is malformed: a client error."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def _content_length(headers: Headers) -> int:
    """The declared body length; malformed or negative values are the client's error, not ours."""
    raw = (headers.get("Content-Length") or "").strip()
    if not raw:
        return 0
    if not raw.isdigit() or len(raw) > 18:
        raise _BadFraming(f"Content-Length must be a non-negative integer of bytes, got {raw[:40]!r}.")
    return int(raw)


def _split_target(target: str) -> tuple[str, str]:
    """(path, query) of a request target: origin-form, or absolute-form (HTTP-proxy mode)."""
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)
        return parts.path or "/", parts.query
    path, _, query = target.partition("?")
    return path, query


def _framing_error(service: str, exc: _BadFraming, path: str) -> EmulatorResponse:
    """A 4xx in the service's own error format, as a real front end answers a malformed request."""
    if service == "mps":
        code = "RequestSizeLimitExceeded" if exc.too_large else "InvalidParameter"
        response = error_response(code, str(exc))
    elif exc.too_large:
        response = cos_xml_error(400, "EntityTooLarge", str(exc), path)
    else:
        response = cos_xml_error(400, "InvalidArgument", str(exc), path)
    response.headers.append(("Connection", "close"))
    return response


class _Reset(Exception):
    """Drop the connection with a TCP RST, without answering."""


class EmulatorRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = SERVER_HEADER
    sys_version = ""
    timeout = 120
    server: EmulatorHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def _serve(self) -> None:
        """Answer one request: admin and web pages directly; API calls through stats, faults, latency."""
        target = self.path
        path, query = _split_target(target)
        head = EmulatorRequest(self.command.upper(), path, query, Headers(list(self.headers.items())))
        service, action = self.server.app.route(head.method, path, head.headers, query)
        if service in ("admin", "web"):  # not API calls: no stats, faults or latency
            self._serve_local(service, action, head)
        else:
            self._serve_api(service, action, head, target)

    def _serve_local(self, service: str, action: str, head: EmulatorRequest) -> None:
        """An admin or web request: read its body, dispatch, answer."""
        try:
            body = self._read_body(head.headers)
        except _BadFraming as exc:
            self.close_connection = True
            self._send(json_response({"error": str(exc)}, 400), head.method)
            return
        request = EmulatorRequest(head.method, head.path, head.query, head.headers, body, self.client_address)
        self._send(self.server.app.dispatch(service, action, request), head.method)

    def _serve_api(self, service: str, action: str, head: EmulatorRequest, target: str) -> None:
        """An MPS or COS call: counted, faulted as the fault plan decides, delayed, dispatched, answered."""
        app = self.server.app
        received = time.monotonic()
        app.stats.count(action, "received")
        decided = app.faults.for_request(action)
        if decided.terminal == "reset_before":
            app.stats.count(action, "faulted", "reset_before")
            raise _Reset
        body = self._receive_api_body(service, action, head)
        if body is None:
            return  # already answered: refused on its head, or malformed framing
        delay = app.config.latency_ms / 1000.0 + decided.latency
        if delay > 0:
            time.sleep(delay)
        absolute = service == "cos" and target.startswith(("http://", "https://"))
        request = EmulatorRequest(
            head.method,
            target if absolute else head.path,
            head.query,
            head.headers,
            body,
            self.client_address,
            arrived=received + delay,
        )
        if decided.terminal:
            response = app.injected(service, action, decided.terminal, head.path, decided.api_error)
        else:
            response = app.dispatch(service, action, request)
        if decided.slow > 0:
            time.sleep(decided.slow)
        if decided.reset_after:
            app.stats.count(action, "faulted", "reset_after")
            raise _Reset
        self._send(response, head.method)

    def _receive_api_body(self, service: str, action: str, head: EmulatorRequest) -> bytes | None:
        """The body of an API call, at most the service's limit; ``None`` when this method has already
        answered: a COS request refused on its head (its body drained, never held), a body too large or
        framed badly (the connection then closes: the stream cannot be trusted to frame a next one)."""
        app = self.server.app
        limit = MAX_BODY_BYTES if service == "mps" else COS_MAX_BODY_BYTES
        try:
            length = _content_length(head.headers)
            if length > limit:
                raise _BadFraming(
                    f"The request body is {length} bytes; the limit is {limit} bytes.", too_large=True
                )
            refusal = self._head_refusal(service, head, length)
            if refusal is not None:
                # Refused on its head alone: the body is drained in small pieces, never held (issue 12).
                self._drain_body(head.headers, limit)
                self.close_connection = True
                app.stats.count(action, "failed", str(refusal.status))
                self._send(refusal, head.method)
                return None
            return self._read_body(head.headers, limit)
        except _BadFraming as exc:
            self.close_connection = True  # the rest of the stream cannot be trusted to frame a next request
            app.stats.count(action, "failed", "RequestSizeLimitExceeded" if exc.too_large else "BadFraming")
            self._send(_framing_error(service, exc, head.path), head.method)
            return None

    def _head_refusal(self, service: str, head: EmulatorRequest, length: int) -> EmulatorResponse | None:
        """The COS answer for a request with a body whose head fails the signature check, else None."""
        app = self.server.app
        chunked = "chunked" in (head.headers.get("Transfer-Encoding") or "").lower()
        if service == "cos" and app.cos_auth is not None and (length > 0 or chunked):
            return cos_refusal(app.cos_auth, head)
        return None

    def _read_body(self, headers: Headers, limit: int = MAX_BODY_BYTES) -> bytes:
        """The request body with chunked transfer-encoding removed, at most ``limit`` bytes."""
        chunks: list[bytes] = []
        self._receive_body(headers, limit, chunks.append)
        return b"".join(chunks)

    def _drain_body(self, headers: Headers, limit: int) -> None:
        """Read and discard the body of a refused request, so the client reads the answer instead of a
        reset: at most `_DRAIN_PIECE` bytes are held at a time, whatever the body's size."""
        self._receive_body(headers, limit, lambda piece: None)

    def _receive_body(self, headers: Headers, limit: int, sink: Callable[[bytes], None]) -> None:
        """Feed the (de-chunked) body to ``sink`` in pieces of at most `_DRAIN_PIECE` bytes."""

        def copy(size: int) -> None:
            while size > 0:
                piece = self.rfile.read(min(size, _DRAIN_PIECE))
                if not piece:
                    return  # the client stopped sending: the handler answers what it got
                sink(piece)
                size -= len(piece)

        if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
            total = 0
            while True:
                line = self.rfile.readline(65537)
                size_field = line.split(b";", 1)[0].strip() or b"0"
                try:
                    size = int(size_field, 16)
                except ValueError:
                    raise _BadFraming(f"Malformed chunk size {size_field[:40]!r}.") from None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                total += size
                if total > limit:
                    raise _BadFraming(
                        f"The chunked request body exceeds the limit of {limit} bytes.", too_large=True
                    )
                copy(size)
                self.rfile.readline(65537)
            return
        copy(_content_length(headers))

    def _send(self, response: EmulatorResponse, method: str) -> None:
        self.send_response_only(response.status)
        names = {k.lower() for k, _ in response.headers}
        if "server" not in names:
            self.send_header("Server", SERVER_HEADER)
        if "date" not in names:
            self.send_header("Date", formatdate(usegmt=True))
        for key, value in response.headers:
            self.send_header(key, value)
        if "content-length" not in names and "transfer-encoding" not in names:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if method != "HEAD" and response.body:
            self.wfile.write(response.body)
        self.wfile.flush()

    def _dispatch_method(self) -> None:
        try:
            self._serve()
        except _Reset:
            self.close_connection = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            except OSError:
                pass
        except (ConnectionError, TimeoutError, ssl.SSLError):
            self.close_connection = True
        except Exception:
            log.exception("emulator request failed")
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send(json_response({"error": "emulator internal error"}, 500), "GET")

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _dispatch_method


class EmulatorHTTPServer(ThreadingHTTPServer):
    """Threaded HTTP(S) server bound to an `EmulatorApp`; tracks connections so `stop()` closes them."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, app: EmulatorApp, ssl_context: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__((app.config.host, app.config.port), EmulatorRequestHandler)
        app.config.port = self.server_address[1]
        app.base_url = f"{app.config.scheme}://{app.config.host}:{app.config.port}"

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a DNS lookup that can stall; skip it.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        conn = request
        if self.ssl_context is not None:
            try:
                request.settimeout(30)
                conn = self.ssl_context.wrap_socket(request, server_side=True)
                conn.settimeout(None)
            except (OSError, ssl.SSLError):
                return
        with self._conn_lock:
            self._connections.add(conn)
        handler: Callable[..., Any] = self.RequestHandlerClass  # typeshed binds its server arg to Self
        try:
            handler(conn, client_address, self)
        finally:
            with self._conn_lock:
                self._connections.discard(conn)
            if conn is not request:
                with contextlib.suppress(OSError):
                    conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def close_connections(self) -> None:
        with self._conn_lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class RunningEmulator:
    """An emulator serving in a background thread; `stop()` shuts it down cleanly."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.app = EmulatorApp(config)
        ctx = None
        self.tls_cert: Path | None = None
        if config.tls or config.tls_cert:
            from airflow_mps.emulator.tls import ensure_self_signed, server_context

            if config.tls_cert and config.tls_key:
                cert, key = Path(config.tls_cert), Path(config.tls_key)
            else:
                cert, key = ensure_self_signed(self.app.data_dir)
            self.tls_cert = cert
            config.tls = True
            ctx = server_context(cert, key)
        try:
            self.httpd = EmulatorHTTPServer(self.app, ctx)
        except BaseException:
            self.app.stop()  # e.g. the port is taken: let go of the data dir again
            raise
        self.app.start()
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="mps-emulator-http",
            daemon=True,
        )
        self._thread.start()
        self.app.announce(self.tls_cert)

    @property
    def endpoint(self) -> str:
        return self.app.endpoint

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.httpd.close_connections()
        self._thread.join(5)
        self.app.stop()


def start(config: EmulatorConfig) -> RunningEmulator:
    """Start an emulator for `config` in background threads (port 0 → a free port, see `.endpoint`)."""
    return RunningEmulator(config)


__all__ = ["EmulatorApp", "EmulatorHTTPServer", "FaultPlan", "RunningEmulator", "start"]
