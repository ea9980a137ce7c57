//! Huawei OBS (S3-compatible) uploads for IoTDA packages: a single streamed PUT for small images,
//! multipart for large ones (each part re-read from the spool file and retried on its own), all
//! signed with AWS SigV4 (`UNSIGNED-PAYLOAD`, which OBS requires).

use std::{
    io::{Seek, SeekFrom},
    path::Path,
    sync::Arc,
};

use futures::{StreamExt, TryStreamExt};
use reqwest::{Client, Method, RequestBuilder, header::HeaderMap};

use super::{
    error::{Secret, VendorError},
    http::{CallObserver, ErrorDialect, HttpPolicy, RateLimitConfig, VendorHttp},
};
use crate::signing::{
    huawei::HuaweiCredentials,
    obs::{Addressing, ObsScheme, ObsSigner},
};

const VENDOR: &str = "OBS";
/// Default multipart part size: 16 MiB.
pub const DEFAULT_PART_SIZE: u64 = 16 << 20;
/// OBS's smallest part (all but the last).
const MIN_PART_SIZE: u64 = 100 * 1024;
/// Parts uploaded at once.
const PART_CONCURRENCY: usize = 4;

/// A bucket and how to reach it.
#[derive(Clone, Debug)]
pub struct ObsConfig {
    /// Endpoint, e.g. `https://obs.cn-north-4.myhuaweicloud.com` or `http://127.0.0.1:9000`.
    pub endpoint: String,
    /// Region (SigV4 scope).
    pub region: String,
    /// Bucket name.
    pub bucket: String,
    /// `/{bucket}/{key}` addressing instead of `{bucket}.{host}`.
    pub path_style: bool,
    /// Access key ID.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Images larger than this go multipart, in parts of this size.
    pub part_size: u64,
}

/// OBS errors: S3-style `<Error><Code/><Message/></Error>`.
struct ObsDialect;

impl ErrorDialect for ObsDialect {
    fn vendor(&self) -> &'static str {
        VENDOR
    }

    fn parse(&self, status: u16, body: &[u8]) -> (Option<String>, String) {
        let text = String::from_utf8_lossy(body);
        let code = xml_text(&text, "Code");
        let message = xml_text(&text, "Message").unwrap_or_else(|| {
            if text.trim().is_empty() {
                format!("HTTP {status}")
            } else {
                text.chars().take(300).collect()
            }
        });
        (code, message)
    }
}

/// The text of the first `<tag>` element (OBS answers are small, flat XML documents).
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut inside = false;
    loop {
        match reader.read_event().ok()? {
            quick_xml::events::Event::Start(start) => inside = start.name().as_ref() == tag,
            quick_xml::events::Event::Text(text) if inside => {
                return Some(text.into_inner().into_owned());
            }
            quick_xml::events::Event::End(_) => inside = false,
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
    }
}

/// An OBS bucket.
#[derive(Clone)]
pub struct ObsClient {
    http: VendorHttp,
    config: Arc<ObsConfig>,
    signer: ObsSigner,
}

impl ObsClient {
    /// A client for one bucket.
    pub fn new(
        config: ObsConfig,
        policy: HttpPolicy,
        rate_limit: Option<RateLimitConfig>,
    ) -> Result<Self, VendorError> {
        let http = VendorHttp::new(
            Arc::new(ObsDialect),
            policy,
            rate_limit,
            vec![config.secret_access_key.clone()],
        )?;
        let signer = ObsSigner::new(
            HuaweiCredentials::new(&config.access_key_id, config.secret_access_key.expose()),
            ObsScheme::V4 {
                region: config.region.clone(),
            },
        );
        Ok(Self {
            http,
            config: Arc::new(config),
            signer,
        })
    }

