"""Turn the batch operator's arguments into a list of work items, validating everything first.

Every check here runs before any API call, and every error names the operator argument at fault
(``BatchArgumentError.field``) so the operator can turn it into an ``AirflowFailException`` that tells
the user what to fix.

Layout rule: an input ``cos://src/raw/dt=1/a/b.png`` under the source prefix ``raw/dt=1/`` becomes
``<destination prefix>a/b.<ext>``, where ``<ext>`` follows ``image_task.EncodeConfig.Format``
(``JPEG`` → ``jpg``) or, without a format, the input's own extension. For an explicit list of inputs
the relative part is taken under the inputs' longest common directory.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_mps.batch import DEFAULT_SUFFIXES

__all__ = ["DEFAULT_SUFFIXES"]  # re-exported: the operator's default, defined in the package

#: ``EncodeConfig.Format`` (case-insensitive) → the extension the output key gets.
FORMAT_EXTENSIONS: dict[str, str] = {"jpeg": "jpg", "jpg": "jpg", "png": "png", "bmp": "bmp", "webp": "webp"}

_SUFFIX_RE = re.compile(r"^\.[a-z0-9]{1,10}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$", re.IGNORECASE)

MAX_SUBMIT_CONCURRENCY = 64


class BatchArgumentError(ValueError):
    """An operator argument is invalid. ``field`` is the argument's name, ``allowed`` what would do."""

    def __init__(self, field: str, message: str, allowed: str | None = None) -> None:
        self.field = field
        self.allowed = allowed
        text = f"{field}: {message}"
        if allowed:
            text += f"; allowed: {allowed}"
        super().__init__(text)


@dataclass(frozen=True)
class CosLocation:
    """A bucket and a key or key prefix (no leading slash)."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"cos://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class BatchItem:
    """One image of the batch: where it is read from and the output key MPS will write."""

    input_bucket: str
    input_key: str
    output_key: str

    @property
    def input_uri(self) -> str:
        """Stable identity of the item (used in the ledger, the trigger and the manifest)."""
        return f"cos://{self.input_bucket}/{self.input_key}"


@dataclass(frozen=True)
class BatchConfig:
    """The operator's arguments once validated (what the plan, the submitter and the manifest need)."""

    source: CosLocation | list[CosLocation]
    destination: CosLocation
    suffixes: tuple[str, ...]
    image_task: dict[str, Any] | None
    #: The output extension (``jpg`` for ``EncodeConfig.Format`` JPEG), ``None`` to keep the input's.
    extension: str | None


def build_request(item: BatchItem, config: BatchConfig, region: str) -> Any:
    """The ``ProcessImageRequest`` of one image (validated; raises the models' ``MpsError``)."""
    from airflow_mps.models import ProcessImageRequest  # lazy: DAG parsing never needs the models

    return ProcessImageRequest.build(
        input={
            "Type": "COS",
            "CosInputInfo": {"Bucket": item.input_bucket, "Region": region, "Object": "/" + item.input_key},
        },
        output_storage={
            "Type": "COS",
            "CosOutputStorage": {"Bucket": config.destination.bucket, "Region": region},
        },
        output_path="/" + item.output_key,
        image_task=config.image_task,
        region=region,
    )


def parse_cos_location(value: Any, field: str, *, prefix: bool) -> CosLocation:
    """Parse ``cos://bucket/key`` (``prefix=False``) or ``cos://bucket/prefix/`` (``prefix=True``)."""
    allowed = "cos://<bucket>/<prefix>/ (a prefix ends with '/')" if prefix else "cos://<bucket>/<key>"
    if not isinstance(value, str):
        raise BatchArgumentError(field, f"{value!r} is not a string", allowed)
    if not value.startswith("cos://"):
        raise BatchArgumentError(field, f"{value!r} is not a cos:// URI", allowed)
    rest = value[len("cos://") :]
    bucket, _, key = rest.partition("/")
    if not bucket or not _BUCKET_RE.match(bucket):
        raise BatchArgumentError(field, f"{value!r} has no valid bucket name", allowed)
    if key.startswith("/") or "//" in key or any(part in (".", "..") for part in key.split("/")):
        raise BatchArgumentError(field, f"{value!r} has an empty, '.' or '..' path segment", allowed)
    if prefix:
        if key and not key.endswith("/"):
            raise BatchArgumentError(field, f"{value!r} is not a prefix (it must end with '/')", allowed)
    elif not key or key.endswith("/"):
        raise BatchArgumentError(field, f"{value!r} names no object", allowed)
    return CosLocation(bucket, key)


