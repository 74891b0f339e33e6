"""Where images come from and go to: input and output storage types, and the URI helpers.

:class:`MediaInput` is ProcessImage's ``InputInfo`` (COS, URL, AWS-S3 or VOD) and :class:`OutputStorage`
its ``OutputStorage``; both validate the API dict (``from_api``), render it (``to_api``) and never show
an ``S3SecretKey`` in ``repr()``. The URI helpers turn what users write (``cos://bucket/key``,
``s3://bucket/key``, ``https://…``) into those types, and :func:`render_output_path` is the one rule
for the key an output is written to (the emulator writes there, :func:`expected_output_key` predicts it).

Decisions relied on by the operators and the emulator:

* ``OutputDir`` is a directory whether or not it starts or ends with ``/``; empty or absent means the
  input's directory, ``/`` the bucket root (:func:`render_output_path`).
* Every ``OutputPath`` variable of doc 862/37039 is rendered, ``{definition}`` as ``0`` and
  ``{number}`` as ``0`` when the request gives nothing better (docs/emulator-fidelity.md).
* ``cos://bucket/prefix/`` as an output storage gives the bucket and the directory ``/prefix/``
  (:func:`parse_output_storage`).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import unquote, urlsplit

from airflow_mps.errors import MpsValidationError
from airflow_mps.models.constants import INPUT_TYPES, MASK, OUTPUT_EXTENSIONS, OUTPUT_TYPES
from airflow_mps.models.validation import (
    Validator,
    check_bucket,
    check_object,
    check_path_text,
    check_region,
    check_url,
    fail,
    integer,
    join_path,
    missing,
    one_of,
    string,
    type_error,
)

__all__ = [
    "DEFAULT_OUTPUT_PATH",
    "MediaInput",
    "OutputStorage",
    "cos_uri",
    "expected_output_key",
    "input_path_of",
    "parse_cos_uri",
    "parse_output_storage",
    "parse_uri",
    "render_output_path",
]

#: ``OutputPath`` when none is given (the API docs: "如果不填，则默认为相对路径：{inputName}.{format}").
DEFAULT_OUTPUT_PATH = "{inputName}.{format}"
#: One ``{variable}`` of an ``OutputPath`` template (any name; unknown ones are left as written).
_VARIABLE_RE = re.compile(r"\{([A-Za-z]+)\}")


@dataclass(frozen=True)
class MediaInput:
    """``InputInfo`` of ProcessImage: where the source image is.

    ``type`` is ``COS``, ``URL``, ``AWS-S3`` or ``VOD``; ``object`` is the API's object path (a COS
    object as sent, normally with a leading ``/``). S3 secrets never appear in ``repr()``.
    """

    type: str
    bucket: str | None = None
    region: str | None = None
    object: str | None = None
    url: str | None = None
    s3_secret_id: str | None = None
    s3_secret_key: str | None = field(default=None, repr=False)
    sub_app_id: int | None = None
    vod_basic: int | None = None
    file_id: str | None = None

    @property
    def key(self) -> str | None:
        """The object key without a leading slash (COS/S3/VOD), ``None`` for a URL input."""
        return None if self.object is None else self.object.lstrip("/")

    @property
    def uri(self) -> str:
        """A readable URI: ``cos://bucket/key``, ``s3://bucket/key``, the URL, or ``vod://…``."""
        if self.type == "URL":
            return self.url or ""
        if self.type == "AWS-S3":
            return f"s3://{self.bucket}/{self.key or ''}"
        if self.type == "VOD":
            return f"vod://{self.sub_app_id or ''}/{self.file_id or self.key or ''}"
        return cos_uri(self.bucket or "", self.key or "", scheme="cos")

    def __repr__(self) -> str:
        """Set fields only, ``S3SecretKey`` shown as ``***`` (reprs end up in logs)."""
        parts = [f"type={self.type!r}"]
        for f in fields(self):
            if f.name == "type":
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "s3_secret_key":
                value = MASK
            parts.append(f"{f.name}={value!r}")
        return f"MediaInput({', '.join(parts)})"

    # ---- API form --------------------------------------------------------------------------------
    def to_api(self) -> dict[str, Any]:
        """The ``MediaInputInfo`` dict (None fields omitted)."""
        if self.type == "COS":
            sub: dict[str, Any] = {"Bucket": self.bucket, "Region": self.region, "Object": self.object}
            return {"Type": "COS", "CosInputInfo": _drop_none(sub)}
        if self.type == "URL":
            return {"Type": "URL", "UrlInputInfo": {"Url": self.url}}
        if self.type == "AWS-S3":
            sub = {
                "S3Bucket": self.bucket,
                "S3Region": self.region,
                "S3Object": self.object,
                "S3SecretId": self.s3_secret_id,
                "S3SecretKey": self.s3_secret_key,
            }
            return {"Type": "AWS-S3", "S3InputInfo": _drop_none(sub)}
        sub = {
            "Bucket": self.bucket,
            "Region": self.region,
            "Object": self.object,
            "SubAppId": self.sub_app_id,
            "VodBasic": self.vod_basic,
            "FileId": self.file_id,
        }
        return {"Type": "VOD", "VODInputInfo": _drop_none(sub)}

    @classmethod
    def from_api(cls, info: Any, path: str = "InputInfo") -> MediaInput:
        """Parse + validate a ``MediaInputInfo`` dict. Sub-objects of other types may be present (the
        service echoes an empty ``CosInputInfo`` for URL inputs) and are ignored."""
        allowed = "an object with Type (COS, URL, AWS-S3, VOD) and the matching *InputInfo"
        if info is None:
            missing(path, allowed)
        if not isinstance(info, Mapping):
            type_error(path, info, allowed)
        for key in info:
            if key not in ("Type", "CosInputInfo", "UrlInputInfo", "S3InputInfo", "VODInputInfo"):
                fail(
                    join_path(path, str(key)),
                    key,
                    allowed,
                    reason="is not a known parameter",
                    code="InvalidParameter",
                )
        kind = info.get("Type")
        if kind is None:
            missing(join_path(path, "Type"), "one of " + ", ".join(INPUT_TYPES))
        one_of(*INPUT_TYPES)(kind, join_path(path, "Type"))
        if kind == "COS":
            sub = _sub_object(info, "CosInputInfo", path, ("Bucket", "Region", "Object"), ())
            check_bucket(sub["Bucket"], join_path(path, "CosInputInfo.Bucket"))
            check_region(sub["Region"], join_path(path, "CosInputInfo.Region"))
            check_object(sub["Object"], join_path(path, "CosInputInfo.Object"))
            return cls("COS", bucket=sub["Bucket"], region=sub["Region"], object=sub["Object"])
        if kind == "URL":
            sub = _sub_object(info, "UrlInputInfo", path, ("Url",), ())
            check_url(sub["Url"], join_path(path, "UrlInputInfo.Url"))
            return cls("URL", url=sub["Url"])
        if kind == "AWS-S3":
            sub = _sub_object(
                info, "S3InputInfo", path, ("S3Bucket", "S3Region", "S3Object"), ("S3SecretId", "S3SecretKey")
            )
            check_bucket(sub["S3Bucket"], join_path(path, "S3InputInfo.S3Bucket"))
            check_region(sub["S3Region"], join_path(path, "S3InputInfo.S3Region"))
            check_object(sub["S3Object"], join_path(path, "S3InputInfo.S3Object"))
            return cls(
                "AWS-S3",
                bucket=sub["S3Bucket"],
                region=sub["S3Region"],
                object=sub["S3Object"],
                s3_secret_id=sub.get("S3SecretId"),
                s3_secret_key=sub.get("S3SecretKey"),
            )
        sub = _sub_object(
            info, "VODInputInfo", path, (), ("Bucket", "Region", "Object", "SubAppId", "VodBasic", "FileId")
        )
        vpath = join_path(path, "VODInputInfo")
        if sub.get("SubAppId") is not None:
            integer(0)(sub["SubAppId"], join_path(vpath, "SubAppId"))
        if sub.get("VodBasic") is not None:
            integer(choices=(0, 1))(sub["VodBasic"], join_path(vpath, "VodBasic"))
        # Every VODInputInfo member is optional in the docs (api.json, SDK 3.1.194): which ones a VOD
        # task needs is the service's call, so none is required here (issue 11 item 10).
        return cls(
            "VOD",
            bucket=sub.get("Bucket"),
            region=sub.get("Region"),
            object=sub.get("Object"),
            sub_app_id=sub.get("SubAppId"),
            vod_basic=sub.get("VodBasic"),
            file_id=sub.get("FileId"),
        )


