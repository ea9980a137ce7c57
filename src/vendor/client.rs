//! One entry point over the three vendors, used by the reconcilers.

use std::path::Path;

use super::{
    error::VendorError,
    iotaap::IotaapClient,
    iotda::IotdaClient,
    thingspace::ThingSpaceClient,
    types::{
        DeleteOutcome, PackageSpec, PackageVendorSpec, RegisteredPackage, RolloutProgress,
        RolloutSpec,
    },
};

/// A verified artifact on disk, as the vendor layer needs it.
#[derive(Clone, Copy, Debug)]
pub struct ArtifactFile<'a> {
    /// The spool file.
    pub path: &'a Path,
    /// Its SHA-256, lowercase hex.
    pub sha256: &'a str,
    /// Its size in bytes.
    pub size: u64,
    /// The file name to present to the vendor (the last segment of the artifact URL).
    pub file_name: &'a str,
}

/// What became of a cancel request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The vendor stopped what had not finished.
    Cancelled,
    /// The vendor cannot stop a rollout (IoTaaP: an uploaded image stays offered).
    NotSupported,
}

/// A client for one vendor account.
#[derive(Clone)]
pub enum VendorClient {
    /// Verizon ThingSpace.
    ThingSpace(ThingSpaceClient),
    /// Huawei Cloud IoTDA with its OBS bucket (boxed: it carries two HTTP clients and signers).
    Iotda(Box<IotdaClient>),
    /// IoTaaP.
    Iotaap(IotaapClient),
}

impl VendorClient {
    /// Exchanges the credentials (token, session or one signed call).
    pub async fn authenticate(&self) -> Result<(), VendorError> {
        match self {
            VendorClient::ThingSpace(client) => client.authenticate().await,
            VendorClient::Iotda(client) => client.authenticate().await,
            VendorClient::Iotaap(client) => client.authenticate().await,
        }
    }

    /// The package already registered for this spec, if any (for adoption and idempotency).
    pub async fn find_package(
        &self,
        spec: &PackageSpec,
    ) -> Result<Option<RegisteredPackage>, VendorError> {
        match self {
            VendorClient::ThingSpace(client) => client.find_package(spec).await,
            VendorClient::Iotda(client) => client.find_package(spec).await,
            VendorClient::Iotaap(_) => Ok(None),
        }
    }

    /// The package with this external ID (adoption by annotation, drift checks).
    pub async fn get_package(
        &self,
        external_id: &str,
    ) -> Result<Option<RegisteredPackage>, VendorError> {
        match self {
            VendorClient::ThingSpace(client) => client.get_package(external_id).await,
            VendorClient::Iotda(client) => client.get_package(external_id).await,
            VendorClient::Iotaap(_) => Ok(None),
        }
    }

    /// Every package the account holds, in as few calls as the vendor allows (ThingSpace: one
    /// list; IoTDA: one paged list per package type), for drift checks across many
    /// FirmwarePackages. IoTaaP holds no packages.
    pub async fn list_packages(&self) -> Result<Vec<RegisteredPackage>, VendorError> {
        match self {
            VendorClient::ThingSpace(client) => client.list_packages().await,
            VendorClient::Iotda(client) => {
                let mut packages = Vec::new();
                for package_type in ["firmwarePackage", "softwarePackage", "modulePackage"] {
                    packages.extend(client.list_packages(package_type, None, None, None).await?);
                }
                Ok(packages)
            }
            VendorClient::Iotaap(_) => Ok(Vec::new()),
        }
    }

    /// Registers a verified artifact. IoTaaP registers nothing: the image goes up per device.
    pub async fn register_package(
        &self,
        spec: &PackageSpec,
        artifact: ArtifactFile<'_>,
    ) -> Result<RegisteredPackage, VendorError> {
        match self {
            VendorClient::ThingSpace(client) => {
                client
                    .register_package(spec, artifact.path, artifact.size)
                    .await
            }
            VendorClient::Iotda(client) => {
                client
                    .register_package(
                        spec,
                        artifact.path,
                        artifact.sha256,
                        artifact.size,
                        artifact.file_name,
                    )
                    .await
            }
            VendorClient::Iotaap(_) => Ok(RegisteredPackage {
                external_id: spec.version.clone(),
                version: spec.version.clone(),
                sha256: Some(artifact.sha256.to_string()),
                ..RegisteredPackage::default()
            }),
        }
    }

