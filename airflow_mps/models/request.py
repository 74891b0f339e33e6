"""The ProcessImage request: :class:`ProcessImageRequest`, built, validated and rendered in one place.

One model serves three callers: the operators (:meth:`ProcessImageRequest.build` validates user
arguments at execute time, before any API call), the hook (:meth:`~ProcessImageRequest.to_api` is the
body sent with the official SDK) and the emulator (which validates every ProcessImage body it receives
with :meth:`ProcessImageRequest.from_api`), so all three refuse exactly the same requests.

Decisions relied on by the operators and the emulator:

* ``OutputPath`` must end with ``.{format}``, the literal variable, as the API docs require ("路径需以
  `.{format}`结尾"); a literal extension such as ``.jpg`` is refused. Its variables are the five of
  doc 862/37039 (``{inputName}``, ``{inputFormat}``, ``{format}``, ``{definition}``, ``{number}``);
  any other ``{...}`` is refused (a typo would otherwise land in an object key).
* ``OutputDir`` is any path text without ``..`` segments, at most 1024 characters.
* ``build(output_storage="cos://bucket/prefix/")``: the bucket becomes ``OutputStorage`` and the prefix
  becomes ``OutputDir`` (``/prefix/``); giving both a prefix there and ``output_dir`` is an error.
* A URL input has no storage to inherit: ``OutputStorage`` (or a ``ScheduleId``) is required.
* ``InputInfo`` may be left out when a ``ScheduleId`` is given (api.json: ``required: false``; the
  orchestrations such as 30010 take their inputs elsewhere); without either the request is refused.
* ``ResourceId`` is any string (no length limit is documented).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from airflow_mps.errors import MpsValidationError
from airflow_mps.models.constants import MASK, OUTPUT_PATH_VARIABLES
from airflow_mps.models.schema import requested_format, validate_image_task
from airflow_mps.models.storage import MediaInput, OutputStorage, parse_output_storage, parse_uri
from airflow_mps.models.validation import (
    Validator,
    check_path_text,
    check_region,
    fail,
    integer,
    json_object,
    missing,
    string,
    type_error,
)

__all__ = ["ProcessImageRequest"]


@dataclass
class ProcessImageRequest:
    """A validated ProcessImage request. Build it with :meth:`build` (user arguments) or
    :meth:`from_api` (an API body); send :meth:`to_api`."""

    input: MediaInput | None
    output_storage: OutputStorage | None = None
    output_dir: str | None = None
    output_path: str | None = None
    definition: int | None = None
    resource_id: str | None = None
    image_task: dict[str, Any] | None = None
    schedule_id: int | None = None
    add_on_parameter: dict[str, Any] | None = None
    std_ext_info: str | None = None

    _API_FIELDS = (
        ("InputInfo", "input"),
        ("OutputStorage", "output_storage"),
        ("OutputDir", "output_dir"),
        ("OutputPath", "output_path"),
        ("Definition", "definition"),
        ("ResourceId", "resource_id"),
        ("ImageTask", "image_task"),
        ("ScheduleId", "schedule_id"),
        ("AddOnParameter", "add_on_parameter"),
        ("StdExtInfo", "std_ext_info"),
    )

    def __repr__(self) -> str:
        """Field values with every S3 secret key replaced by ``***`` (reprs end up in logs)."""
        parts = [
            f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if getattr(self, f.name) is not None
        ]
        text = f"ProcessImageRequest({', '.join(parts)})"
        return _mask_secrets_in_text(text, self)

    @property
    def output_format(self) -> str | None:
        """Lower-case ``EncodeConfig.Format`` (``None`` = keep the source format)."""
        return requested_format(self.image_task)

    def to_api(self) -> dict[str, Any]:
        """The API body (PascalCase, None fields omitted) for ``call_json`` / ``from_json_string``."""
        body: dict[str, Any] = {}
        if self.input is not None:
            body["InputInfo"] = self.input.to_api()
        if self.output_storage is not None:
            body["OutputStorage"] = self.output_storage.to_api()
        for api_name, attr in self._API_FIELDS[2:]:
            value = getattr(self, attr)
            if value is not None:
                body[api_name] = copy.deepcopy(value)
        return body

    def to_json(self) -> str:
        """``json.dumps(self.to_api())``."""
        return json.dumps(self.to_api(), ensure_ascii=False, sort_keys=True)

    # ---- parsing -----------------------------------------------------------------------------------
    @classmethod
    def from_api(cls, body: Mapping[str, Any]) -> ProcessImageRequest:
        """Parse and validate an API-shaped ProcessImage body (what the SDK sends)."""
        if not isinstance(body, Mapping):
            type_error("", body, "a JSON object")
        allowed_keys = [api for api, _ in cls._API_FIELDS]
        for key in body:
            if key not in allowed_keys:
                fail(
                    str(key),
                    key,
                    "keys " + ", ".join(allowed_keys),
                    reason="is not a known parameter",
                    code="UnknownParameter",
                )
        media = None
        if body.get("InputInfo") is not None:
            media = MediaInput.from_api(body["InputInfo"], "InputInfo")
        elif body.get("ScheduleId") is None:
            missing(
                "InputInfo",
                "an object with Type (COS, URL, AWS-S3, VOD) and the matching *InputInfo "
                "(optional only with a ScheduleId)",
            )
        storage = None
        if body.get("OutputStorage") is not None:
            storage = OutputStorage.from_api(body["OutputStorage"], "OutputStorage")
        request = cls(
            input=media,
            output_storage=storage,
            output_dir=body.get("OutputDir"),
            output_path=body.get("OutputPath"),
            definition=body.get("Definition"),
            resource_id=body.get("ResourceId"),
            image_task=copy.deepcopy(dict(body["ImageTask"]))
            if isinstance(body.get("ImageTask"), Mapping)
            else body.get("ImageTask"),
            schedule_id=body.get("ScheduleId"),
            add_on_parameter=copy.deepcopy(dict(body["AddOnParameter"]))
            if isinstance(body.get("AddOnParameter"), Mapping)
            else body.get("AddOnParameter"),
            std_ext_info=body.get("StdExtInfo"),
        )
        request.validate(names={api: api for api, _ in cls._API_FIELDS})
        return request

    @classmethod
    def build(
        cls,
        *,
        input: Any,
        output_storage: Any = None,
        output_dir: str | None = None,
        output_path: str | None = None,
        image_task: Any = None,
        definition: Any = None,
        resource_id: str | None = None,
        schedule_id: Any = None,
        add_on_parameter: Any = None,
        std_ext_info: str | None = None,
        region: str | None = None,
    ) -> ProcessImageRequest:
        """Build from user arguments (after templating). ``input``: ``cos://bucket/key`` /
        ``s3://bucket/key`` (need ``region``), ``http(s)://…``, an API ``InputInfo`` dict (or its JSON)
        or a :class:`MediaInput`. ``output_storage``: ``cos://bucket`` (region = ``region`` or the
        input's), ``cos://bucket/prefix/`` (prefix → ``output_dir``), an API dict/JSON or an
        :class:`OutputStorage`. ``image_task``: API dict or its JSON. Errors name the argument."""
        if region is not None and region != "":
            check_region(region, "region")
        else:
            region = None
        schedule = _int_arg(schedule_id, "schedule_id")
        no_input = input is None or input == ""
        media = None if no_input and schedule is not None else _build_input(input, region)

        storage: OutputStorage | None = None
        if isinstance(output_storage, str) and output_storage.strip().startswith("{"):
            output_storage = _json_arg(output_storage, "output_storage")
        if output_storage is None or output_storage == "":
            storage = None
        elif isinstance(output_storage, OutputStorage):
            storage = output_storage
        elif isinstance(output_storage, Mapping):
            storage = OutputStorage.from_api(output_storage, "output_storage")
        elif isinstance(output_storage, str):
            from_input = media is not None and media.type in ("COS", "AWS-S3")
            inherited = region or (media.region if media is not None and from_input else None)
            storage, prefix_dir = parse_output_storage(output_storage, inherited, "output_storage")
            if storage.region is None and (media is None or media.type != "COS"):
                missing("region", f"a region to go with output_storage={output_storage!r}")
            if prefix_dir is not None:
                if output_dir:
                    fail(
                        "output_dir",
                        output_dir,
                        "an output prefix in output_storage or output_dir, not both",
                        reason="conflicts with the prefix in output_storage",
                        code="InvalidParameter",
                    )
                output_dir = prefix_dir
        else:
            type_error(
                "output_storage", output_storage, "cos://<bucket>[/<prefix>/], or a TaskOutputStorage dict"
            )

        if isinstance(image_task, str):
            image_task = _json_arg(image_task, "image_task") if image_task.strip() else None
        if isinstance(add_on_parameter, str):
            add_on_parameter = (
                _json_arg(add_on_parameter, "add_on_parameter") if add_on_parameter.strip() else None
            )

        request = cls(
            input=media,
            output_storage=storage,
            output_dir=output_dir or None,
            output_path=output_path or None,
            definition=_int_arg(definition, "definition"),
            resource_id=resource_id or None,
            image_task=copy.deepcopy(dict(image_task)) if isinstance(image_task, Mapping) else image_task,
            schedule_id=schedule,
            add_on_parameter=copy.deepcopy(dict(add_on_parameter))
            if isinstance(add_on_parameter, Mapping)
            else add_on_parameter,
            std_ext_info=std_ext_info if std_ext_info != "" else None,
        )
        request.validate(
            names={
                "OutputDir": "output_dir",
                "OutputPath": "output_path",
                "Definition": "definition",
                "ResourceId": "resource_id",
                "ImageTask": "image_task",
                "ScheduleId": "schedule_id",
                "AddOnParameter": "add_on_parameter",
                "StdExtInfo": "std_ext_info",
            }
        )
        return request

    def validate(self, names: Mapping[str, str] | None = None) -> None:
        """Validate the scalar fields and ``ImageTask``; ``names`` maps API names to the names used in
        error messages (argument names for :meth:`build`)."""
        names = dict(names or {})

        def n(api: str) -> str:
            """The name to report for the API field ``api``."""
            return names.get(api, api)

        if self.output_dir is not None:
            check_path_text(
                self.output_dir,
                n("OutputDir"),
                "a directory path such as /enhanced/ (at most 1024 characters)",
            )
        if self.image_task is not None:
            validate_image_task(self.image_task, n("ImageTask"))
        if self.output_path is not None:
            _check_output_path(self.output_path, n("OutputPath"))
        scalars: tuple[tuple[str, Any, Validator], ...] = (
            ("Definition", self.definition, integer(0)),
            ("ScheduleId", self.schedule_id, integer(0)),
            ("ResourceId", self.resource_id, string()),
            ("StdExtInfo", self.std_ext_info, string()),
            ("AddOnParameter", self.add_on_parameter, json_object),
        )
        for api_name, value, check in scalars:
            if value is not None:
                check(value, n(api_name))
        is_url = self.input is not None and self.input.type == "URL"
        if is_url and self.output_storage is None and self.schedule_id is None:
            missing(
                n("OutputStorage") if "OutputStorage" in names else "output_storage",
                "an output storage: a URL input has no storage to inherit",
            )


def _check_output_path(output_path: str, name: str) -> None:
    """``OutputPath``: path text ending with ``.{format}``, using only the documented variables."""
    allowed = "a path ending with .{format}, using only the variables " + ", ".join(
        "{" + v + "}" for v in OUTPUT_PATH_VARIABLES
    )
    check_path_text(output_path, name, allowed)
    if not output_path.endswith(".{format}"):
        fail(name, output_path, allowed, reason="does not end with .{format}")
    for variable in re.findall(r"\{([^{}]*)\}", output_path):
        if variable not in OUTPUT_PATH_VARIABLES:
            fail(name, output_path, allowed, reason=f"uses the unknown variable {{{variable}}}")


def _mask_secrets_in_text(text: str, request: ProcessImageRequest) -> str:
    """``text`` with the request's S3 secret keys replaced by :data:`MASK` (they may sit in any repr)."""
    for secret in (
        request.input.s3_secret_key if request.input else None,
        request.output_storage.s3_secret_key if request.output_storage else None,
    ):
        if secret:
            text = text.replace(secret, MASK)
    return text


