//! The vendor simulator (`otaplane sim`): ThingSpace, IoTDA, OBS and IoTaaP on loopback, with
//! a simulated device fleet, a virtual clock and fault injection.
//!
//! # Listeners
//!
//! The **main listener** serves, by path prefix:
//!
//! | prefix | vendor | client base URL |
//! |---|---|---|
//! | `/api/...` | ThingSpace (`/api/ts/v1`, `/api/m2m/v1`, `/api/fota/v2`) | [`SimHandle::thingspace_url`] (`http://HOST/api`) |
//! | `/v5/iot/...`, `/v3/auth/tokens`, `/v3/projects` | IoTDA and its IAM | [`SimHandle::iotda_url`] |
//! | `/v1/...` | IoTaaP (management and device-facing paths on one host) | [`SimHandle::iotaap_url`] (`http://HOST/v1`) |
//! | `/_sim/...` | the admin API ([`admin`]) | [`SimHandle::admin_url`] |
//!
//! **OBS** has its own listener ([`SimHandle::obs_url`]), since S3 path-style `/{bucket}/{key}`
//! would swallow every path; it also accepts virtual-host style (`Host: {bucket}.anything`).
//!
//! Unknown routes answer in the owning vendor's style: ThingSpace a WSO2 fault `900906`,
//! IoTDA an `APIGW.0101` error, anything else Express's HTML `Cannot GET /path` (IoTaaP).
//!
//! # Shared state
//!
//! Every handler gets [`SharedState`] (`Arc<SimState>`): the configuration, the virtual
//! [`clock`], the device [`fleet`], the fault injector and call counter ([`faults`]), the
//! upload [`spool`], and each vendor's own state.
//!
//! # Rules for vendor modules
//!
//! - Each vendor module exposes `routes() -> Router<SharedState>` with full paths (no
//!   `nest`), and never sets a `fallback` on main-listener routes ([`main_router`] owns it).
//! - Fault injection runs as a route layer, so it only sees requests that matched a route:
//!   prefer routes (`/{bucket}/{*key}`) over a fallback for anything that should be faultable.
//! - Error bodies go through [`vendor_error`] / [`VendorError`] so injected and real errors
//!   look alike; pass the vendor's own code.
//! - Uploads stream through [`spool`] (bounded memory); the configured upload limit is
//!   `config.max_upload_bytes`.
//! - Anything that moves with time reads [`SimState::now`]; device outcomes come from
//!   [`fleet::Fleet`].
//! - The admin API reads vendor state through [`VendorAdmin`].
//!
//! # Starting
//!
//! [`start`] binds both listeners (127.0.0.1 with a free port by default) and returns a
//! [`SimHandle`]; tests call it in-process, `otaplane sim` calls [`run`].

pub mod admin;
pub mod clock;
pub mod config;
pub mod errors;
pub mod faults;
pub mod fleet;
pub mod iotaap;
pub mod iotda;
pub mod multipart;
pub mod obs;
pub mod spool;
pub mod thingspace;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use axum::serve::ListenerExt;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::SimConfig;
pub use errors::{VendorError, vendor_error};

use clock::SimClock;
use faults::{CallCounter, FaultInjector, Listener};
use fleet::Fleet;
use spool::Spool;

/// The four simulated vendors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    #[serde(alias = "ThingSpace")]
    ThingSpace,
    #[serde(alias = "IoTDA")]
    Iotda,
    #[serde(alias = "OBS")]
    Obs,
    #[serde(alias = "IoTaaP")]
    Iotaap,
}

impl Vendor {
    /// All vendors.
    pub const ALL: [Vendor; 4] = [Self::ThingSpace, Self::Iotda, Self::Obs, Self::Iotaap];

