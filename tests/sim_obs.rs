//! End-to-end tests of the OBS simulator over loopback HTTP, with requests signed by
//! `otaplane::signing::obs` in all three schemes.

use std::time::Duration;

use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use md5::{Digest as _, Md5};
use otaplane::signing::huawei::HuaweiCredentials;
use otaplane::signing::obs::{Addressing, ObsScheme, ObsSigner, format_http_date};
use otaplane::signing::sha256_hex;
use otaplane::sim::{self, SimConfig, SimHandle};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, DATE, HOST, HeaderMap, HeaderValue, RANGE};
use reqwest::{Client, Method, StatusCode};

const AK: &str = "HPUAEXAMPLEAK0000001";
const SK: &str = "ExampleSecretKey0000000000000000000000000";
const VIRTUAL_HOST: &str = "fw-bucket.obs.cn-north-4.myhuaweicloud.com";

/// Who signs a request, with which scheme, at what time.
struct Signing<'a> {
    scheme: ObsScheme,
    secret: &'a str,
    at: Timestamp,
}

struct Obs {
    sim: SimHandle,
    http: Client,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `<Code>` of an S3 XML error.
    fn error_code(&self) -> String {
        let text = self.text();
        text.split("<Code>")
            .nth(1)
            .and_then(|rest| rest.split("</Code>").next())
            .unwrap_or_default()
            .to_owned()
    }
}

impl Obs {
    async fn start() -> Self {
        let config = SimConfig::from_yaml(
            "time_scale: 0\nobs: {buckets: [{name: fw-bucket}, {name: other-bucket}]}",
        )
        .unwrap();
        Self {
            sim: sim::start(config).await.unwrap(),
            http: Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        }
    }

    /// A signed request; `target` is the path and query, `headers` may carry `Host` for
    /// virtual-host style.
    async fn call(
        &self,
        signing: Signing<'_>,
        method: Method,
        target: &str,
        mut headers: HeaderMap,
        body: Vec<u8>,
    ) -> Reply {
        let url = format!("{}{target}", self.sim.obs_url);
        let uri: http::Uri = url.parse().unwrap();
        let host = headers.get(HOST).map(|h| h.to_str().unwrap().to_owned());
        let addressing = match host.as_deref() {
            Some(host) => Addressing::VirtualHosted {
                bucket: host.split('.').next().unwrap(),
            },
            None => Addressing::PathStyle,
        };
        let signer = ObsSigner::new(HuaweiCredentials::new(AK, signing.secret), signing.scheme);
        for (name, value) in signer
            .sign(&method, &uri, &headers, addressing, signing.at)
            .unwrap()
        {
            headers.insert(name, value);
        }
        self.send(method, &url, headers, body).await
    }

    async fn v2(&self, method: Method, target: &str, headers: HeaderMap, body: Vec<u8>) -> Reply {
        self.call(
            Signing {
                scheme: ObsScheme::AwsV2,
                secret: SK,
                at: Timestamp::now(),
            },
            method,
            target,
            headers,
            body,
        )
        .await
    }

    async fn send(&self, method: Method, url: &str, headers: HeaderMap, body: Vec<u8>) -> Reply {
        let response = self
            .http
            .request(method, url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .unwrap();
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap().to_vec(),
        }
    }
}

fn header_map(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    headers
}

fn quoted_md5(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Md5::digest(bytes)))
}

