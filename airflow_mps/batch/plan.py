"""Turn the batch operator's arguments into work items, validating everything first.

Two kinds of problem, told apart (issue 12):

* **Batch-level** misconfiguration — an argument (``destination``, ``image_task``, ``region``, …) that
  makes the whole batch meaningless — raises :class:`BatchArgumentError` naming the argument, before
  any API call; the operator turns it into an ``AirflowFailException``.
* **Per-image** problems — an input whose request cannot be built, or whose output would land where
  nobody can predict or where another input's output lands — become a :class:`Refusal` with a reason
  code of ours (:data:`REFUSAL_CODES`): a failed manifest line that counts toward ``max_failed_ratio``,
  while the rest of the partition runs.

Layout rule: an input ``cos://src/raw/dt=1/a/b.png`` under the source prefix ``raw/dt=1/`` becomes
``<destination prefix>a/b.<ext>``, where ``<ext>`` follows ``image_task.EncodeConfig.Format``
(``JPEG`` → ``jpg``) or, without a format, the input's own format read from its suffix (``.JPG``,
``.jpeg`` → ``jpg``). The request's ``OutputPath`` is that key with ``.{format}`` for the extension,
as the API requires, which MPS renders to exactly that key. For an explicit list the relative part is
taken under the common directory of the inputs that can be planned.

Keys (:mod:`airflow_mps.models.keys`): every input and output key is checked with
:func:`~airflow_mps.models.keys.key_problem`; the shapes whose landing place is undocumented are
refused (``Planning.UnsafeKey``), too long ones too (``Planning.OutputTooLong``), so each planned output
key is where MPS writes, verbatim. Collisions compare outputs by
:func:`~airflow_mps.models.keys.normalize_key`, so ``x.png``/``x.jpg``, ``U.JPG``/``U.jpg`` and
``a//b.png``/``a/b.png`` are caught.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_mps.batch import DEFAULT_SUFFIXES
from airflow_mps.models.constants import OUTPUT_EXTENSIONS
from airflow_mps.models.keys import TOO_LONG, key_problem, normalize_key

__all__ = ["DEFAULT_SUFFIXES"]  # re-exported: the operator's default, defined in the package

#: ``EncodeConfig.Format`` or an input suffix (case-insensitive) → the extension the output key gets:
#: :data:`airflow_mps.models.constants.OUTPUT_EXTENSIONS`, with ``jpg`` read as ``jpeg``.
FORMAT_EXTENSIONS: dict[str, str] = {**OUTPUT_EXTENSIONS, "jpg": OUTPUT_EXTENSIONS["jpeg"]}

#: Reason codes of ours for an image refused while planning (the manifest's ``error.code``).
UNSAFE_KEY = "Planning.UnsafeKey"
OUTPUT_TOO_LONG = "Planning.OutputTooLong"
OUTPUT_COLLISION = "Planning.OutputCollision"
UNKNOWN_FORMAT = "Planning.UnknownFormat"
INVALID_REQUEST = "Planning.InvalidRequest"
REFUSAL_CODES = (UNSAFE_KEY, OUTPUT_TOO_LONG, OUTPUT_COLLISION, UNKNOWN_FORMAT, INVALID_REQUEST)

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

    @property
    def output_path(self) -> str:
        """The request's ``OutputPath``: absolute, the output key with ``.{format}`` for its extension
        (the API: "路径需以 .{format} 结尾"); MPS renders it to :attr:`output_key`."""
        stem, _dot, _ext = self.output_key.rpartition(".")
        return f"/{stem}.{{format}}"


@dataclass(frozen=True)
class Refusal:
    """An input refused while planning: a failed manifest line (``code`` in :data:`REFUSAL_CODES`)."""

    input_uri: str
    #: The output key it would have had (``None`` when none could be computed).
    output_key: str | None
    code: str
    message: str


@dataclass
class Plan:
    """The batch's inputs, planned: the items to process and the refused ones, both in input order."""

    items: list[BatchItem]
    refused: list[Refusal]
    #: ``[input_uri, output_key | None]`` of every input, in input order (the manifest's order).
    entries: list[tuple[str, str | None]]

    def refuse(self, refusals: Sequence[tuple[BatchItem, str, str]]) -> None:
        """Move planned items to the refused ones: ``(item, code, message)`` each (e.g. its request
        could not be built)."""
        if not refusals:
            return
        gone = {item.input_uri for item, _code, _message in refusals}
        self.items = [item for item in self.items if item.input_uri not in gone]
        self.refused += [Refusal(item.input_uri, item.output_key, code, msg) for item, code, msg in refusals]


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
        output_path=item.output_path,
        image_task=config.image_task,
        region=region,
    )


