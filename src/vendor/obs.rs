//! Huawei OBS (S3-compatible) uploads for IoTDA packages: a single streamed PUT for small images,
//! multipart for large ones (each part re-read from the spool file and retried on its own), all
//! signed with AWS SigV4 (`UNSIGNED-PAYLOAD`, which OBS requires). An image that is still
//! downloading can be staged part by part ([`ObsClient::stage_stream`]) and completed only once
//! its checksum matched.

use std::{
    io::{Seek, SeekFrom},
    path::Path,
    sync::Arc,
};

use bytes::{Bytes, BytesMut};
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
/// Default multipart part size: 8 MiB. A streamed upload holds about two parts in memory, and
/// 1 GiB (IoTDA's package limit) is 128 parts, far below OBS's 10,000.
pub const DEFAULT_PART_SIZE: u64 = 8 << 20;
/// OBS's smallest part (all but the last).
const MIN_PART_SIZE: u64 = 100 * 1024;
/// Parts uploaded at once.
const PART_CONCURRENCY: usize = 4;
/// Most parts in one multipart upload.
const MAX_PARTS: u64 = 10_000;

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

    /// The part size in force: the configured one, raised to OBS's minimum of 100 KiB.
    pub fn part_size(&self) -> u64 {
        self.config.part_size.max(MIN_PART_SIZE)
    }

    /// Uploads the file at `image` as `key`: one PUT up to the part size, multipart above it.
    /// The key is deterministic, so a retry overwrites rather than duplicates.
    pub async fn upload(&self, key: &str, image: &Path, size: u64) -> Result<(), VendorError> {
        let part_size = self.part_size();
        if size <= part_size {
            self.put_object(key, image, size).await
        } else {
            self.multipart_upload(key, image, size, part_size).await
        }
    }

    /// Uploads `image`, which is still arriving, as the parts of a multipart upload of `key`,
    /// each sent as soon as it is full and a byte of the next one arrived, with up to
    /// `parts_in_flight` (at least one) uploading at once. Memory stays at
    /// `parts_in_flight + 1` part buffers, reused from part to part: the one filling and the
    /// ones uploading (each retried on its own from memory); while they are all busy when the
    /// next part is full, `image` is not read. The upload is left open: the object exists only after
    /// [`PendingMultipart::complete`], so the caller completes it once it knows the content
    /// is right (its checksum matched) and aborts it otherwise.
    ///
    /// An image no larger than one part is not sent at all ([`StagedUpload::Small`]): the
    /// caller uploads it with one PUT from a replayable copy, as [`ObsClient::upload`] does.
    /// On an error in `image` or from OBS the multipart upload is aborted; an error in
    /// `image` comes back as [`VendorError::Io`].
    pub async fn stage_stream<S>(
        &self,
        key: &str,
        image: S,
        parts_in_flight: usize,
    ) -> Result<StagedUpload, VendorError>
    where
        S: futures::Stream<Item = Result<Bytes, std::io::Error>>,
    {
        let parts_in_flight = parts_in_flight.max(1);
        let capacity = usize::try_from(self.part_size())
            .map_err(|_| config_error("the part size does not fit in memory".into()))?;
        let mut image = std::pin::pin!(image);
        let mut filling = BytesMut::with_capacity(capacity);
        let mut staging: Option<Staging> = None;
        let failure = 'read: loop {
            let mut chunk = match image.next().await {
                None => break None,
                Some(Ok(chunk)) => chunk,
                Some(Err(err)) => {
                    break Some(VendorError::Io {
                        vendor: VENDOR,
                        endpoint: "upload_part",
                        reason: format!("the image stream failed: {err}"),
                    });
                }
            };
            while !chunk.is_empty() {
                if filling.len() == capacity {
                    // A full part with more bytes behind it: never the last part.
                    if staging.is_none() {
                        match self.initiate_multipart(key).await {
                            Ok(upload_id) => staging = Some(Staging::new(upload_id)),
                            Err(err) => break 'read Some(err),
                        }
                    }
                    let staged = staging.as_mut().expect("initiated above");
                    // With every slot taken, the oldest part must be up before this one goes:
                    // its buffer then takes the next part's bytes, so the same buffers serve
                    // the whole upload.
                    let finished = if staged.in_flight.len() >= parts_in_flight {
                        staged.finish_oldest().await
                    } else {
                        Ok(None)
                    };
                    let next = match finished {
                        Ok(done) => done
                            .and_then(|buffer| buffer.try_into_mut().ok())
                            .filter(|buffer| buffer.capacity() >= capacity)
                            .map(|mut buffer| {
                                buffer.clear();
                                buffer
                            }),
                        Err(err) => break 'read Some(err),
                    };
                    let next = next.unwrap_or_else(|| BytesMut::with_capacity(capacity));
                    let part = std::mem::replace(&mut filling, next).freeze();
                    if let Err(err) = staged.start(self, key, part) {
                        break 'read Some(err);
                    }
                }
                let take = (capacity - filling.len()).min(chunk.len());
                filling.extend_from_slice(&chunk.split_to(take));
            }
        };
        let Some(mut staged) = staging else {
            return match failure {
                Some(err) => Err(err),
                None => Ok(StagedUpload::Small {
                    size: filling.len() as u64,
                }),
            };
        };
        let finished = match failure {
            Some(err) => Err(err),
            None => staged.finish_last(self, key, filling.freeze()).await,
        };
        match finished {
            Ok(()) => Ok(StagedUpload::Multipart(Box::new(PendingMultipart {
                obs: self.clone(),
                key: key.to_string(),
                upload_id: staged.upload_id,
                parts: staged.parts,
                size: staged.size,
            }))),
            Err(err) => {
                staged.cancel().await;
                self.abort_multipart(key, &staged.upload_id).await;
                Err(err)
            }
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

    async fn initiate_multipart(&self, key: &str) -> Result<String, VendorError> {
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
        xml_text(&body, "UploadId").ok_or_else(|| VendorError::Decode {
            vendor: VENDOR,
            endpoint: "initiate_multipart_upload",
            reason: "no UploadId in the answer".into(),
        })
    }

    async fn multipart_upload(
        &self,
        key: &str,
        image: &Path,
        size: u64,
        part_size: u64,
    ) -> Result<(), VendorError> {
        let upload_id = self.initiate_multipart(key).await?;
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
                        .upload_part(key, &upload_id, number, length, || {
                            file_range_body(image, offset, length, "upload_part")
                        })
                        .await?;
                    Ok::<_, VendorError>((number, etag))
                }
            })
            .buffer_unordered(PART_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await;
        match uploaded {
            Ok(etags) => self.complete_multipart(key, &upload_id, etags).await,
            Err(err) => {
                self.abort_multipart(key, &upload_id).await;
                Err(err)
            }
        }
    }

    /// Completes the upload from its parts' ETags; aborts it when OBS refuses.
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        mut etags: Vec<(u64, String)>,
    ) -> Result<(), VendorError> {
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
            self.abort_multipart(key, upload_id).await;
        }
        result.map(drop)
    }

    /// Uploads one part whose body `body` makes (again for every attempt); returns its ETag.
    async fn upload_part<B>(
        &self,
        key: &str,
        upload_id: &str,
        number: u64,
        length: u64,
        body: B,
    ) -> Result<String, VendorError>
    where
        B: Fn() -> Result<reqwest::Body, VendorError>,
    {
        let url = self.object_url(key, &format!("partNumber={number}&uploadId={upload_id}"))?;
        let response = self
            .http
            .send_upload("upload_part", |client| {
                let mut headers = HeaderMap::new();
                headers.insert(reqwest::header::CONTENT_LENGTH, length.into());
                Ok(self
                    .signed(client, Method::PUT, &url, headers)?
                    .body(body()?))
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

/// What [`ObsClient::stage_stream`] did with an image.
#[derive(Debug)]
pub enum StagedUpload {
    /// The image fits in one part, so nothing was sent to OBS: upload it with
    /// [`ObsClient::upload`] (a single PUT) from a replayable copy.
    Small {
        /// The image's size in bytes.
        size: u64,
    },
    /// Every part is uploaded; the object appears once the upload is completed.
    Multipart(Box<PendingMultipart>),
}

/// A multipart upload whose parts are all on OBS but which is not completed: the object does
/// not exist yet. Complete it with [`PendingMultipart::complete`] or discard it with
/// [`PendingMultipart::abort`]; one that is merely dropped leaves its parts on OBS until a
/// bucket lifecycle rule removes them.
#[must_use = "complete or abort the multipart upload"]
pub struct PendingMultipart {
    obs: ObsClient,
    key: String,
    upload_id: String,
    parts: Vec<(u64, String)>,
    size: u64,
}

impl std::fmt::Debug for PendingMultipart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingMultipart")
            .field("bucket", &self.obs.bucket())
            .field("key", &self.key)
            .field("upload_id", &self.upload_id)
            .field("parts", &self.parts.len())
            .field("size", &self.size)
            .finish()
    }
}

impl PendingMultipart {
    /// Bytes uploaded, all parts together.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of parts uploaded.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// The object key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Completes the upload: the object appears under its key. On failure the upload is
    /// aborted.
    pub async fn complete(self) -> Result<(), VendorError> {
        self.obs
            .complete_multipart(&self.key, &self.upload_id, self.parts)
            .await
    }

    /// Aborts the upload, deleting its parts (best effort).
    pub async fn abort(self) {
        self.obs.abort_multipart(&self.key, &self.upload_id).await;
    }
}

/// The state of a multipart upload fed by [`ObsClient::stage_stream`].
struct Staging {
    upload_id: String,
    next_number: u64,
    /// The parts being uploaded, oldest first.
    in_flight: std::collections::VecDeque<PartTask>,
    parts: Vec<(u64, String)>,
    size: u64,
}

impl Staging {
    fn new(upload_id: String) -> Self {
        Self {
            upload_id,
            next_number: 1,
            in_flight: std::collections::VecDeque::new(),
            parts: Vec::new(),
            size: 0,
        }
    }

    /// Starts uploading `part` in the background.
    fn start(&mut self, obs: &ObsClient, key: &str, part: Bytes) -> Result<(), VendorError> {
        let number = self.next_number;
        if number > MAX_PARTS {
            return Err(config_error(format!(
                "the image needs more than {MAX_PARTS} parts of {} bytes: raise the part size",
                obs.part_size()
            )));
        }
        self.next_number += 1;
        self.size += part.len() as u64;
        let (obs, key, upload_id) = (obs.clone(), key.to_string(), self.upload_id.clone());
        self.in_flight.push_back(PartTask(tokio::spawn(async move {
            let length = part.len() as u64;
            let etag = obs
                .upload_part(&key, &upload_id, number, length, || {
                    Ok(reqwest::Body::from(part.clone()))
                })
                .await?;
            Ok((number, etag, part))
        })));
        Ok(())
    }

    /// Uploads the last part and waits for every part in flight.
    async fn finish_last(
        &mut self,
        obs: &ObsClient,
        key: &str,
        part: Bytes,
    ) -> Result<(), VendorError> {
        self.start(obs, key, part)?;
        while self.finish_oldest().await?.is_some() {}
        Ok(())
    }

    /// Waits for the oldest part in flight, if any, records its ETag and hands its bytes back.
    async fn finish_oldest(&mut self) -> Result<Option<Bytes>, VendorError> {
        let Some(mut task) = self.in_flight.pop_front() else {
            return Ok(None);
        };
        let (number, etag, part) = match (&mut task.0).await {
            Ok(done) => done?,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => {
                return Err(VendorError::Network {
                    vendor: VENDOR,
                    endpoint: "upload_part",
                    reason: "the part upload was cancelled".into(),
                });
            }
        };
        self.parts.push((number, etag));
        Ok(Some(part))
    }

    /// Cancels every part in flight and waits until they stopped.
    async fn cancel(&mut self) {
        while let Some(task) = self.in_flight.pop_front() {
            task.cancel().await;
        }
    }
}

/// A part uploading in the background; dropping it cancels the upload.
struct PartTask(tokio::task::JoinHandle<Result<(u64, String, Bytes), VendorError>>);

impl PartTask {
    /// Cancels the upload and waits until it stopped.
    async fn cancel(mut self) {
        self.0.abort();
        // A cancelled (or already finished) part does not matter: the upload is aborted next.
        let _ = (&mut self.0).await;
    }
}

impl Drop for PartTask {
    fn drop(&mut self) {
        self.0.abort();
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