#[tokio::test]
async fn objects_round_trip_with_v2_signatures() {
    let obs = Obs::start().await;
    let content = b"hello firmware".to_vec();
    let put = obs
        .v2(
            Method::PUT,
            "/fw-bucket/fw/2.0.0.bin",
            header_map(&[
                ("content-type", "application/octet-stream"),
                ("x-amz-meta-fw-version", "2.0.0"),
            ]),
            content.clone(),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text());
    assert_eq!(put.headers["etag"], quoted_md5(&content).as_str());
    assert!(put.headers.contains_key("x-obs-request-id"));
    let stored = obs
        .sim
        .state
        .obs
        .object("fw-bucket", "fw/2.0.0.bin")
        .unwrap();
    assert_eq!(
        (stored.size, stored.sha256.as_str()),
        (14, sha256_hex(&content).as_str())
    );

    let get = obs
        .v2(
            Method::GET,
            "/fw-bucket/fw/2.0.0.bin",
            HeaderMap::new(),
            Vec::new(),
        )
        .await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.body, content);
    assert_eq!(get.headers["x-amz-meta-fw-version"], "2.0.0");
    assert_eq!(get.headers["content-type"], "application/octet-stream");

    let head = obs
        .v2(
            Method::HEAD,
            "/fw-bucket/fw/2.0.0.bin",
            HeaderMap::new(),
            Vec::new(),
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers[CONTENT_LENGTH], "14");
    assert!(head.body.is_empty());

    let range = obs
        .v2(
            Method::GET,
            "/fw-bucket/fw/2.0.0.bin",
            header_map(&[("range", "bytes=6-13")]),
            Vec::new(),
        )
        .await;
    assert_eq!(range.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(range.body, b"firmware");
    assert_eq!(range.headers["content-range"], "bytes 6-13/14");
    let bad_range = obs
        .v2(
            Method::GET,
            "/fw-bucket/fw/2.0.0.bin",
            header_map(&[(RANGE.as_str(), "bytes=20-")]),
            Vec::new(),
        )
        .await;
    assert_eq!(
        (bad_range.status, bad_range.error_code()),
        (StatusCode::RANGE_NOT_SATISFIABLE, "InvalidRange".into())
    );

    let listed = obs
        .v2(
            Method::GET,
            "/fw-bucket?prefix=fw/",
            HeaderMap::new(),
            Vec::new(),
        )
        .await;
    assert!(
        listed.text().contains("<Key>fw/2.0.0.bin</Key>"),
        "{}",
        listed.text()
    );

    let deleted = obs
        .v2(
            Method::DELETE,
            "/fw-bucket/fw/2.0.0.bin",
            HeaderMap::new(),
            Vec::new(),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let missing = obs
        .v2(
            Method::GET,
            "/fw-bucket/fw/2.0.0.bin",
            HeaderMap::new(),
            Vec::new(),
        )
        .await;
    assert_eq!(
        (missing.status, missing.error_code()),
        (StatusCode::NOT_FOUND, "NoSuchKey".into())
    );
    assert!(missing.text().contains("<RequestId>"));
    assert!(missing.headers.contains_key("x-obs-request-id"));
    let no_bucket = obs
        .v2(
            Method::PUT,
            "/nope-bucket/a.bin",
            HeaderMap::new(),
            b"x".to_vec(),
        )
        .await;
    assert_eq!(
        (no_bucket.status, no_bucket.error_code()),
        (StatusCode::NOT_FOUND, "NoSuchBucket".into())
    );
}

#[tokio::test]
async fn obs_native_virtual_host_and_v4_signatures_are_verified() {
    let obs = Obs::start().await;
    let negotiation = obs
        .send(
            Method::HEAD,
            &format!("{}/?apiversion", obs.sim.obs_url),
            header_map(&[("host", VIRTUAL_HOST)]),
            Vec::new(),
        )
        .await;
    assert_eq!(negotiation.status, StatusCode::OK);
    assert_eq!(negotiation.headers["x-obs-api"], "3.0");

    let native = obs
        .call(
            Signing {
                scheme: ObsScheme::Obs,
                secret: SK,
                at: Timestamp::now(),
            },
            Method::PUT,
            "/fw/native.bin",
            header_map(&[
                ("host", VIRTUAL_HOST),
                ("content-type", "application/octet-stream"),
                ("x-obs-meta-fw-version", "2.0.0"),
            ]),
            b"native".to_vec(),
        )
        .await;
    assert_eq!(native.status, StatusCode::OK, "{}", native.text());
    assert!(
        obs.sim
            .state
            .obs
            .object("fw-bucket", "fw/native.bin")
            .is_some()
    );

    let v4 = ObsScheme::V4 {
        region: "cn-north-4".into(),
    };
    let put = obs
        .call(
            Signing {
                scheme: v4.clone(),
                secret: SK,
                at: Timestamp::now(),
            },
            Method::PUT,
            "/fw-bucket/fw/v4.bin",
            header_map(&[("content-type", "application/octet-stream")]),
            b"v4 body".to_vec(),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text());
    let get = obs
        .call(
            Signing {
                scheme: v4.clone(),
                secret: SK,
                at: Timestamp::now(),
            },
            Method::GET,
            "/fw-bucket/fw/v4.bin",
            HeaderMap::new(),
            Vec::new(),
        )
        .await;
    assert_eq!(get.body, b"v4 body");
    let wrong_region = obs
        .call(
            Signing {
                scheme: ObsScheme::V4 {
                    region: "eu-west-0".into(),
                },
                secret: SK,
                at: Timestamp::now(),
            },
            Method::GET,
            "/fw-bucket/fw/v4.bin",
            HeaderMap::new(),
            Vec::new(),
        )
        .await;
    assert_eq!(wrong_region.error_code(), "AuthorizationHeaderMalformed");

    let forged = obs
        .call(
            Signing {
                scheme: ObsScheme::AwsV2,
                secret: "wrong-secret",
                at: Timestamp::now(),
            },
            Method::GET,
            "/fw-bucket/fw/v4.bin",
            HeaderMap::new(),
            Vec::new(),
        )
        .await;
    assert_eq!(
        (forged.status, forged.error_code()),
        (StatusCode::FORBIDDEN, "SignatureDoesNotMatch".into())
    );
    let forged_v4 = obs
        .call(
            Signing {
                scheme: v4,
                secret: "wrong-secret",
                at: Timestamp::now(),
            },
            Method::GET,
            "/fw-bucket/fw/v4.bin",
            HeaderMap::new(),
            Vec::new(),
        )
        .await;
    assert_eq!(forged_v4.error_code(), "SignatureDoesNotMatch");

    let skewed_time = Timestamp::now() - SignedDuration::from_mins(30);
    let skewed = obs
        .call(
            Signing {
                scheme: ObsScheme::AwsV2,
                secret: SK,
                at: skewed_time,
            },
            Method::GET,
            "/fw-bucket/fw/v4.bin",
            header_map(&[(DATE.as_str(), &format_http_date(skewed_time))]),
            Vec::new(),
        )
        .await;
    assert_eq!(
        (skewed.status, skewed.error_code()),
        (StatusCode::FORBIDDEN, "RequestTimeTooSkewed".into())
    );

    let anonymous = obs
        .send(
            Method::GET,
            &format!("{}/fw-bucket/fw/v4.bin", obs.sim.obs_url),
            HeaderMap::new(),
            Vec::new(),
        )
        .await;
    assert_eq!(
        (anonymous.status, anonymous.error_code()),
        (StatusCode::FORBIDDEN, "AccessDenied".into())
    );
    let unknown_key = obs
        .send(
            Method::GET,
            &format!("{}/fw-bucket/fw/v4.bin", obs.sim.obs_url),
            header_map(&[
                ("authorization", "AWS NOBODY:c2lnbmF0dXJl"),
                ("date", &format_http_date(Timestamp::now())),
            ]),
            Vec::new(),
        )
        .await;
    assert_eq!(unknown_key.error_code(), "InvalidAccessKeyId");
    let url = format!("{}/fw-bucket/fw/streamed.bin", obs.sim.obs_url);
    let uri: http::Uri = url.parse().unwrap();
    let mut headers = HeaderMap::new();
    let signer = ObsSigner::new(HuaweiCredentials::new(AK, SK), ObsScheme::AwsV2);
    for (name, value) in signer
        .sign(
            &Method::PUT,
            &uri,
            &headers.clone(),
            Addressing::PathStyle,
            Timestamp::now(),
        )
        .unwrap()
    {
        headers.insert(name, value);
    }
    let no_length = obs
        .http
        .put(&url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(futures::stream::iter([Ok::<
            _,
            std::io::Error,
        >(
            b"abc".to_vec(),
        )])))
        .send()
        .await
        .unwrap();
    assert_eq!(
        no_length.status(),
        StatusCode::LENGTH_REQUIRED,
        "a chunked PUT without Content-Length is refused"
    );
}

#[tokio::test]
async fn multipart_upload_validates_parts_and_assembles_the_object() {
    let obs = Obs::start().await;
    let key = "/fw-bucket/fw/big.bin";
    let initiate = obs
        .v2(
            Method::POST,
            &format!("{key}?uploads"),
            header_map(&[("content-type", "application/octet-stream")]),
            Vec::new(),
        )
        .await;
    assert_eq!(initiate.status, StatusCode::OK, "{}", initiate.text());
    let text = initiate.text();
    let upload_id = text
        .split("<UploadId>")
        .nth(1)
        .unwrap()
        .split("</UploadId>")
        .next()
        .unwrap()
        .to_owned();
    assert!(text.contains("<Key>fw/big.bin</Key>"));

    let part1: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    let part2 = b"tail of the image".to_vec();
    let mut etags = Vec::new();
    for (number, part) in [(1, &part1), (2, &part2)] {
        let reply = obs
            .v2(
                Method::PUT,
                &format!("{key}?partNumber={number}&uploadId={upload_id}"),
                HeaderMap::new(),
                part.clone(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.headers["etag"], quoted_md5(part).as_str());
        etags.push(reply.headers["etag"].to_str().unwrap().to_owned());
    }
    let complete_body = |parts: &[(u32, &str)]| {
        let parts: String = parts
            .iter()
            .map(|(n, e)| format!("<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"))
            .collect();
        format!("<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>").into_bytes()
    };
    let target = format!("{key}?uploadId={upload_id}");
    let wrong_etag = obs
        .v2(
            Method::POST,
            &target,
            HeaderMap::new(),
            complete_body(&[(1, &etags[0]), (2, "\"00\"")]),
        )
        .await;
    assert_eq!(
        (wrong_etag.status, wrong_etag.error_code()),
        (StatusCode::BAD_REQUEST, "InvalidPart".into())
    );
    let wrong_order = obs
        .v2(
            Method::POST,
            &target,
            HeaderMap::new(),
            complete_body(&[(2, &etags[1]), (1, &etags[0])]),
        )
        .await;
    assert_eq!(wrong_order.error_code(), "InvalidPartOrder");
    let too_small = obs
        .v2(
            Method::POST,
            &target,
            HeaderMap::new(),
            complete_body(&[(2, &etags[1]), (3, &etags[1])]),
        )
        .await;
    assert_eq!(too_small.error_code(), "EntityTooSmall");
    let garbage = obs
        .v2(
            Method::POST,
            &target,
            HeaderMap::new(),
            b"<not-xml".to_vec(),
        )
        .await;
    assert_eq!(garbage.error_code(), "MalformedXML");

    let complete = obs
        .v2(
            Method::POST,
            &target,
            HeaderMap::new(),
            complete_body(&[(1, &etags[0]), (2, &etags[1])]),
        )
        .await;
    assert_eq!(complete.status, StatusCode::OK, "{}", complete.text());
    assert!(complete.text().contains("<ETag>"));
    let whole: Vec<u8> = part1.iter().chain(&part2).copied().collect();
    let stored = obs.sim.state.obs.object("fw-bucket", "fw/big.bin").unwrap();
    assert_eq!(stored.sha256, sha256_hex(&whole));
    assert!(
        stored.etag.ends_with("-2\""),
        "multipart ETags carry the part count"
    );
    let get = obs.v2(Method::GET, key, HeaderMap::new(), Vec::new()).await;
    assert_eq!(get.body, whole);
    let reused = obs
        .v2(
            Method::PUT,
            &format!("{key}?partNumber=3&uploadId={upload_id}"),
            HeaderMap::new(),
            b"x".to_vec(),
        )
        .await;
    assert_eq!(
        (reused.status, reused.error_code()),
        (StatusCode::NOT_FOUND, "NoSuchUpload".into())
    );

    let second = obs
        .v2(
            Method::POST,
            "/fw-bucket/fw/other.bin?uploads",
            HeaderMap::new(),
            Vec::new(),
        )
        .await;
    let second_id = second
        .text()
        .split("<UploadId>")
        .nth(1)
        .unwrap()
        .split("</UploadId>")
        .next()
        .unwrap()
        .to_owned();
    let aborted = obs
        .v2(
            Method::DELETE,
            &format!("/fw-bucket/fw/other.bin?uploadId={second_id}"),
            HeaderMap::new(),
            Vec::new(),
        )
        .await;
    assert_eq!(aborted.status, StatusCode::NO_CONTENT);
    let again = obs
        .v2(
            Method::DELETE,
            &format!("/fw-bucket/fw/other.bin?uploadId={second_id}"),
            HeaderMap::new(),
            Vec::new(),
        )
        .await;
    assert_eq!(again.error_code(), "NoSuchUpload");
    let bad_part = obs
        .v2(
            Method::PUT,
            &format!("{key}?partNumber=0&uploadId={second_id}"),
            HeaderMap::new(),
            b"x".to_vec(),
        )
        .await;
    assert_eq!(bad_part.error_code(), "InvalidArgument");
}

#[tokio::test]
async fn content_md5_is_checked_and_large_bodies_stream_to_disk() {
    let obs = Obs::start().await;
    let body = b"checked body".to_vec();
    let wrong_md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(b"other"));
    let bad = obs
        .v2(
            Method::PUT,
            "/fw-bucket/md5.bin",
            header_map(&[("content-md5", &wrong_md5)]),
            body.clone(),
        )
        .await;
    assert_eq!(
        (bad.status, bad.error_code()),
        (StatusCode::BAD_REQUEST, "BadDigest".into())
    );
    assert!(obs.sim.state.obs.object("fw-bucket", "md5.bin").is_none());
    let right_md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&body));
    let good = obs
        .v2(
            Method::PUT,
            "/fw-bucket/md5.bin",
            header_map(&[("content-md5", &right_md5)]),
            body,
        )
        .await;
    assert_eq!(good.status, StatusCode::OK);

    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i * 7 % 256) as u8).collect();
    let chunks = 24;
    let url = format!("{}/other-bucket/large.bin", obs.sim.obs_url);
    let uri: http::Uri = url.parse().unwrap();
    let mut headers = header_map(&[(CONTENT_TYPE.as_str(), "application/octet-stream")]);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(chunk.len() * chunks));
    let signer = ObsSigner::new(HuaweiCredentials::new(AK, SK), ObsScheme::AwsV2);
    for (name, value) in signer
        .sign(
            &Method::PUT,
            &uri,
            &headers,
            Addressing::PathStyle,
            Timestamp::now(),
        )
        .unwrap()
    {
        headers.insert(name, value);
    }
    let stream_chunk = bytes::Bytes::from(chunk.clone());
    let stream = futures::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(stream_chunk.clone())),
    );
    let response = obs
        .http
        .put(&url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let stored = obs
        .sim
        .state
        .obs
        .object("other-bucket", "large.bin")
        .unwrap();
    assert_eq!(stored.size, (chunk.len() * chunks) as u64);
    let mut whole = Vec::with_capacity(chunk.len() * chunks);
    for _ in 0..chunks {
        whole.extend_from_slice(&chunk);
    }
    assert_eq!(stored.sha256, sha256_hex(&whole));
}

