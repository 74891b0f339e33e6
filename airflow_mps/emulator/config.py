"""Emulator configuration: fixed, documented defaults for local use, overridable by flags and env vars."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

DEFAULT_SECRET_ID = "AKIDMPSEMULATOR000000000000000000"
DEFAULT_SECRET_KEY = "mps-emulator-secret-key"  # a published, local-only test key, not a secret
DEFAULT_REGION = "ap-guangzhou"
DEFAULT_APPID = "1250000000"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9100
MPS_VERSION = "2019-06-12"

#: Environment variables read by the CLI (flag > env var > default).
ENV_PREFIX = "MPS_EMULATOR_"


def parse_duration_range(value: str | int | float | tuple[float, float] | None) -> tuple[float, float]:
    """Parse a minimum task duration in milliseconds: `"250"` or a range `"100:400"` → seconds (lo, hi)."""
    if value is None or value == "":
        return (0.0, 0.0)
    if isinstance(value, tuple):
        lo, hi = value
    elif isinstance(value, (int, float)):
        lo = hi = float(value)
    else:
        parts = str(value).split(":")
        if len(parts) > 2:
            raise ValueError(f"task duration must be `MS` or `MIN:MAX` milliseconds, got {value!r}")
        lo = float(parts[0])
        hi = float(parts[1]) if len(parts) == 2 else lo
    if lo < 0 or hi < lo:
        raise ValueError(f"task duration range must satisfy 0 <= min <= max, got {value!r}")
    return (lo / 1000.0, hi / 1000.0)


@dataclass
class EmulatorConfig:
    """Everything the emulator needs to start. Durations are seconds unless the name says otherwise."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: Path | None = None
    secret_id: str = DEFAULT_SECRET_ID
    secret_key: str = DEFAULT_SECRET_KEY
    token: str | None = None
    region: str = DEFAULT_REGION
    appid: str = DEFAULT_APPID
    process_image_rate: int = 20
    describe_rate: int = 100
    workers: int = 3
    latency_ms: float = 0.0
    #: Minimum processing time of a task, (lo, hi) seconds, drawn uniformly per task from a seeded RNG.
    task_duration: tuple[float, float] = (0.0, 0.0)
    seed: int = 0
    tls: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Fault specs in the CLI syntax of `faults.parse_fault_spec`.
    faults: list[str] = field(default_factory=list)
    #: Timeout for fetching `URL` inputs.
    url_fetch_timeout: float = 10.0
    #: Lifetime of the SignedUrl in task details.
    signed_url_expires: int = 3600
    #: Extra SecretId → SecretKey pairs accepted besides the main one (tests use them for per-id limits).
    extra_credentials: dict[str, str] = field(default_factory=dict)

    def credentials(self) -> dict[str, str]:
        creds = dict(self.extra_credentials)
        creds[self.secret_id] = self.secret_key
        return creds

    @property
    def scheme(self) -> str:
        return "https" if self.tls or self.tls_cert else "http"

    def connection_uri(self, endpoint: str) -> str:
        """A ready Airflow connection URI for the `tencentcloud` connection type (contains the key)."""
        uri = (
            f"tencentcloud://{quote(self.secret_id, safe='')}:{quote(self.secret_key, safe='')}@/"
            f"?region={quote(self.region, safe='')}&endpoint={quote(endpoint, safe='')}&protocol={self.scheme}"
        )
        if self.token:
            uri += f"&token={quote(self.token, safe='')}"
        return uri


def env_default(name: str, default: str | None = None) -> str | None:
    """Value of `MPS_EMULATOR_<NAME>` or the default."""
    return os.environ.get(ENV_PREFIX + name.upper().replace("-", "_"), default)
