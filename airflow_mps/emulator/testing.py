"""Run the emulator from tests and benchmarks.

- `EmulatorServer(data_dir=None, **config)`: in this process, on background threads, port 0 → a free
  port. `.faults` is the live `FaultPlan`.
- `EmulatorProcess(data_dir, **config)`: a `python -m airflow_mps.emulator` subprocess, for restart and
  kill -9 tests; `.faults` drives the admin endpoint with the same method names.

Both offer `.endpoint` ("127.0.0.1:PORT"), `.secret_id`, `.secret_key`, `.region`, `.http_profile()`,
`.client_profile()`, `.credential()`, `.mps_client()`, `.cos_config()`, `.cos_client()`,
`.ensure_bucket()`, `.connection_uri()`, `.stats()`, `.reset()`, `.wait_idle()`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import fields
from pathlib import Path
from typing import Any

from airflow_mps.emulator.config import ENV_PREFIX, EmulatorConfig, format_retention, parse_duration_range
from airflow_mps.emulator.faults import FaultPlan


class _ClientHelpers:
    """SDK conveniences shared by the in-thread and subprocess emulators.

    A subclass sets ``config`` and provides ``endpoint`` and ``tls_cert`` (known once it runs); the
    credentials, region and scheme are read from ``config``.
    """

    config: EmulatorConfig

    @property
    def endpoint(self) -> str:
        """``host:port`` of the running emulator."""
        raise NotImplementedError

    @property
    def tls_cert(self) -> Path | None:
        """The certificate to trust when the emulator serves https (``None`` for http)."""
        raise NotImplementedError

    @property
    def secret_id(self) -> str:
        return self.config.secret_id

    @property
    def secret_key(self) -> str:
        return self.config.secret_key

    @property
    def region(self) -> str:
        return self.config.region

    @property
    def token(self) -> str | None:
        return self.config.token

    @property
    def scheme(self) -> str:
        return self.config.scheme

    def http_profile(self, **kwargs: Any) -> Any:
        from tencentcloud.common.profile.http_profile import HttpProfile

        profile = HttpProfile(endpoint=self.endpoint, protocol=self.scheme, **kwargs)
        if self.tls_cert and "certification" not in kwargs:
            profile.certification = str(self.tls_cert)
        return profile

    def client_profile(self, **kwargs: Any) -> Any:
        from tencentcloud.common.profile.client_profile import ClientProfile

        return ClientProfile(httpProfile=self.http_profile(), **kwargs)

    def credential(
        self, secret_key: str | None = None, secret_id: str | None = None, token: str | None = None
    ) -> Any:
        from tencentcloud.common.credential import Credential

        return Credential(secret_id or self.secret_id, secret_key or self.secret_key, token or self.token)

    def mps_client(self, **cred: Any) -> Any:
        """A sync `MpsClient` pointed at the emulator."""
        from tencentcloud.mps.v20190612 import mps_client

        return mps_client.MpsClient(self.credential(**cred), self.region, self.client_profile())

    def async_mps_client(self, **cred: Any) -> Any:
        """An async `MpsClient` (use with `async with`).

        The async SDK's ``certification`` is a *client* certificate, not a CA bundle, so it is never
        set here; under TLS the async client trusts the emulator through ``SSL_CERT_FILE`` (read when
        the client is created) — the provider's hook passes the CA to its own httpx client instead.
        """
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.mps.v20190612 import mps_client_async

        profile = ClientProfile(httpProfile=self.http_profile(certification=None))
        return mps_client_async.MpsClient(self.credential(**cred), self.region, profile)

    def cos_config(self, region: str | None = None, **kwargs: Any) -> Any:
        """qcloud_cos `CosConfig` in IP/Port mode (the bucket travels in the Host header)."""
        from qcloud_cos import CosConfig

        host, _, port = self.endpoint.rpartition(":")
        options: dict[str, Any] = {
            "Region": region or self.region,
            "SecretId": self.secret_id,
            "SecretKey": self.secret_key,
            "Scheme": self.scheme,
            "IP": host,
            "Port": int(port),
            "Timeout": 10,
        }
        if self.token:
            options["Token"] = self.token
        if self.tls_cert:
            options["VerifySSL"] = str(self.tls_cert)
        options.update(kwargs)
        return CosConfig(**options)

    def cos_client(self, region: str | None = None, retry: int = 0, **kwargs: Any) -> Any:
        from qcloud_cos import CosS3Client

        return CosS3Client(self.cos_config(region, **kwargs), retry=retry)

    def ensure_bucket(self, bucket: str, region: str | None = None) -> None:
        """Create ``bucket`` with PUT Bucket (the SDK's ``create_bucket``) unless it exists.

        The emulator, like COS, answers a PUT Object into a missing bucket with ``NoSuchBucket`` and
        fails an MPS task whose output bucket is missing: tests create their buckets first.
        """
        client = self.cos_client(region)
        if not client.bucket_exists(Bucket=bucket):
            client.create_bucket(Bucket=bucket)

    def connection_uri(self) -> str:
        """Airflow connection URI for the `tencentcloud` connection type (contains the key)."""
        cfg = EmulatorConfig(
            secret_id=self.secret_id,
            secret_key=self.secret_key,
            region=self.region,
            token=self.token,
            tls=self.scheme == "https",
            extra_regions=[self.region],
        )
        return cfg.connection_uri(self.endpoint, ca_bundle=self.tls_cert)

    # -- admin ------------------------------------------------------------------------------------
    def admin(self, name: str, method: str = "GET", data: Any = None, timeout: float = 30) -> Any:
        url = f"{self.scheme}://{self.endpoint}/_emulator/{name}"
        body = None if data is None else json.dumps(data).encode()
        req = urllib.request.Request(url, data=body, method=method)
        ctx = None
        if self.scheme == "https":
            import ssl

            ctx = ssl.create_default_context(cafile=str(self.tls_cert) if self.tls_cert else None)
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            return json.loads(resp.read())


class MemoryTaskStateStore:
    """An in-memory stand-in for Airflow's ``context["task_state_store"]`` (get/set/delete/clear).

    Values make a JSON round trip on the way in and out, as they do through Airflow's execution API,
    so code that stores non-JSON values or mutates what it read fails here as it would for real. Use it
    to drive an operator's ``execute()`` against the emulator without a scheduler; ``data`` holds what
    was stored.
    """

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.data[key])) if key in self.data else default

    def set(self, key: str, value: Any) -> None:
        self.data[key] = json.loads(json.dumps(value))

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def clear(self) -> None:
        self.data.clear()


class RemoteFaults:
    """`FaultPlan`'s API over the admin endpoint (for an emulator in another process)."""

    def __init__(self, owner: _ClientHelpers) -> None:
        self._owner = owner

    def add(self, kind: str, action: str = "*", **options: Any) -> dict[str, Any]:
        return self._owner.admin("faults", "POST", {"kind": kind, "action": action, **options})["added"][0]

    def clear(self) -> None:
        self._owner.admin("faults", "DELETE")

    def list(self) -> list[dict[str, Any]]:
        return self._owner.admin("faults")["faults"]

    def latency(self, ms: float, action: str = "*", **opts: Any) -> Any:
        return self.add("latency", action, ms=ms, **opts)

    def slow(self, seconds: float, action: str = "*", **opts: Any) -> Any:
        return self.add("slow", action, seconds=seconds, **opts)

    def throttle(self, action: str = "*", **opts: Any) -> Any:
        return self.add("throttle", action, **opts)

    def internal_error(self, action: str = "*", **opts: Any) -> Any:
        return self.add("internal_error", action, **opts)

    def api_error(
        self, code: str, action: str = "*", message: str = "Injected API error.", **opts: Any
    ) -> Any:
        return self.add("api_error", action, api_code=code, api_message=message, **opts)

    def http_error(self, status: int, action: str = "*", **opts: Any) -> Any:
        return self.add(f"http_{status}", action, **opts)

    def reset_before(self, action: str = "*", **opts: Any) -> Any:
        return self.add("reset_before", action, **opts)

    def reset_after(self, action: str = "*", **opts: Any) -> Any:
        return self.add("reset_after", action, **opts)

    def fail_tasks(
        self,
        err_code: int = 70000,
        err_msg: str = "InternalError",
        message: str = "Injected task failure.",
        **opts: Any,
    ) -> Any:
        return self.add("task_fail", "task", err_code=err_code, err_msg=err_msg, message=message, **opts)


_CONFIG_FIELDS = {f.name for f in fields(EmulatorConfig)}


def _make_config(data_dir: str | os.PathLike[str] | None, overrides: dict[str, Any]) -> EmulatorConfig:
    unknown = set(overrides) - _CONFIG_FIELDS - {"task_duration_ms"}
    if unknown:
        raise TypeError(f"unknown emulator option(s): {sorted(unknown)}")
    overrides = dict(overrides)
    if "task_duration_ms" in overrides:
        overrides["task_duration"] = parse_duration_range(overrides.pop("task_duration_ms"))
    overrides.setdefault("port", 0)
    return EmulatorConfig(data_dir=Path(data_dir) if data_dir else None, **overrides)


class EmulatorServer(_ClientHelpers):
    """In-thread emulator; a context manager. `EmulatorServer(data_dir=None, **EmulatorConfig fields)`."""

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, **config: Any) -> None:
        self.config = _make_config(data_dir, config)
        self._running: Any = None

    def start(self) -> EmulatorServer:
        from airflow_mps.emulator.server import start

        self._running = start(self.config)
        return self

    def stop(self) -> None:
        if self._running is not None:
            self._running.stop()
            self._running = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def app(self) -> Any:
        return self._running.app

    @property
    def endpoint(self) -> str:
        return self._running.endpoint

    @property
    def tls_cert(self) -> Path | None:
        return self._running.tls_cert if self._running else None

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.endpoint}"

    @property
    def faults(self) -> FaultPlan:
        return self.app.faults

    @property
    def cos_backend(self) -> Any:
        return self.app.cos

    def stats(self) -> dict[str, Any]:
        return self.app.stats.snapshot()

    def reset(self) -> None:
        self.app.reset()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        return self.app.mps.wait_idle(timeout)