@dataclass(frozen=True)
class OutputStorage:
    """``OutputStorage`` (TaskOutputStorage) of ProcessImage. ``bucket``/``region`` may be ``None`` for
    COS (then they are inherited from the input). S3 secrets never appear in ``repr()``."""

    type: str
    bucket: str | None = None
    region: str | None = None
    s3_secret_id: str | None = None
    s3_secret_key: str | None = field(default=None, repr=False)
    sub_app_id: int | None = None
    vod_basic: int | None = None

    def __repr__(self) -> str:
        """Set fields only, ``S3SecretKey`` shown as ``***`` (reprs end up in logs)."""
        parts = [f"type={self.type!r}"]
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "type" or value is None:
                continue
            if f.name == "s3_secret_key":
                value = MASK
            parts.append(f"{f.name}={value!r}")
        return f"OutputStorage({', '.join(parts)})"

    def to_api(self) -> dict[str, Any]:
        """The ``TaskOutputStorage`` dict (None fields omitted)."""
        if self.type == "COS":
            return {
                "Type": "COS",
                "CosOutputStorage": _drop_none({"Bucket": self.bucket, "Region": self.region}),
            }
        if self.type == "AWS-S3":
            sub: dict[str, Any] = {
                "S3Bucket": self.bucket,
                "S3Region": self.region,
                "S3SecretId": self.s3_secret_id,
                "S3SecretKey": self.s3_secret_key,
            }
            return {"Type": "AWS-S3", "S3OutputStorage": _drop_none(sub)}
        sub = {
            "Bucket": self.bucket,
            "Region": self.region,
            "SubAppId": self.sub_app_id,
            "VodBasic": self.vod_basic,
        }
        return {"Type": "VOD", "VODOutputStorage": _drop_none(sub)}

    @classmethod
    def from_api(cls, info: Any, path: str = "OutputStorage") -> OutputStorage:
        """Parse + validate a ``TaskOutputStorage`` dict."""
        allowed = "an object with Type (COS, AWS-S3, VOD) and the matching *OutputStorage"
        if not isinstance(info, Mapping):
            type_error(path, info, allowed)
        for key in info:
            if key not in ("Type", "CosOutputStorage", "S3OutputStorage", "VODOutputStorage"):
                fail(
                    join_path(path, str(key)),
                    key,
                    allowed,
                    reason="is not a known parameter",
                    code="InvalidParameter",
                )
        kind = info.get("Type")
        if kind is None:
            missing(join_path(path, "Type"), "one of " + ", ".join(OUTPUT_TYPES))
        one_of(*OUTPUT_TYPES)(kind, join_path(path, "Type"))
        if kind == "COS":
            return cls._cos_from_api(info, path)
        if kind == "AWS-S3":
            return cls._s3_from_api(info, path)
        return cls._vod_from_api(info, path)

    @classmethod
    def _cos_from_api(cls, info: Mapping[str, Any], path: str) -> OutputStorage:
        """``Type: COS``: ``CosOutputStorage`` may be left out, and so may its Bucket and Region
        (inherited from the input); given, they must be valid."""
        raw = info.get("CosOutputStorage")
        sub = {} if raw is None else _sub_object(info, "CosOutputStorage", path, (), ("Bucket", "Region"))
        _check_optional(sub.get("Bucket"), join_path(path, "CosOutputStorage.Bucket"), check_bucket)
        _check_optional(sub.get("Region"), join_path(path, "CosOutputStorage.Region"), check_region)
        return cls("COS", bucket=sub.get("Bucket"), region=sub.get("Region"))

    @classmethod
    def _s3_from_api(cls, info: Mapping[str, Any], path: str) -> OutputStorage:
        """``Type: AWS-S3``: ``S3OutputStorage`` with a bucket and region, optionally credentials."""
        sub = _sub_object(
            info, "S3OutputStorage", path, ("S3Bucket", "S3Region"), ("S3SecretId", "S3SecretKey")
        )
        check_bucket(sub["S3Bucket"], join_path(path, "S3OutputStorage.S3Bucket"))
        check_region(sub["S3Region"], join_path(path, "S3OutputStorage.S3Region"))
        return cls(
            "AWS-S3",
            bucket=sub["S3Bucket"],
            region=sub["S3Region"],
            s3_secret_id=sub.get("S3SecretId"),
            s3_secret_key=sub.get("S3SecretKey"),
        )

    @classmethod
    def _vod_from_api(cls, info: Mapping[str, Any], path: str) -> OutputStorage:
        """``Type: VOD``: ``VODOutputStorage`` optional; ``SubAppId`` >= 0, ``VodBasic`` 0 or 1."""
        raw = info.get("VODOutputStorage")
        sub = (
            {}
            if raw is None
            else _sub_object(info, "VODOutputStorage", path, (), ("Bucket", "Region", "SubAppId", "VodBasic"))
        )
        vpath = join_path(path, "VODOutputStorage")
        if sub.get("SubAppId") is not None:
            integer(0)(sub["SubAppId"], join_path(vpath, "SubAppId"))
        if sub.get("VodBasic") is not None:
            integer(choices=(0, 1))(sub["VodBasic"], join_path(vpath, "VodBasic"))
        return cls(
            "VOD",
            bucket=sub.get("Bucket"),
            region=sub.get("Region"),
            sub_app_id=sub.get("SubAppId"),
            vod_basic=sub.get("VodBasic"),
        )