impl Obs {
    /// Starts a multipart upload of `key` (path-style target) and returns its upload id.
    async fn initiate(&self, key: &str) -> String {
        let reply = self
            .v2(
                Method::POST,
                &format!("{key}?uploads"),
                HeaderMap::new(),
                Vec::new(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply
            .text()
            .split("<UploadId>")
            .nth(1)
            .and_then(|rest| rest.split("</UploadId>").next())
            .unwrap()
            .to_owned()
    }

    /// Uploads part `number`; returns its ETag.
    async fn part(&self, key: &str, upload_id: &str, number: u32, bytes: &[u8]) -> String {
        let reply = self
            .v2(
                Method::PUT,
                &format!("{key}?partNumber={number}&uploadId={upload_id}"),
                HeaderMap::new(),
                bytes.to_vec(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply.headers["etag"].to_str().unwrap().to_owned()
    }

    /// Completes the upload with `parts` (number, ETag).
    async fn complete(&self, key: &str, upload_id: &str, parts: &[(u32, String)]) -> Reply {
        let parts: String = parts
            .iter()
            .map(|(n, e)| format!("<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"))
            .collect();
        self.v2(
            Method::POST,
            &format!("{key}?uploadId={upload_id}"),
            HeaderMap::new(),
            format!("<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>").into_bytes(),
        )
        .await
    }
}

/// Files in the simulator's spool directory.
fn spooled_files(obs: &Obs) -> usize {
    std::fs::read_dir(obs.sim.state.spool.dir())
        .unwrap()
        .count()
}

#[tokio::test]
async fn a_multipart_object_reads_back_and_hashes_the_same_whatever_order_its_parts_came_in() {
    let obs = Obs::start().await;
    let parts: Vec<Vec<u8>> = (0..3u32)
        .map(|p| {
            (0..(150 * 1024 + p as usize * 7))
                .map(|i| ((i * 31) as u32 + p) as u8)
                .collect()
        })
        .collect();
    let whole: Vec<u8> = parts.concat();
    // In order; out of order; in order with part 2 sent again after the chain passed it;
    // and an extra part uploaded but left out of the completion.
    let orders: [&[u32]; 4] = [&[1, 2, 3], &[2, 1, 3], &[1, 2, 3, 2], &[1, 2, 4, 3]];
    for (index, order) in orders.iter().enumerate() {
        let key = format!("/fw-bucket/fw/order-{index}.bin");
        let upload_id = obs.initiate(&key).await;
        let mut etags = std::collections::BTreeMap::new();
        for &number in *order {
            let bytes = parts.get(number as usize - 1).map_or(&b"unused"[..], |p| p);
            etags.insert(number, obs.part(&key, &upload_id, number, bytes).await);
        }
        let listed: Vec<(u32, String)> = (1..=3).map(|n| (n, etags[&n].clone())).collect();
        let files_before = spooled_files(&obs);
        let complete = obs.complete(&key, &upload_id, &listed).await;
        assert_eq!(
            complete.status,
            StatusCode::OK,
            "{order:?}: {}",
            complete.text()
        );
        let unlisted = usize::from(order.contains(&4));
        assert_eq!(
            spooled_files(&obs),
            files_before - unlisted,
            "{order:?}: the parts become the object; an unlisted part is deleted"
        );
        let stored = obs
            .sim
            .state
            .obs
            .object("fw-bucket", key.trim_start_matches("/fw-bucket/"))
            .unwrap();
        assert_eq!(stored.sha256, sha256_hex(&whole), "{order:?}");
        assert_eq!(stored.size, whole.len() as u64);
        let get = obs
            .v2(Method::GET, &key, HeaderMap::new(), Vec::new())
            .await;
        assert!(get.body == whole, "{order:?}: the object reads back whole");
        // A range across the boundary of parts 1 and 2.
        let from = parts[0].len() as u64 - 5;
        let range = obs
            .v2(
                Method::GET,
                &key,
                header_map(&[("range", &format!("bytes={from}-{}", from + 9))]),
                Vec::new(),
            )
            .await;
        assert_eq!(range.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(range.body, &whole[from as usize..from as usize + 10]);
    }
    let replaced_files = spooled_files(&obs);
    let deleted = obs
        .v2(
            Method::DELETE,
            "/fw-bucket/fw/order-0.bin",
            HeaderMap::new(),
            Vec::new(),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        spooled_files(&obs),
        replaced_files - 3,
        "deleting the object removes all its parts"
    );
}
