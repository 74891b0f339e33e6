"""ImageTaskStatus / ImageTaskInfo parsing from real-shaped DescribeImageTaskDetail/DescribeImageTasks responses."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from airflow_mps.models import ImageTaskInfo, ImageTaskStatus, TaskOutput

TASK_ID = "24000089-WorkflowTask-0723542d0c164c958ba116874fa9b0c4"

# mps-api.md §2.1, the 2026 example (PROCESSING, URL input echoed with an empty CosInputInfo and nulls).
PROCESSING_2026 = {
    "Response": {
        "CreateTime": "2026-04-30T06:26:49Z",
        "ImageTask": {
            "BeautyConfig": {
                "BeautyEffectItems": [
                    {"ExtInfo": "", "ResourcePath": "", "Switch": "ON", "Type": "Smooth", "Value": 40}
                ]
            }
        },
        "InputInfo": {
            "CosInputInfo": {"Bucket": "", "Object": "", "Region": ""},
            "S3InputInfo": None,
            "Type": "URL",
            "UrlInputInfo": {"Url": "http://***.cos.ap-shanghai.tencentcos.cn/**********/01.jpeg"},
            "VODInputInfo": None,
        },
        "Status": "PROCESSING",
        "TaskType": "WorkflowTask",
        "RequestId": "1610103f-dd39-44ca-90ea-e533219d9b53",
    }
}
# mps-api.md §2.1, the 2025 example: FINISH with no result set at all.
FINISH_BARE_2025 = {
    "Response": {
        "CreateTime": "2025-05-16T07:44:26Z",
        "FinishTime": "2025-05-16T07:44:30Z",
        "RequestId": "147e6b46-0000",
        "Status": "FINISH",
        "TaskType": "WorkflowTask",
    }
}
FINISH_OK = {
    "TaskType": "WorkflowTask",
    "Status": "FINISH",
    "ErrCode": 0,
    "ErrMsg": "",
    "Message": "",
    "ImageProcessTaskResultSet": [
        {
            "Status": "SUCCESS",
            "ErrMsg": "",
            "Message": "",
            "Progress": 100,
            "Output": {
                "Path": "/enhanced/dt=2026-11-01/cat.jpg",
                "OutputStorage": {
                    "Type": "COS",
                    "CosOutputStorage": {"Bucket": "photos-1250000000", "Region": "ap-guangzhou"},
                    "S3OutputStorage": None,
                    "VODOutputStorage": None,
                },
                "SignedUrl": "https://photos-1250000000.cos.ap-guangzhou.myqcloud.com/enhanced/dt=2026-11-01/cat.jpg?sign=x",
                "Content": "",
                "FileId": "",
            },
        }
    ],
    "CreateTime": "2026-11-01T00:00:01Z",
    "FinishTime": "2026-11-01T00:00:04Z",
    "RequestId": "req-ok",
}


def _finish(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(FINISH_OK)
    data.update(changes)
    return data


def test_waiting() -> None:
    status = ImageTaskStatus.from_api(
        {"Status": "WAITING", "RequestId": "r1", "CreateTime": "2026-11-01T00:00:00Z"}, TASK_ID
    )
    assert (status.state, status.done, status.succeeded, status.failed) == ("WAITING", False, False, False)
    assert status.task_id == TASK_ID
    assert status.progress == 0
    assert status.error_code is None


def test_processing_real_example() -> None:
    status = ImageTaskStatus.from_api(PROCESSING_2026, TASK_ID)
    assert status.state == "PROCESSING"
    assert not status.done and not status.failed and not status.succeeded
    assert status.request_id == "1610103f-dd39-44ca-90ea-e533219d9b53"
    assert status.create_time == "2026-04-30T06:26:49Z"
    assert status.finish_time is None
    assert status.outputs == ()


def test_processing_progress_from_results() -> None:
    status = ImageTaskStatus.from_api(
        {
            "Status": "PROCESSING",
            "ImageProcessTaskResultSet": [{"Status": "PROCESSING", "Progress": 40, "Output": None}],
        }
    )
    assert status.progress == 40
    assert not status.done


def test_finish_ok() -> None:
    status = ImageTaskStatus.from_api(FINISH_OK, TASK_ID)
    assert status.succeeded and status.done and not status.failed
    assert status.progress == 100
    assert status.error_code is None and status.error_message is None
    assert status.outputs == (
        TaskOutput(
            bucket="photos-1250000000",
            region="ap-guangzhou",
            path="enhanced/dt=2026-11-01/cat.jpg",
            uri="cosn://photos-1250000000/enhanced/dt=2026-11-01/cat.jpg",
            signed_url="https://photos-1250000000.cos.ap-guangzhou.myqcloud.com/enhanced/dt=2026-11-01/cat.jpg?sign=x",
        ),
    )


def test_finish_bare_counts_as_success_with_no_outputs() -> None:
    status = ImageTaskStatus.from_api(FINISH_BARE_2025, TASK_ID)
    assert status.succeeded
    assert status.outputs == ()
    assert status.finish_time == "2025-05-16T07:44:30Z"


def test_finish_with_errcode_and_code_in_errmsg() -> None:
    status = ImageTaskStatus.from_api(
        _finish(
            ErrCode=30010,
            ErrMsg="FailedOperation.DecodeError",
            Message="the image cannot be decoded",
            ImageProcessTaskResultSet=[],
        )
    )
    assert status.failed and not status.succeeded
    assert status.error_code == "FailedOperation.DecodeError"
    assert status.error_message == "the image cannot be decoded"
    assert status.err_code == 30010


def test_finish_with_errcode_only() -> None:
    status = ImageTaskStatus.from_api(_finish(ErrCode=70000, ErrMsg="", Message=""))
    assert status.failed
    assert status.error_code == "70000"
    assert status.error_message  # never empty for a failure


def test_finish_with_prose_errmsg() -> None:
    status = ImageTaskStatus.from_api(_finish(ErrCode=-1, ErrMsg="source file download failed", Message=None))
    assert status.failed
    assert status.error_code == "-1"
    assert status.error_message == "source file download failed"


def test_finish_with_failed_sub_result() -> None:
    data = _finish()
    data["ImageProcessTaskResultSet"] = [
        {
            "Status": "FAIL",
            "ErrMsg": "ResourceNotFound.DownloadError",
            "Message": "download source failed: 404",
            "Progress": 0,
            "Output": None,
        }
    ]
    status = ImageTaskStatus.from_api(data, TASK_ID)
    assert status.failed
    assert status.error_code == "ResourceNotFound.DownloadError"
    assert status.error_message == "download source failed: 404"
    assert status.outputs == ()


def test_finish_with_fail_status_but_no_texts() -> None:
    status = ImageTaskStatus.from_api(_finish(ImageProcessTaskResultSet=[{"Status": "FAIL"}]))
    assert status.failed
    assert status.error_code == "TaskFailed"
    assert "FAIL" in (status.error_message or "")


def test_finish_with_one_of_two_sub_results_failed() -> None:
    data = _finish()
    data["ImageProcessTaskResultSet"].append({"Status": "FAIL", "ErrMsg": "InternalError", "Message": "x"})
    status = ImageTaskStatus.from_api(data)
    assert status.failed
    assert len(status.outputs) == 1  # the successful output is still reported
    assert status.error_code == "InternalError"


@pytest.mark.parametrize(
    "response",
    [
        None,
        {},
        {"Response": None},
        {"Response": {}},
        {"Status": None, "ImageProcessTaskResultSet": None, "ErrCode": None, "ErrMsg": None},
        {
            "Status": "FINISH",
            "ImageProcessTaskResultSet": None,
            "ErrCode": None,
            "ErrMsg": None,
            "Message": None,
        },
        {"Status": "FINISH", "ImageProcessTaskResultSet": [None, {"Status": "SUCCESS", "Output": None}]},
        {
            "Status": "FINISH",
            "ImageProcessTaskResultSet": [
                {"Status": "SUCCESS", "Output": {"Path": None, "OutputStorage": None}}
            ],
        },
        {"Status": "FINISH", "InputInfo": {"Type": "COS", "CosInputInfo": None}},
    ],
)
def test_null_everything_is_tolerated(response: Any) -> None:
    status = ImageTaskStatus.from_api(response, TASK_ID)
    assert status.state in ("WAITING", "PROCESSING", "FINISH")
    assert status.task_id == TASK_ID
    json.dumps(status.to_dict())
    if status.done:
        assert status.succeeded
        assert status.outputs == ()


def test_output_without_storage_inherits_cos_input_location() -> None:
    data = _finish(
        InputInfo={
            "Type": "COS",
            "CosInputInfo": {"Bucket": "in-1250", "Region": "ap-shanghai", "Object": "/a/b.png"},
        }
    )
    data["ImageProcessTaskResultSet"][0]["Output"] = {
        "Path": "a/b.jpg",
        "OutputStorage": None,
        "SignedUrl": "",
    }
    (output,) = ImageTaskStatus.from_api(data).outputs
    assert (output.bucket, output.region, output.path, output.uri) == (
        "in-1250",
        "ap-shanghai",
        "a/b.jpg",
        "cosn://in-1250/a/b.jpg",
    )
    assert output.signed_url is None


def test_text_result_output() -> None:
    data = _finish()
    data["ImageProcessTaskResultSet"][0]["Output"] = {"Content": "a cat on a sofa", "Path": ""}
    (output,) = ImageTaskStatus.from_api(data).outputs
    assert output.content == "a cat on a sofa"
    assert output.path is None and output.uri is None


@pytest.mark.parametrize(
    "response",
    [PROCESSING_2026, FINISH_BARE_2025, FINISH_OK, _finish(ErrCode=1, ErrMsg="X.Y", Message="m")],
    ids=["processing", "bare", "ok", "failed"],
)
def test_to_dict_from_dict_round_trip(response: dict[str, Any]) -> None:
    status = ImageTaskStatus.from_api(response, TASK_ID)
    data = json.loads(json.dumps(status.to_dict()))
    again = ImageTaskStatus.from_dict(data)
    assert again == status
    assert again.to_dict() == status.to_dict()
    assert data["succeeded"] is status.succeeded


def test_image_task_info_rows() -> None:
    row = {
        "BeginProcessTime": "2026-03-16T12:29:54Z",
        "CreateTime": "2026-03-16T12:29:53Z",
        "FinishTime": "2026-03-16T12:29:58Z",
        "Status": "FINISH",
        "SubTaskHasFailed": False,
        "TaskId": "2400-WorkflowTask-tt6",
        "Input": "cos://b/a.png",
    }
    info = ImageTaskInfo.from_api(row)
    assert info == ImageTaskInfo(
        task_id="2400-WorkflowTask-tt6",
        status="FINISH",
        create_time="2026-03-16T12:29:53Z",
        begin_process_time="2026-03-16T12:29:54Z",
        finish_time="2026-03-16T12:29:58Z",
        sub_task_has_failed=False,
        input="cos://b/a.png",
    )
    assert ImageTaskInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info
    sparse = ImageTaskInfo.from_api(
        {"TaskId": "t", "FinishTime": "0000-00-00T00:00:00Z", "SubTaskHasFailed": None}
    )
    assert sparse.finish_time is None and sparse.sub_task_has_failed is None and sparse.status is None


def test_sdk_response_shape_parses() -> None:
    """A response deserialised and re-serialised by the SDK's own model parses the same."""
    from tencentcloud.mps.v20190612 import models as sdk

    response = sdk.DescribeImageTaskDetailResponse()
    response._deserialize(copy.deepcopy(FINISH_OK))
    via_sdk = json.loads(response.to_json_string())
    assert ImageTaskStatus.from_api(via_sdk, TASK_ID) == ImageTaskStatus.from_api(FINISH_OK, TASK_ID)
