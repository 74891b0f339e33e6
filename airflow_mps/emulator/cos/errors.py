"""The COS emulator's errors: one class per error code, each carrying the HTTP status COS answers.

Raised by the backend (`cos/models.py`: a missing bucket or key, a bad name) and by the wire layer
(`cos/responses.py`: a bad argument, a malformed body); the wire layer turns any of them into the
COS XML error body. Plain Python, no HTTP: the MPS side of the emulator and the `seed` command catch
them too.
"""

from __future__ import annotations

__all__ = [
    "CosBucketAlreadyExists",
    "CosBucketNotEmpty",
    "CosError",
    "CosInvalidArgument",
    "CosInvalidBucketName",
    "CosKeyTooLong",
    "CosNoSuchBucket",
    "CosNoSuchKey",
]


class CosError(Exception):
    """A COS error: ``code`` and ``status`` are what the real service answers for the situation."""

    code = "InternalError"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class CosNoSuchKey(CosError):
    code = "NoSuchKey"
    status = 404


class CosNoSuchBucket(CosError):
    code = "NoSuchBucket"
    status = 404


class CosInvalidBucketName(CosError):
    code = "InvalidBucketName"
    status = 400


class CosKeyTooLong(CosError):
    code = "KeyTooLongError"
    status = 400


class CosInvalidArgument(CosError):
    code = "InvalidArgument"
    status = 400


class CosBucketAlreadyExists(CosError):
    code = "BucketAlreadyExists"
    status = 409


class CosBucketNotEmpty(CosError):
    code = "BucketNotEmpty"
    status = 409
