"""Validator combinators and the error helpers every model check raises through.

A validator is a callable ``(value, path) -> None`` that raises :class:`MpsValidationError` naming the
field path (``ImageTask.EncodeConfig.Quality``, or an operator argument such as ``input``), the value,
what is allowed and the code the real service would answer with (``InvalidParameterValue``,
``InvalidParameter``, ``MissingParameter``). Combinators build validators for API types: strings,
enums, integers and numbers in a range, lists, and objects whose unknown keys are refused (a typo such
as ``EnhanceConfg`` would otherwise be dropped silently by the SDK). ``bool`` is never accepted where
an integer or a number is expected.

The field-format checks shared by inputs, output storage, URIs and the request (bucket, region,
object path, URL, path text) live here too, so each wording exists once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, NoReturn
from urllib.parse import urlsplit

from airflow_mps.errors import MpsValidationError
from airflow_mps.models.constants import MAX_PATH

__all__ = [
    "ApiObject",
    "Validator",
    "check_bucket",
    "check_object",
    "check_path_text",
    "check_region",
    "check_url",
    "describe",
    "fail",
    "integer",
    "join_path",
    "json_object",
    "list_of",
    "missing",
    "number",
    "one_of",
    "string",
    "type_error",
]

#: ``validator(value, path)`` raises :class:`MpsValidationError` or returns ``None``.
Validator = Callable[[Any, str], None]


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------
def fail(
    path: str, value: Any, allowed: str, reason: str = "is not valid", code: str = "InvalidParameterValue"
) -> NoReturn:
    """Refuse ``value`` at ``path``: it has the right type but is not ``allowed``."""
    raise MpsValidationError(field=path, value=value, allowed=allowed, code=code, reason=reason)


def type_error(path: str, value: Any, allowed: str) -> NoReturn:
    """Refuse ``value`` at ``path`` for its type (the service answers ``InvalidParameter``)."""
    fail(path, value, allowed, reason=f"has the wrong type ({type(value).__name__})", code="InvalidParameter")


def missing(path: str, allowed: str) -> NoReturn:
    """Refuse a request that lacks the required field ``path``."""
    raise MpsValidationError(field=path, value=None, allowed=allowed, code="MissingParameter")


def join_path(path: str, key: str | int) -> str:
    """The field path of ``key`` inside ``path``: ``a.b`` for a key, ``a[0]`` for a list index."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


# --------------------------------------------------------------------------------------------------
# combinators
# --------------------------------------------------------------------------------------------------
def string(max_len: int | None = None, allow_empty: bool = True) -> Validator:
    """A string, optionally non-blank and at most ``max_len`` characters."""

    def check(value: Any, path: str) -> None:
        desc = "a string" + (f" of at most {max_len} characters" if max_len else "")
        if not isinstance(value, str):
            type_error(path, value, desc)
        if not allow_empty and not value.strip():
            fail(path, value, "a non-empty string", reason="is empty")
        if max_len is not None and len(value) > max_len:
            fail(path, value, desc, reason="is too long")

    return check


def one_of(*values: str, case_insensitive: bool = False) -> Validator:
    """A string enum; ``case_insensitive`` accepts any case (``to_api()`` still sends what was given)."""
    allowed = "one of " + ", ".join(values) + (" (case-insensitive)" if case_insensitive else "")
    folded = {v.lower() for v in values}

    def check(value: Any, path: str) -> None:
        if not isinstance(value, str):
            type_error(path, value, allowed)
        ok = value.lower() in folded if case_insensitive else value in values
        if not ok:
            fail(path, value, allowed, reason="is not an allowed value")

    return check


