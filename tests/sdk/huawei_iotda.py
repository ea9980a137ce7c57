"""Drives the simulator's IoTDA and OBS endpoints with Huawei's official Python SDKs.

The SDKs sign, the simulator verifies: huaweicloudsdkcore/huaweicloudsdkiotda 3.1.219 with both
client styles of sdks.md §2.2 (SDK-HMAC-SHA256 through with_endpoints, V11-HMAC-SHA256 through
with_region and the derived predicate), and esdk-obs-python for the package upload.

Environment: SIM_IOTDA_URL, SIM_OBS_URL, SIM_ADMIN_URL, SIM_PROJECT_ID, SIM_AK, SIM_SK.
Exits non-zero (AssertionError or SDK exception) on the first mismatch.
"""

import hashlib
import json
import os
import urllib.request

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.region.region import Region
from huaweicloudsdkiotda.v5 import (
    BatchTargets,
    ConfirmBatchTaskRequest,
    CreateBatchTask,
    CreateBatchTaskRequest,
    CreateOtaPackage,
    CreateOtaPackageRequest,
    DeleteBatchTaskRequest,
    DeleteOtaPackageRequest,
    FileLocation,
    IoTDAClient,
    ListBatchTasksRequest,
    ListOtaPackageInfoRequest,
    ObsLocation,
    RetryBatchTaskRequest,
    ShowBatchTaskRequest,
    ShowOtaPackageRequest,
    StopBatchTaskRequest,
    TaskPolicy,
)
from obs import ObsClient

IOTDA_URL = os.environ["SIM_IOTDA_URL"]
OBS_URL = os.environ["SIM_OBS_URL"]
ADMIN_URL = os.environ["SIM_ADMIN_URL"]
PID = os.environ["SIM_PROJECT_ID"]
AK = os.environ["SIM_AK"]
SK = os.environ["SIM_SK"]
BUCKET = "fw-bucket"