def parse_cos_location(value: Any, field: str, *, prefix: bool, check_key: bool = True) -> CosLocation:
    """Parse ``cos://bucket/key`` (``prefix=False``) or ``cos://bucket/prefix/`` (``prefix=True``).

    ``check_key=False`` (entries of an explicit list) leaves the key's segments to the planner, which
    refuses an unsafe key for that image only; the scheme, the bucket and a key naming an object (not
    ending with ``/``) are still required."""
    allowed = "cos://<bucket>/<prefix>/ (a prefix ends with '/')" if prefix else "cos://<bucket>/<key>"
    if not isinstance(value, str):
        raise BatchArgumentError(field, f"{value!r} is not a string", allowed)
    if not value.startswith("cos://"):
        raise BatchArgumentError(field, f"{value!r} is not a cos:// URI", allowed)
    rest = value[len("cos://") :]
    bucket, _, key = rest.partition("/")
    if not bucket or not _BUCKET_RE.match(bucket):
        raise BatchArgumentError(field, f"{value!r} has no valid bucket name", allowed)
    if not check_key:
        if not key or key.endswith("/"):  # a prefix where an object is expected: the list is wrong
            raise BatchArgumentError(field, f"{value!r} names no object", allowed)
        return CosLocation(bucket, key)
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
            loc = parse_cos_location(value, "source", prefix=False, check_key=False)
            seen.setdefault(loc.uri, loc)
        return list(seen.values())
    raise BatchArgumentError(
        "source",
        f"{source!r} is neither a URI nor a list",
        "cos://<bucket>/<prefix>/ or a list of cos:// URIs",
    )


def _common_dir(keys: Sequence[str]) -> str:
    dirs = [posixpath.dirname(k) for k in keys]
    common = posixpath.commonpath(dirs) if dirs and all(dirs) else ""
    # commonpath works on whole segments; "" means the bucket root.
    return f"{common}/" if common else ""


def _output_key(rel: str, destination: CosLocation, extension: str | None) -> str | None:
    """``destination`` + ``rel`` with its extension replaced (see the module docstring); ``None``
    when no format is forced and the input's suffix names none MPS writes."""
    directory, name = posixpath.split(rel)
    stem, dot, ext = name.rpartition(".")
    if not dot:  # no extension at all: the whole name is the stem
        stem, ext = name, ""
    target = extension or FORMAT_EXTENSIONS.get(ext.lower())
    if target is None:
        return None
    return f"{destination.key}{posixpath.join(directory, stem) if directory else stem}.{target}"