    /// The lower-case name used in configuration, admin JSON and query strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ThingSpace => "thingspace",
            Self::Iotda => "iotda",
            Self::Obs => "obs",
            Self::Iotaap => "iotaap",
        }
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Vendor {
    type Err = SimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                SimError::Config(format!(
                    "unknown vendor {s:?} (thingspace, iotda, obs, iotaap)"
                ))
            })
    }
}

/// Errors starting or configuring the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration is invalid. Not retryable: fix the file or flags.
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    /// A listener could not be bound. Retryable if the port may become free.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// Local I/O failed (temporary directory, socket). Retryable.
    #[error("simulator I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl SimError {
    /// Whether trying again may succeed without changing the configuration.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Config(_))
    }
}

/// What the admin API needs from each vendor's state.
pub trait VendorAdmin {
    /// The vendor's part of `GET /_sim/state` (packages, campaigns, ...).
    fn snapshot(&self, sim: &SimState) -> serde_json::Value;
    /// Invalidates every token or session issued so far (`POST /_sim/expire-tokens`).
    fn expire_tokens(&self, sim: &SimState);
}

/// Everything the simulator knows, shared by all handlers as [`SharedState`].
#[derive(Debug)]
pub struct SimState {
    pub config: SimConfig,
    pub clock: SimClock,
    pub fleet: Fleet,
    pub faults: FaultInjector,
    pub calls: CallCounter,
    pub spool: Spool,
    pub thingspace: thingspace::ThingSpaceState,
    pub iotaap: iotaap::IotaapState,
    pub iotda: iotda::IotdaState,
    pub obs: obs::ObsState,
}

/// The state as handlers receive it.
pub type SharedState = Arc<SimState>;

impl SimState {
    /// Builds the state from a configuration.
    pub fn new(config: SimConfig) -> Result<Self, SimError> {
        if !(config.time_scale.is_finite() && config.time_scale >= 0.0) {
            return Err(SimError::Config(format!(
                "time_scale must be a finite number >= 0, got {}",
                config.time_scale
            )));
        }
        let start = config.start_time.unwrap_or_else(Timestamp::now);
        let clock = SimClock::new(start, config.time_scale);
        let fleet = Fleet::new(config.fleet.clone(), config.seed, start);
        let faults = FaultInjector::new(config.faults.clone(), config.seed);
        Ok(Self {
            thingspace: thingspace::ThingSpaceState::new(&config),
            iotaap: iotaap::IotaapState::new(&config),
            iotda: iotda::IotdaState::new(&config),
            obs: obs::ObsState::new(&config),
            spool: Spool::new()?,
            calls: CallCounter::default(),
            config,
            clock,
            fleet,
            faults,
        })
    }

    /// The current virtual time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// The router of the main listener (ThingSpace, IoTDA, IoTaaP, admin), with fault injection
/// and call counting.
pub fn main_router(state: SharedState) -> Router {
    let routes = Router::new()
        .merge(thingspace::routes(&state.config))
        .merge(iotaap::routes(&state.config))
        .merge(iotda::routes())
        .merge(admin::routes())
        .fallback(main_fallback)
        .method_not_allowed_fallback(main_fallback);
    with_middleware(routes, state, Listener::Main)
}

/// The router of the OBS listener, with fault injection and call counting.
pub fn obs_router(state: SharedState) -> Router {
    with_middleware(obs::routes(), state, Listener::Obs)
}

fn with_middleware(routes: Router<SharedState>, state: SharedState, listener: Listener) -> Router {
    routes
        .route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), listener),
            faults::inject_faults,
        ))
        .layer(axum::middleware::from_fn_with_state(
            (state.clone(), listener),
            faults::count_calls,
        ))
        .with_state(state)
}