def normalize_suffixes(suffixes: Any) -> tuple[str, ...]:
    """Lower-cased suffixes from a tuple/list or a comma-separated string (what a template renders)."""
    allowed = "file suffixes such as ('.jpg', '.png'): a dot then 1-10 letters or digits"
    if isinstance(suffixes, str):
        suffixes = [s for s in (p.strip() for p in suffixes.strip("()[] ").split(",")) if s]
        suffixes = [s.strip("'\"") for s in suffixes]
    if not isinstance(suffixes, (list, tuple, set, frozenset)) or not suffixes:
        raise BatchArgumentError("suffixes", f"{suffixes!r} is not a non-empty list of suffixes", allowed)
    out: list[str] = []
    for suffix in suffixes:
        if not isinstance(suffix, str) or not _SUFFIX_RE.match(suffix.lower()):
            raise BatchArgumentError("suffixes", f"{suffix!r} is not a file suffix", allowed)
        if suffix.lower() not in out:
            out.append(suffix.lower())
    return tuple(out)


def normalize_image_task(image_task: Any) -> dict[str, Any] | None:
    """The ``image_task`` argument as a dict (a template may render a JSON string)."""
    if image_task is None or isinstance(image_task, Mapping):
        return dict(image_task) if image_task is not None else None
    if isinstance(image_task, str):
        try:
            parsed = json.loads(image_task)
        except ValueError as err:
            raise BatchArgumentError("image_task", f"is not valid JSON ({err})", "an ImageTask dict") from err
        if isinstance(parsed, dict):
            return parsed
    raise BatchArgumentError(
        "image_task", f"{image_task!r} is not a dict", "an ImageTask dict or JSON object"
    )


def output_extension(image_task: Mapping[str, Any] | None) -> str | None:
    """The output's extension forced by ``EncodeConfig.Format``, or ``None`` (keep the input's)."""
    encode = (image_task or {}).get("EncodeConfig") or {}
    fmt = encode.get("Format") if isinstance(encode, Mapping) else None
    if fmt in (None, ""):
        return None
    if not isinstance(fmt, str) or fmt.lower() not in FORMAT_EXTENSIONS:
        raise BatchArgumentError(
            "image_task.EncodeConfig.Format", f"{fmt!r} is not supported", "JPEG, PNG, BMP or WebP"
        )
    return FORMAT_EXTENSIONS[fmt.lower()]


def validate_numbers(
    *,
    max_failed_ratio: Any,
    submit_concurrency: Any,
    poll_interval: Any,
    timeout: Any,
    max_images: Any,
    max_failed_in_xcom: Any,
) -> None:
    """Range checks for the operator's numeric arguments (bool is never accepted as a number)."""

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if not number(max_failed_ratio) or not 0.0 <= float(max_failed_ratio) <= 1.0:
        raise BatchArgumentError(
            "max_failed_ratio", f"{max_failed_ratio!r} is out of range", "a number in [0, 1]"
        )
    if (
        not isinstance(submit_concurrency, int)
        or isinstance(submit_concurrency, bool)
        or not 1 <= submit_concurrency <= MAX_SUBMIT_CONCURRENCY
    ):
        raise BatchArgumentError(
            "submit_concurrency",
            f"{submit_concurrency!r} is out of range",
            f"an integer from 1 to {MAX_SUBMIT_CONCURRENCY}",
        )
    if not number(poll_interval) or poll_interval <= 0:
        raise BatchArgumentError("poll_interval", f"{poll_interval!r} is not positive", "seconds > 0")
    if timeout is not None and (not number(timeout) or timeout <= 0):
        raise BatchArgumentError("timeout", f"{timeout!r} is not positive", "None or seconds > 0")
    if max_images is not None and (
        not isinstance(max_images, int) or isinstance(max_images, bool) or max_images < 1
    ):
        raise BatchArgumentError(
            "max_images", f"{max_images!r} is not a positive integer", "None or an integer >= 1"
        )
    if (
        not isinstance(max_failed_in_xcom, int)
        or isinstance(max_failed_in_xcom, bool)
        or max_failed_in_xcom < 0
    ):
        raise BatchArgumentError(
            "max_failed_in_xcom", f"{max_failed_in_xcom!r} is invalid", "an integer >= 0"
        )