def _json_arg(text: str, name: str) -> Any:
    """A dict argument given as its JSON text (a template renders to a string); errors name ``name``."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise MpsValidationError(
            field=name,
            value=text,
            allowed="a dict or its JSON text",
            code="InvalidParameter",
            reason=f"is not valid JSON ({exc})",
        ) from None


def _int_arg(value: Any, name: str) -> int | None:
    """An integer argument that a template may have rendered as a digit string."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        type_error(name, value, "an integer >= 0")
    return value


def _build_input(value: Any, region: str | None) -> MediaInput:
    """The ``input`` argument of :meth:`ProcessImageRequest.build` as a :class:`MediaInput`."""
    if value is None or value == "":
        missing("input", "cos://<bucket>/<key>, s3://<bucket>/<key>, an http(s):// URL or an InputInfo dict")
    if isinstance(value, MediaInput):
        return value
    if isinstance(value, str) and value.strip().startswith("{"):
        value = _json_arg(value, "input")
    if isinstance(value, Mapping):
        return MediaInput.from_api(value, "input")
    if isinstance(value, str):
        return parse_uri(value, region, "input")
    type_error(
        "input", value, "cos://<bucket>/<key>, s3://<bucket>/<key>, an http(s):// URL or an InputInfo dict"
    )
