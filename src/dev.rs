//! `otaplane dev`: the whole system in one process, on loopback, for a first look and for demos.
//!
//! [`run`] starts, in this order:
//! 1. kube-lite, the in-memory Kubernetes API server, with the three CRDs installed;
//! 2. the vendor simulator ([`crate::sim`]) with a demo fleet ([`demo_sim_config`]) on a fast
//!    virtual clock, so that rollouts finish in seconds;
//! 3. an artifact server on 127.0.0.1 serving one deterministic demo firmware image
//!    ([`demo_firmware`]);
//! 4. the operator ([`crate::controller::start`]) with demo [`settings`] (quick campaign
//!    polling);
//!
//! then applies the manifest templates of `examples/dev/` (built into the binary, or read from
//! `--manifests DIR`) with server-side apply, after substituting the [`Placeholders`] that are
//! only known at run time. It shows a progress bar per UpgradeCampaign, fed only from the
//! campaigns' status (`phase`, `counts`, `progress`, `waves`), plus a line whenever a resource
//! changes state, until every resource has settled; then it prints a summary table like
//! `kubectl get ota`. With `--serve` everything keeps running, with a kubeconfig for the real
//! `kubectl`, until Ctrl-C.
//!
//! Output never contains the values of the demo Secrets: resources are named, never dumped.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::Scope;
use kube::{Api, Discovery, ResourceExt};
use sha2::{Digest, Sha256};

use crate::api::condition_types::{READY, STALLED};
use crate::api::{
    CampaignPhase, FirmwarePackage, GoDuration, OtaProvider, UpgradeCampaign, WavePhase,
    find_condition,
};
use crate::controller::{OperatorHandle, RunError, Settings};
use crate::reconcile::{PollIntervals, plan_waves};
use crate::sim::fleet::DeviceSpec;
use crate::sim::{SimConfig, SimError, SimHandle, Vendor as SimVendor};

/// The namespace objects without one are applied to (the kubeconfig's default too).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Field manager of the server-side applies `otaplane dev` makes.
pub const FIELD_MANAGER: &str = "otaplane-dev";

/// The manifest templates of `examples/dev/`, built into the binary: (file name, text).
pub const BUILTIN_MANIFESTS: [(&str, &str); 3] = [
    (
        "thingspace.yaml",
        include_str!("../examples/dev/thingspace.yaml"),
    ),
    ("iotda.yaml", include_str!("../examples/dev/iotda.yaml")),
    ("iotaap.yaml", include_str!("../examples/dev/iotaap.yaml")),
];

/// Path of the demo firmware image on the artifact server.
pub const DEMO_FIRMWARE_PATH: &str = "/firmware/demo-fw-2.0.0.bin";

/// Size of the demo firmware image, in bytes.
pub const DEMO_FIRMWARE_SIZE: usize = 256 << 10;

/// Firmware version every demo device runs before its upgrade.
pub const DEMO_BASE_VERSION: &str = "1.0.0";

/// The demo ThingSpace account's IMEIs in the simulator's fleet.
pub fn demo_thingspace_devices() -> Vec<String> {
    (1..=10).map(|n| format!("3534567890000{n:02}")).collect()
}

/// The demo IoTDA project's device IDs (`{productId}_{nodeId}`) in the simulator's fleet.
pub fn demo_iotda_devices() -> Vec<String> {
    (1..=10)
        .map(|n| format!("5ba24f5ebbe8f56f5a14f605_meter-{n:04}"))
        .collect()
}

/// The simulator configuration of `otaplane dev`: the built-in demo accounts, and a fleet of
/// ten ThingSpace trackers, ten IoTDA meters and the demo IoTaaP user's three devices, all on
/// [`DEMO_BASE_VERSION`] and all succeeding, on a clock running `time_scale` times real time.
pub fn demo_sim_config(time_scale: f64) -> SimConfig {
    let mut config = SimConfig {
        time_scale,
        ..SimConfig::default()
    };
    config.fleet.default_version = DEMO_BASE_VERSION.to_owned();
    let thingspace_account = config
        .thingspace
        .accounts
        .first()
        .map(|account| account.name.clone())
        .unwrap_or_default();
    let iotda_project = config
        .iotda
        .accounts
        .first()
        .map(|account| account.project_id.clone())
        .unwrap_or_default();
    let declared = demo_thingspace_devices()
        .into_iter()
        .map(|id| (SimVendor::ThingSpace, thingspace_account.clone(), id))
        .chain(
            demo_iotda_devices()
                .into_iter()
                .map(|id| (SimVendor::Iotda, iotda_project.clone(), id)),
        )
        .map(|(vendor, account, id)| DeviceSpec {
            vendor,
            account,
            id,
            version: Some(DEMO_BASE_VERSION.to_owned()),
            behaviour: None,
            token: None,
            name: None,
            device_type: None,
        });
    config.fleet.devices.extend(declared);
    config
}

