//! The CustomResourceDefinitions generated from the types, as committed under `crds/`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::{FirmwarePackage, OtaProvider, UpgradeCampaign};

/// The three CRDs, in the order they are written to `crds/`.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        OtaProvider::crd(),
        FirmwarePackage::crd(),
        UpgradeCampaign::crd(),
    ]
}

/// All CRDs as one multi-document YAML stream (what `otaplane crds` prints).
pub fn crds_yaml() -> String {
    crds()
        .iter()
        .map(|crd| {
            let yaml = serde_saphyr::to_string(crd).expect("a CRD always serializes to YAML");
            format!("---\n{yaml}")
        })
        .collect()
}
