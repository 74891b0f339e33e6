"""Emulator configuration: fixed, documented defaults for local use, overridable by flags and env vars.

The defaults are the documented service at its strictest (design.md §5, issue 11): Describe* limited
to 20/s, DescribeImageTasks listing only FINISH/PROCESSING tasks and no ``Input``, requests from an
undocumented region refused, no bucket created by a write into it, tasks forgotten 7 days after
their CreateTime. Each fidelity choice has a field here and a row in
docs/emulator-fidelity.md; ``lenient=True`` is the one switch back to the emulator's earlier,
kinder behaviour for code that has not caught up yet.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow_mps.models.constants import MPS_REGIONS, TASK_RETENTION_SECONDS

DEFAULT_SECRET_ID = "AKIDMPSEMULATOR000000000000000000"
DEFAULT_SECRET_KEY = "mps-emulator-secret-key"  # a published, local-only test key, not a secret
DEFAULT_REGION = "ap-guangzhou"
DEFAULT_APPID = "1250000000"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9100
MPS_VERSION = "2019-06-12"
#: ProcessImage: 20 requests/s per account (every doc version, mps-api.md §0.3).
DEFAULT_PROCESS_IMAGE_RATE = 20
#: DescribeImageTaskDetail / DescribeImageTasks: the docs disagree (20/s on 862/134161 and 1041/82054,
#: 100/s on pages updated 2026-05; mps-api.md §0.12): the strictest is the default.
DEFAULT_DESCRIBE_RATE = 20
#: What a WAITING task looks like to DescribeImageTasks (api.json enumerates only FINISH and
#: PROCESSING; the docs say nothing of WAITING tasks): ``hidden`` — not listed at all, the harder case
#: and the default; ``processing`` — listed (and filtered) as PROCESSING; ``waiting`` — listed as
#: WAITING and ``Status=WAITING`` accepted (the emulator before issue 11).
LISTING_WAITING_CHOICES: tuple[str, ...] = ("hidden", "processing", "waiting")
#: What ``lenient=True`` restores (each only where the field was left at its strict default).
LENIENT_OVERRIDES: dict[str, Any] = {
    "describe_rate": 100,
    "echo_listing_input": True,
    "listing_waiting": "waiting",
    "auto_create_buckets": True,
    "task_retention_seconds": None,
}

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
    process_image_rate: int = DEFAULT_PROCESS_IMAGE_RATE
    describe_rate: int = DEFAULT_DESCRIBE_RATE
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
    #: DescribeImageTasks rows carry ``Input`` (the submitted InputInfo as compact JSON). Off by default:
    #: the format of ``Input`` is unpublished and the official example omits it (mps-api.md §0.9).
    echo_listing_input: bool = False
    #: How DescribeImageTasks treats WAITING tasks: one of :data:`LISTING_WAITING_CHOICES`.
    listing_waiting: str = "hidden"
    #: Regions accepted in ``X-TC-Region`` besides the documented :data:`MPS_REGIONS`.
    extra_regions: list[str] = field(default_factory=list)
    #: A COS PUT Object (or copy) into a bucket that does not exist, and an MPS task writing its output
    #: into one, create the bucket. Off by default: real COS answers ``NoSuchBucket`` (404) and the
    #: task FINISHes failed (``InvalidInput``); buckets come from PUT Bucket or the ``seed`` command.
    auto_create_buckets: bool = False
    #: How long a task is kept, counted from its CreateTime on the emulator's clock: an older task is
    #: ``ResourceNotFound.TaskNotFound`` to DescribeImageTaskDetail and absent from DescribeImageTasks
    #: (mps-api.md §2.1, §2.3: 7 days). ``None`` keeps tasks forever (the emulator before issue 11).
    task_retention_seconds: float | None = TASK_RETENTION_SECONDS
    #: One switch back to the pre-issue-11 behaviour: :data:`LENIENT_OVERRIDES`.
    lenient: bool = False

    def __post_init__(self) -> None:
        if self.lenient:
            for name, value in LENIENT_OVERRIDES.items():
                if getattr(self, name) == _STRICT_DEFAULTS[name]:
                    setattr(self, name, value)
        if self.listing_waiting not in LISTING_WAITING_CHOICES:
            raise ValueError(
                f"listing_waiting must be one of {', '.join(LISTING_WAITING_CHOICES)}, got {self.listing_waiting!r}"
            )
        if self.task_retention_seconds is not None and not self.task_retention_seconds > 0:
            raise ValueError(
                f"task_retention_seconds must be a positive number of seconds or None (forever), "
                f"got {self.task_retention_seconds!r}"
            )
        if self.region not in self.regions():
            raise ValueError(
                f"region {self.region!r} is not an MPS region; documented: {', '.join(MPS_REGIONS)} "
                "(add others with extra_regions / --extra-region)"
            )

    def regions(self) -> tuple[str, ...]:
        """Every region accepted in ``X-TC-Region``: the documented ones plus ``extra_regions``."""
        return (*MPS_REGIONS, *(r for r in self.extra_regions if r not in MPS_REGIONS))

    def credentials(self) -> dict[str, str]:
        creds = dict(self.extra_credentials)
        creds[self.secret_id] = self.secret_key
        return creds

    @property
    def scheme(self) -> str:
        return "https" if self.tls or self.tls_cert else "http"

    def connection_uri(self, endpoint: str, ca_bundle: str | Path | None = None) -> str:
        """A ready Airflow connection URI for the `tencentcloud` connection type (contains the key).

        Under TLS, ``ca_bundle`` (the emulator's self-signed certificate) goes into the ``ca_bundle``
        extra, so the provider trusts exactly that certificate with nothing else configured.
        """
        uri = (
            f"tencentcloud://{quote(self.secret_id, safe='')}:{quote(self.secret_key, safe='')}@/"
            f"?region={quote(self.region, safe='')}&endpoint={quote(endpoint, safe='')}&protocol={self.scheme}"
        )
        if self.token:
            uri += f"&token={quote(self.token, safe='')}"
        if ca_bundle and self.scheme == "https":
            uri += f"&ca_bundle={quote(str(ca_bundle), safe='')}"
        return uri


def env_default(name: str, default: str | None = None) -> str | None:
    """Value of `MPS_EMULATOR_<NAME>` or the default."""
    return os.environ.get(ENV_PREFIX + name.upper().replace("-", "_"), default)


#: The strict default of every field :data:`LENIENT_OVERRIDES` may change.
_STRICT_DEFAULTS: dict[str, Any] = {
    "describe_rate": DEFAULT_DESCRIBE_RATE,
    "echo_listing_input": False,
    "listing_waiting": "hidden",
    "auto_create_buckets": False,
    "task_retention_seconds": TASK_RETENTION_SECONDS,
}


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


#: What ``--task-retention-seconds`` (and its variable) accepts for "keep tasks forever".
RETENTION_FOREVER: tuple[str, ...] = ("forever", "none")


def parse_retention(value: str | float | None) -> float | None:
    """A task retention from the CLI or the environment: seconds (> 0), or ``forever``/``none`` → None."""
    if value is None or (isinstance(value, str) and value.strip().lower() in RETENTION_FOREVER):
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"task retention must be a number of seconds or 'forever', got {value!r}"
        ) from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"task retention must be more than 0 seconds, got {value!r}")
    return seconds


def format_retention(seconds: float | None) -> str:
    """The CLI / environment spelling of a task retention (the inverse of :func:`parse_retention`)."""
    return "forever" if seconds is None else f"{seconds:g}"


def add_fidelity_arguments(parser: argparse.ArgumentParser) -> None:
    """The CLI flags of the fidelity fields (each also ``MPS_EMULATOR_<FLAG>``; flag > env > default).

    The CLI wires them with one line each: ``add_fidelity_arguments(parser)`` in ``build_parser`` and
    ``**fidelity_options(args)`` in the ``EmulatorConfig(...)`` call of ``config_from_args``.
    """
    env = env_default
    parser.add_argument(
        "--echo-listing-input",
        action="store_true",
        default=_flag(env("echo_listing_input")),
        help="DescribeImageTasks rows carry Input (the InputInfo as JSON); off = as documented",
    )
    parser.add_argument(
        "--listing-waiting",
        choices=LISTING_WAITING_CHOICES,
        default=env("listing_waiting", "hidden"),
        help="how DescribeImageTasks shows WAITING tasks (default: hidden)",
    )
    parser.add_argument(
        "--extra-region",
        action="append",
        default=[r for r in (env("extra_regions") or "").split(",") if r],
        help="accept this X-TC-Region besides the documented MPS regions; repeatable",
    )
    parser.add_argument(
        "--auto-create-buckets",
        action="store_true",
        default=_flag(env("auto_create_buckets")),
        help="a COS PUT (or an MPS output) into a missing bucket creates it; off = NoSuchBucket, as COS",
    )
    parser.add_argument(
        "--task-retention-seconds",
        type=parse_retention,
        default=env("task_retention_seconds", str(TASK_RETENTION_SECONDS)),  # parsed by argparse
        metavar="SECONDS|forever",
        help=f"forget tasks this long after their CreateTime (default: {TASK_RETENTION_SECONDS}, 7 days)",
    )
    parser.add_argument(
        "--lenient",
        action="store_true",
        default=_flag(env("lenient")),
        help="the pre-issue-11 behaviour: Describe* 100/s, Input echoed, WAITING listable, buckets "
        "created on write, tasks kept forever",
    )


def fidelity_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`EmulatorConfig` keyword arguments of :func:`add_fidelity_arguments`' flags."""
    return {
        "echo_listing_input": bool(args.echo_listing_input),
        "listing_waiting": str(args.listing_waiting),
        "extra_regions": list(args.extra_region or []),
        "auto_create_buckets": bool(args.auto_create_buckets),
        "task_retention_seconds": args.task_retention_seconds,
        "lenient": bool(args.lenient),
    }