def _check_optional(value: Any, path: str, check: Validator) -> None:
    """A field that may be left out: a truthy value passes ``check``; any other given value must be a
    string (``""`` counts as not given)."""
    if value:
        check(value, path)
    elif value is not None:
        string()(value, path)


#: Sub-object keys whose value is a secret: shown as :data:`MASK` in errors.
_SECRET_KEYS = {"S3SecretKey"}


def _sub_object(
    info: Mapping[str, Any], name: str, path: str, required: tuple[str, ...], optional: tuple[str, ...]
) -> dict[str, Any]:
    """Validate the ``name`` sub-object of an input/output dict: known keys, required strings present."""
    sub_path = join_path(path, name)
    sub = info.get(name)
    known = required + optional
    if sub is None:
        missing(sub_path, "an object with " + ", ".join(known))
    if not isinstance(sub, Mapping):
        type_error(sub_path, sub, "an object with " + ", ".join(known))
    for key in sub:
        if key not in known:
            fail(
                join_path(sub_path, str(key)),
                key,
                "keys " + ", ".join(known),
                reason="is not a known parameter",
                code="InvalidParameter",
            )
    for key in required:
        if sub.get(key) is None or sub.get(key) == "":
            missing(join_path(sub_path, key), "a non-empty string")
    for key in known:
        value = sub.get(key)
        if value is not None and key not in ("SubAppId", "VodBasic") and not isinstance(value, str):
            shown = MASK if key in _SECRET_KEYS else value
            raise MpsValidationError(
                field=join_path(sub_path, key),
                value=shown,
                allowed="a string",
                code="InvalidParameter",
                reason=f"has the wrong type ({type(value).__name__})",
            )
    return dict(sub)