def integer(
    lo: int | None = None, hi: int | None = None, choices: tuple[int, ...] | None = None
) -> Validator:
    """An integer (never a bool) in ``[lo, hi]``, or one of ``choices``."""
    if choices is not None:
        allowed = (
            "an integer, one of " + ", ".join(map(str, choices)) if len(choices) > 1 else f"only {choices[0]}"
        )
    elif lo is not None and hi is not None:
        allowed = f"an integer from {lo} to {hi}"
    elif lo is not None:
        allowed = f"an integer >= {lo}"
    else:
        allowed = "an integer"

    def check(value: Any, path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            type_error(path, value, allowed)
        if choices is not None:
            if value not in choices:
                fail(path, value, allowed, reason="is not an allowed value")
            return
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            fail(path, value, allowed, reason="is out of range")

    return check


def number(lo: float | None = None, hi: float | None = None, lo_exclusive: bool = False) -> Validator:
    """A finite int or float (never a bool) in ``[lo, hi]`` (``(lo, hi]`` with ``lo_exclusive``)."""
    if lo is not None and hi is not None:
        allowed = f"a number from {lo} to {hi}"
    elif lo is not None:
        allowed = f"a number {'>' if lo_exclusive else '>='} {lo}"
    else:
        allowed = "a number"

    def check(value: Any, path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            type_error(path, value, allowed)
        if not math.isfinite(value):
            fail(path, value, allowed, reason="is not a finite number")
        too_low = lo is not None and (value <= lo if lo_exclusive else value < lo)
        if too_low or (hi is not None and value > hi):
            fail(path, value, allowed, reason="is out of range")

    return check


def json_object(value: Any, path: str) -> None:
    """Any JSON object, contents unchecked (AI configs, ``AddOnParameter``: their schemas change often)."""
    if not isinstance(value, Mapping):
        type_error(path, value, "an object (JSON dict)")


def list_of(
    item: Validator, max_len: int | None = None, exact_len: int | None = None, what: str = ""
) -> Validator:
    """A list (or tuple) whose every element passes ``item``; ``what`` names the elements in errors."""
    if exact_len is not None:
        allowed = f"a list of exactly {exact_len} {what}".rstrip()
    elif max_len is not None:
        allowed = f"a list of at most {max_len} {what}".rstrip()
    else:
        allowed = f"a list of {what}".rstrip()

    def check(value: Any, path: str) -> None:
        if not isinstance(value, (list, tuple)):
            type_error(path, value, allowed)
        if exact_len is not None and len(value) != exact_len:
            fail(path, value, allowed, reason=f"has {len(value)} items")
        if max_len is not None and len(value) > max_len:
            fail(path, value, allowed, reason=f"has {len(value)} items")
        for i, element in enumerate(value):
            item(element, join_path(path, i))

    return check


class ApiObject:
    """An API object: a dict whose keys are all in ``schema``; ``None`` values mean "not set".

    A class rather than a closure so that :func:`describe` can name the keys of a missing object.
    """

    def __init__(self, schema: Mapping[str, Validator], required: tuple[str, ...] = ()) -> None:
        """``schema`` maps each allowed key to its validator; ``required`` keys must be non-null."""
        self.schema = schema
        self.required = required
        self._known = ", ".join(schema)

    def __call__(self, value: Any, path: str) -> None:
        """Validate ``value`` found at ``path``: an object, known keys, required keys, each value."""
        known = self._known
        if not isinstance(value, Mapping):
            type_error(path, value, f"an object with keys {known}")
        for key in value:
            if key not in self.schema:
                fail(
                    join_path(path, str(key)),
                    key,
                    f"keys {known}",
                    reason="is not a known parameter",
                    code="InvalidParameter",
                )
        for key in self.required:
            if value.get(key) is None:
                missing(join_path(path, key), describe(self.schema[key]))
        for key, sub in value.items():
            if sub is not None:
                self.schema[key](sub, join_path(path, key))


def describe(validator: Validator) -> str:
    """What a missing value of ``validator`` should have been, for a ``MissingParameter`` error."""
    if isinstance(validator, ApiObject):
        return "an object with keys " + ", ".join(validator.schema)
    return "a value"


# --------------------------------------------------------------------------------------------------
# field formats shared by inputs, output storage, URIs and the request
# --------------------------------------------------------------------------------------------------
_BUCKET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_REGION_RE = re.compile(r"[a-z]{2}(-[a-z0-9]+)+")


def check_path_text(value: Any, path: str, allowed: str) -> None:
    """An object path, directory or file name: a string of at most :data:`MAX_PATH` characters with
    no ``..`` segment and no control character."""
    if not isinstance(value, str):
        type_error(path, value, allowed)
    if len(value) > MAX_PATH:
        fail(path, value, allowed, reason="is too long")
    if any(part == ".." for part in value.split("/")):
        fail(path, value, allowed, reason="contains a '..' segment")
    if any(ord(c) < 32 for c in value):
        fail(path, value, allowed, reason="contains a control character")


def check_bucket(value: Any, path: str) -> None:
    """A COS/S3 bucket name (letters, digits, ``.``, ``_``, ``-``; at most 63 characters)."""
    allowed = "a bucket name (letters, digits, '.', '_', '-'; at most 63 characters), e.g. photos-1250000000"
    string(allow_empty=False)(value, path)
    if not _BUCKET_RE.fullmatch(value):
        fail(path, value, allowed, reason="is not a valid bucket name")


def check_region(value: Any, path: str) -> None:
    """A region id such as ``ap-guangzhou``."""
    allowed = "a region id such as ap-guangzhou or us-east-1"
    string(allow_empty=False)(value, path)
    if not _REGION_RE.fullmatch(value):
        fail(path, value, allowed, reason="is not a valid region")


def check_object(value: Any, path: str) -> None:
    """An object path (``/raw/a.png``) that names an object, not a directory."""
    allowed = "an object path such as /raw/a.png (at most 1024 characters, no '..' segments)"
    string(allow_empty=False)(value, path)
    check_path_text(value, path, allowed)
    if value.endswith("/") or not value.strip("/"):
        fail(path, value, allowed, reason="names a directory, not an object")


def check_url(value: Any, path: str) -> None:
    """An ``http(s)://`` URL with a host and no whitespace."""
    allowed = "an http:// or https:// URL with a host"
    string(allow_empty=False)(value, path)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        fail(path, value, allowed, reason="is not an http(s) URL")
    if any(c.isspace() for c in value):
        fail(path, value, allowed, reason="contains whitespace")
