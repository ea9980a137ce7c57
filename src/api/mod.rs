//! The custom resources: the public contract of otaplane.

/// All CRDs as one multi-document YAML stream.
pub fn crds_yaml() -> String {
    String::new()
}
