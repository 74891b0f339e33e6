"""Facts about the MPS image API, each defined once, and the two helpers for its time strings.

Everything here is a property of the service (or of the ProcessImage request shape), not a tuning
choice: task states and how long tasks are kept, the time format, output formats and their
extensions, the input/output storage types, the path length limit. Tuning knobs (poll intervals,
page sizes, margins) belong to the module that uses them. Sources: mps-api.md §1–§2 and the SDK
3.1.194 model docstrings (see ``docs/internals.md``).

Pure stdlib: imported at DAG-parse time, by the triggerer and by the emulator.
"""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = [
    "API_TIME_FORMAT",
    "FINISH",
    "FORMATS",
    "INPUT_TYPES",
    "LISTED_TASK_STATES",
    "MASK",
    "MAX_PATH",
    "MPS_REGIONS",
    "OUTPUT_EXTENSIONS",
    "OUTPUT_PATH_VARIABLES",
    "OUTPUT_TYPES",
    "PROCESSING",
    "TASK_RETENTION_SECONDS",
    "TASK_STATES",
    "UNSET_TIMES",
    "WAITING",
    "format_api_time",
    "parse_api_time",
]

# --------------------------------------------------------------------------------------------------
# tasks
# --------------------------------------------------------------------------------------------------
#: Top-level ``Status`` of an image task: WAITING → PROCESSING → FINISH. FINISH is not success: the
#: error fields and each sub-result's status decide (see :class:`airflow_mps.models.ImageTaskStatus`).
WAITING = "WAITING"
PROCESSING = "PROCESSING"
FINISH = "FINISH"
TASK_STATES: tuple[str, str, str] = (WAITING, PROCESSING, FINISH)
#: The states ``DescribeImageTasks`` can list: api.json makes its ``Status`` filter required and
#: ``ImageTaskInfo.Status`` enumerates only these two. A WAITING task is not listable (the strict
#: emulator hides it; docs/emulator-fidelity.md), so a reconciliation that lists must also describe.
LISTED_TASK_STATES: tuple[str, str] = (PROCESSING, FINISH)

#: MPS keeps image tasks for 7 days: DescribeImageTaskDetail answers for tasks "submitted within
#: 7 days" and DescribeTasks lists "the last seven days (168 hours)" (mps-api.md §2.1, §2.3). So it
#: is both the longest useful wait on a task and how far back a listing's ``StartTime`` can reach.
TASK_RETENTION_SECONDS: int = 7 * 24 * 3600

# --------------------------------------------------------------------------------------------------
# times
# --------------------------------------------------------------------------------------------------
#: The API's time strings (``CreateTime``, ``StartTime``…): ISO 8601 in UTC, whole seconds.
API_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: What the service sends for a time that is not set yet (``FinishTime`` of a running task).
UNSET_TIMES: frozenset[str] = frozenset({"", "0000-00-00T00:00:00Z"})

# --------------------------------------------------------------------------------------------------
# formats and paths
# --------------------------------------------------------------------------------------------------
#: Output formats accepted by ``ImageTask.EncodeConfig.Format`` (upper-case key → spelling in the docs).
FORMATS: dict[str, str] = {"JPEG": "JPEG", "PNG": "PNG", "BMP": "BMP", "WEBP": "WebP"}
#: File extension MPS gives an output of each format (lower-case format → extension, no dot).
OUTPUT_EXTENSIONS: dict[str, str] = {"jpeg": "jpg", "png": "png", "bmp": "bmp", "webp": "webp"}
#: ``InputInfo.Type`` values (MediaInputInfo).
INPUT_TYPES: tuple[str, ...] = ("COS", "URL", "AWS-S3", "VOD")
#: ``OutputStorage.Type`` values (TaskOutputStorage): a URL is never an output.
OUTPUT_TYPES: tuple[str, ...] = ("COS", "AWS-S3", "VOD")
#: Longest object path, ``OutputDir`` or ``OutputPath`` accepted (characters).
MAX_PATH = 1024
#: The variables an ``OutputPath`` may use (doc 862/37039, "文件名变量说明"; the image subset of the
#: list: ``taskId``, ``rand`` and ``streamId`` are for live tasks). How each renders for an image task
#: is decided once, in :func:`airflow_mps.models.storage.render_output_path`.
OUTPUT_PATH_VARIABLES: tuple[str, ...] = ("inputName", "inputFormat", "format", "definition", "number")

# --------------------------------------------------------------------------------------------------
# regions
# --------------------------------------------------------------------------------------------------
#: Regions the MPS API is served in: the "Service Address" table of MPS's Request Structure page
#: (doc 1041/33627, intl; doc 862/37570 lists the same hosts). Every action accepts a request without
#: ``X-TC-Region`` (the API pages say "Region: No"); one with a region outside this list is answered
#: with the common error ``UnsupportedRegion``.
MPS_REGIONS: tuple[str, ...] = (
    "ap-guangzhou",
    "ap-shanghai",
    "ap-nanjing",
    "ap-beijing",
    "ap-chengdu",
    "ap-chongqing",
    "ap-hongkong",
    "ap-singapore",
    "ap-jakarta",
    "ap-bangkok",
    "ap-seoul",
    "ap-tokyo",
    "na-ashburn",
    "na-siliconvalley",
    "sa-saopaulo",
    "eu-frankfurt",
)

#: Shown instead of a secret (``S3SecretKey``) in ``repr()`` and validation errors.
MASK = "***"


def format_api_time(value: float | datetime) -> str:
    """``YYYY-MM-DDThh:mm:ssZ`` of an epoch (seconds) or a datetime, rounded down to the second.

    A naive datetime is taken as UTC (the API has no other zone); an aware one is converted to UTC.
    """
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc).strftime(API_TIME_FORMAT)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"format_api_time takes an epoch or a datetime, not {type(value).__name__}")
    return datetime.fromtimestamp(int(value // 1), timezone.utc).strftime(API_TIME_FORMAT)


def parse_api_time(value: str | None) -> float | None:
    """Epoch seconds of an API time string; ``None`` when unset (``0000-…``), absent or unparsable.

    Never raises: service times are read null-tolerantly. The API's own format is read exactly; other
    ISO 8601 forms (an offset, fractional seconds) are read too, a time without a zone as UTC.
    """
    if not value:
        return None
    text = value if isinstance(value, str) else str(value)
    if text in UNSET_TIMES or text.startswith("0000"):
        return None
    try:
        return datetime.strptime(text, API_TIME_FORMAT).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        pass
    try:
        # ``Z`` is spelled out for Python 3.10, whose fromisoformat does not read it.
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()
