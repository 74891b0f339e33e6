"""The ProcessImage request model, its validation, task status/result types and COS URI helpers.

One model serves three callers: the operators (validate user arguments at execute time, before any API
call), the hook (``to_api()`` is the body sent with the official SDK) and the emulator (which validates
every ProcessImage body it receives with :meth:`ProcessImageRequest.from_api`). It is pure stdlib so it
can be imported at DAG-parse time and by the emulator without Airflow or the SDK.

One role per module (each imports alone; arrows are the only imports between them)::

    constants    domain facts defined once (task states, retention, time format, formats, types)
    validation   validator combinators, error helpers, field-format checks     ← constants
    schema       the ImageTask schema, validate_image_task                       ← validation
    storage      MediaInput, OutputStorage, URI helpers, render_output_path      ← validation
    request      ProcessImageRequest                                  ← schema, storage, validation
    listing      which input a listed task carries; ImageTask conflicts   (no model imports)
    status       ImageTaskStatus, TaskOutput, SubTaskResult, ImageTaskInfo     ← listing, storage

This package re-exports every name ``airflow_mps.models`` offered as a single module, so
``from airflow_mps.models import ProcessImageRequest`` (and the rest below) keeps working. Validation
follows the SDK 3.1.194 model docstrings and ``docs/internals.md``; the decisions each module relies on
are in its own docstring.
"""

from __future__ import annotations

from airflow_mps.models.constants import (
    FORMATS,
    INPUT_TYPES,
    LISTED_TASK_STATES,
    MASK,
    MPS_REGIONS,
    OUTPUT_EXTENSIONS,
    OUTPUT_PATH_VARIABLES,
    OUTPUT_TYPES,
    TASK_STATES,
)
from airflow_mps.models.listing import (
    image_task_conflicts,
    listed_input_matches,
    parse_listed_input,
    request_input,
)
from airflow_mps.models.request import ProcessImageRequest
from airflow_mps.models.schema import validate_image_task
from airflow_mps.models.status import ImageTaskInfo, ImageTaskStatus, SubTaskResult, TaskOutput
from airflow_mps.models.storage import (
    MediaInput,
    OutputStorage,
    cos_uri,
    expected_output_key,
    input_path_of,
    parse_cos_uri,
    parse_output_storage,
    parse_uri,
    render_output_path,
)
from airflow_mps.models.validation import Validator

__all__ = [
    "FORMATS",
    "INPUT_TYPES",
    "LISTED_TASK_STATES",
    "MASK",
    "MPS_REGIONS",
    "OUTPUT_EXTENSIONS",
    "OUTPUT_PATH_VARIABLES",
    "OUTPUT_TYPES",
    "TASK_STATES",
    "ImageTaskInfo",
    "ImageTaskStatus",
    "MediaInput",
    "OutputStorage",
    "ProcessImageRequest",
    "SubTaskResult",
    "TaskOutput",
    "Validator",
    "cos_uri",
    "expected_output_key",
    "image_task_conflicts",
    "input_path_of",
    "listed_input_matches",
    "parse_cos_uri",
    "parse_listed_input",
    "parse_output_storage",
    "parse_uri",
    "render_output_path",
    "request_input",
    "validate_image_task",
]
