"""The MPS error hierarchy: every code classified, str()/pickle behaviour, SDK exception translation."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from airflow_mps import errors
from airflow_mps.errors import (
    CODE_TABLE,
    MpsAccountError,
    MpsAmbiguousSubmissionError,
    MpsAuthError,
    MpsError,
    MpsInvalidParameterError,
    MpsResourceNotFoundError,
    MpsTaskFailedError,
    MpsTerminalError,
    MpsThrottledError,
    MpsTransientError,
    MpsUnauthorizedError,
    MpsUnsupportedError,
    MpsValidationError,
    classify_code,
    error_from_code,
    error_from_exception,
)

COMMON_CODES = [
    "ActionOffline",
    "AuthFailure.InvalidAuthorization",
    "AuthFailure.InvalidSecretId",
    "AuthFailure.MFAFailure",
    "AuthFailure.SecretIdNotFound",
    "AuthFailure.SignatureExpire",
    "AuthFailure.SignatureFailure",
    "AuthFailure.TokenFailure",
    "AuthFailure.UnauthorizedOperation",
    "DryRunOperation",
    "FailedOperation",
    "InternalError",
    "InvalidAction",
    "InvalidParameter",
    "InvalidParameterValue",
    "InvalidRequest",
    "IpInBlacklist",
    "IpNotInWhitelist",
    "LimitExceeded",
    "MissingParameter",
    "NoSuchProduct",
    "NoSuchVersion",
    "RequestLimitExceeded",
    "RequestLimitExceeded.GlobalRegionUinLimitExceeded",
    "RequestLimitExceeded.IPLimitExceeded",
    "RequestLimitExceeded.UinLimitExceeded",
    "RequestSizeLimitExceeded",
    "ResourceInUse",
    "ResourceInsufficient",
    "ResourceNotFound",
    "ResourceUnavailable",
    "ResponseSizeLimitExceeded",
    "ServiceUnavailable",
    "UnauthorizedOperation",
    "UnknownParameter",
    "UnsupportedOperation",
    "UnsupportedProtocol",
    "UnsupportedRegion",
]


def _sdk_error_codes() -> list[str]:
    import tencentcloud.mps.v20190612.errorcodes as sdk_codes

    text = Path(sdk_codes.__file__).read_text(encoding="utf-8")
    return re.findall(r"^[A-Z0-9_]+ = '([^']+)'", text, flags=re.M)


def test_every_sdk_mps_code_is_in_the_table() -> None:
    codes = _sdk_error_codes()
    assert len(codes) == 198
    missing = [c for c in codes if c not in CODE_TABLE]
    assert missing == []


def test_every_common_code_is_in_the_table() -> None:
    assert [c for c in COMMON_CODES if c not in CODE_TABLE] == []


@pytest.mark.parametrize("code", sorted(set(_sdk_error_codes()) | set(COMMON_CODES)))
def test_each_code_gets_a_consistent_class(code: str) -> None:
    err = error_from_code(code, "msg", "rid")
    assert err.code == code
    assert isinstance(err, MpsError)
    # The family rules of the brief hold for every listed code.
    if code.startswith("RequestLimitExceeded"):
        assert isinstance(err, MpsThrottledError)
    elif code.startswith("InternalError"):
        assert isinstance(err, MpsTransientError)
    elif code.startswith("AuthFailure"):
        assert isinstance(err, MpsAuthError)
    elif code in ("InvalidParameterValue.TaskId",):
        assert isinstance(err, MpsResourceNotFoundError)
    elif code == "InvalidParameterValue.UserUnRegister":
        assert isinstance(err, MpsAccountError)
    elif code.startswith(("InvalidParameter", "MissingParameter", "UnknownParameter")):
        assert isinstance(err, MpsInvalidParameterError)
    elif code.startswith("ResourceNotFound"):
        assert isinstance(err, MpsResourceNotFoundError)
    assert err.retryable is (err.category in ("throttled", "transient"))
    assert classify_code(code) == err.category


@pytest.mark.parametrize(
    ("code", "cls", "category"),
    [
        ("RequestLimitExceeded", MpsThrottledError, "throttled"),
        ("RequestLimitExceeded.UinLimitExceeded", MpsThrottledError, "throttled"),
        ("RequestLimitExceeded.SomethingNew", MpsThrottledError, "throttled"),
        ("InternalError", MpsTransientError, "transient"),
        ("InternalError.AccessDBError", MpsTransientError, "transient"),
        ("InternalError.Brand.New", MpsTransientError, "transient"),
        ("ServiceUnavailable", MpsTransientError, "transient"),
        ("ResourceUnavailable", MpsTransientError, "transient"),
        ("ResourceInsufficient", MpsTransientError, "transient"),
        ("FailedOperation.NetWorkError", MpsTransientError, "transient"),
        ("LimitExceeded.CreateTask", MpsTransientError, "transient"),
        ("ClientNetworkError", MpsTransientError, "transient"),
        ("ServerNetworkError", MpsTransientError, "transient"),
        ("AuthFailure", MpsAuthError, "terminal"),
        ("AuthFailure.SignatureFailure", MpsAuthError, "terminal"),
        ("AuthFailure.SignatureExpire", MpsAuthError, "terminal"),
        ("AuthFailure.NewKind", MpsAuthError, "terminal"),
        ("AuthFailure.UnauthorizedOperation", MpsUnauthorizedError, "terminal"),
        ("UnauthorizedOperation", MpsUnauthorizedError, "terminal"),
        ("UnauthorizedOperation.Cam", MpsUnauthorizedError, "terminal"),
        ("InvalidParameter", MpsInvalidParameterError, "terminal"),
        ("InvalidParameter.InputInfo", MpsInvalidParameterError, "terminal"),
        ("InvalidParameterValue.Quality", MpsInvalidParameterError, "terminal"),
        ("InvalidParameterValue.NotYetListed", MpsInvalidParameterError, "terminal"),
        ("MissingParameter", MpsInvalidParameterError, "terminal"),
        ("UnknownParameter", MpsInvalidParameterError, "terminal"),
        ("ResourceNotFound", MpsResourceNotFoundError, "terminal"),
        ("ResourceNotFound.TaskNotFound", MpsResourceNotFoundError, "terminal"),
        ("FailedOperation.TaskNotFound", MpsResourceNotFoundError, "terminal"),
        ("InvalidParameterValue.TaskId", MpsResourceNotFoundError, "terminal"),
        ("FailedOperation.InvalidMpsUser", MpsAccountError, "terminal"),
        ("FailedOperation.InvalidUser", MpsAccountError, "terminal"),
        ("FailedOperation.UserArrears", MpsAccountError, "terminal"),
        ("UnsupportedOperation", MpsUnsupportedError, "terminal"),
        ("InvalidAction", MpsUnsupportedError, "terminal"),
        ("NoSuchVersion", MpsUnsupportedError, "terminal"),
        ("LimitExceeded", MpsTerminalError, "terminal"),
        ("FailedOperation", MpsTerminalError, "terminal"),
        ("TotallyUnknown", MpsTerminalError, "terminal"),
        ("", MpsTerminalError, "terminal"),
    ],
)
def test_code_families(code: str, cls: type[MpsError], category: str) -> None:
    err = error_from_code(code, "m", "r-1")
    assert type(err) is cls
    assert err.category == category
    assert classify_code(code) == category
    assert err.retryable is (category != "terminal")


#: The media-processing task failure codes (a FINISHed task's ErrMsg): doc 862/50369 (MPS) and the
#: finer codes of VOD's 266/50368. Issue 11: InternalError is retryable, every other one terminal.
TASK_FAILURE_CODES = [
    ("InvalidInput", MpsInvalidParameterError),
    ("InvalidInput.InvalidTimeOffset", MpsInvalidParameterError),
    ("InvalidInput.DefinitionNotExist", MpsResourceNotFoundError),
    ("InvalidInput.ConfigurationUnsupported", MpsInvalidParameterError),
    ("InvalidInput.TaskDuplicated", MpsTerminalError),
    ("InvalidInput.PermissionDenied", MpsUnauthorizedError),
    ("InvalidInput.ResultFileSizeTooLarge", MpsInvalidParameterError),
    ("SourceFileError", MpsTerminalError),
    ("SourceFileError.NoVideoMedia", MpsTerminalError),
    ("SourceFileError.NoVideoResolution", MpsTerminalError),
    ("SourceFileError.ContentMalformed", MpsTerminalError),
    ("SourceFileError.ContentUnsupported", MpsTerminalError),
    ("SourceFileError.DownloadNotAccessible", MpsTerminalError),
    ("InternalError", MpsTransientError),
]


@pytest.mark.parametrize(("code", "cls"), TASK_FAILURE_CODES)
def test_task_failure_codes_are_in_the_table(code: str, cls: type[MpsError]) -> None:
    assert CODE_TABLE[code] is cls
    err = error_from_code(code, "task failed", None)
    assert type(err) is cls
    assert err.retryable is (code == "InternalError")
    assert classify_code(code) == ("transient" if code == "InternalError" else "terminal")


def test_task_failure_families_cover_codes_documented_later() -> None:
    assert type(error_from_code("InvalidInput.SomethingNew")) is MpsInvalidParameterError
    assert type(error_from_code("SourceFileError.SomethingNew")) is MpsTerminalError
    assert classify_code("SourceFileError.SomethingNew") == "terminal"


def test_emulator_task_failures_use_only_documented_codes() -> None:
    from airflow_mps.emulator.mps.models import TASK_FAILURES

    documented = {code for code, _ in TASK_FAILURE_CODES}
    assert {err_msg for _, err_msg in TASK_FAILURES.values()} <= documented
    # One ErrCode number per family (the service publishes none for image tasks: ours).
    families = {err_msg.split(".")[0]: err_code for err_code, err_msg in TASK_FAILURES.values()}
    assert families == {"SourceFileError": 60000, "InvalidInput": 40000, "InternalError": 70000}


def test_prefix_rules_do_not_match_partial_words() -> None:
    # "InternalErrorX" is not "InternalError.*": falls back to terminal.
    assert type(error_from_code("InternalErrorX")) is MpsTerminalError
    assert type(error_from_code("RequestLimitExceededish")) is MpsTerminalError


def test_str_has_code_message_and_request_id() -> None:
    err = error_from_code("RequestLimitExceeded", "too fast", "ed93f3cb-f35e")
    assert str(err) == "[RequestLimitExceeded] too fast (RequestId: ed93f3cb-f35e)"
    assert str(error_from_code("InternalError", "boom")) == "[InternalError] boom"
    assert "ed93f3cb-f35e" in repr(err)
    assert err.to_dict() == {
        "code": "RequestLimitExceeded",
        "message": "too fast",
        "request_id": "ed93f3cb-f35e",
    }


def _all_error_samples() -> list[MpsError]:
    samples: list[MpsError] = [
        cls("Some.Code", "message text", "req-1")
        for cls in (
            MpsError,
            MpsThrottledError,
            MpsTransientError,
            MpsTerminalError,
            MpsAuthError,
            MpsUnauthorizedError,
            MpsAccountError,
            MpsInvalidParameterError,
            MpsResourceNotFoundError,
            MpsUnsupportedError,
            MpsAmbiguousSubmissionError,
        )
    ]
    samples.append(MpsTaskFailedError("ResourceNotFound.DownloadError", "no source", "req-2", task_id="t-1"))
    samples.append(
        MpsValidationError(
            field="ImageTask.EncodeConfig.Quality",
            value=0,
            allowed="an integer from 1 to 100",
            code="InvalidParameterValue",
            reason="is out of range",
        )
    )
    return samples


@pytest.mark.parametrize("err", _all_error_samples(), ids=lambda e: type(e).__name__)
def test_errors_pickle(err: MpsError) -> None:
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is type(err)
    assert str(clone) == str(err)
    assert (clone.code, clone.message, clone.request_id) == (err.code, err.message, err.request_id)
    assert clone.retryable is err.retryable
    if isinstance(err, MpsTaskFailedError):
        assert clone.task_id == "t-1"
    if isinstance(err, MpsValidationError):
        assert (clone.field, clone.value, clone.allowed) == (err.field, err.value, err.allowed)


def test_validation_error_shape() -> None:
    err = MpsValidationError(
        field="ImageTask.EncodeConfig.Quality",
        value=0,
        allowed="an integer from 1 to 100",
        reason="is out of range",
    )
    assert isinstance(err, ValueError)
    assert isinstance(err, MpsTerminalError)
    assert not err.retryable
    assert err.code == "InvalidParameterValue"
    assert err.request_id is None
    assert str(err) == (
        "[InvalidParameterValue] ImageTask.EncodeConfig.Quality: 0 is out of range; allowed: an integer from 1 to 100"
    )
    missing = MpsValidationError(field="InputInfo", allowed="an object", code="MissingParameter")
    assert missing.message == "InputInfo: is required; allowed: an object"
    assert missing.to_dict()["field"] == "InputInfo"


def test_task_failed_error_names_the_task() -> None:
    err = MpsTaskFailedError("FailedOperation", "decode error", "rid-9", task_id="24000089-WorkflowTask-abc")
    assert "24000089-WorkflowTask-abc" in str(err)
    assert "rid-9" in str(err)
    assert err.to_dict()["task_id"] == "24000089-WorkflowTask-abc"
    assert not err.retryable


def test_error_from_real_sdk_exception() -> None:
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

    sdk = TencentCloudSDKException(
        "RequestLimitExceeded", "Your current request times equals to `21`", "rid-x"
    )
    err = error_from_exception(sdk)
    assert isinstance(err, MpsThrottledError)
    assert err.request_id == "rid-x"
    net = error_from_exception(TencentCloudSDKException("ServerNetworkError", b"<html>502</html>"))
    assert isinstance(net, MpsTransientError)
    assert net.message == "<html>502</html>"
    assert isinstance(error_from_exception(ConnectionRefusedError("refused")), MpsTransientError)
    assert type(error_from_exception(KeyError("x"))) is MpsTerminalError
    same = MpsAuthError("AuthFailure", "x")
    assert error_from_exception(same) is same


def test_module_is_stdlib_only() -> None:
    source = Path(errors.__file__).read_text(encoding="utf-8")
    assert "tencentcloud" not in re.sub(r'""".*?"""|#.*', "", source, flags=re.S)
    assert "import airflow" not in source
