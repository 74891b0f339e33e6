"""Typed exceptions for Tencent Cloud MPS and the table that maps every MPS error code to one of them.

Why a table: the provider's retry policy depends on knowing, for every code the service (or the SDK's
transport layer) can return, whether the request was *refused* (throttled: retry any call with backoff),
failed for a *transient* reason (retry reads; retry ``ProcessImage`` only when it provably never
arrived) or failed *terminally* (fail at once, no Airflow retry). The table below was written by reading
the common API 3.0 error list and ``tencentcloud/mps/v20190612/errorcodes.py`` (SDK 3.1.194, 198 codes),
plus the codes a failed task carries in ``ErrMsg`` (``InvalidInput*``, ``SourceFileError*``,
``InternalError``: doc 862/50369 and VOD's 266/50368); it is plain data so this module stays stdlib-only (it is imported at DAG-parse time and by the emulator).
Codes not in the table are classified by their prefix (``RequestLimitExceeded.*`` → throttled,
``InternalError.*`` → transient, ``AuthFailure.*`` → auth, ``InvalidInput.*`` → parameter,
``SourceFileError.*`` → terminal, ...), anything else is terminal.

Every exception pickles (Airflow serialises exceptions between processes) and ``str(err)`` is
``"[<code>] <message> (RequestId: <id>)"``. No exception ever carries a credential.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AMBIGUOUS_NOT_FOUND",
    "CODE_TABLE",
    "MpsAccountError",
    "MpsAmbiguousSubmissionError",
    "MpsAuthError",
    "MpsError",
    "MpsInvalidParameterError",
    "MpsResourceNotFoundError",
    "MpsTaskFailedError",
    "MpsTerminalError",
    "MpsThrottledError",
    "MpsTransientError",
    "MpsUnauthorizedError",
    "MpsUnsupportedError",
    "MpsValidationError",
    "classify_code",
    "error_from_code",
    "error_from_exception",
]


def _rebuild(cls: type[MpsError], state: dict[str, Any]) -> MpsError:
    """Unpickling helper: recreate an error from its keyword state (see ``MpsError.__reduce__``)."""
    return cls(**state)


class MpsError(Exception):
    """Base class of every error raised by airflow-mps for an MPS call or an MPS request.

    Attributes: ``code`` (the MPS / API 3.0 error code, e.g. ``InvalidParameterValue``), ``message``
    (the service's message), ``request_id`` (the ``RequestId`` of the failed call, ``None`` when the
    error was raised locally) and ``retryable`` (whether retrying the same call can succeed).
    """

    retryable: ClassVar[bool] = False
    #: One of ``throttled``, ``transient``, ``terminal``, ``ambiguous`` — the retry policy's category.
    category: ClassVar[str] = "terminal"
    default_code: ClassVar[str] = "FailedOperation"

    def __init__(self, code: str | None = None, message: str = "", request_id: str | None = None) -> None:
        self.code: str = code or self.default_code
        self.message: str = "" if message is None else str(message)
        self.request_id: str | None = request_id or None
        super().__init__(self.code, self.message, self.request_id)

    def _state(self) -> dict[str, Any]:
        """Keyword arguments that recreate this error (used for pickling)."""
        return {"code": self.code, "message": self.message, "request_id": self.request_id}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._state()))

    def __str__(self) -> str:
        text = f"[{self.code}] {self.message}"
        if self.request_id:
            text += f" (RequestId: {self.request_id})"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, request_id={self.request_id!r})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for XCom / trigger events: ``{"code", "message", "request_id"}``."""
        return {"code": self.code, "message": self.message, "request_id": self.request_id}


class MpsThrottledError(MpsError):
    """The service refused the call because of a rate limit (``RequestLimitExceeded*``): always safe to retry."""

    retryable = True
    category = "throttled"
    default_code = "RequestLimitExceeded"


class MpsTransientError(MpsError):
    """A temporary failure (``InternalError``, ``ServiceUnavailable``, HTTP 5xx, network): retry reads;
    retry ``ProcessImage`` only when the request provably never reached the service."""

    retryable = True
    category = "transient"
    default_code = "InternalError"


class MpsTerminalError(MpsError):
    """A failure that retrying the same call cannot fix (bad credentials, bad parameters, ...)."""

    retryable = False
    category = "terminal"


