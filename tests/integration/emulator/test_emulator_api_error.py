"""The `api_error` fault: any MPS error code on any action, as a CAM denial or a new code would look."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_mps.emulator.faults import parse_fault_spec
from airflow_mps.emulator.testing import EmulatorServer


def test_api_error_answers_the_given_code_through_the_sdk(emulator: EmulatorServer, mps_client: Any) -> None:
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
    from tencentcloud.mps.v20190612 import models

    emulator.faults.api_error("UnauthorizedOperation", "DescribeImageTasks", message="denied by CAM", count=1)
    req = models.DescribeImageTasksRequest()
    req.Status = "FINISH"
    with pytest.raises(TencentCloudSDKException) as err:
        mps_client.DescribeImageTasks(req)
    assert err.value.get_code() == "UnauthorizedOperation"
    assert err.value.get_message() == "denied by CAM"
    assert err.value.get_request_id()
    mps_client.DescribeImageTasks(req)  # `count=1`: the next call is answered normally


def test_api_error_spec_from_the_cli() -> None:
    fault = parse_fault_spec("api_error@DescribeImageTasks,api_code=ResourceUnavailable,next=2")
    assert (fault.kind, fault.action, fault.api_code, fault.count) == (
        "api_error",
        "DescribeImageTasks",
        "ResourceUnavailable",
        2,
    )