    /// Reports every call to `observer` (metrics, tests).
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.http = self.http.with_observer(observer);
        self
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.config.bucket
    }

    fn object_url(&self, key: &str, query: &str) -> Result<String, VendorError> {
        let encoded: Vec<String> = key
            .split('/')
            .map(|segment| percent_encoding::utf8_percent_encode(segment, KEY_SEGMENT).to_string())
            .collect();
        let path = encoded.join("/");
        let endpoint = self.config.endpoint.trim_end_matches('/');
        let base = if self.config.path_style {
            format!("{endpoint}/{}/{path}", self.config.bucket)
        } else {
            let url = url::Url::parse(endpoint)
                .map_err(|err| config_error(format!("OBS endpoint: {err}")))?;
            let host = url
                .host_str()
                .ok_or_else(|| config_error("OBS endpoint has no host".into()))?;
            let port = url
                .port()
                .map(|port| format!(":{port}"))
                .unwrap_or_default();
            format!(
                "{}://{}.{host}{port}/{path}",
                url.scheme(),
                self.config.bucket
            )
        };
        Ok(if query.is_empty() {
            base
        } else {
            format!("{base}?{query}")
        })
    }

    /// A signed request; the signature covers method, URL and the headers given.
    fn signed(
        &self,
        client: &Client,
        method: Method,
        url: &str,
        headers: HeaderMap,
    ) -> Result<RequestBuilder, VendorError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|err| config_error(format!("object URL: {err}")))?;
        let addressing = if self.config.path_style {
            Addressing::PathStyle
        } else {
            Addressing::VirtualHosted {
                bucket: &self.config.bucket,
            }
        };
        let added = self
            .signer
            .sign(&method, &uri, &headers, addressing, jiff::Timestamp::now())
            .map_err(|err| config_error(format!("signing: {err}")))?;
        let mut all = headers;
        all.extend(added.into_iter().map(|(name, value)| (Some(name), value)));
        Ok(client.request(method, url).headers(all))
    }

    /// The object's size, or `None` when it does not exist.
    pub async fn head_object(&self, key: &str) -> Result<Option<u64>, VendorError> {
        let url = self.object_url(key, "")?;
        match self
            .http
            .send("head_object", |client| {
                self.signed(client, Method::HEAD, &url, HeaderMap::new())
            })
            .await
        {
            Ok(response) => Ok(response.content_length()),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Deletes the object (a missing object counts as deleted).
    pub async fn delete_object(&self, key: &str) -> Result<(), VendorError> {
        let url = self.object_url(key, "")?;
        match self
            .http
            .send("delete_object", |client| {
                self.signed(client, Method::DELETE, &url, HeaderMap::new())
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if err.is_not_found() => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Uploads the file at `image` as `key`: one PUT up to the part size, multipart above it.
    /// The key is deterministic, so a retry overwrites rather than duplicates.
    pub async fn upload(&self, key: &str, image: &Path, size: u64) -> Result<(), VendorError> {
        let part_size = self.config.part_size.max(MIN_PART_SIZE);
        if size <= part_size {
            self.put_object(key, image, size).await
        } else {
            self.multipart_upload(key, image, size, part_size).await
        }
    }

    async fn put_object(&self, key: &str, image: &Path, size: u64) -> Result<(), VendorError> {
        let url = self.object_url(key, "")?;
        self.http
            .send_upload("put_object", |client| {
                let mut headers = HeaderMap::new();
                headers.insert(
                    reqwest::header::CONTENT_TYPE,
                    "application/octet-stream".parse().expect("valid"),
                );
                headers.insert(reqwest::header::CONTENT_LENGTH, size.into());
                let body = file_range_body(image, 0, size, "put_object")?;
                Ok(self.signed(client, Method::PUT, &url, headers)?.body(body))
            })
            .await
            .map(drop)
    }

    async fn multipart_upload(
        &self,
        key: &str,
        image: &Path,
        size: u64,
        part_size: u64,
    ) -> Result<(), VendorError> {
        let initiate_url = self.object_url(key, "uploads")?;
        let response = self
            .http
            .send("initiate_multipart_upload", |client| {
                let mut headers = HeaderMap::new();
                headers.insert(
                    reqwest::header::CONTENT_TYPE,
                    "application/octet-stream".parse().expect("valid"),
                );
                self.signed(client, Method::POST, &initiate_url, headers)
            })
            .await?;
        let body = response.text().await.map_err(|err| VendorError::Network {
            vendor: VENDOR,
            endpoint: "initiate_multipart_upload",
            reason: err.to_string(),
        })?;
        let upload_id = xml_text(&body, "UploadId").ok_or_else(|| VendorError::Decode {
            vendor: VENDOR,
            endpoint: "initiate_multipart_upload",
            reason: "no UploadId in the answer".into(),
        })?;

        let parts: Vec<(u64, u64, u64)> = (0..size.div_ceil(part_size))
            .map(|index| {
                let offset = index * part_size;
                (index + 1, offset, part_size.min(size - offset))
            })
            .collect();
        let uploaded = futures::stream::iter(parts)
            .map(|(number, offset, length)| {
                let upload_id = upload_id.clone();
                async move {
                    let etag = self
                        .upload_part(key, &upload_id, image, number, offset, length)
                        .await?;
                    Ok::<_, VendorError>((number, etag))
                }
            })
            .buffer_unordered(PART_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await;
        let mut etags = match uploaded {
            Ok(etags) => etags,
            Err(err) => {
                self.abort_multipart(key, &upload_id).await;
                return Err(err);
            }
        };
        etags.sort_by_key(|(number, _)| *number);

        let manifest: String = etags
            .iter()
            .map(|(number, etag)| {
                format!("<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part>")
            })
            .collect();
        let manifest = format!("<CompleteMultipartUpload>{manifest}</CompleteMultipartUpload>");
        let complete_url = self.object_url(key, &format!("uploadId={upload_id}"))?;
        let result = self
            .http
            .send("complete_multipart_upload", |client| {
                Ok(self
                    .signed(client, Method::POST, &complete_url, HeaderMap::new())?
                    .body(manifest.clone()))
            })
            .await;
        if result.is_err() {
            self.abort_multipart(key, &upload_id).await;
        }
        result.map(drop)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        image: &Path,
        number: u64,
        offset: u64,
        length: u64,
    ) -> Result<String, VendorError> {
        let url = self.object_url(key, &format!("partNumber={number}&uploadId={upload_id}"))?;
        let response = self
            .http
            .send_upload("upload_part", |client| {
                let mut headers = HeaderMap::new();
                headers.insert(reqwest::header::CONTENT_LENGTH, length.into());
                let body = file_range_body(image, offset, length, "upload_part")?;
                Ok(self.signed(client, Method::PUT, &url, headers)?.body(body))
            })
            .await?;
        response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| VendorError::Decode {
                vendor: VENDOR,
                endpoint: "upload_part",
                reason: format!("no ETag for part {number}"),
            })
    }

    /// Best effort: a failed abort leaves parts that OBS lifecycle rules clean up.
    async fn abort_multipart(&self, key: &str, upload_id: &str) {
        let Ok(url) = self.object_url(key, &format!("uploadId={upload_id}")) else {
            return;
        };
        if let Err(err) = self
            .http
            .send("abort_multipart_upload", |client| {
                self.signed(client, Method::DELETE, &url, HeaderMap::new())
            })
            .await
        {
            tracing::warn!(error = %err, "aborting a multipart upload failed");
        }
    }
}

/// Characters kept as they are in an object key segment (RFC 3986 unreserved).
const KEY_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A streamed body of `length` bytes of the file from `offset`.
fn file_range_body(
    path: &Path,
    offset: u64,
    length: u64,
    endpoint: &'static str,
) -> Result<reqwest::Body, VendorError> {
    let io_error = |err: std::io::Error| VendorError::Io {
        vendor: VENDOR,
        endpoint,
        reason: err.to_string(),
    };
    let mut file = std::fs::File::open(path).map_err(io_error)?;
    file.seek(SeekFrom::Start(offset)).map_err(io_error)?;
    let limited = tokio::fs::File::from_std(file);
    let reader = tokio::io::AsyncReadExt::take(limited, length);
    Ok(reqwest::Body::wrap_stream(
        tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024),
    ))
}

fn config_error(reason: String) -> VendorError {
    VendorError::Config {
        vendor: VENDOR,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_documents_are_read() {
        let (code, message) = ObsDialect.parse(
            403,
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message><RequestId>0001</RequestId></Error>",
        );
        assert_eq!(code.as_deref(), Some("SignatureDoesNotMatch"));
        assert_eq!(
            message,
            "The request signature we calculated does not match"
        );
        assert_eq!(ObsDialect.parse(503, b""), (None, "HTTP 503".into()));
    }
}