def plan_items(
    inputs: Iterable[CosLocation],
    source_prefix: str | None,
    destination: CosLocation,
    extension: str | None,
) -> Plan:
    """Map each input to its output key under ``destination`` (layout mirrored; see module docstring).

    Per image, never for the batch: an unsafe input or output key (``Planning.UnsafeKey``), an output
    key too long for COS (``Planning.OutputTooLong``), no known output format
    (``Planning.UnknownFormat``), and outputs that collide — with each other, or with an input — by
    :func:`~airflow_mps.models.keys.normalize_key` (``Planning.OutputCollision``: every input of a
    colliding group is refused, so the outcome never depends on listing order). An unsafe key whose
    normalised output another input's output shares is refused as unsafe, saying so; the safe input
    proceeds.
    """
    inputs = list(inputs)
    refused: dict[str, Refusal] = {}
    unsafe_input: dict[str, str] = {}
    for loc in inputs:
        problem = key_problem(loc.key, output=False)
        if problem is not None:
            unsafe_input[loc.uri] = f"the input key {problem.reason}"
    safe_keys = [loc.key for loc in inputs if loc.uri not in unsafe_input]
    base = source_prefix if source_prefix is not None else _common_dir(safe_keys)
    outputs: dict[str, str | None] = {}
    planned: list[tuple[CosLocation, str]] = []
    for loc in inputs:
        rel = loc.key[len(base) :] if loc.key.startswith(base) else loc.key
        out_key = outputs[loc.uri] = _output_key(rel, destination, extension)
        if loc.uri in unsafe_input:
            refused[loc.uri] = Refusal(loc.uri, out_key, UNSAFE_KEY, unsafe_input[loc.uri])
        elif out_key is None:
            refused[loc.uri] = Refusal(
                loc.uri,
                None,
                UNKNOWN_FORMAT,
                f"{rel!r} has no image suffix MPS writes (jpg, jpeg, png, bmp, webp) and image_task "
                "sets no EncodeConfig.Format",
            )
        elif (problem := key_problem(out_key)) is not None:
            code = OUTPUT_TOO_LONG if problem.kind == TOO_LONG else UNSAFE_KEY
            refused[loc.uri] = Refusal(loc.uri, out_key, code, f"the output key {out_key!r} {problem.reason}")
        else:
            planned.append((loc, out_key))
    _refuse_collisions(inputs, planned, destination, outputs, refused)
    items = [BatchItem(loc.bucket, loc.key, out) for loc, out in planned if loc.uri not in refused]
    return Plan(
        items=items,
        refused=[refused[loc.uri] for loc in inputs if loc.uri in refused],
        entries=[(loc.uri, outputs.get(loc.uri)) for loc in inputs],
    )


def _refuse_collisions(
    inputs: Sequence[CosLocation],
    planned: Sequence[tuple[CosLocation, str]],
    destination: CosLocation,
    outputs: dict[str, str | None],
    refused: dict[str, Refusal],
) -> None:
    """Refuse every planned input whose output another input's output (or an input) shares, compared by
    :func:`~airflow_mps.models.keys.normalize_key`; tell unsafe inputs whose output would collide."""
    by_output: dict[str, list[str]] = {}
    for loc in inputs:
        out = outputs.get(loc.uri)
        if out is not None:
            by_output.setdefault(normalize_key(out), []).append(loc.uri)
    # COS keys are literal: an output overwrites an input only at the very same key.
    inputs_at = {(loc.bucket, loc.key): loc.uri for loc in inputs}
    for loc, out in planned:
        same = [u for u in by_output[normalize_key(out)] if u != loc.uri]
        planned_peers = [u for u in same if u not in refused or refused[u].code == OUTPUT_COLLISION]
        overwritten = inputs_at.get((destination.bucket, out))
        if overwritten is not None:
            refused[loc.uri] = Refusal(
                loc.uri,
                out,
                OUTPUT_COLLISION,
                f"its output cos://{destination.bucket}/{out} is the input {overwritten}",
            )
        elif planned_peers:
            refused[loc.uri] = Refusal(
                loc.uri,
                out,
                OUTPUT_COLLISION,
                f"its output cos://{destination.bucket}/{out} is also the output of {', '.join(planned_peers)}",
            )
        for other in same:
            unsafe = refused.get(other)
            if unsafe is not None and unsafe.code == UNSAFE_KEY and "collide" not in unsafe.message:
                refused[other] = Refusal(
                    other,
                    unsafe.output_key,
                    UNSAFE_KEY,
                    f"{unsafe.message}; normalised, it would collide with the output of {loc.uri}",
                )


def check_destination(source: CosLocation | list[CosLocation], destination: CosLocation) -> None:
    """Refuse a destination inside (or equal to) a source prefix (outputs would be re-read as inputs),
    and a prefix no output key could be written under (too long, braces, control characters)."""
    problem = key_problem(destination.key.rstrip("/")) if destination.key else None
    if problem is not None:
        raise BatchArgumentError(
            "destination",
            f"{destination.uri}: the prefix {problem.reason}",
            "a prefix of plain path segments, well under 850 bytes",
        )
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