async fn main_fallback(request: Request) -> Response {
    let path = request.uri().path();
    match faults::vendor_for(Listener::Main, path) {
        Some(Vendor::ThingSpace) => vendor_error(
            Vendor::ThingSpace,
            StatusCode::BAD_REQUEST,
            Some("900906"),
            "No matching resource found in the API for the given request",
        ),
        Some(Vendor::Iotda) => vendor_error(
            Vendor::Iotda,
            StatusCode::NOT_FOUND,
            Some("APIGW.0101"),
            "The API does not exist or has not been published in the environment",
        ),
        _ => errors::express_not_found(request.method().as_str(), path),
    }
}

/// A running simulator. Dropping it stops the listeners too.
#[derive(Debug)]
pub struct SimHandle {
    /// `http://127.0.0.1:PORT` of the main listener (no trailing slash).
    pub base_url: String,
    /// `http://127.0.0.1:PORT` of the OBS listener.
    pub obs_url: String,
    pub main_addr: SocketAddr,
    pub obs_addr: SocketAddr,
    pub state: SharedState,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl SimHandle {
    /// ThingSpace base URL (`{base_url}/api`), mirroring `https://thingspace.verizon.com/api`.
    pub fn thingspace_url(&self) -> String {
        format!("{}/api", self.base_url)
    }

    /// IoTDA endpoint (`{base_url}`; paths start with `/v5/iot/{project_id}`).
    pub fn iotda_url(&self) -> String {
        self.base_url.clone()
    }

    /// IoTaaP base URL (`{base_url}/v1`), for both `api.iotaap.io/v1` and `ota.iotaap.io/v1`.
    pub fn iotaap_url(&self) -> String {
        format!("{}/v1", self.base_url)
    }

    /// Admin API base (`{base_url}/_sim`).
    pub fn admin_url(&self) -> String {
        format!("{}/_sim", self.base_url)
    }

    /// Stops accepting connections, lets in-flight requests finish, and waits for both
    /// listeners to close.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        for task in self.tasks.drain(..) {
            task.await.ok();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// Starts the simulator on the configured addresses (127.0.0.1, free ports by default).
pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let main_listener = bind(config.listen.unwrap_or(any_port)).await?;
    let obs_listener = bind(config.obs_listen.unwrap_or(any_port)).await?;
    let main_addr = main_listener.local_addr()?;
    let obs_addr = obs_listener.local_addr()?;
    let state: SharedState = Arc::new(SimState::new(config)?);
    let (shutdown, watcher) = watch::channel(false);
    let tasks = vec![
        serve(main_listener, main_router(state.clone()), watcher.clone()),
        serve(obs_listener, obs_router(state.clone()), watcher),
    ];
    Ok(SimHandle {
        base_url: format!("http://{main_addr}"),
        obs_url: format!("http://{obs_addr}"),
        main_addr,
        obs_addr,
        state,
        shutdown,
        tasks,
    })
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, SimError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind { addr, source })
}

fn serve(
    listener: TcpListener,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<std::io::Result<()>> {
    let listener = listener.tap_io(|tcp| {
        tcp.set_nodelay(true).ok();
    });
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.wait_for(|stop| *stop).await.ok();
            })
            .await
    })
}

/// `otaplane sim`: run the vendor simulator in the foreground.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// YAML configuration file (accounts, devices, behaviour rules, faults). Built-in demo
    /// defaults apply to everything the file leaves out.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address of the main listener (ThingSpace, IoTDA, IoTaaP, admin) [default: the file's
    /// listen, else 127.0.0.1:8080]. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Address of the OBS listener [default: the file's obs_listen, else 127.0.0.1:9000].
    #[arg(long, value_name = "ADDR")]
    pub obs_listen: Option<SocketAddr>,
    /// Virtual seconds per real second (e.g. 60 makes a campaign minute pass in a second);
    /// overrides the file's time_scale.
    #[arg(long, value_name = "F")]
    pub time_scale: Option<f64>,
    /// Seed for behaviour rules, fault rates and generated tokens; overrides the file's seed.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

