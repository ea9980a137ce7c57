//! The `otaplane run` command line: flags (each with an environment variable, for the Helm
//! chart), logging set-up and the process lifecycle (SIGTERM / Ctrl-C -> graceful shutdown).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{LeaderElection, RunError, Settings, default_identity};
use crate::api::GoDuration;
use crate::artifact::ArtifactPolicy;

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log collectors).
    Json,
    /// Human-readable lines.
    Text,
}

/// Flags of `otaplane run`.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Address serving /metrics, /healthz and /readyz.
    #[arg(long, env = "OTAPLANE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Namespaces to watch, comma-separated; empty watches all namespaces.
    #[arg(
        long,
        env = "OTAPLANE_WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub watch_namespaces: Vec<String>,
    /// Take a Lease before acting, so only one replica works at a time.
    #[arg(long, env = "OTAPLANE_LEADER_ELECT", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// Name of the leader election Lease.
    #[arg(long, env = "OTAPLANE_LEASE_NAME", default_value = "otaplane-leader")]
    pub lease_name: String,
    /// Namespace of the leader election Lease (the operator's own namespace).
    #[arg(long, env = "OTAPLANE_LEASE_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// How long the Lease lasts without renewal (Go duration); a standby takes over after it.
    #[arg(long, env = "OTAPLANE_LEASE_DURATION", default_value = "15s")]
    pub lease_duration: String,
    /// Directory for artifact spool files; unset: the system temporary directory.
    #[arg(long, env = "OTAPLANE_SPOOL_DIR")]
    pub spool_dir: Option<std::path::PathBuf>,
    /// Log format.
    #[arg(long, env = "OTAPLANE_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
    /// Log filter in tracing's env-filter syntax, for example `info` or `otaplane=debug`.
    #[arg(long, env = "OTAPLANE_LOG", default_value = "info")]
    pub log_level: String,
    /// Reconciles running at once, per kind.
    #[arg(long, env = "OTAPLANE_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,
    /// How often providers re-check credentials and list vendor packages for drift (Go duration).
    #[arg(long, env = "OTAPLANE_RESYNC_INTERVAL", default_value = "10m")]
    pub resync_interval: String,
    /// Networks artifacts may be fetched from although denied by default (link-local,
    /// metadata), comma-separated CIDRs.
    #[arg(
        long,
        env = "OTAPLANE_ARTIFACT_ALLOW_CIDRS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub artifact_allow_cidrs: Vec<String>,
    /// How long shutdown waits for in-flight reconciles (an upload) before abandoning them.
    #[arg(long, env = "OTAPLANE_SHUTDOWN_GRACE", default_value = "25s")]
    pub shutdown_grace: String,
}

fn duration(flag: &str, value: &str) -> Result<Duration, String> {
    GoDuration(value.to_string())
        .to_std()
        .map_err(|err| format!("--{flag}: {err}"))
}

impl RunArgs {
    /// The operator settings these flags describe.
    pub fn settings(&self) -> Result<Settings, String> {
        let identity = default_identity();
        let allowed_cidrs = self
            .artifact_allow_cidrs
            .iter()
            .filter(|cidr| !cidr.trim().is_empty())
            .map(|cidr| {
                cidr.trim()
                    .parse()
                    .map_err(|err| format!("--artifact-allow-cidrs: {cidr:?}: {err}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let lease_duration = duration("lease-duration", &self.lease_duration)?;
        Ok(Settings {
            http_addr: self.metrics_addr,
            watch_namespaces: self
                .watch_namespaces
                .iter()
                .map(|ns| ns.trim().to_string())
                .filter(|ns| !ns.is_empty())
                .collect(),
            leader_election: self.leader_elect.then(|| LeaderElection {
                lease_name: self.lease_name.clone(),
                lease_namespace: self.lease_namespace.clone(),
                identity: identity.clone(),
                lease_duration,
                renew_grace: (lease_duration / 3).max(Duration::from_secs(1)),
            }),
            concurrency: self.concurrency.max(1),
            resync_interval: duration("resync-interval", &self.resync_interval)?,
            artifact_policy: ArtifactPolicy {
                allowed_cidrs,
                spool_dir: self.spool_dir.clone(),
                ..ArtifactPolicy::default()
            },
            shutdown_grace: duration("shutdown-grace", &self.shutdown_grace)?,
            instance: identity,
            ..Settings::default()
        })
    }
}

/// Installs the global tracing subscriber (JSON or text, filtered by `filter`).
pub fn init_logging(format: LogFormat, filter: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|err| format!("--log-level {filter:?}: {err}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    installed.map_err(|err| format!("logging: {err}"))
}

/// Errors of `otaplane run` as a process.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag has a bad value.
    #[error("{0}")]
    Flags(String),
    /// No kubeconfig or in-cluster configuration works.
    #[error("connecting to Kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// The operator failed.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// `otaplane run`: connects with the in-cluster config or KUBECONFIG and runs until SIGTERM or
/// Ctrl-C, then shuts down gracefully.
pub async fn run(args: RunArgs) -> Result<(), CliError> {
    let settings = args.settings().map_err(CliError::Flags)?;
    init_logging(args.log_format, &args.log_level).map_err(CliError::Flags)?;
    let client = kube::Client::try_default().await?;
    let handle = super::start(settings, client).await?;
    let stopper = handle.stopper();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested");
        let _ = stopper.send(true);
    });
    handle.wait().await?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn flags_become_settings() {
        let cli = Cli::try_parse_from([
            "otaplane",
            "--watch-namespaces",
            "a, b",
            "--leader-elect",
            "--lease-duration",
            "30s",
            "--resync-interval",
            "2m",
            "--artifact-allow-cidrs",
            "169.254.10.0/24",
        ])
        .expect("flags parse");
        let settings = cli.run.settings().expect("settings");
        assert_eq!(settings.watch_namespaces, ["a", "b"]);
        let election = settings.leader_election.expect("leader election on");
        assert_eq!(election.lease_duration, Duration::from_secs(30));
        assert_eq!(election.renew_grace, Duration::from_secs(10));
        assert_eq!(settings.resync_interval, Duration::from_secs(120));
        assert_eq!(settings.artifact_policy.allowed_cidrs.len(), 1);
    }

    #[test]
    fn bad_values_name_the_flag() {
        let cli = Cli::try_parse_from(["otaplane", "--resync-interval", "soon"]).expect("parse");
        let err = cli.run.settings().expect_err("bad duration");
        assert!(err.starts_with("--resync-interval:"), "{err}");
        let cli = Cli::try_parse_from(["otaplane", "--artifact-allow-cidrs", "10.0.0.0/33"])
            .expect("parse");
        assert!(
            cli.run
                .settings()
                .expect_err("bad cidr")
                .contains("--artifact-allow-cidrs")
        );
    }
}
