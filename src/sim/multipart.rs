//! Streaming `multipart/form-data` reading with bounded memory.
//!
//! Text fields are kept (each at most [`MAX_TEXT_FIELD_BYTES`]); the one file field is
//! streamed chunk by chunk into a [`Digester`] (size + SHA-256 + prefix) or a spool file,
//! never held whole in memory. Failures are classified as [`FormError`] so each vendor can
//! answer in its own error shape.

use std::collections::HashMap;

use axum::extract::Multipart;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::http::StatusCode;

use super::spool::{Digest256, Digester, Spool, SpooledFile};

/// Largest accepted text field.
pub const MAX_TEXT_FIELD_BYTES: usize = 64 * 1024;

/// Why a form could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// The request is not `multipart/form-data` with a boundary (415).
    #[error("expected a multipart/form-data request with a boundary: {0}")]
    NotMultipart(String),
    /// The body is not valid multipart (400).
    #[error("malformed multipart body: {0}")]
    Malformed(String),
    /// The body exceeds the upload limit (413).
    #[error("upload exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// A text field is too long (400).
    #[error("form field {0} is too long")]
    FieldTooLong(String),
    /// More than one file part was sent for the file field (400).
    #[error("more than one file in field {0}")]
    DuplicateFile(String),
    /// Writing the spool file failed (500).
    #[error("cannot store the upload: {0}")]
    Storage(String),
}

impl FormError {
    /// The HTTP status that fits.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotMultipart(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Malformed(_) | Self::FieldTooLong(_) | Self::DuplicateFile(_) => {
                StatusCode::BAD_REQUEST
            }
        }
    }

    fn from_multipart(error: MultipartError, limit: u64) -> Self {
        if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::TooLarge { limit }
        } else {
            Self::Malformed(error.body_text())
        }
    }
}

impl From<MultipartRejection> for FormError {
    fn from(rejection: MultipartRejection) -> Self {
        Self::NotMultipart(rejection.body_text())
    }
}

/// Where the file field's bytes go.
#[derive(Debug, Clone, Copy)]
pub enum FileSink<'a> {
    /// Keep only size, SHA-256 and a prefix.
    Digest,
    /// Also write the bytes to a spool file.
    Spool(&'a Spool),
}

/// The received file part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedFile {
    /// The part's file name reduced to its basename (no directories), if any.
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub digest: Digest256,
    /// The spool file, with [`FileSink::Spool`].
    pub spooled: Option<SpooledFile>,
}

/// A read form: text fields by name (first value wins) and the file, if sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedForm {
    pub fields: HashMap<String, String>,
    pub file: Option<ReceivedFile>,
}

impl ReceivedForm {
    /// A text field, trimmed, or `None` when absent or empty.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }
}

/// The last path component of a client-supplied file name (`/` and `\` both separate).
pub fn basename(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name).trim();
    (!base.is_empty() && base != "." && base != "..").then(|| base.to_owned())
}

/// Reads the whole form, streaming the part named `file_field` into `sink`. The file part
/// may come before or after the text fields. `limit` is the upload limit reported in
/// [`FormError::TooLarge`] (the route's body limit enforces it).
pub async fn read_form(
    multipart: Result<Multipart, MultipartRejection>,
    file_field: &str,
    sink: FileSink<'_>,
    limit: u64,
) -> Result<ReceivedForm, FormError> {
    let mut multipart = multipart?;
    let mut form = ReceivedForm::default();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                discard(form.file.take()).await;
                return Err(FormError::from_multipart(e, limit));
            }
        };
        let name = field.name().unwrap_or_default().to_owned();
        if name == file_field {
            if form.file.is_some() {
                discard(form.file.take()).await;
                return Err(FormError::DuplicateFile(name));
            }
            let file_name = field.file_name().and_then(basename);
            let content_type = field.content_type().map(str::to_owned);
            match receive_file(field, sink, limit).await {
                Ok((digest, spooled)) => {
                    form.file = Some(ReceivedFile {
                        file_name,
                        content_type,
                        digest,
                        spooled,
                    });
                }
                Err(e) => {
                    discard(form.file.take()).await;
                    return Err(e);
                }
            }
        } else {
            let mut field = field;
            let mut value = Vec::new();
            loop {
                match field.chunk().await {
                    Ok(Some(chunk)) => {
                        if value.len() + chunk.len() > MAX_TEXT_FIELD_BYTES {
                            discard(form.file.take()).await;
                            return Err(FormError::FieldTooLong(name));
                        }
                        value.extend_from_slice(&chunk);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        discard(form.file.take()).await;
                        return Err(FormError::from_multipart(e, limit));
                    }
                }
            }
            let value = String::from_utf8_lossy(&value).into_owned();
            form.fields.entry(name).or_insert(value);
        }
    }
    Ok(form)
}

async fn receive_file(
    mut field: axum::extract::multipart::Field<'_>,
    sink: FileSink<'_>,
    limit: u64,
) -> Result<(Digest256, Option<SpooledFile>), FormError> {
    match sink {
        FileSink::Digest => {
            let mut digester = Digester::default();
            loop {
                match field.chunk().await {
                    Ok(Some(chunk)) => digester.update(&chunk),
                    Ok(None) => return Ok((digester.finish(), None)),
                    Err(e) => return Err(FormError::from_multipart(e, limit)),
                }
            }
        }
        FileSink::Spool(spool) => {
            let mut writer = spool
                .create()
                .await
                .map_err(|e| FormError::Storage(e.to_string()))?;
            loop {
                match field.chunk().await {
                    Ok(Some(chunk)) => {
                        if let Err(e) = writer.write(&chunk).await {
                            writer.discard().await;
                            return Err(FormError::Storage(e.to_string()));
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        writer.discard().await;
                        return Err(FormError::from_multipart(e, limit));
                    }
                }
            }
            let file = writer
                .finish()
                .await
                .map_err(|e| FormError::Storage(e.to_string()))?;
            Ok((file.digest.clone(), Some(file)))
        }
    }
}

/// Deletes a spooled file that will not be used.
pub async fn discard(file: Option<ReceivedFile>) {
    if let Some(spooled) = file.and_then(|f| f.spooled) {
        tokio::fs::remove_file(&spooled.path).await.ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basename_drops_directories_of_both_styles() {
        assert_eq!(basename("/home/me/fw.bin").as_deref(), Some("fw.bin"));
        assert_eq!(basename("C:\\builds\\fw.bin").as_deref(), Some("fw.bin"));
        assert_eq!(basename("fw.bin").as_deref(), Some("fw.bin"));
        assert_eq!(basename("dir/").as_deref(), None);
        assert_eq!(basename("../..").as_deref(), None);
    }
}