    /// Deletes the vendor package.
    pub async fn delete_package(
        &self,
        package: &RegisteredPackage,
    ) -> Result<DeleteOutcome, VendorError> {
        match self {
            VendorClient::ThingSpace(client) => client.delete_package(&package.external_id).await,
            VendorClient::Iotda(client) => client.delete_package(&package.external_id).await,
            VendorClient::Iotaap(_) => Ok(DeleteOutcome::NotSupported),
        }
    }

    /// Starts one wave under its deterministic name; returns the vendor's rollout ID. IoTaaP
    /// needs the image again (it is uploaded per device) and skips devices already offered it.
    pub async fn start_rollout(
        &self,
        spec: &PackageSpec,
        package: &RegisteredPackage,
        rollout: &RolloutSpec,
        artifact: Option<ArtifactFile<'_>>,
    ) -> Result<String, VendorError> {
        match (self, &spec.vendor) {
            (VendorClient::ThingSpace(client), _) => client.start_rollout(package, rollout).await,
            (
                VendorClient::Iotda(client),
                PackageVendorSpec::Iotda {
                    package_type,
                    app_id,
                    ..
                },
            ) => {
                client
                    .start_rollout(package, task_type(package_type), app_id.as_deref(), rollout)
                    .await
            }
            (VendorClient::Iotaap(client), _) => {
                let artifact = artifact.ok_or_else(|| VendorError::Config {
                    vendor: "IoTaaP",
                    reason: "a deploy needs the artifact".into(),
                })?;
                client
                    .deploy(&rollout.devices, &spec.version, artifact.path)
                    .await?;
                Ok(rollout.name.clone())
            }
            (VendorClient::Iotda(_), _) => Err(VendorError::Config {
                vendor: "IoTDA",
                reason: "the package has no iotda block".into(),
            }),
        }
    }

    /// The ID of a rollout started earlier under `name` (after a restart), if any.
    pub async fn find_rollout(
        &self,
        spec: &PackageSpec,
        name: &str,
    ) -> Result<Option<String>, VendorError> {
        match (self, &spec.vendor) {
            (VendorClient::ThingSpace(client), _) => client.find_rollout(name).await,
            (VendorClient::Iotda(client), PackageVendorSpec::Iotda { package_type, .. }) => {
                client.find_rollout(task_type(package_type), name).await
            }
            // Deploys are idempotent: starting again uploads only to devices not yet offered it.
            _ => Ok(None),
        }
    }

    /// Where the wave's devices stand.
    pub async fn rollout_progress(
        &self,
        spec: &PackageSpec,
        rollout_id: &str,
        devices: &[String],
    ) -> Result<RolloutProgress, VendorError> {
        match self {
            VendorClient::ThingSpace(client) => client.rollout_progress(rollout_id, devices).await,
            VendorClient::Iotda(client) => client.rollout_progress(rollout_id).await,
            VendorClient::Iotaap(client) => client.rollout_progress(devices, &spec.version).await,
        }
    }

    /// Stops what has not finished in a wave.
    pub async fn cancel_rollout(&self, rollout_id: &str) -> Result<CancelOutcome, VendorError> {
        match self {
            VendorClient::ThingSpace(client) => client
                .cancel_rollout(rollout_id)
                .await
                .map(|()| CancelOutcome::Cancelled),
            VendorClient::Iotda(client) => client
                .cancel_rollout(rollout_id)
                .await
                .map(|()| CancelOutcome::Cancelled),
            VendorClient::Iotaap(_) => Ok(CancelOutcome::NotSupported),
        }
    }
}

/// The batch task type that installs a package type.
fn task_type(package_type: &str) -> &'static str {
    match package_type {
        "softwarePackage" => "softwareUpgrade",
        "modulePackage" => "moduleUpgrade",
        _ => "firmwareUpgrade",
    }
}
