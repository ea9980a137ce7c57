//! One pass from the artifact server to the vendor: the image is uploaded while it downloads
//! (and spooled to disk at the same time), and the upload completes only once the checksum
//! matched. If the streamed upload fails for any other reason, it is retried from the spool
//! file, so nothing is downloaded twice.

use crate::{
    artifact::{ArtifactError, ArtifactFetcher, ArtifactRequest, SpooledArtifact},
    vendor::{PackageSpec, RegisteredPackage, VendorError, thingspace::ThingSpaceClient},
};

/// Chunks buffered between the download and the upload.
const TEE_DEPTH: usize = 16;

/// Why the one-pass registration failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The artifact could not be fetched or failed its checksum; nothing was registered.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// The vendor refused the upload, also when retried from the spool file.
    #[error(transparent)]
    Vendor(#[from] VendorError),
}

impl PipelineError {
    /// Whether trying again later can succeed without a change to spec or Secret.
    pub fn is_retryable(&self) -> bool {
        match self {
            PipelineError::Artifact(err) => err.is_retryable(),
            PipelineError::Vendor(err) => err.is_retryable(),
        }
    }
}

/// Fetches `request` and uploads it to ThingSpace in one pass; returns the spooled artifact
/// (for later use) and the registered file.
pub async fn fetch_and_register_thingspace(
    fetcher: &ArtifactFetcher,
    request: &ArtifactRequest,
    client: &ThingSpaceClient,
    spec: &PackageSpec,
) -> Result<(SpooledArtifact, RegisteredPackage), PipelineError> {
    let (tee, chunks) = tokio::sync::mpsc::channel(TEE_DEPTH);
    let body = futures::stream::unfold(chunks, |mut chunks| async move {
        chunks.recv().await.map(|chunk| (chunk, chunks))
    });
    let (fetched, streamed) = tokio::join!(
        fetcher.fetch_teed(request, tee),
        client.register_package_streaming(spec, body)
    );
    let artifact = fetched?;
    let registered = match streamed {
        Ok(registered) => registered,
        Err(err) => {
            tracing::warn!(error = %err, "streamed upload failed; uploading from the spool file");
            client
                .register_package(spec, artifact.path(), artifact.size())
                .await?
        }
    };
    Ok((artifact, registered))
}
