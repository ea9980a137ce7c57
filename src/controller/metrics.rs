//! Prometheus metrics of the operator, served on `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::vendor::CallObserver;

/// Labels of per-kind reconcile metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `OtaProvider`, `FirmwarePackage` or `UpgradeCampaign`.
    pub kind: &'static str,
}

/// Labels of reconcile failures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The kind reconciled.
    pub kind: &'static str,
    /// The error's reason, for example `VendorThrottled` or `ChecksumMismatch`.
    pub error_class: &'static str,
}

/// Labels of vendor calls.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VendorCallLabels {
    /// `ThingSpace`, `IoTDA`, `OBS` or `IoTaaP`.
    pub vendor: &'static str,
    /// The operation, for example `create_ota_package`.
    pub endpoint: &'static str,
    /// The HTTP status, or `error` when no response arrived.
    pub status: String,
}

/// Labels of vendor retries and uploads.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VendorLabels {
    /// The vendor.
    pub vendor: &'static str,
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    /// Reconciles started, by kind.
    pub reconciles: Family<KindLabels, Counter>,
    /// Reconciles that ended in an error, by kind and error class.
    pub failures: Family<FailureLabels, Counter>,
    /// Reconcile duration in seconds, by kind.
    pub duration: Family<KindLabels, Histogram>,
    /// Vendor HTTP attempts, by vendor, endpoint and status.
    pub vendor_calls: Family<VendorCallLabels, Counter>,
    /// Vendor HTTP retries, by vendor.
    pub vendor_retries: Family<VendorLabels, Counter>,
    /// Artifact bytes handed to a vendor, by vendor.
    pub artifact_bytes_uploaded: Family<VendorLabels, Counter>,
    /// 1 while this replica holds the leader lease (or runs without leader election).
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("otaplane");
        let reconciles = Family::<KindLabels, Counter>::default();
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        let failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "reconcile_failures",
            "Reconciles that ended in an error, by error class",
            failures.clone(),
        );
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        let vendor_calls = Family::<VendorCallLabels, Counter>::default();
        registry.register(
            "vendor_calls",
            "Vendor HTTP attempts by vendor, endpoint and status",
            vendor_calls.clone(),
        );
        let vendor_retries = Family::<VendorLabels, Counter>::default();
        registry.register(
            "vendor_retries",
            "Vendor HTTP attempts retried after a 429, 5xx or connection error",
            vendor_retries.clone(),
        );
        let artifact_bytes_uploaded = Family::<VendorLabels, Counter>::default();
        registry.register(
            "artifact_bytes_uploaded",
            "Firmware bytes registered with a vendor",
            artifact_bytes_uploaded.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica acts (holds the lease or runs without leader election)",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            duration,
            vendor_calls,
            vendor_retries,
            artifact_bytes_uploaded,
            leader,
        }
    }
}

impl Metrics {
    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts one reconcile of `kind` and returns a guard that records its duration when dropped.
    pub fn reconcile_started(&self, kind: &'static str) -> ReconcileTimer<'_> {
        self.reconciles.get_or_create(&KindLabels { kind }).inc();
        ReconcileTimer {
            metrics: self,
            kind,
            start: std::time::Instant::now(),
        }
    }

    /// Counts one failed reconcile.
    pub fn reconcile_failed(&self, kind: &'static str, error_class: &'static str) {
        self.failures
            .get_or_create(&FailureLabels { kind, error_class })
            .inc();
    }

    /// Observer that feeds vendor call metrics; give it to every vendor client.
    pub fn call_observer(self: &Arc<Self>) -> Arc<dyn CallObserver> {
        Arc::new(MetricsObserver(self.clone()))
    }
}

/// Records a reconcile's duration when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    kind: &'static str,
    start: std::time::Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&KindLabels { kind: self.kind })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

struct MetricsObserver(Arc<Metrics>);

impl CallObserver for MetricsObserver {
    fn on_attempt(&self, vendor: &'static str, endpoint: &'static str, status: Option<u16>) {
        let status = status.map_or_else(|| "error".to_string(), |status| status.to_string());
        self.0
            .vendor_calls
            .get_or_create(&VendorCallLabels {
                vendor,
                endpoint,
                status,
            })
            .inc();
    }

    fn on_retry(&self, vendor: &'static str, _endpoint: &'static str, _delay: Duration) {
        self.0
            .vendor_retries
            .get_or_create(&VendorLabels { vendor })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_names_follow_prometheus_conventions() {
        let metrics = Arc::new(Metrics::default());
        drop(metrics.reconcile_started("FirmwarePackage"));
        metrics.reconcile_failed("FirmwarePackage", "VendorThrottled");
        metrics
            .call_observer()
            .on_attempt("IoTDA", "create_ota_package", Some(201));
        let text = metrics.encode();
        assert!(text.contains("otaplane_reconciles_total{kind=\"FirmwarePackage\"} 1"));
        assert!(text.contains(
            "otaplane_reconcile_failures_total{kind=\"FirmwarePackage\",error_class=\"VendorThrottled\"} 1"
        ));
        assert!(text.contains(
            "otaplane_vendor_calls_total{vendor=\"IoTDA\",endpoint=\"create_ota_package\",status=\"201\"} 1"
        ));
        assert!(text.contains("# TYPE otaplane_reconcile_duration_seconds histogram"));
    }
}