def _drop_none(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """``mapping`` without its ``None`` values: the API form omits unset fields."""
    return {k: v for k, v in mapping.items() if v is not None}


# --------------------------------------------------------------------------------------------------
# URIs
# --------------------------------------------------------------------------------------------------
def parse_cos_uri(uri: str, field_name: str = "uri") -> tuple[str, str]:
    """``cos://bucket/prefix/`` (or ``cosn://``) → ``(bucket, key)``; the key has no leading slash
    and may be empty (a bucket root)."""
    allowed = "a COS URI cos://<bucket>/<key>"
    if not isinstance(uri, str):
        type_error(field_name, uri, allowed)
    parts = urlsplit(uri.strip())
    if parts.scheme not in ("cos", "cosn") or not parts.netloc:
        fail(field_name, uri, allowed, reason="is not a COS URI")
    check_bucket(parts.netloc, field_name)
    key = uri.strip().split("://", 1)[1][len(parts.netloc) :].lstrip("/")
    if any(part == ".." for part in key.split("/")):
        fail(field_name, uri, allowed, reason="contains a '..' segment")
    return parts.netloc, key


def cos_uri(bucket: str, key: str, scheme: str = "cosn") -> str:
    """``cosn://bucket/key`` (no leading slash on the key)."""
    return f"{scheme}://{bucket}/{key.lstrip('/')}"


def parse_uri(uri: str, region: str | None = None, field_name: str = "input") -> MediaInput:
    """A user URI → :class:`MediaInput`: ``cos://bucket/key`` and ``s3://bucket/key`` (both need
    ``region``), ``http(s)://…`` (URL input)."""
    allowed = "cos://<bucket>/<key> or s3://<bucket>/<key> (with region), or an http(s):// URL"
    if not isinstance(uri, str):
        type_error(field_name, uri, allowed)
    text = uri.strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("http", "https"):
        check_url(text, field_name)
        return MediaInput("URL", url=text)
    if scheme in ("cos", "cosn", "s3"):
        rest = text.split("://", 1)[1]
        bucket, _, key = rest.partition("/")
        if not bucket:
            fail(field_name, uri, allowed, reason="has no bucket")
        check_bucket(bucket, field_name)
        if not key.strip("/") or key.endswith("/"):
            fail(field_name, uri, allowed, reason="has no object key")
        check_path_text(key, field_name, allowed)
        if region is None or region == "":
            missing("region", f"a region (e.g. ap-guangzhou) to go with {field_name}={uri!r}")
        check_region(region, "region")
        if scheme == "s3":
            return MediaInput("AWS-S3", bucket=bucket, region=region, object="/" + key.lstrip("/"))
        return MediaInput("COS", bucket=bucket, region=region, object="/" + key.lstrip("/"))
    fail(field_name, uri, allowed, reason="is not a supported URI")


def parse_output_storage(
    value: str, region: str | None = None, field_name: str = "output_storage"
) -> tuple[OutputStorage, str | None]:
    """``cos://bucket`` / ``cos://bucket/prefix/`` / ``s3://bucket`` → (storage, ``/prefix/`` or None)."""
    allowed = "cos://<bucket> or cos://<bucket>/<prefix>/ (or s3://<bucket>)"
    if not isinstance(value, str):
        type_error(field_name, value, allowed)
    text = value.strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme not in ("cos", "cosn", "s3"):
        fail(field_name, value, allowed, reason="is not a supported URI")
    bucket, _, prefix = text.split("://", 1)[1].partition("/")
    if not bucket:
        fail(field_name, value, allowed, reason="has no bucket")
    check_bucket(bucket, field_name)
    if region is not None:
        check_region(region, "region")
    directory = None
    if prefix.strip("/"):
        check_path_text(prefix, field_name, allowed)
        directory = "/" + prefix.strip("/") + "/"
    if scheme == "s3":
        if not region:
            missing("region", f"a region to go with {field_name}={value!r}")
        return OutputStorage("AWS-S3", bucket=bucket, region=region), directory
    return OutputStorage("COS", bucket=bucket, region=region or None), directory


def input_path_of(info: Mapping[str, Any] | None) -> str:
    """The path an ``InputInfo`` dict's file sits at, as :func:`render_output_path` reads it: a COS,
    S3 or VOD object path without its leading slash, or a URL input's percent-decoded URL path; ``""``
    when the dict names no file (a ``ScheduleId`` request without ``InputInfo``)."""
    if not isinstance(info, Mapping):
        return ""
    kind = str(info.get("Type") or "").upper()
    if kind == "URL":
        sub = info.get("UrlInputInfo")
        url = sub.get("Url") if isinstance(sub, Mapping) else None
        return unquote(urlsplit(str(url or "")).path).lstrip("/")
    name, field_name = {
        "AWS-S3": ("S3InputInfo", "S3Object"),
        "VOD": ("VODInputInfo", "Object"),
    }.get(kind, ("CosInputInfo", "Object"))
    sub = info.get(name)
    value = sub.get(field_name) if isinstance(sub, Mapping) else None
    return str(value or "").lstrip("/")


def render_output_path(
    input_path: str,
    output_format: str | None = None,
    *,
    output_dir: str | None = None,
    output_path: str | None = None,
    definition: int | None = None,
) -> str:
    """The object key (no leading slash) an image task writes its output to.

    The one implementation of the rule: the emulator writes outputs where it says, and the provider
    predicts output keys with it (:func:`expected_output_key`, skip-existing), so the two cannot
    drift. ``input_path`` is the input file's path (``/raw/a.png`` or ``raw/a.png``; see
    :func:`input_path_of`); ``output_format`` the output's format (``jpeg``, ``jpg``, ``png``, ``bmp``,
    ``webp``, any case), ``None`` = the source's, read from the input's extension.

    The rule (ProcessImage ``OutputDir``/``OutputPath`` docs, variables doc 862/37039):

    1. the template is ``OutputPath``, or the documented default ``{inputName}.{format}``;
    2. its variables render as: ``{inputName}`` the input file name without its last extension;
       ``{inputFormat}`` that extension as written (no dot; ``""`` without one); ``{format}`` the output
       format's extension (``jpeg`` → ``jpg``); ``{definition}`` the ``Definition``, ``0`` without one;
       ``{number}`` ``0`` (an image task has one output, numbered from 0 as in the documented HLS
       sample). Other ``{...}`` text is left as written (the request model refuses it);
    3. a rendered path starting with ``/`` is absolute (from the bucket root); otherwise it is joined
       to ``OutputDir`` — or to the input's directory when ``OutputDir`` is not given or empty. An
       ``OutputDir`` of ``/`` is the bucket root; surrounding slashes never matter.

    The choices the docs leave open (``{definition}`` and ``{number}`` values, an empty
    ``OutputDir``) are listed in docs/emulator-fidelity.md.
    """
    key = input_path.lstrip("/")
    directory, filename = posixpath.split(key)
    input_name, dot, input_ext = filename.rpartition(".")
    if not dot or not input_name:
        input_name, input_ext = filename, ""
    fmt = (output_format or input_ext).lower()
    fmt = "jpeg" if fmt == "jpg" else fmt
    ext = OUTPUT_EXTENSIONS.get(fmt, fmt)
    values = {
        "inputName": input_name,
        "inputFormat": input_ext,
        "format": ext,
        "definition": "0" if definition is None else str(definition),
        "number": "0",
    }
    template = output_path or DEFAULT_OUTPUT_PATH
    rendered = _VARIABLE_RE.sub(lambda m: values.get(m.group(1), m.group(0)), template)
    if not ext and template.endswith(".{format}"):
        rendered = rendered[:-1]  # no known format: no dangling dot
    if rendered.startswith("/"):
        return rendered.lstrip("/")
    if output_dir:
        directory = output_dir.strip("/")
    return f"{directory}/{rendered}" if directory else rendered


def expected_output_key(
    input_key: str,
    output_dir: str | None = None,
    output_path: str | None = None,
    format: str | None = None,
    definition: int | None = None,
) -> str:
    """Predict the object key (no leading slash) MPS writes for an input: :func:`render_output_path`
    with the request's values (``format`` ``None`` keeps the input's extension, ``jpeg`` gives
    ``.jpg``). What the provider's skip-existing compares with the objects already there."""
    return render_output_path(
        input_key, format, output_dir=output_dir, output_path=output_path, definition=definition
    )