def advance(seconds):
    request = urllib.request.Request(
        f"{ADMIN_URL}/clock/advance",
        data=json.dumps({"seconds": seconds}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 200, response.status


def http_config():
    config = HttpConfig.get_default_config()
    config.ignore_ssl_verification = True
    config.retry_times = 0
    return config


def standard_client():
    credentials = BasicCredentials(AK, SK, PID)
    return (
        IoTDAClient.new_builder()
        .with_credentials(credentials)
        .with_endpoints([IOTDA_URL])
        .with_http_config(http_config())
        .build()
    )


def derived_client():
    credentials = BasicCredentials(AK, SK, PID).with_derived_predicate(
        BasicCredentials.get_default_derived_predicate()
    )
    return (
        IoTDAClient.new_builder()
        .with_credentials(credentials)
        .with_region(Region("cn-north-4", IOTDA_URL))
        .with_http_config(http_config())
        .build()
    )


def upload(key, content):
    client = ObsClient(access_key_id=AK, secret_access_key=SK, server=OBS_URL)
    response = client.putObject(BUCKET, key, content)
    assert response.status == 200, (response.status, response.errorCode, response.errorMessage)
    client.close()


def progress_sums(task):
    p = task.task_progress
    parts = [p.processing, p.success, p.fail, p.waitting, p.fail_wait_retry, p.stopped, p.removed or 0]
    assert sum(parts) == p.total, p
    return p


def main():
    standard = standard_client()
    derived = derived_client()

    content = b"sdk firmware 2.0.0" * 64
    upload("fw/sdk-2.0.0.bin", content)
    sha256 = hashlib.sha256(content).hexdigest()

    created = standard.create_ota_package(
        CreateOtaPackageRequest(
            instance_id="inst-0001",
            body=CreateOtaPackage(
                app_id="app1",
                package_type="firmwarePackage",
                product_id="prod1",
                version="2.0.0",
                support_source_versions=["1.0.0"],
                description="fw 2.0.0",
                file_location=FileLocation(
                    obs_location=ObsLocation(
                        region_name="cn-north-4", bucket_name=BUCKET, object_key="fw/sdk-2.0.0.bin", sign=sha256
                    )
                ),
            ),
        )
    )
    assert created.status_code == 201, created.status_code
    package_id = created.package_id
    assert len(package_id) == 24, package_id
    assert created.file_location.obs_location.sign == sha256
    assert created.version == "2.0.0"
    print("create_ota_package (SDK-HMAC-SHA256): ok", package_id)

    listed = standard.list_ota_package_info(ListOtaPackageInfoRequest(package_type="firmwarePackage", limit=10))
    assert [p.package_id for p in listed.packages] == [package_id], listed
    assert listed.packages[0].version == "2.0.0" and listed.packages[0].package_type == "firmwarePackage"
    assert listed.page.count == 1
    print("list_ota_package_info: ok")

    shown = derived.show_ota_package(ShowOtaPackageRequest(package_id=package_id))
    assert shown.file_location.obs_location.object_key == "fw/sdk-2.0.0.bin"
    print("show_ota_package (V11-HMAC-SHA256): ok")

    try:
        standard.list_ota_package_info(ListOtaPackageInfoRequest())
        raise AssertionError("a list without package_type must fail")
    except exceptions.ClientRequestException as error:
        assert error.status_code == 400 and error.error_code == "IOTDA.000006", error
    try:
        standard.create_batch_task(
            CreateBatchTaskRequest(
                body=CreateBatchTask(
                    task_name="has-dash", task_type="firmwareUpgrade", targets=["d1"], document={"package_ids": [package_id]}
                )
            )
        )
        raise AssertionError("a task name with '-' must fail")
    except exceptions.ClientRequestException as error:
        assert error.status_code == 400 and error.error_code == "IOTDA.000006", error
    print("validation errors: ok")

    task = derived.create_batch_task(
        CreateBatchTaskRequest(
            body=CreateBatchTask(
                app_id="app1",
                task_name="fw_2_0_0",
                task_type="firmwareUpgrade",
                need_confirm=False,
                targets=["sdk-dev-1", "sdk-dev-2", "sdk-bad-1"],
                document={"package_ids": [package_id]},
                task_policy=TaskPolicy(retry_count=1, retry_interval=1),
            )
        )
    )
    assert task.status_code == 201, task.status_code
    assert task.status == "Initializing", task.status
    assert task.task_progress.total == 3 and task.task_progress.waitting == 3
    task_id = task.task_id
    print("create_batch_task (V11): ok", task_id)

    advance(30)
    shown = standard.show_batch_task(ShowBatchTaskRequest(task_id=task_id))
    assert shown.batchtask.status == "Processing", shown.batchtask.status
    progress_sums(shown.batchtask)
    advance(600)
    shown = standard.show_batch_task(ShowBatchTaskRequest(task_id=task_id, limit=10))
    assert shown.batchtask.status == "PartialSuccess", shown.batchtask.status
    progress = progress_sums(shown.batchtask)
    assert (progress.success, progress.fail) == (2, 1), progress
    details = {d.target: d for d in shown.task_details}
    assert details["sdk-dev-1"].status == "Success"
    assert details["sdk-bad-1"].status == "Fail"
    assert details["sdk-bad-1"].error.error_code == "7", details["sdk-bad-1"].error
    assert shown.page.count == 3
    failed = derived.show_batch_task(ShowBatchTaskRequest(task_id=task_id, task_detail_status="Fail"))
    assert [d.target for d in failed.task_details] == ["sdk-bad-1"]
    print("show_batch_task: ok", progress)

    listed = derived.list_batch_tasks(ListBatchTasksRequest(task_type="firmwareUpgrade"))
    assert [t.task_id for t in listed.batchtasks] == [task_id]
    assert listed.batchtasks[0].status == "PartialSuccess"
    print("list_batch_tasks: ok")

    retried = standard.retry_batch_task(
        RetryBatchTaskRequest(task_id=task_id, body=BatchTargets(targets=["sdk-bad-1", "sdk-dev-1"]))
    )
    results = {r.target: r for r in retried.targets}
    assert results["sdk-bad-1"].status == "success"
    assert results["sdk-dev-1"].status == "failure" and results["sdk-dev-1"].error_code == "IOTDA.014219"
    print("retry_batch_task: ok")

    slow = standard.create_batch_task(
        CreateBatchTaskRequest(
            body=CreateBatchTask(
                task_name="slow_rollout",
                task_type="firmwareUpgrade",
                targets=["sdk-slow-1", "sdk-slow-2"],
                document={"package_id": package_id},
            )
        )
    )
    advance(2000)
    stopped = derived.stop_batch_task(StopBatchTaskRequest(task_id=slow.task_id, body=BatchTargets()))
    assert sorted(r.target for r in stopped.targets) == ["sdk-slow-1", "sdk-slow-2"]
    assert all(r.status == "success" for r in stopped.targets)
    shown = standard.show_batch_task(ShowBatchTaskRequest(task_id=slow.task_id))
    assert shown.batchtask.status == "Stopping", shown.batchtask.status
    assert progress_sums(shown.batchtask).stopped == 2
    advance(10)
    shown = standard.show_batch_task(ShowBatchTaskRequest(task_id=slow.task_id))
    assert shown.batchtask.status == "Stopped", shown.batchtask.status
    deleted = standard.delete_batch_task(DeleteBatchTaskRequest(task_id=slow.task_id))
    assert deleted.status_code == 204, deleted.status_code
    try:
        standard.show_batch_task(ShowBatchTaskRequest(task_id=slow.task_id))
        raise AssertionError("a deleted task must be gone")
    except exceptions.ClientRequestException as error:
        assert error.status_code == 404, error
    print("stop / delete_batch_task: ok")

    confirm = derived.create_batch_task(
        CreateBatchTaskRequest(
            body=CreateBatchTask(
                task_name="confirm_first",
                task_type="firmwareUpgrade",
                need_confirm=True,
                targets=["sdk-confirm-1"],
                document={"package_ids": [package_id]},
            )
        )
    )
    advance(600)
    shown = standard.show_batch_task(ShowBatchTaskRequest(task_id=confirm.task_id))
    assert shown.batchtask.status == "Waitting" and shown.batchtask.need_confirm is True, shown.batchtask.status
    confirmed = standard.confirm_batch_task(ConfirmBatchTaskRequest(task_id=confirm.task_id, body=BatchTargets()))
    assert [(r.target, r.status) for r in confirmed.targets] == [("sdk-confirm-1", "success")], confirmed
    advance(600)
    shown = standard.show_batch_task(ShowBatchTaskRequest(task_id=confirm.task_id))
    assert shown.batchtask.status == "Success", shown.batchtask.status
    print("confirm_batch_task: ok")

    deleted = derived.delete_ota_package(DeleteOtaPackageRequest(package_id=package_id))
    assert deleted.status_code == 204, deleted.status_code
    print("delete_ota_package: ok")


if __name__ == "__main__":
    main()
    print("huawei_iotda.py: all checks passed")