class MpsAuthError(MpsTerminalError):
    """Authentication failed (``AuthFailure*``): wrong SecretId/SecretKey/token, signature, clock skew."""

    default_code = "AuthFailure"


class MpsUnauthorizedError(MpsAuthError):
    """Authenticated, but CAM does not allow this action (``UnauthorizedOperation``,
    ``AuthFailure.UnauthorizedOperation``) or the caller's IP is not allowed."""

    default_code = "UnauthorizedOperation"


class MpsAccountError(MpsTerminalError):
    """The account cannot use MPS (``FailedOperation.InvalidMpsUser``, ``UserArrears``, unregistered, ...)."""

    default_code = "FailedOperation.InvalidMpsUser"


class MpsInvalidParameterError(MpsTerminalError):
    """The service rejected a parameter (``InvalidParameter*``, ``MissingParameter``, ``UnknownParameter``)."""

    default_code = "InvalidParameter"


class MpsResourceNotFoundError(MpsTerminalError):
    """A referenced resource does not exist (``ResourceNotFound*``, unknown or expired task id, bucket)."""

    default_code = "ResourceNotFound"


class MpsUnsupportedError(MpsTerminalError):
    """The action, protocol, region or operation is not supported (``Unsupported*``, ``ActionOffline``, ...)."""

    default_code = "UnsupportedOperation"


class MpsAmbiguousSubmissionError(MpsError):
    """``ProcessImage`` may or may not have created a task (e.g. a timeout after the body was sent) and
    reconciliation could not decide. Never resubmitted blindly: that could process the image twice."""

    retryable = False
    category = "ambiguous"
    default_code = "AmbiguousSubmission"


#: The ambiguous outcome where reconciliation found no task: a WAITING task cannot be listed, so this
#: is not proof that none was created (the hook never resubmits on it; a later try looks again).
AMBIGUOUS_NOT_FOUND = "AmbiguousSubmission.NotFound"


class MpsTaskFailedError(MpsTerminalError):
    """An MPS task reached ``FINISH`` with a failure; ``task_id`` names it."""

    default_code = "TaskFailed"

    def __init__(
        self,
        code: str | None = None,
        message: str = "",
        request_id: str | None = None,
        task_id: str | None = None,
    ) -> None:
        self.task_id: str | None = task_id
        super().__init__(code, message, request_id)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "task_id": self.task_id}

    def __str__(self) -> str:
        text = f"[{self.code}] MPS task {self.task_id or '?'} failed: {self.message}"
        if self.request_id:
            text += f" (RequestId: {self.request_id})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "task_id": self.task_id}