/// The demo firmware image: [`DEMO_FIRMWARE_SIZE`] deterministic bytes (a text header, then an
/// xorshift stream), the same on every run.
pub fn demo_firmware() -> Vec<u8> {
    let mut image = b"OTAPLANE DEMO FIRMWARE 2.0.0\n".to_vec();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    while image.len() < DEMO_FIRMWARE_SIZE {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        image.extend_from_slice(&state.to_le_bytes());
    }
    image.truncate(DEMO_FIRMWARE_SIZE);
    image
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The values substituted into the manifest templates; each field is one `${NAME}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placeholders {
    /// `${SIM_URL}`: the simulator's main listener (ThingSpace under `/api`, IoTDA, IoTaaP under
    /// `/v1`), without a trailing slash.
    pub sim_url: String,
    /// `${OBS_URL}`: the simulator's OBS listener.
    pub obs_url: String,
    /// `${ARTIFACT_URL}`: the demo firmware image.
    pub artifact_url: String,
    /// `${ARTIFACT_SHA256}`: its SHA-256, lowercase hex.
    pub artifact_sha256: String,
}

impl Placeholders {
    /// The placeholder names the templates may use.
    pub const NAMES: [&'static str; 4] = ["SIM_URL", "OBS_URL", "ARTIFACT_URL", "ARTIFACT_SHA256"];

    fn value(&self, name: &str) -> Option<&str> {
        match name {
            "SIM_URL" => Some(&self.sim_url),
            "OBS_URL" => Some(&self.obs_url),
            "ARTIFACT_URL" => Some(&self.artifact_url),
            "ARTIFACT_SHA256" => Some(&self.artifact_sha256),
            _ => None,
        }
    }

    /// Replaces every `${NAME}` in `template`. An unknown name or an unterminated `${` is an
    /// error naming it and its line, so a typo never reaches the API server. Comment lines are
    /// copied unchanged (they document the placeholders).
    pub fn substitute(&self, template: &str) -> Result<String, String> {
        let mut out = String::with_capacity(template.len());
        for (number, line) in template.split_inclusive('\n').enumerate() {
            if line.trim_start().starts_with('#') {
                out.push_str(line);
                continue;
            }
            let mut rest = line;
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let end = after
                    .find('}')
                    .ok_or_else(|| format!("line {}: unterminated \"${{\"", number + 1))?;
                let name = &after[..end];
                let value = self.value(name).ok_or_else(|| {
                    format!(
                        "line {}: unknown placeholder ${{{name}}} (known: {})",
                        number + 1,
                        Self::NAMES.map(|n| format!("${{{n}}}")).join(", ")
                    )
                })?;
                out.push_str(value);
                rest = &after[end + 1..];
            }
            out.push_str(rest);
        }
        Ok(out)
    }
}

/// How long in-flight reconciles get when `otaplane dev` stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Operator settings for the demo: ephemeral or given address, campaign polling in fractions
/// of a second (the simulator's clock is fast), quick provider re-checks and a short shutdown.
pub fn settings(http_addr: SocketAddr) -> Settings {
    Settings {
        http_addr,
        resync_interval: Duration::from_secs(30),
        campaign_polling: PollIntervals {
            active: Duration::from_millis(250),
            idle: Duration::from_millis(500),
            waiting: Duration::from_secs(1),
        },
        shutdown_grace: SHUTDOWN_GRACE,
        instance: "otaplane-dev".to_owned(),
        ..Settings::default()
    }
}

/// Flags of `otaplane dev`.
#[derive(Clone, Debug, clap::Args)]
pub struct DevArgs {
    /// Longest wait for every resource to settle (Go duration); the run fails after it.
    #[arg(long, env = "OTAPLANE_DEV_TIMEOUT", default_value = "5m")]
    pub timeout: String,
    /// Keep everything running after the rollouts ended, with a kubeconfig for kubectl, until
    /// Ctrl-C.
    #[arg(long)]
    pub serve: bool,
    /// Where --serve writes the kubeconfig of the in-process API server (removed at exit).
    #[arg(long, value_name = "FILE", default_value = "./otaplane-dev.kubeconfig")]
    pub kubeconfig_out: PathBuf,
    /// Virtual seconds per real second on the simulator's clock (60: a device's one-minute
    /// upgrade takes a second).
    #[arg(long, value_name = "F", default_value_t = 60.0)]
    pub time_scale: f64,
    /// Directory of manifest templates (*.yaml, applied in file-name order) to use instead of
    /// the built-in copies of examples/dev/.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    /// Address of the operator's /metrics, /healthz and /readyz (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub metrics_addr: SocketAddr,
    /// Filter of the operator's logs on stderr, in tracing's env-filter syntax (`info`,
    /// `otaplane=debug`).
    #[arg(long, env = "OTAPLANE_LOG", default_value = "warn")]
    pub log_level: String,
}

/// How a run of `otaplane dev` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every provider and package is Ready and every campaign Succeeded.
    Succeeded,
    /// Everything settled, but something is not Ready or a campaign did not succeed.
    Unsuccessful,
    /// `--timeout` passed before everything settled.
    TimedOut,
    /// Ctrl-C (or SIGTERM) before everything settled.
    Interrupted,
}

impl Outcome {
    /// The process exit code: 0 for [`Outcome::Succeeded`], 1 when something did not succeed,
    /// 2 on timeout, 130 when interrupted.
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Outcome::Succeeded => 0,
            Outcome::Unsuccessful => 1,
            Outcome::TimedOut => 2,
            Outcome::Interrupted => 130,
        })
    }
}

/// Why `otaplane dev` could not run.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// A flag has a bad value.
    #[error("{0}")]
    Flags(String),
    /// A manifest template could not be read, filled in or applied.
    #[error("{file}: {message}")]
    Manifest {
        /// The template's file name.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// kube-lite could not start.
    #[error("Kubernetes API server: {0}")]
    KubeLite(#[from] kube_lite::Error),
    /// A call to the in-process API server failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The vendor simulator could not start.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// The operator could not start.
    #[error("operator: {0}")]
    Operator(#[from] RunError),
    /// Local I/O failed (the artifact server's socket, the kubeconfig file, the runtime).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl DevError {
    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

/// `otaplane dev`: starts everything, applies the demo manifests, shows progress until every
/// resource settled (or `--timeout`), prints the summary, and with `--serve` keeps serving until
/// Ctrl-C.
pub async fn run(args: DevArgs) -> Result<Outcome, DevError> {
    let timeout = GoDuration(args.timeout.clone())
        .to_std()
        .map_err(|err| DevError::Flags(format!("--timeout: {err}")))?;
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        return Err(DevError::Flags(format!(
            "--time-scale: {} is not a positive number",
            args.time_scale
        )));
    }
    let templates = load_templates(args.manifests.as_deref())?;
    let multi = MultiProgress::new();
    init_logging(&args.log_level, multi.clone())?;
    let console = Console {
        multi,
        started: Instant::now(),
    };

    let stack = Stack::start(&args, &templates).await?;
    let written_kubeconfig = if args.serve {
        std::fs::write(&args.kubeconfig_out, stack.kube.kubeconfig_yaml()).map_err(
            DevError::io(format!("writing {}", args.kubeconfig_out.display())),
        )?;
        Some(args.kubeconfig_out.clone())
    } else {
        None
    };
    println!("{}", stack.banner(written_kubeconfig.as_deref()));

    let outcome = stack
        .demo(&console, timeout, written_kubeconfig.as_deref())
        .await;
    if let Some(path) = &written_kubeconfig {
        let _ = std::fs::remove_file(path);
    }
    stack.stop().await;
    outcome
}

/// The manifest templates: the built-in ones, or every `*.yaml` in `dir` by file name.
fn load_templates(dir: Option<&Path>) -> Result<Vec<(String, String)>, DevError> {
    let Some(dir) = dir else {
        return Ok(BUILTIN_MANIFESTS
            .iter()
            .map(|(name, text)| (name.to_string(), text.to_string()))
            .collect());
    };
    let unreadable = |message: String| DevError::Manifest {
        file: dir.display().to_string(),
        message,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|err| unreadable(err.to_string()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(unreadable("no *.yaml files".to_owned()));
    }
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|err| DevError::Manifest {
                file: path.display().to_string(),
                message: err.to_string(),
            })?;
            Ok((path.display().to_string(), text))
        })
        .collect()
}

/// Installs the tracing subscriber; log lines go to stderr above the progress bars.
fn init_logging(filter: &str, multi: MultiProgress) -> Result<(), DevError> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|err| DevError::Flags(format!("--log-level {filter:?}: {err}")))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(BarSafeWriter(multi))
        .try_init()
        .map_err(|err| DevError::Flags(format!("logging: {err}")))
}

/// A tracing writer that prints each log line to stderr with the progress bars hidden.
#[derive(Clone)]
struct BarSafeWriter(MultiProgress);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BarSafeWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine {
            multi: self.0.clone(),
            buffer: Vec::new(),
        }
    }
}

/// One formatted log event, written out when dropped.
struct LogLine {
    multi: MultiProgress,
    buffer: Vec<u8>,
}

impl std::io::Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if !self.buffer.is_empty() {
            let buffer = std::mem::take(&mut self.buffer);
            self.multi.suspend(|| {
                let _ = std::io::stderr().write_all(&buffer);
            });
        }
    }
}

/// Where progress lines go: stdout, with the bars (on stderr) hidden while printing.
struct Console {
    multi: MultiProgress,
    started: Instant,
}

impl Console {
    /// Prints `text` with the time since start.
    fn line(&self, text: &str) {
        let elapsed = self.started.elapsed().as_secs_f64();
        self.multi.suspend(|| println!("[{elapsed:6.1}s] {text}"));
    }

    /// Whether bars are drawn (stderr is a terminal).
    fn bars_visible(&self) -> bool {
        !self.multi.is_hidden()
    }
}

/// The artifact server: one image on 127.0.0.1.
struct ArtifactServer {
    url: String,
    sha256: String,
    size: usize,
    task: tokio::task::JoinHandle<()>,
}

impl ArtifactServer {
    async fn start() -> Result<Self, DevError> {
        let image = bytes::Bytes::from(demo_firmware());
        let sha256 = sha256_hex(&image);
        let size = image.len();
        let app = axum::Router::new().route(
            DEMO_FIRMWARE_PATH,
            axum::routing::get(move || {
                let image = image.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
                        image,
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(DevError::io("binding the artifact server"))?;
        let addr = listener
            .local_addr()
            .map_err(DevError::io("binding the artifact server"))?;
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "the artifact server stopped");
            }
        });
        Ok(Self {
            url: format!("http://{addr}{DEMO_FIRMWARE_PATH}"),
            sha256,
            size,
            task,
        })
    }
}

/// Everything `otaplane dev` runs.
struct Stack {
    kube: kube_lite::Server,
    client: kube::Client,
    sim: SimHandle,
    artifact: ArtifactServer,
    operator: OperatorHandle,
    /// Per template file, `Kind/name` of each object applied.
    applied: Vec<(String, Vec<String>)>,
}

/// How long the operator may take to fill its caches after start.
const OPERATOR_READY_TIMEOUT: Duration = Duration::from_secs(30);

impl Stack {
    /// Starts kube-lite with the CRDs, the simulator and the artifact server, applies the
    /// templates, then starts the operator and waits until its caches are filled (so a stop
    /// right after start finds it in a state it can shut down from).
    async fn start(args: &DevArgs, templates: &[(String, String)]) -> Result<Self, DevError> {
        let kube = kube_lite::Server::start(kube_lite::Options::default()).await?;
        let client = kube.client()?;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in crate::api::crds() {
            crds.create(&PostParams::default(), &crd).await?;
        }
        let sim = crate::sim::start(demo_sim_config(args.time_scale)).await?;
        let artifact = ArtifactServer::start().await?;
        let placeholders = Placeholders {
            sim_url: sim.base_url.clone(),
            obs_url: sim.obs_url.clone(),
            artifact_url: artifact.url.clone(),
            artifact_sha256: artifact.sha256.clone(),
        };
        let discovery = Discovery::new(client.clone()).run().await?;
        let mut applied = Vec::with_capacity(templates.len());
        for (file, template) in templates {
            let objects = apply_template(&client, &discovery, &placeholders, template)
                .await
                .map_err(|message| DevError::Manifest {
                    file: file.clone(),
                    message,
                })?;
            applied.push((file.clone(), objects));
        }
        let operator =
            crate::controller::start(settings(args.metrics_addr), client.clone()).await?;
        wait_until_ready(operator.http_addr).await?;
        Ok(Self {
            kube,
            client,
            sim,
            artifact,
            operator,
            applied,
        })
    }

    /// What runs where (never a secret).
    fn banner(&self, kubeconfig: Option<&Path>) -> String {
        let mut text = String::from("otaplane dev: everything in one process, on loopback\n");
        let _ = writeln!(
            text,
            "  Kubernetes API    {} (kube-lite, in memory)",
            self.kube.url()
        );
        let _ = writeln!(
            text,
            "  vendor simulator  {} (ThingSpace /api, IoTDA, IoTaaP /v1), OBS {}, clock x{}",
            self.sim.base_url,
            self.sim.obs_url,
            self.sim.state.clock.time_scale()
        );
        let _ = writeln!(
            text,
            "  firmware          {} ({} bytes, sha256 {})",
            self.artifact.url, self.artifact.size, self.artifact.sha256
        );
        let _ = write!(
            text,
            "  operator          http://{}/metrics",
            self.operator.http_addr
        );
        if let Some(path) = kubeconfig {
            let _ = write!(
                text,
                "\n  kubeconfig        {}  (kubectl --kubeconfig {} get ota -w)",
                path.display(),
                path.display()
            );
        }
        text
    }

    /// Names what was applied, shows progress until everything settled (or `timeout`, or
    /// Ctrl-C), prints the summary, then, with a `kubeconfig` (`--serve`), keeps printing changes
    /// until Ctrl-C.
    async fn demo(
        &self,
        console: &Console,
        timeout: Duration,
        kubeconfig: Option<&Path>,
    ) -> Result<Outcome, DevError> {
        for (file, objects) in &self.applied {
            println!("applied {file}: {}", objects.join(", "));
        }

        let mut interrupt = Box::pin(shutdown_signal());
        let deadline = tokio::time::Instant::now() + timeout;
        let mut board = Board::new(console);
        let snapshot = loop {
            let snapshot = Snapshot::fetch(&self.client).await?;
            board.update(&snapshot);
            if snapshot.settled() {
                break Ok(snapshot);
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                () = tokio::time::sleep_until(deadline) => break Err((Outcome::TimedOut, snapshot)),
                () = &mut interrupt => break Err((Outcome::Interrupted, snapshot)),
            }
        };
        board.finish_bars();
        let (outcome, snapshot) = match snapshot {
            Ok(snapshot) if snapshot.succeeded() => (Outcome::Succeeded, snapshot),
            Ok(snapshot) => (Outcome::Unsuccessful, snapshot),
            Err((outcome, _)) => {
                // The freshest state for the summary.
                (outcome, Snapshot::fetch(&self.client).await?)
            }
        };
        println!();
        print!("{}", summary_table(&snapshot));
        println!("{}", verdict(outcome, &snapshot, timeout, console.started));
        let Some(kubeconfig) = kubeconfig.filter(|_| outcome != Outcome::Interrupted) else {
            return Ok(outcome);
        };

        println!("{}", self.serve_instructions(kubeconfig));
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {
                    board.update(&Snapshot::fetch(&self.client).await?);
                }
                () = &mut interrupt => break,
            }
        }
        println!("stopping");
        Ok(outcome)
    }

    fn serve_instructions(&self, kubeconfig: &Path) -> String {
        format!(
            "\nEverything keeps running (--serve). Use the real kubectl against kube-lite:\n\
             \n  kubectl --kubeconfig {kc} get ota -w\
             \n  kubectl --kubeconfig {kc} describe upgradecampaigns\
             \n  kubectl --kubeconfig {kc} get events\n\
             \nVendor simulator state: curl -s {admin}/state\
             \nOperator metrics:       curl -s http://{metrics}/metrics\
             \nPress Ctrl-C to stop.",
            kc = kubeconfig.display(),
            admin = self.sim.admin_url(),
            metrics = self.operator.http_addr,
        )
    }

    /// Stops the operator (bounded: in-flight reconciles get its shutdown grace), then the
    /// servers.
    async fn stop(self) {
        let bound = SHUTDOWN_GRACE + Duration::from_secs(5);
        match tokio::time::timeout(bound, self.operator.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "the operator stopped with an error"),
            Err(_) => tracing::warn!("the operator did not stop within {bound:?}; exiting anyway"),
        }
        self.artifact.task.abort();
        self.sim.shutdown().await;
        if let Err(error) = self.kube.shutdown().await {
            tracing::warn!(%error, "kube-lite stopped with an error");
        }
    }
}

/// Fills in `template` and applies each document with server-side apply; returns
/// `Kind/name` of each.
async fn apply_template(
    client: &kube::Client,
    discovery: &Discovery,
    placeholders: &Placeholders,
    template: &str,
) -> Result<Vec<String>, String> {
    let text = placeholders.substitute(template)?;
    let documents = serde_saphyr::from_multiple::<serde_json::Value>(&text)
        .map_err(|err| format!("not YAML: {err}"))?;
    let mut applied = Vec::new();
    for document in documents.into_iter().filter(|doc| !doc.is_null()) {
        let object: DynamicObject = serde_json::from_value(document)
            .map_err(|err| format!("not a Kubernetes object: {err}"))?;
        let types = object
            .types
            .clone()
            .ok_or_else(|| format!("{} has no apiVersion and kind", object.name_any()))?;
        let label = format!("{}/{}", types.kind, object.name_any());
        let gvk = GroupVersionKind::try_from(&types).map_err(|err| format!("{label}: {err}"))?;
        let (resource, capabilities) = discovery
            .resolve_gvk(&gvk)
            .ok_or_else(|| format!("{label}: the API server does not serve {}", types.kind))?;
        let api: Api<DynamicObject> = if capabilities.scope == Scope::Namespaced {
            let namespace = object
                .namespace()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
            Api::namespaced_with(client.clone(), &namespace, &resource)
        } else {
            Api::all_with(client.clone(), &resource)
        };
        api.patch(
            &object.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .map_err(|err| format!("applying {label}: {err}"))?;
        applied.push(label);
    }
    Ok(applied)
}

/// Polls the operator's `/readyz` until its caches are filled.
async fn wait_until_ready(addr: SocketAddr) -> Result<(), DevError> {
    let url = format!("http://{addr}/readyz");
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + OPERATOR_READY_TIMEOUT;
    loop {
        let ready = http
            .get(&url)
            .send()
            .await
            .is_ok_and(|response| response.status().is_success());
        if ready {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(DevError::Io {
                context: format!("waiting for the operator's {url}"),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("not ready after {OPERATOR_READY_TIMEOUT:?}"),
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Every otaplane object, as listed at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The OtaProviders, by namespace and name.
    pub providers: Vec<OtaProvider>,
    /// The FirmwarePackages, by namespace and name.
    pub packages: Vec<FirmwarePackage>,
    /// The UpgradeCampaigns, by namespace and name.
    pub campaigns: Vec<UpgradeCampaign>,
}

fn sorted<K: ResourceExt>(mut items: Vec<K>) -> Vec<K> {
    items.sort_by_key(|item| (item.namespace(), item.name_any()));
    items
}

fn condition<'a>(conditions: Option<&'a [Condition]>, type_: &str) -> Option<&'a Condition> {
    find_condition(conditions?, type_)
}

fn is_true(conditions: Option<&[Condition]>, type_: &str) -> bool {
    condition(conditions, type_).is_some_and(|c| c.status == "True")
}

/// Ready=True for the current generation, or Stalled=True: nothing more will happen by itself.
fn ready_settled(
    conditions: Option<&[Condition]>,
    observed: Option<i64>,
    generation: Option<i64>,
) -> bool {
    (is_true(conditions, READY) && observed == generation) || is_true(conditions, STALLED)
}

impl Snapshot {
    /// Lists the three kinds in every namespace.
    pub async fn fetch(client: &kube::Client) -> Result<Self, kube::Error> {
        let params = ListParams::default();
        Ok(Self {
            providers: sorted(Api::all(client.clone()).list(&params).await?.items),
            packages: sorted(Api::all(client.clone()).list(&params).await?.items),
            campaigns: sorted(Api::all(client.clone()).list(&params).await?.items),
        })
    }

    /// Whether nothing will change by itself any more: every provider and package Ready (for
    /// its generation) or Stalled, every campaign in a terminal phase.
    pub fn settled(&self) -> bool {
        let providers = self.providers.iter().all(|p| {
            let status = p.status.as_ref();
            ready_settled(
                status.map(|s| &s.conditions[..]),
                status.and_then(|s| s.observed_generation),
                p.metadata.generation,
            )
        });
        let packages = self.packages.iter().all(|p| {
            let status = p.status.as_ref();
            ready_settled(
                status.map(|s| &s.conditions[..]),
                status.and_then(|s| s.observed_generation),
                p.metadata.generation,
            )
        });
        let campaigns = self
            .campaigns
            .iter()
            .all(|c| campaign_phase(c).is_some_and(CampaignPhase::is_terminal));
        providers && packages && campaigns
    }

    /// Whether every provider and package is Ready and every campaign Succeeded.
    pub fn succeeded(&self) -> bool {
        self.providers
            .iter()
            .all(|p| is_true(p.status.as_ref().map(|s| &s.conditions[..]), READY))
            && self
                .packages
                .iter()
                .all(|p| is_true(p.status.as_ref().map(|s| &s.conditions[..]), READY))
            && self
                .campaigns
                .iter()
                .all(|c| campaign_phase(c) == Some(CampaignPhase::Succeeded))
    }

    fn package(&self, namespace: Option<&str>, name: &str) -> Option<&FirmwarePackage> {
        self.packages
            .iter()
            .find(|p| p.namespace().as_deref() == namespace && p.name_any() == name)
    }
}

fn campaign_phase(campaign: &UpgradeCampaign) -> Option<CampaignPhase> {
    campaign.status.as_ref().and_then(|s| s.phase)
}

/// `name`, or `namespace/name` outside the default namespace.
fn display_name(object: &impl ResourceExt) -> String {
    match object.namespace() {
        Some(namespace) if namespace != DEFAULT_NAMESPACE => {
            format!("{namespace}/{}", object.name_any())
        }
        _ => object.name_any(),
    }
}

/// `Ready=<status>` with the condition's reason and message, or `None` before the first status.
fn readiness(conditions: Option<&[Condition]>) -> Option<String> {
    let ready = condition(conditions, READY)?;
    let mut text = format!("Ready={}", ready.status);
    if ready.status != "True" {
        let stalled = condition(conditions, STALLED).filter(|c| c.status == "True");
        let explain = stalled.unwrap_or(ready);
        if !explain.reason.is_empty() {
            let _ = write!(text, " ({})", explain.reason);
        }
        if !explain.message.is_empty() {
            let _ = write!(text, ": {}", explain.message);
        }
    }
    Some(text)
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(max.saturating_sub(3)).collect();
    short.push_str("...");
    short
}

/// Number of waves the campaign's strategy plans.
fn planned_waves(campaign: &UpgradeCampaign) -> usize {
    let spec = &campaign.spec;
    plan_waves(
        spec.devices.len(),
        spec.strategy.as_ref().and_then(|s| s.waves.as_ref()),
    )
    .map(|waves| waves.len())
    .unwrap_or(0)
}

/// What a campaign is doing, in a few words, from its status alone.
fn campaign_activity(campaign: &UpgradeCampaign, snapshot: &Snapshot) -> String {
    let status = campaign.status.as_ref();
    let conditions = status.map(|s| &s.conditions[..]);
    let counts = status.and_then(|s| s.counts.clone()).unwrap_or_default();
    let planned = planned_waves(campaign);
    let stalled = condition(conditions, STALLED).filter(|c| c.status == "True");
    let phase = campaign_phase(campaign);
    let mut text = match phase {
        None | Some(CampaignPhase::Pending) => {
            let package = &campaign.spec.package_ref.name;
            let found = snapshot.package(campaign.namespace().as_deref(), package);
            let conditions = found
                .and_then(|p| p.status.as_ref())
                .map(|s| &s.conditions[..]);
            match (found, readiness(conditions)) {
                (None, _) => format!("Pending: FirmwarePackage {package} not found"),
                (Some(_), None) => format!("Pending: FirmwarePackage {package} not reconciled yet"),
                (Some(_), Some(_)) if is_true(conditions, READY) => {
                    format!("Pending: FirmwarePackage {package} is Ready, starting")
                }
                (Some(_), Some(ready)) => {
                    format!("Pending: waiting for FirmwarePackage {package}: {ready}")
                }
            }
        }
        Some(CampaignPhase::Scheduled) => {
            let start = campaign
                .spec
                .schedule
                .as_ref()
                .and_then(|s| s.start_at.as_ref())
                .map(|t| t.0.to_string())
                .unwrap_or_default();
            format!("Scheduled: starts at {start}")
        }
        Some(CampaignPhase::Running) => {
            let waves = status.map(|s| &s.waves[..]).unwrap_or_default();
            let soaking = waves
                .last()
                .is_some_and(|w| w.phase == WavePhase::Succeeded)
                && waves.len() < planned;
            if soaking {
                format!("Running: soaking before wave {}/{planned}", waves.len() + 1)
            } else {
                let current = status.and_then(|s| s.current_wave).unwrap_or(0);
                match waves.iter().find(|wave| wave.index == current) {
                    Some(wave) => {
                        let c = &wave.counts;
                        format!(
                            "Running: wave {}/{planned}, {}/{} devices done, {} upgrading, {} failed",
                            current + 1,
                            c.succeeded + c.failed + c.skipped,
                            wave.devices,
                            c.in_progress,
                            c.failed
                        )
                    }
                    None => format!("Running: starting wave {}/{planned}", current + 1),
                }
            }
        }
        Some(other) => {
            let progress = status.and_then(|s| s.progress.clone()).unwrap_or_default();
            let finished = status.map(|s| s.waves.len()).unwrap_or(0);
            format!(
                "{other}: {progress} succeeded, {} failed, {} skipped, {finished}/{planned} waves",
                counts.failed, counts.skipped
            )
        }
    };
    if let Some(stalled) = stalled {
        let _ = write!(text, " [Stalled: {}]", stalled.message);
    }
    text
}

/// The progress bars and state-change lines.
struct Board<'a> {
    console: &'a Console,
    bars: BTreeMap<String, ProgressBar>,
    bars_done: bool,
    /// Last line printed per object, to print only changes.
    last: HashMap<String, String>,
}

impl<'a> Board<'a> {
    fn new(console: &'a Console) -> Self {
        Self {
            console,
            bars: BTreeMap::new(),
            bars_done: false,
            last: HashMap::new(),
        }
    }

    fn changed(&mut self, key: String, line: String) {
        if self.last.get(&key) != Some(&line) {
            self.console.line(&line);
            self.last.insert(key, line);
        }
    }

    /// Prints what changed since the last snapshot and moves the bars.
    fn update(&mut self, snapshot: &Snapshot) {
        for provider in &snapshot.providers {
            let status = provider.status.as_ref();
            let Some(ready) = readiness(status.map(|s| &s.conditions[..])) else {
                continue;
            };
            let vendor = status
                .and_then(|s| s.vendor)
                .or_else(|| provider.spec.vendor())
                .map(|v| v.to_string())
                .unwrap_or_default();
            let name = display_name(provider);
            self.changed(
                format!("OtaProvider/{name}"),
                format!("OtaProvider {name} ({vendor}): {ready}"),
            );
        }
        for package in &snapshot.packages {
            let status = package.status.as_ref();
            let Some(mut ready) = readiness(status.map(|s| &s.conditions[..])) else {
                continue;
            };
            if is_true(status.map(|s| &s.conditions[..]), READY) {
                if let Some(id) = status
                    .and_then(|s| s.at_provider.as_ref())
                    .and_then(|p| p.external_id.as_deref())
                {
                    let _ = write!(ready, ", external id {id}");
                }
                if let Some(artifact) = status.and_then(|s| s.artifact.as_ref()) {
                    let _ = write!(ready, ", {} bytes verified", artifact.size);
                }
            }
            let name = display_name(package);
            self.changed(
                format!("FirmwarePackage/{name}"),
                format!("FirmwarePackage {name}: {ready}"),
            );
        }
        let width = snapshot
            .campaigns
            .iter()
            .map(|c| display_name(c).len())
            .max()
            .unwrap_or(0);
        for campaign in &snapshot.campaigns {
            let name = display_name(campaign);
            let activity = campaign_activity(campaign, snapshot);
            self.campaign_line(campaign, &name, &activity);
            if self.bars_done || !self.console.bars_visible() {
                continue;
            }
            let bar = self.bars.entry(name.clone()).or_insert_with(|| {
                let bar = self
                    .console
                    .multi
                    .add(ProgressBar::new(campaign.spec.devices.len() as u64));
                bar.set_style(bar_style(false));
                bar.set_prefix(format!("{name:width$}"));
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            });
            let status = campaign.status.as_ref();
            let counts = status.and_then(|s| s.counts.clone()).unwrap_or_default();
            if counts.total > 0 {
                bar.set_length(counts.total as u64);
            }
            bar.set_position(counts.succeeded.max(0) as u64);
            bar.set_message(shorten(&activity, 90));
            if let Some(phase) = campaign_phase(campaign).filter(|p| p.is_terminal())
                && !bar.is_finished()
            {
                bar.set_style(bar_style(phase != CampaignPhase::Succeeded));
                bar.finish();
            }
        }
    }

    /// A line when a campaign's phase or a wave's phase changes; without bars, whenever the
    /// line itself changes (device counts included).
    fn campaign_line(&mut self, campaign: &UpgradeCampaign, name: &str, activity: &str) {
        let status = campaign.status.as_ref();
        let phase = campaign_phase(campaign).unwrap_or_default();
        let mut line = format!("UpgradeCampaign {name}: {activity}");
        if matches!(phase, CampaignPhase::Running | CampaignPhase::Paused) {
            let succeeded = status
                .and_then(|s| s.counts.as_ref())
                .map_or(0, |c| c.succeeded);
            let _ = write!(
                line,
                "; {succeeded}/{} devices upgraded",
                campaign.spec.devices.len()
            );
        }
        let key = if self.console.bars_visible() {
            format!(
                "{phase:?} {:?} {:?}",
                status.and_then(|s| s.current_wave),
                status
                    .map(|s| s.waves.iter().map(|w| w.phase).collect::<Vec<_>>())
                    .unwrap_or_default(),
            )
        } else {
            line.clone()
        };
        let id = format!("UpgradeCampaign/{name}#key");
        if self.last.get(&id) != Some(&key) {
            self.console.line(&line);
            self.last.insert(id, key);
        }
    }

    /// Leaves the bars drawn where they are; later updates print lines only.
    fn finish_bars(&mut self) {
        for bar in self.bars.values() {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
        self.bars_done = true;
    }
}

fn bar_style(failed: bool) -> ProgressStyle {
    let template = if failed {
        "{spinner:.red} {prefix} [{bar:30.red/white}] {pos:>3}/{len:<3} {msg}"
    } else {
        "{spinner:.green} {prefix} [{bar:30.green/white}] {pos:>3}/{len:<3} {msg}"
    };
    ProgressStyle::with_template(template)
        .expect("the bar template is valid")
        .tick_chars("|/-\\ ")
        .progress_chars("=> ")
}

/// One row of the summary table.
struct Row {
    kind: &'static str,
    name: String,
    state: String,
    detail: String,
    problem: Option<String>,
}

const NONE: &str = "<none>";

fn rows(snapshot: &Snapshot) -> Vec<Row> {
    let mut rows = Vec::new();
    for provider in &snapshot.providers {
        let status = provider.status.as_ref();
        let conditions = status.map(|s| &s.conditions[..]);
        let ready = condition(conditions, READY).map(|c| c.status.clone());
        rows.push(Row {
            kind: "OtaProvider",
            name: display_name(provider),
            problem: (ready.as_deref() != Some("True"))
                .then(|| readiness(conditions).unwrap_or_else(|| "not reconciled".to_owned())),
            state: ready.unwrap_or_else(|| NONE.to_owned()),
            detail: status
                .and_then(|s| s.vendor)
                .or_else(|| provider.spec.vendor())
                .map(|v| v.to_string())
                .unwrap_or_else(|| NONE.to_owned()),
        });
    }
    for package in &snapshot.packages {
        let status = package.status.as_ref();
        let conditions = status.map(|s| &s.conditions[..]);
        let ready = condition(conditions, READY).map(|c| c.status.clone());
        rows.push(Row {
            kind: "FirmwarePackage",
            name: display_name(package),
            problem: (ready.as_deref() != Some("True"))
                .then(|| readiness(conditions).unwrap_or_else(|| "not reconciled".to_owned())),
            state: ready.unwrap_or_else(|| NONE.to_owned()),
            detail: status
                .and_then(|s| s.at_provider.as_ref())
                .and_then(|p| p.external_id.clone())
                .unwrap_or_else(|| NONE.to_owned()),
        });
    }
    for campaign in &snapshot.campaigns {
        let status = campaign.status.as_ref();
        let phase = campaign_phase(campaign);
        rows.push(Row {
            kind: "UpgradeCampaign",
            name: display_name(campaign),
            problem: (phase != Some(CampaignPhase::Succeeded))
                .then(|| campaign_problem(campaign, snapshot)),
            state: phase.map_or_else(|| NONE.to_owned(), |p| p.to_string()),
            detail: status
                .and_then(|s| s.progress.clone())
                .unwrap_or_else(|| NONE.to_owned()),
        });
    }
    rows
}

/// Why a campaign did not succeed: its failed devices and the Ready or Stalled message.
fn campaign_problem(campaign: &UpgradeCampaign, snapshot: &Snapshot) -> String {
    let status = campaign.status.as_ref();
    let mut text = campaign_activity(campaign, snapshot);
    if let Some(first) = status.and_then(|s| s.failed_devices.first()) {
        let _ = write!(
            text,
            "; first failed device {} in wave {}: {}",
            first.device, first.wave, first.reason
        );
    }
    if let Some(ready) = condition(status.map(|s| &s.conditions[..]), READY)
        && ready.status != "True"
        && !ready.message.is_empty()
    {
        let _ = write!(text, "; {}", ready.message);
    }
    text
}

/// The summary, like `kubectl get ota`: one row per object, a MESSAGE column when something
/// did not succeed.
pub fn summary_table(snapshot: &Snapshot) -> String {
    let rows = rows(snapshot);
    let with_problems = rows.iter().any(|row| row.problem.is_some());
    let mut table: Vec<Vec<String>> = vec![
        ["KIND", "NAME", "READY/PHASE", "PROGRESS/EXTERNAL ID"]
            .map(str::to_owned)
            .to_vec(),
    ];
    if with_problems {
        table[0].push("MESSAGE".to_owned());
    }
    for row in rows {
        let mut cells = vec![row.kind.to_owned(), row.name, row.state, row.detail];
        if with_problems {
            cells.push(row.problem.unwrap_or_default());
        }
        table.push(cells);
    }
    let columns = table[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for cells in &table {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == columns {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}   ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The closing sentence.
fn verdict(outcome: Outcome, snapshot: &Snapshot, timeout: Duration, started: Instant) -> String {
    let campaigns = snapshot.campaigns.len();
    let succeeded = snapshot
        .campaigns
        .iter()
        .filter(|c| campaign_phase(c) == Some(CampaignPhase::Succeeded))
        .count();
    let elapsed = started.elapsed().as_secs_f64();
    match outcome {
        Outcome::Succeeded => format!(
            "\nAll {campaigns} campaigns succeeded; every provider and package is Ready ({elapsed:.1}s)."
        ),
        Outcome::Unsuccessful => format!(
            "\n{succeeded} of {campaigns} campaigns succeeded; see MESSAGE for what did not ({elapsed:.1}s)."
        ),
        Outcome::TimedOut => format!(
            "\nTimed out after {}: {succeeded} of {campaigns} campaigns succeeded; see MESSAGE (raise --timeout, or look at the operator log with --log-level info).",
            GoDurationDisplay(timeout)
        ),
        Outcome::Interrupted => format!(
            "\nInterrupted after {elapsed:.1}s: {succeeded} of {campaigns} campaigns succeeded."
        ),
    }
}

/// A [`Duration`] written like `5m0s` / `90s`.
struct GoDurationDisplay(Duration);

impl std::fmt::Display for GoDurationDisplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.0.as_secs();
        match (secs / 60, secs % 60) {
            (0, s) => write!(f, "{s}s"),
            (m, 0) => write!(f, "{m}m"),
            (m, s) => write!(f, "{m}m{s}s"),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::api::{
        DeviceCounts, LocalObjectReference, OtaProviderSpec, OtaProviderStatus,
        UpgradeCampaignSpec, UpgradeCampaignStatus, Vendor,
    };

    fn placeholders() -> Placeholders {
        Placeholders {
            sim_url: "http://127.0.0.1:1".into(),
            obs_url: "http://127.0.0.1:2".into(),
            artifact_url: "http://127.0.0.1:3/fw.bin".into(),
            artifact_sha256: "f".repeat(64),
        }
    }

    #[test]
    fn placeholders_are_filled_in_outside_comments() {
        let text = "# uses ${UNKNOWN} in a comment\nurl: ${SIM_URL}/api\nobs: ${OBS_URL}\n\
                    artifact: {url: ${ARTIFACT_URL}, sha256: ${ARTIFACT_SHA256}}\n";
        let filled = placeholders().substitute(text).unwrap();
        assert_eq!(
            filled,
            format!(
                "# uses ${{UNKNOWN}} in a comment\nurl: http://127.0.0.1:1/api\nobs: http://127.0.0.1:2\n\
                 artifact: {{url: http://127.0.0.1:3/fw.bin, sha256: {}}}\n",
                "f".repeat(64)
            )
        );
    }

    #[test]
    fn unknown_or_unterminated_placeholders_are_refused_with_their_line() {
        let err = placeholders()
            .substitute("a: 1\nurl: ${SIM_ULR}/api\n")
            .unwrap_err();
        assert!(
            err.starts_with("line 2: unknown placeholder ${SIM_ULR}"),
            "{err}"
        );
        assert!(err.contains("${ARTIFACT_SHA256}"), "{err}");
        let err = placeholders().substitute("url: ${SIM_URL\n").unwrap_err();
        assert!(err.contains("line 1: unterminated"), "{err}");
    }

    #[test]
    fn the_demo_firmware_is_deterministic() {
        let image = demo_firmware();
        assert_eq!(image.len(), DEMO_FIRMWARE_SIZE);
        assert_eq!(image, demo_firmware());
        assert!(image.starts_with(b"OTAPLANE DEMO FIRMWARE"));
        assert_eq!(sha256_hex(&image), sha256_hex(&demo_firmware()));
        assert_ne!(sha256_hex(&image), sha256_hex(&image[1..]));
    }

    #[test]
    fn the_demo_fleet_has_every_vendor_on_the_base_version() {
        let fleet = demo_sim_config(60.0).fleet.devices;
        for (vendor, count) in [
            (SimVendor::ThingSpace, 10),
            (SimVendor::Iotda, 10),
            (SimVendor::Iotaap, 3),
        ] {
            assert_eq!(
                fleet.iter().filter(|d| d.vendor == vendor).count(),
                count,
                "{vendor}"
            );
        }
        assert!(
            fleet
                .iter()
                .filter(|d| d.vendor != SimVendor::Iotaap)
                .all(|d| { d.version.as_deref() == Some(DEMO_BASE_VERSION) })
        );
    }

    fn meta(name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(DEFAULT_NAMESPACE.into()),
            generation: Some(1),
            ..ObjectMeta::default()
        }
    }

    fn ready(status: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: READY.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: Some(1),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::UNIX_EPOCH,
            ),
        }
    }

    fn provider(status: &str) -> OtaProvider {
        OtaProvider {
            metadata: meta("p"),
            spec: OtaProviderSpec::default(),
            status: Some(OtaProviderStatus {
                observed_generation: Some(1),
                conditions: vec![ready(status, "LoginFailed", "the vendor said no")],
                vendor: Some(Vendor::Iotaap),
                authenticated_at: None,
            }),
        }
    }

    fn campaign(phase: Option<CampaignPhase>) -> UpgradeCampaign {
        UpgradeCampaign {
            metadata: meta("c"),
            spec: UpgradeCampaignSpec {
                package_ref: LocalObjectReference::new("missing"),
                devices: vec!["d1".into(), "d2".into()],
                ..UpgradeCampaignSpec::default()
            },
            status: phase.map(|phase| UpgradeCampaignStatus {
                phase: Some(phase),
                progress: Some("2/2".into()),
                counts: Some(DeviceCounts {
                    total: 2,
                    succeeded: 2,
                    ..DeviceCounts::default()
                }),
                ..UpgradeCampaignStatus::default()
            }),
        }
    }

    #[test]
    fn settled_and_succeeded_follow_the_status() {
        let mut snapshot = Snapshot {
            providers: vec![provider("True")],
            packages: Vec::new(),
            campaigns: vec![campaign(Some(CampaignPhase::Running))],
        };
        assert!(!snapshot.settled());
        snapshot.campaigns = vec![campaign(Some(CampaignPhase::Succeeded))];
        assert!(snapshot.settled() && snapshot.succeeded());
        snapshot.campaigns = vec![campaign(Some(CampaignPhase::Failed))];
        assert!(snapshot.settled() && !snapshot.succeeded());
        snapshot.campaigns = vec![campaign(Some(CampaignPhase::Succeeded))];
        snapshot.providers = vec![provider("False")];
        assert!(
            !snapshot.settled(),
            "a provider that is not Ready may still become Ready"
        );
    }

    #[test]
    fn the_summary_lines_up_like_kubectl_and_explains_what_failed() {
        let snapshot = Snapshot {
            providers: vec![provider("True")],
            packages: Vec::new(),
            campaigns: vec![campaign(Some(CampaignPhase::Succeeded))],
        };
        assert_eq!(
            summary_table(&snapshot),
            "KIND              NAME   READY/PHASE   PROGRESS/EXTERNAL ID\n\
             OtaProvider       p      True          IoTaaP\n\
             UpgradeCampaign   c      Succeeded     2/2\n"
        );
        let snapshot = Snapshot {
            providers: vec![provider("False")],
            packages: Vec::new(),
            campaigns: vec![campaign(None)],
        };
        let table = summary_table(&snapshot);
        assert!(table.starts_with("KIND "), "{table}");
        assert!(
            table.lines().next().unwrap().ends_with("MESSAGE"),
            "{table}"
        );
        assert!(
            table.contains("Ready=False (LoginFailed): the vendor said no"),
            "{table}"
        );
        assert!(
            table.contains("<none>")
                && table.contains("Pending: FirmwarePackage missing not found"),
            "{table}"
        );
    }

    #[test]
    fn durations_read_like_the_flag() {
        assert_eq!(
            GoDurationDisplay(Duration::from_secs(300)).to_string(),
            "5m"
        );
        assert_eq!(
            GoDurationDisplay(Duration::from_secs(90)).to_string(),
            "1m30s"
        );
        assert_eq!(
            GoDurationDisplay(Duration::from_secs(45)).to_string(),
            "45s"
        );
    }
}
