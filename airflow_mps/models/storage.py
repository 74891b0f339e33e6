"""Where images come from and go to: input and output storage types, and the URI helpers.

:class:`MediaInput` is ProcessImage's ``InputInfo`` (COS, URL, AWS-S3 or VOD) and :class:`OutputStorage`
its ``OutputStorage``; both validate the API dict (``from_api``), render it (``to_api``) and never show
an ``S3SecretKey`` in ``repr()``. The URI helpers turn what users write (``cos://bucket/key``,
``s3://bucket/key``, ``https://…``) into those types, and predict the key MPS writes an output to.

Decisions relied on by the operators and the emulator:

* ``OutputDir`` is a directory: :func:`expected_output_key` treats it as one whether or not it starts
  or ends with ``/``.
* ``cos://bucket/prefix/`` as an output storage gives the bucket and the directory ``/prefix/``
  (:func:`parse_output_storage`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from airflow_mps.errors import MpsValidationError
from airflow_mps.models.constants import INPUT_TYPES, MASK, OUTPUT_EXTENSIONS, OUTPUT_TYPES
from airflow_mps.models.validation import (
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
    "MediaInput",
    "OutputStorage",
    "cos_uri",
    "expected_output_key",
    "parse_cos_uri",
    "parse_output_storage",
    "parse_uri",
]


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
        if sub.get("VodBasic") == 1:
            if not sub.get("FileId"):
                missing(join_path(vpath, "FileId"), "a VOD FileId when VodBasic is 1")
        elif not sub.get("Object"):
            missing(join_path(vpath, "Object"), "the VOD object path (or VodBasic=1 with a FileId)")
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
            raw = info.get("CosOutputStorage")
            sub = {} if raw is None else _sub_object(info, "CosOutputStorage", path, (), ("Bucket", "Region"))
            if sub.get("Bucket"):
                check_bucket(sub["Bucket"], join_path(path, "CosOutputStorage.Bucket"))
            elif sub.get("Bucket") is not None:
                string()(sub["Bucket"], join_path(path, "CosOutputStorage.Bucket"))
            if sub.get("Region"):
                check_region(sub["Region"], join_path(path, "CosOutputStorage.Region"))
            elif sub.get("Region") is not None:
                string()(sub["Region"], join_path(path, "CosOutputStorage.Region"))
            return cls("COS", bucket=sub.get("Bucket"), region=sub.get("Region"))
        if kind == "AWS-S3":
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


def expected_output_key(
    input_key: str,
    output_dir: str | None = None,
    output_path: str | None = None,
    format: str | None = None,
) -> str:
    """Predict the object key (no leading slash) MPS writes for an input, following the documented
    defaults: ``OutputPath`` absolute (``/…``) is used as is, relative is joined to ``OutputDir`` (or
    the input's directory); without ``OutputPath`` the name is ``{inputName}.{format}`` in
    ``OutputDir`` (or the input's directory). ``{inputName}`` and ``{format}`` variables are
    substituted; ``format`` ``None`` keeps the input's extension. ``jpeg`` gives ``.jpg``."""
    key = input_key.lstrip("/")
    directory, filename = posixpath.split(key)
    input_name, dot, input_ext = filename.rpartition(".")
    if not dot:
        input_name, input_ext = filename, ""
    if format:
        ext = OUTPUT_EXTENSIONS.get(format.lower(), format.lower())
    else:
        ext = OUTPUT_EXTENSIONS.get(input_ext.lower(), input_ext.lower()) if input_ext else ""
    if output_dir is not None and output_dir.strip("/"):
        directory = output_dir.strip("/")
    elif output_dir is not None:
        directory = ""
    if output_path:
        name = output_path.replace("{inputName}", input_name).replace("{format}", ext)
        if name.startswith("/"):
            return name.lstrip("/")
        return f"{directory}/{name}" if directory else name
    name = f"{input_name}.{ext}" if ext else input_name
    return f"{directory}/{name}" if directory else name
