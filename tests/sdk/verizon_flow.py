"""Drive the ThingSpace simulator with Verizon's official Python SDK (sdksio-verizon-apis-sdk 2.0.0).

Usage: verizon_flow.py BASE_URL ADMIN_URL

BASE_URL is the simulator's main listener (http://127.0.0.1:PORT); the SDK's production
host https://thingspace.verizon.com is replaced by it, so `/api/...` paths stay as the SDK
builds them. ADMIN_URL is the simulator's /_sim base, used only to move the virtual clock.
Credentials come from the environment (TS_CLIENT_ID, TS_CLIENT_SECRET, TS_USERNAME,
TS_PASSWORD, TS_ACCOUNT). Exits non-zero (AssertionError) on any mismatch.
"""

import json
import os
import sys
import tempfile
import urllib.request

from verizon.configuration import Configuration, Server
from verizon.exceptions.fota_v2_result_exception import FotaV2ResultException
from verizon.http.auth.thingspace_oauth import ThingspaceOauthCredentials
from verizon.http.auth.vz_m2m_token import VZM2mTokenCredentials
from verizon.models.log_in_request import LogInRequest
from verizon.models.upload_and_schedule_file_request import UploadAndScheduleFileRequest
from verizon.verizon_client import VerizonClient

BASE_URL, ADMIN_URL = sys.argv[1], sys.argv[2]
ACCOUNT = os.environ["TS_ACCOUNT"]


class LocalConfig(Configuration):
    """Aims every SDK server at the simulator."""

    def get_base_uri(self, server=Server.THINGSPACE):
        return super().get_base_uri(server).replace("https://thingspace.verizon.com", BASE_URL)


def admin(path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        ADMIN_URL + path, data=data, method="POST" if data is not None else "GET",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def client(session_token=None):
    credentials = ThingspaceOauthCredentials(os.environ["TS_CLIENT_ID"], os.environ["TS_CLIENT_SECRET"])
    kwargs = {"thingspace_oauth_credentials": credentials}
    if session_token is not None:
        kwargs["vz_m2m_token_credentials"] = VZM2mTokenCredentials(session_token)
    return VerizonClient(config=LocalConfig(timeout=30, **kwargs))


# 1. OAuth token (fetched by the SDK) + M2M session login.
login = client().session_management.start_connectivity_management_session(
    LogInRequest(username=os.environ["TS_USERNAME"], password=os.environ["TS_PASSWORD"]))
assert login.status_code == 200, login.status_code
session = login.body.session_token
assert len(session) == 36 and session.count("-") == 4, session
fota = client(session)

# 2. Upload a configuration file; the SDK sends the file's full local path as its name.
with tempfile.TemporaryDirectory() as directory:
    path = os.path.join(directory, "app.conf")
    with open(path, "wb") as handle:
        handle.write(b"interval=60\n")
    with open(path, "rb") as handle:
        uploaded = fota.configuration_files.upload_config_file(
            ACCOUNT, fileupload=handle, file_version="1.0", make="Acme", model="X1",
            local_target_path="/VZWFOTA/app.conf")
assert uploaded.status_code == 200, uploaded.status_code
assert uploaded.body.file_name == "configfile-Acme_X1_app.conf", uploaded.body.file_name
assert uploaded.body.file_version == "1.0"
assert uploaded.body.distribution_type == "HTTP"

# 3. List files (the SDK expects the wrapped AvailableFilesResponse shape).
listed = fota.configuration_files.get_list_of_files(ACCOUNT, "HTTP")
names = [f.file_name for f in listed.body.available_files_response]
assert names == ["configfile-Acme_X1_app.conf"], names

# 4. Schedule a file campaign starting today (virtual date).
today = admin("/clock")["now"][:10]
good, failing = "990013907835573", "111113907884259"
scheduled = fota.campaigns_v2.schedule_file_upgrade(ACCOUNT, UploadAndScheduleFileRequest(
    campaign_name="sdk-rollout", file_name="configfile-Acme_X1_app.conf", file_version="1.0",
    distribution_type="HTTP", start_date=today, end_date=today, device_list=[good, failing]))
assert scheduled.status_code == 200
campaign_id = scheduled.body.id
assert scheduled.body.status == "CampaignRequestPending", scheduled.body.status
assert scheduled.body.account_name == ACCOUNT
assert scheduled.body.make == "Acme" and scheduled.body.model == "X1"

# 5. Get the campaign, let virtual time pass, get it again.
info = fota.campaigns_v2.get_campaign_information(ACCOUNT, campaign_id)
assert info.body.id == campaign_id
assert info.body.status == "CampaignRequestPending", info.body.status
admin("/clock/advance", {"seconds": 900})
info = fota.campaigns_v2.get_campaign_information(ACCOUNT, campaign_id)
assert info.body.status == "CampaignEnded", info.body.status

# 6. Per-device report.
report = fota.software_management_reports_v2.get_campaign_device_status(ACCOUNT, campaign_id, "0")
assert report.body.has_more_data is False
assert report.body.max_page_size == 1000
assert report.body.total_device == 2
statuses = {d.device_id: (d.status, d.result_reason) for d in report.body.device_list}
assert statuses == {
    failing: ("UpgradeFailed", "RovaClientDownloadedInstallFailed"),
    good: ("UpgradeSuccess", "DownloadInstallSucceeded"),
}, statuses

# 7. Cancel a campaign that has not started yet.
later = fota.campaigns_v2.schedule_file_upgrade(ACCOUNT, UploadAndScheduleFileRequest(
    file_name="configfile-Acme_X1_app.conf", file_version="1.0", distribution_type="HTTP",
    start_date="2099-01-01", end_date="2099-01-02", device_list=[good]))
cancelled = fota.campaigns_v2.cancel_campaign(ACCOUNT, later.body.id)
assert cancelled.body.success is True
assert fota.campaigns_v2.get_campaign_information(ACCOUNT, later.body.id).body.status == "CampaignCancelled"

# 8. Errors arrive as the SDK's typed FOTA exception.
try:
    fota.campaigns_v2.get_campaign_information(ACCOUNT, "60b5d639-ccdc-4db8-8824-069bd94c95bf")
    raise AssertionError("unknown campaign accepted")
except FotaV2ResultException as error:
    assert error.response_code == 400
    assert error.error_code == "INVALID_PARAMETER", error.error_code

# 9. Logout.
logout = fota.session_management.end_connectivity_management_session()
assert logout.body.session_token == session
print("verizon SDK flow OK")