class MpsValidationError(MpsInvalidParameterError, ValueError):
    """A request was refused locally, before any API call.

    ``field`` is the API field path (``ImageTask.EncodeConfig.Quality``) or the operator argument
    (``input``, ``image_task.EncodeConfig.Quality``); ``value`` the offending value (never a secret:
    secret fields are reported as ``***``); ``allowed`` a human description of what is accepted;
    ``code`` the code the real service would use (``InvalidParameterValue``, ``InvalidParameter``,
    ``MissingParameter``, ``UnknownParameter``). ``request_id`` is always ``None``.
    """

    default_code = "InvalidParameterValue"

    def __init__(
        self,
        field: str = "",
        value: Any = None,
        allowed: str | None = None,
        code: str | None = None,
        message: str | None = None,
        request_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        self.reason = reason
        code = code or self.default_code
        if message is None:
            message = self._default_message(field, value, allowed, code, reason)
        super().__init__(code, message, None)

    @staticmethod
    def _default_message(field: str, value: Any, allowed: str | None, code: str, reason: str | None) -> str:
        """``"<field>: <value> <reason>; allowed: <allowed>"`` (``reason`` defaults by code)."""
        if code == "MissingParameter" and reason is None:
            text = f"{field}: is required"
        else:
            shown = repr(value)
            if len(shown) > 200:
                shown = shown[:197] + "..."
            text = f"{field}: {shown} {reason or 'is not valid'}"
        if allowed:
            text += f"; allowed: {allowed}"
        return text

    def _state(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "value": self.value,
            "allowed": self.allowed,
            "code": self.code,
            "message": self.message,
            "reason": self.reason,
        }

    def to_dict(self) -> dict[str, Any]:
        value = self.value
        if not isinstance(value, (str, int, float, bool, type(None))):
            value = repr(value)
        return {**super().to_dict(), "field": self.field, "value": value, "allowed": self.allowed}


# --------------------------------------------------------------------------------------------------
# code → class table
# --------------------------------------------------------------------------------------------------
_THR = MpsThrottledError
_TRA = MpsTransientError
_TER = MpsTerminalError
_AUTH = MpsAuthError
_UNAUTH = MpsUnauthorizedError
_ACC = MpsAccountError
_INV = MpsInvalidParameterError
_NF = MpsResourceNotFoundError
_UNS = MpsUnsupportedError

#: Common API 3.0 codes (every action), SDK transport codes, every MPS code of errorcodes.py, then the
#: task failure codes (a failed task's ErrMsg).
CODE_TABLE: dict[str, type[MpsError]] = {
    # ---- common API 3.0 error codes ------------------------------------------------------------
    "ActionOffline": _UNS,
    "AuthFailure": _AUTH,
    "AuthFailure.InvalidAuthorization": _AUTH,
    "AuthFailure.InvalidSecretId": _AUTH,
    "AuthFailure.MFAFailure": _AUTH,
    "AuthFailure.SecretIdNotFound": _AUTH,
    "AuthFailure.SignatureExpire": _AUTH,
    "AuthFailure.SignatureFailure": _AUTH,
    "AuthFailure.TokenFailure": _AUTH,
    "AuthFailure.UnauthorizedOperation": _UNAUTH,
    "DryRunOperation": _TER,
    "FailedOperation": _TER,
    "InternalError": _TRA,
    "InvalidAction": _UNS,
    "InvalidParameter": _INV,
    "InvalidParameterValue": _INV,
    "InvalidRequest": _INV,
    "IpInBlacklist": _UNAUTH,
    "IpNotInWhitelist": _UNAUTH,
    "LimitExceeded": _TER,  # a quota, not a rate: waiting seconds does not help
    "MissingParameter": _INV,
    "NoSuchProduct": _UNS,
    "NoSuchVersion": _UNS,
    "RequestLimitExceeded": _THR,
    "RequestLimitExceeded.GlobalRegionUinLimitExceeded": _THR,
    "RequestLimitExceeded.IPLimitExceeded": _THR,
    "RequestLimitExceeded.UinLimitExceeded": _THR,
    "RequestSizeLimitExceeded": _INV,
    "ResourceInUse": _TRA,  # the resource is busy now; the same call can succeed later
    "ResourceInsufficient": _TRA,
    "ResourceNotFound": _NF,
    "ResourceUnavailable": _TRA,
    "ResponseSizeLimitExceeded": _TER,
    "ServiceUnavailable": _TRA,
    "UnauthorizedOperation": _UNAUTH,
    "UnknownParameter": _INV,
    "UnsupportedOperation": _UNS,
    "UnsupportedProtocol": _UNS,
    "UnsupportedRegion": _UNS,
    # ---- codes produced by the SDK itself (tencentcloud.common) --------------------------------
    "ClientNetworkError": _TRA,  # connection refused / reset / timeout in the transport
    "ServerNetworkError": _TRA,  # a non-200 HTTP status (5xx from a gateway)
    "ClientError": _TER,
    "ClientParamsError": _INV,
    "InvalidCredential": _AUTH,
    # ---- MPS-specific codes (tencentcloud/mps/v20190612/errorcodes.py, SDK 3.1.194) ------------
    "FailedOperation.BucketNotifyAlreadyExist": _TER,
    "FailedOperation.CosStatusInavlid": _ACC,  # COS is suspended for the account
    "FailedOperation.CreateAIGCTaskFailed": _TER,
    "FailedOperation.GenerateResource": _TER,
    "FailedOperation.GetSourceNotify": _TER,
    "FailedOperation.InvalidMpsUser": _ACC,
    "FailedOperation.InvalidUser": _ACC,
    "FailedOperation.NetWorkError": _TRA,
    "FailedOperation.QueryAIGCTaskFailed": _TER,
    "FailedOperation.SetSourceNotify": _TER,
    "FailedOperation.TaskNotFound": _NF,
    "FailedOperation.UserArrears": _ACC,
    "InternalError.AccessDBError": _TRA,
    "InternalError.GenDefinition": _TRA,
    "InternalError.GetSSAIChannelsFailed": _TRA,
    "InternalError.GetSSAIUsagePartialFailed": _TRA,
    "InternalError.RecognitionError": _TRA,
    "InternalError.UploadWatermarkError": _TRA,
    "InvalidParameterValue.TaskId": _NF,  # "任务 ID 不存在" — the task does not exist (or expired)
    "InvalidParameterValue.UserUnRegister": _ACC,
    "LimitExceeded.CreateTask": _TRA,  # too many running tasks: a concurrency limit, retry later
    "LimitExceeded.TooMuchHotWords": _TER,
    "LimitExceeded.TooMuchLargeHotWords": _TER,
    "LimitExceeded.TooMuchTemplate": _TER,
    "ResourceNotFound.CosBucketNameInvalid": _NF,
    "ResourceNotFound.CosBucketNotExist": _NF,
    "ResourceNotFound.DownloadError": _NF,
    "ResourceNotFound.Person": _NF,
    "ResourceNotFound.TaskNotFound": _NF,
    "ResourceNotFound.TemplateNotExist": _NF,
    "ResourceNotFound.UserUnregister": _NF,
    "ResourceNotFound.Word": _NF,
    "UnsupportedOperation.TextTooLong": _UNS,
    # ---- task failure codes: a FINISHed task's ErrMsg (not API errors) ---------------------------
    # The media-processing task error list, doc 862/50369 (MPS) and 266/50368 (VOD, which adds the
    # finer codes): a failed task never becomes a success by resubmitting the same request, except
    # for InternalError (above: transient). The emulator's mapping of each failure to one of these is
    # in docs/emulator-fidelity.md.
    "InvalidInput": _INV,
    "InvalidInput.InvalidTimeOffset": _INV,
    "InvalidInput.DefinitionNotExist": _NF,  # "指定的模板 ID 不存在"
    "InvalidInput.ConfigurationUnsupported": _INV,
    "InvalidInput.TaskDuplicated": _TER,
    "InvalidInput.PermissionDenied": _UNAUTH,  # the feature is not enabled for the account
    "InvalidInput.ResultFileSizeTooLarge": _INV,
    "SourceFileError": _TER,
    "SourceFileError.NoVideoMedia": _TER,
    "SourceFileError.NoVideoResolution": _TER,
    "SourceFileError.ContentMalformed": _TER,  # missing, corrupt or undecodable input
    "SourceFileError.ContentUnsupported": _TER,  # format, size or duration not supported
    "SourceFileError.DownloadNotAccessible": _TER,  # the input could not be downloaded
}


def _words(text: str) -> list[str]:
    """Split a whitespace-separated block of names (keeps long code lists readable)."""
    return text.split()


# Every InvalidParameter.* / InvalidParameterValue.* code of errorcodes.py is a parameter error; listed
# by suffix to keep the table readable (exceptions above: .TaskId, .UserUnRegister).
_INVALID_PARAMETER_SUFFIXES = _words(
    "AlreadyAssociatedInput AppId AuthInfo CacheInfo EndTime ExceededQuantityLimit Id Input InputInfo "
    "InputOutputId InvalidParameterChannelId InvalidUrl MaxBandwidth ModelNotSupported Name NoInputSpecified "
    "NotFound Output OutputGroups OutputId PageNum PageSize Period Pipeline Points Protocol SSAIInfo SortType "
    "StartTime State Type Url Value ViolationContent Whitelist"
)
_INVALID_PARAMETER_VALUE_SUFFIXES = _words(
    "AsrHotWordsConfigure AsrHotWordsLibraryId AsrHotWordsSwitch AudioBitrate AudioChannel AudioCodec "
    "AudioData AudioDataTooLong AudioFormat AudioSampleRate AutoAreas Bitrate BlockConfidence "
    "ClassifcationConfigure Codec ColumnCount Comment Container ContainerType CoordinateOrigin CoverConfigure "
    "CustomAreas DefaultLibraryLabelSet Definition Definitions DeleteDefaultTemplate DestinationLanguage "
    "DisableHigherVideoBitrate DisableHigherVideoResolution DuplicatedTextContent DurationTooLong "
    "EmptyDetectItem ErasePrivacyConfig EraseSubtitleConfig EraseType EraseWatermarkConfig FaceDuplicate "
    "FaceLibrary FaceScore FillType Format FormatWebpLackWidthAndHeight FormatWebpWidthAndHeightBothZero Fps "
    "FrameTagConfigure FunctionArg FunctionName Gop Height HotWordsNotExist HotwordsFormatError ImageContent "
    "ImageTemplate InputInfo InvalidContent InvalidOperationType LabelSet Limit ModifyDefaultTemplate Name "
    "NotProcessingTask ObjectLibrary OcrSwitch PicFormatError PrivacyModel PrivacyTargets ProjectLimitExceeded "
    "ProjectNameDuplicate ProjectNotFound Quality RemoveAudio RemoveVideo RepeatType Resolution "
    "ResolutionAdaptive ReviewConfidence RowCount SampleInterval SampleRate SampleType Service "
    "SessionContextTooLong SessionId SessionIdTooLong SoundSystem SourceLanguage SourceText SrcFile "
    "SubtitleEmbedId SubtitleEraseMethod SubtitleFormat SubtitleLang SubtitleModel SubtitleType SvgTemplate "
    "SvgTemplateHeight SvgTemplateWidth Switch TEHDType TagConfigure TextAlpha TextContent TextTemplate "
    "TransDstLang TransSwitch TranslateDstLanguage TranslateSwitch Type UnknownCategory UseOriginalPos "
    "UseOriginalSize UserDefineLibraryLabelSet VideoBitrate VideoCodec VideoSrcLanguage WatermarkEraseMethod "
    "WatermarkModel Width XPos YPos"
)
for _suffix in _INVALID_PARAMETER_SUFFIXES:
    CODE_TABLE.setdefault(f"InvalidParameter.{_suffix}", _INV)
for _suffix in _INVALID_PARAMETER_VALUE_SUFFIXES:
    CODE_TABLE.setdefault(f"InvalidParameterValue.{_suffix}", _INV)
del _suffix

#: Prefix rules for codes not in the table, most specific first. ``code == prefix`` or
#: ``code.startswith(prefix + ".")`` matches.
_PREFIX_RULES: tuple[tuple[str, type[MpsError]], ...] = (
    ("RequestLimitExceeded", _THR),
    ("InternalError", _TRA),
    ("ServiceUnavailable", _TRA),
    ("ResourceUnavailable", _TRA),
    ("ResourceInsufficient", _TRA),
    ("AuthFailure.UnauthorizedOperation", _UNAUTH),
    ("AuthFailure", _AUTH),
    ("UnauthorizedOperation", _UNAUTH),
    ("InvalidParameterValue", _INV),
    ("InvalidParameter", _INV),
    ("MissingParameter", _INV),
    ("UnknownParameter", _INV),
    ("ResourceNotFound", _NF),
    ("UnsupportedOperation", _UNS),
    ("InvalidInput", _INV),
    ("SourceFileError", _TER),
)


def _class_for(code: str) -> type[MpsError]:
    cls = CODE_TABLE.get(code)
    if cls is not None:
        return cls
    for prefix, rule_cls in _PREFIX_RULES:
        if code == prefix or code.startswith(prefix + "."):
            return rule_cls
    return MpsTerminalError


def classify_code(code: str | None) -> str:
    """``"throttled"``, ``"transient"`` or ``"terminal"`` for an MPS / SDK error code."""
    return _class_for(code or "").category


def error_from_code(code: str | None, message: str = "", request_id: str | None = None) -> MpsError:
    """Build the typed exception for an MPS error code (unknown codes: by prefix, else terminal)."""
    code = (code or "").strip() or "FailedOperation"
    return _class_for(code)(code, message, request_id)


def error_from_exception(exc: BaseException) -> MpsError:
    """Translate an SDK ``TencentCloudSDKException`` (duck-typed: ``get_code``/``get_message``/
    ``get_request_id``, or ``code``/``message``/``requestId`` attributes) into an ``MpsError``.

    An ``MpsError`` is returned unchanged. A non-SDK exception becomes a terminal error whose code is its
    class name, except built-in connection errors and timeouts which are transient
    (``ClientNetworkError``) — whether a timed-out submission is *ambiguous* is the caller's decision.
    """
    if isinstance(exc, MpsError):
        return exc
    getter = getattr(exc, "get_code", None)
    if callable(getter):
        code = getter()
        get_message = getattr(exc, "get_message", None)
        get_request_id = getattr(exc, "get_request_id", None)
        message = get_message() if callable(get_message) else str(exc)
        request_id = get_request_id() if callable(get_request_id) else None
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        return error_from_code(code, message or "", request_id)
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return MpsTransientError("ClientNetworkError", f"{type(exc).__name__}: {exc}")
    return MpsTerminalError(type(exc).__name__, str(exc))