impl SimArgs {
    /// The configuration these arguments describe.
    pub fn load_config(&self) -> Result<SimConfig, SimError> {
        let mut config = match &self.config {
            Some(path) => SimConfig::from_file(path)?,
            None => SimConfig::default(),
        };
        config.listen = self
            .listen
            .or(config.listen)
            .or(Some(SocketAddr::from(([127, 0, 0, 1], 8080))));
        config.obs_listen = self
            .obs_listen
            .or(config.obs_listen)
            .or(Some(SocketAddr::from(([127, 0, 0, 1], 9000))));
        if let Some(scale) = self.time_scale {
            config.time_scale = scale;
        }
        if let Some(seed) = self.seed {
            config.seed = seed;
        }
        Ok(config)
    }
}

/// Runs the simulator until Ctrl-C, printing its endpoints and demo identities (never secrets).
pub async fn run(args: SimArgs) -> Result<(), SimError> {
    let config = args.load_config()?;
    let handle = start(config).await?;
    println!("{}", banner(&handle));
    tokio::signal::ctrl_c().await?;
    handle.shutdown().await;
    Ok(())
}

/// The start-up summary: endpoints and account identities, without secrets.
pub fn banner(handle: &SimHandle) -> String {
    let state = &handle.state;
    let mut lines = vec![
        "otaplane vendor simulator".to_owned(),
        format!("  ThingSpace  {}", handle.thingspace_url()),
        format!("  IoTDA       {}", handle.iotda_url()),
        format!("  IoTaaP      {}", handle.iotaap_url()),
        format!("  OBS         {}", handle.obs_url),
        format!("  admin       {}/state", handle.admin_url()),
        format!(
            "  clock       {} (x{})",
            state.clock.started_at(),
            state.clock.time_scale()
        ),
    ];
    for account in &state.config.thingspace.accounts {
        lines.push(format!(
            "  ThingSpace account {} (client id {}, user {})",
            account.name, account.client_id, account.username
        ));
    }
    for user in &state.config.iotaap.users {
        lines.push(format!("  IoTaaP user {} (id {})", user.email, user.id));
    }
    lines.extend(iotda::describe(&state.config));
    lines.extend(obs::describe(&state.config));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listen: Option<&str>, config: Option<PathBuf>) -> SimArgs {
        SimArgs {
            config,
            listen: listen.map(|l| l.parse().unwrap()),
            obs_listen: None,
            time_scale: Some(10.0),
            seed: None,
        }
    }

    #[test]
    fn cli_addresses_take_precedence_over_the_file_then_the_fixed_defaults() {
        let config = args(None, None).load_config().unwrap();
        assert_eq!(config.listen, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(config.obs_listen, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(config.time_scale, 10.0);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sim.yaml");
        std::fs::write(&file, "listen: 127.0.0.1:7000\nseed: 5\n").unwrap();
        let config = args(None, Some(file.clone())).load_config().unwrap();
        assert_eq!(config.listen, Some("127.0.0.1:7000".parse().unwrap()));
        assert_eq!(config.seed, 5);
        let config = args(Some("127.0.0.1:0"), Some(file)).load_config().unwrap();
        assert_eq!(config.listen, Some("127.0.0.1:0".parse().unwrap()));
    }

    #[test]
    fn vendor_names_parse_case_insensitively() {
        assert_eq!("IoTDA".parse::<Vendor>().unwrap(), Vendor::Iotda);
        assert_eq!("thingspace".parse::<Vendor>().unwrap(), Vendor::ThingSpace);
        assert!("aws".parse::<Vendor>().is_err());
    }

    #[tokio::test]
    async fn banner_names_users_but_never_passwords() {
        let handle = start(SimConfig::default()).await.unwrap();
        let text = banner(&handle);
        assert!(
            text.contains("demo-user") && text.contains("demo@iotaap.local"),
            "{text}"
        );
        assert!(
            !text.contains("demo-password") && !text.contains("demo-client-secret"),
            "{text}"
        );
        handle.shutdown().await;
    }
}