def parse_source(source: Any) -> CosLocation | list[CosLocation]:
    """A prefix location, or the explicit list of object locations (duplicates removed, order kept)."""
    if isinstance(source, str):
        if source.startswith("[") and source.endswith("]"):  # a template rendered a JSON list
            try:
                source = json.loads(source)
            except ValueError as err:
                raise BatchArgumentError("source", f"is not a valid JSON list ({err})") from err
        else:
            return parse_cos_location(source, "source", prefix=True)
    if isinstance(source, (list, tuple)):
        if not source:
            return []
        seen: dict[str, CosLocation] = {}
        for value in source:
            loc = parse_cos_location(value, "source", prefix=False)
            seen.setdefault(loc.uri, loc)
        return list(seen.values())
    raise BatchArgumentError(
        "source",
        f"{source!r} is neither a URI nor a list",
        "cos://<bucket>/<prefix>/ or a list of cos:// URIs",
    )


def _common_dir(keys: Sequence[str]) -> str:
    dirs = [posixpath.dirname(k) for k in keys]
    common = posixpath.commonpath(dirs) if all(dirs) else ""
    # commonpath works on whole segments; "" means the bucket root.
    return f"{common}/" if common else ""


def plan_items(
    inputs: Iterable[CosLocation],
    source_prefix: str | None,
    destination: CosLocation,
    extension: str | None,
) -> list[BatchItem]:
    """Map each input to its output key under ``destination`` (layout mirrored; see module docstring).

    Raises ``BatchArgumentError`` when an output would overwrite an input, when two inputs would write
    the same output, or when the destination lies inside the source prefix (the next run would list
    the outputs as inputs).
    """
    inputs = list(inputs)
    if source_prefix is None:
        base = _common_dir([loc.key for loc in inputs]) if inputs else ""
    else:
        base = source_prefix
    items: list[BatchItem] = []
    outputs: dict[str, str] = {}
    input_uris = {loc.uri for loc in inputs}
    for loc in inputs:
        rel = loc.key[len(base) :] if loc.key.startswith(base) else loc.key
        if extension is not None:
            stem, dot, _ext = rel.rpartition(".")
            rel = f"{stem}.{extension}" if dot and "/" not in _ext else f"{rel}.{extension}"
        out_key = destination.key + rel
        out_uri = f"cos://{destination.bucket}/{out_key}"
        if out_uri in input_uris:
            raise BatchArgumentError(
                "destination", f"the output {out_uri} would overwrite an input", "a prefix outside the inputs"
            )
        if out_key in outputs:
            raise BatchArgumentError(
                "source",
                f"{outputs[out_key]} and {loc.uri} would both write {out_uri}",
                "inputs whose names differ after the extension change",
            )
        outputs[out_key] = loc.uri
        items.append(BatchItem(loc.bucket, loc.key, out_key))
    return items


def check_destination(source: CosLocation | list[CosLocation], destination: CosLocation) -> None:
    """Refuse a destination inside (or equal to) a source prefix: outputs would be re-read as inputs."""
    if (
        isinstance(source, CosLocation)
        and source.bucket == destination.bucket
        and destination.key.startswith(source.key)
    ):
        raise BatchArgumentError(
            "destination",
            f"{destination.uri} is inside the source prefix {source.uri}: outputs would overwrite inputs "
            "or be processed again on the next run",
            "a prefix outside the source prefix",
        )


def filter_keys(keys: Iterable[str], prefix: str, suffixes: Sequence[str], manifest_name: str) -> list[str]:
    """Listed keys that are images of the batch: right suffix, not a folder marker, not a manifest."""
    out = []
    for key in keys:
        if key.endswith("/") or not key.startswith(prefix):
            continue
        if posixpath.basename(key) == manifest_name:
            continue
        if key.lower().endswith(tuple(suffixes)):
            out.append(key)
    return sorted(out)
