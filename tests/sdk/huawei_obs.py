"""Drives the simulator's OBS listener with Huawei's official esdk-obs-python 3.26.6.

`server='http://127.0.0.1:PORT'` makes the SDK use path-style addressing and AWS V2 signatures
(sdks.md §3). Covers putObject, getObjectMetadata, getObject (with a range), multipart upload
(initiate, two parts, complete), abort, deleteObject, SigV4 (`signature='v4'`) and the SDK's
parsed error responses.

Environment: SIM_OBS_URL, SIM_AK, SIM_SK. Exits non-zero on the first mismatch.
"""

import hashlib
import os

from obs import CompletePart, CompleteMultipartUploadRequest, GetObjectHeader, ObsClient, PutObjectHeader

OBS_URL = os.environ["SIM_OBS_URL"]
AK = os.environ["SIM_AK"]
SK = os.environ["SIM_SK"]
BUCKET = "fw-bucket"


def ok(response, what):
    assert response.status < 300, (what, response.status, response.errorCode, response.errorMessage)
    return response


def read_all(response):
    body = response.body.response
    chunks = []
    while True:
        chunk = body.read(65536)
        if not chunk:
            break
        chunks.append(chunk)
    body.close()
    return b"".join(chunks)


def main():
    client = ObsClient(access_key_id=AK, secret_access_key=SK, server=OBS_URL)

    content = b"hello firmware"
    headers = PutObjectHeader(contentType="application/octet-stream")
    put = ok(client.putObject(BUCKET, "fw/2.0.0.bin", content, metadata={"fw-version": "2.0.0"}, headers=headers), "putObject")
    assert put.body.etag == '"%s"' % hashlib.md5(content).hexdigest(), put.body.etag
    print("putObject: ok", put.body.etag)

    meta = ok(client.getObjectMetadata(BUCKET, "fw/2.0.0.bin"), "getObjectMetadata")
    assert int(meta.body.contentLength) == len(content), meta.body.contentLength
    assert meta.body.etag == put.body.etag
    print("getObjectMetadata: ok")

    got = ok(client.getObject(BUCKET, "fw/2.0.0.bin", loadStreamInMemory=True), "getObject")
    assert got.body.buffer == content, got.body.buffer
    ranged = ok(
        client.getObject(BUCKET, "fw/2.0.0.bin", headers=GetObjectHeader(range="6-13"), loadStreamInMemory=True),
        "getObject range",
    )
    assert ranged.body.buffer == b"firmware", ranged.body.buffer
    print("getObject: ok")

    key = "fw/big.bin"
    initiated = ok(client.initiateMultipartUpload(BUCKET, key, contentType="application/octet-stream"), "initiate")
    upload_id = initiated.body.uploadId
    assert initiated.body.objectKey == key and initiated.body.bucketName == BUCKET
    part1 = bytes(i % 251 for i in range(150 * 1024))
    part2 = b"last part of the image"
    etags = []
    for number, part in ((1, part1), (2, part2)):
        uploaded = ok(client.uploadPart(BUCKET, key, number, upload_id, part), "uploadPart %d" % number)
        assert uploaded.body.etag == '"%s"' % hashlib.md5(part).hexdigest()
        etags.append(uploaded.body.etag)
    completed = ok(
        client.completeMultipartUpload(
            BUCKET,
            key,
            upload_id,
            CompleteMultipartUploadRequest(
                [CompletePart(partNum=1, etag=etags[0]), CompletePart(partNum=2, etag=etags[1])]
            ),
        ),
        "completeMultipartUpload",
    )
    assert completed.body.key == key and completed.body.etag.endswith('-2"'), completed.body
    whole = ok(client.getObject(BUCKET, key, loadStreamInMemory=True), "getObject big").body.buffer
    assert hashlib.sha256(whole).hexdigest() == hashlib.sha256(part1 + part2).hexdigest()
    print("multipart upload: ok", completed.body.etag)

    other = ok(client.initiateMultipartUpload(BUCKET, "fw/other.bin"), "initiate other")
    ok(client.abortMultipartUpload(BUCKET, "fw/other.bin", other.body.uploadId), "abort")
    after_abort = client.uploadPart(BUCKET, "fw/other.bin", 1, other.body.uploadId, b"x")
    assert after_abort.status == 404 and after_abort.errorCode == "NoSuchUpload", after_abort.errorCode
    print("abortMultipartUpload: ok")

    ok(client.deleteObject(BUCKET, "fw/2.0.0.bin"), "deleteObject")
    missing = client.getObject(BUCKET, "fw/2.0.0.bin", loadStreamInMemory=True)
    assert missing.status == 404 and missing.errorCode == "NoSuchKey", (missing.status, missing.errorCode)
    assert missing.requestId, "the SDK reads x-obs-request-id / x-amz-request-id"
    no_bucket = client.putObject("missing-bucket", "a.bin", b"x")
    assert no_bucket.status == 404 and no_bucket.errorCode == "NoSuchBucket", no_bucket.errorCode
    client.close()

    v4 = ObsClient(access_key_id=AK, secret_access_key=SK, server=OBS_URL, signature="v4", region="cn-north-4")
    ok(v4.putObject(BUCKET, "fw/v4.bin", b"signed with v4"), "putObject v4")
    assert ok(v4.getObject(BUCKET, "fw/v4.bin", loadStreamInMemory=True), "getObject v4").body.buffer == b"signed with v4"
    v4.close()
    print("SigV4 (signature='v4'): ok")

    forged = ObsClient(access_key_id=AK, secret_access_key="not-the-secret", server=OBS_URL)
    refused = forged.getObject(BUCKET, key, loadStreamInMemory=True)
    assert refused.status == 403 and refused.errorCode == "SignatureDoesNotMatch", refused.errorCode
    forged.close()
    print("errors: ok")


if __name__ == "__main__":
    main()
    print("huawei_obs.py: all checks passed")