class EmulatorProcess(_ClientHelpers):
    """The emulator as a subprocess (`python -m airflow_mps.emulator`); start/stop/kill/restart."""

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, **config: Any) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if not data_dir:
            self._tmp = tempfile.TemporaryDirectory(prefix="mps-emulator-proc-")
            data_dir = self._tmp.name
        self.data_dir = Path(data_dir)
        self.config = _make_config(self.data_dir, config)
        self.proc: subprocess.Popen[bytes] | None = None
        self._endpoint: str | None = None
        self._tls_cert: Path | None = None
        self.faults = RemoteFaults(self)

    @property
    def tls_cert(self) -> Path | None:
        return self._tls_cert

    @property
    def endpoint(self) -> str:
        if self._endpoint is None:
            raise RuntimeError("the emulator process is not running")
        return self._endpoint

    def _argv(self, ready_file: Path) -> list[str]:
        c = self.config
        port = int(self._endpoint.rpartition(":")[2]) if self._endpoint else c.port
        argv = [
            sys.executable,
            "-m",
            "airflow_mps.emulator",
            "--host",
            c.host,
            "--port",
            str(port),
            "--data-dir",
            str(self.data_dir),
            "--secret-id",
            c.secret_id,
            "--secret-key",
            c.secret_key,
            "--region",
            c.region,
            "--appid",
            str(c.appid),
            "--process-image-rate",
            str(c.process_image_rate),
            "--describe-rate",
            str(c.describe_rate),
            "--workers",
            str(c.workers),
            "--latency-ms",
            str(c.latency_ms),
            "--task-duration-ms",
            f"{c.task_duration[0] * 1000:g}:{c.task_duration[1] * 1000:g}",
            "--seed",
            str(c.seed),
            "--ready-file",
            str(ready_file),
            "--log-level",
            "WARNING",
        ]
        if c.token:
            argv += ["--token", c.token]
        if c.tls:
            argv.append("--tls")
        if c.tls_cert and c.tls_key:
            argv += ["--tls-cert", str(c.tls_cert), "--tls-key", str(c.tls_key)]
        for spec in c.faults:
            argv += ["--fault", spec]
        return argv

    def _env(self) -> dict[str, str]:
        """The subprocess environment: the fidelity fields travel as `MPS_EMULATOR_*` variables (read by
        `config.add_fidelity_arguments`), so a CLI without those flags still starts."""
        c = self.config
        env = dict(os.environ)
        env[ENV_PREFIX + "ECHO_LISTING_INPUT"] = "1" if c.echo_listing_input else "0"
        env[ENV_PREFIX + "LISTING_WAITING"] = c.listing_waiting
        if c.extra_regions:
            env[ENV_PREFIX + "EXTRA_REGIONS"] = ",".join(c.extra_regions)
        env[ENV_PREFIX + "AUTO_CREATE_BUCKETS"] = "1" if c.auto_create_buckets else "0"
        env[ENV_PREFIX + "TASK_RETENTION_SECONDS"] = format_retention(c.task_retention_seconds)
        return env

    def start(self, timeout: float = 30.0) -> EmulatorProcess:
        """Start (or restart on the same port) and wait until it answers its health endpoint."""
        ready = self.data_dir / ".ready.json"
        ready.unlink(missing_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.data_dir / "emulator.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self._argv(ready), stdout=self._log, stderr=subprocess.STDOUT, env=self._env()
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"emulator exited with {self.proc.returncode}; see {self.data_dir}/emulator.log"
                )
            if ready.exists():
                try:
                    info = json.loads(ready.read_text())
                except json.JSONDecodeError:
                    info = None
                if info:
                    self._endpoint = info["endpoint"]
                    self._tls_cert = Path(info["tls_cert"]) if info.get("tls_cert") else None
                    self.admin("health")
                    return self
            time.sleep(0.05)
        self.kill()
        raise TimeoutError("the emulator process did not become ready")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait (clean stop)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        code = self.proc.returncode
        self.proc = None
        self._log.close()
        return code

    def kill(self) -> None:
        """SIGKILL (kill -9): no clean-up at all."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(15)
        self.proc = None
        self._log.close()

    def restart(self) -> EmulatorProcess:
        self.stop()
        return self.start()

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def stats(self) -> dict[str, Any]:
        return self.admin("stats")

    def reset(self) -> None:
        self.admin("reset", "POST", {})

    def wait_idle(self, timeout: float = 30.0) -> bool:
        return bool(self.admin(f"wait-idle?timeout={timeout}", "POST", {}, timeout=timeout + 5)["idle"])


__all__ = ["EmulatorProcess", "EmulatorServer", "RemoteFaults"]
