//! One pass from the artifact server to the vendor: the image is uploaded while it downloads
//! (and spooled to disk at the same time), and the upload completes only once the checksum
//! matched. If the streamed upload fails for any other reason, it is retried from the spool
//! file, so nothing is downloaded twice.
//!
//! - ThingSpace ([`fetch_and_register_thingspace`]): one streamed multipart/form-data POST
//!   whose last chunk is held back until the checksum matched.
//! - IoTDA ([`fetch_and_register_iotda`]): an OBS multipart upload fed part by part as the
//!   download fills each part, completed only after the checksum matched, then the package
//!   is created as [`IotdaClient::register_package`] does.

use crate::{
    artifact::{ArtifactError, ArtifactFetcher, ArtifactRequest, SpooledArtifact},
    vendor::{
        PackageSpec, PackageVendorSpec, RegisteredPackage, VendorError, iotda::IotdaClient,
        obs::StagedUpload, thingspace::ThingSpaceClient,
    },
};

/// Chunks buffered between the download and the upload.
const TEE_DEPTH: usize = 16;

/// OBS parts uploading at once while an IoTDA image downloads. One keeps memory at two parts
/// (one filling, one uploading), whatever the image size.
const OBS_PARTS_IN_FLIGHT: usize = 1;

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
    let body = crate::streams::receiver_stream(chunks);
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

/// Fetches `request` and uploads it to IoTDA's OBS bucket in one pass, then creates the IoTDA
/// package; returns the spooled artifact (for later use) and the registered package.
///
/// While the artifact downloads, each full part (the OBS client's part size) goes up as a part
/// of a multipart upload of the same deterministic key [`IotdaClient::register_package`] uses
/// (`file_name` names the object), so memory stays at about two parts whatever the image
/// size. The multipart upload is completed only after the fetch succeeded, that is after the
/// SHA-256 matched; then the package is created with that SHA-256 as `sign`.
///
/// - A checksum mismatch or a failed fetch aborts the multipart upload: no object, no package,
///   and the artifact error is returned.
/// - A part that fails is retried on its own from memory; if the streamed upload still fails
///   (OBS errors, connections reset past the retries), it is aborted and the image is uploaded
///   again from the spool file by [`IotdaClient::register_package`]: nothing is downloaded
///   twice.
/// - An image no larger than one part is not streamed: once the fetch has verified it, it goes
///   up from the spool file with a single PUT ([`IotdaClient::register_package`]). Holding it
///   back costs at most one part of memory and lets the PUT be retried from a replayable
///   source, and at that size there is little download time to overlap with.
pub async fn fetch_and_register_iotda(
    fetcher: &ArtifactFetcher,
    request: &ArtifactRequest,
    client: &IotdaClient,
    spec: &PackageSpec,
    file_name: &str,
) -> Result<(SpooledArtifact, RegisteredPackage), PipelineError> {
    if !matches!(spec.vendor, PackageVendorSpec::Iotda { .. }) {
        return Err(VendorError::Config {
            vendor: "IoTDA",
            reason: "the package has no iotda block".into(),
        }
        .into());
    }
    let key = client.object_key(spec, file_name);
    let (tee, chunks) = tokio::sync::mpsc::channel(TEE_DEPTH);
    let body = crate::streams::receiver_stream(chunks);
    let (fetched, staged) = tokio::join!(
        fetcher.fetch_teed(request, tee),
        client.obs().stage_stream(&key, body, OBS_PARTS_IN_FLIGHT)
    );
    let artifact = match fetched {
        Ok(artifact) => artifact,
        Err(err) => {
            // stage_stream saw the same error in the stream and aborted; an upload staged
            // anyway (the error could not reach it) is aborted here.
            if let Ok(StagedUpload::Multipart(pending)) = staged {
                pending.abort().await;
            }
            return Err(err.into());
        }
    };
    let streamed = match staged {
        Ok(StagedUpload::Multipart(pending)) if pending.size() == artifact.size() => {
            match pending.complete().await {
                Ok(()) => true,
                Err(err) => {
                    tracing::warn!(error = %err, "completing the streamed OBS upload failed; uploading from the spool file");
                    false
                }
            }
        }
        Ok(StagedUpload::Multipart(pending)) => {
            tracing::warn!(
                streamed = pending.size(),
                fetched = artifact.size(),
                "the streamed OBS upload is incomplete; uploading from the spool file"
            );
            pending.abort().await;
            false
        }
        Ok(StagedUpload::Small { .. }) => false,
        Err(err) => {
            tracing::warn!(error = %err, "streamed OBS upload failed; uploading from the spool file");
            false
        }
    };
    let registered = if streamed {
        client.create_package(spec, &key, artifact.sha256()).await?
    } else {
        client
            .register_package(
                spec,
                artifact.path(),
                artifact.sha256(),
                artifact.size(),
                file_name,
            )
            .await?
    };
    Ok((artifact, registered))
}
