//! An in-memory Kubernetes API server for end-to-end tests and local development.
//!
//! It speaks the apiserver's JSON protocol closely enough for kube-rs controllers and the real `kubectl`:
//! discovery, OpenAPI v3, CRUD with resourceVersions and generations, every patch type including
//! server-side apply with field managers, status subresources, finalizers, garbage collection, watches
//! with history replay and bookmarks, server-side printing, CRD registration and CRD schema/CEL validation.
//!
//! Deliberate simplifications: request bodies are JSON or YAML (protobuf only for the Secret, ConfigMap,
//! Namespace and ServiceAccount bodies `kubectl create` sends); every served version of a CRD shares one
//! stored form (no conversion webhooks); server-side apply treats lists as atomic; discovery is the legacy (non-aggregated) form and only OpenAPI v3 is served;
//! there is no authentication, authorization or admission control.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kube_lite::Error> {
//! let server = kube_lite::Server::start(kube_lite::Options::default()).await?;
//! let client = server.client()?;
//! # Ok(()) }
//! ```

pub mod apply;
pub mod discovery;
pub mod error;
pub mod faults;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod selectors;
pub mod server;
pub mod store;
pub mod table;
pub mod validation;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

pub use error::{ApiError, Error};
pub use faults::Faults;
use server::Shared;
use store::Store;

/// Server settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// When set, objects are loaded from this file at start and saved to it while running and at shutdown.
    pub state_file: Option<PathBuf>,
    /// How many change events are kept for watch resumption; older resourceVersions get 410 Expired.
    pub history_limit: usize,
    /// Interval of BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            port: 0,
            state_file: None,
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(5),
        }
    }
}

/// A running server. Dropping it stops serving (without saving state; use [`Server::shutdown`] for that).
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    state_file: Option<PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

fn state_error(path: &std::path::Path, message: impl ToString) -> Error {
    Error::State {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn save(shared: &Shared, path: &std::path::Path) -> Result<(), Error> {
    let snapshot = {
        let mut store = shared
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        store.dirty = false;
        store.snapshot()
    };
    let text = serde_json::to_vec(&snapshot).map_err(|e| state_error(path, e))?;
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).map_err(|e| state_error(path, e))?;
    std::fs::rename(&temporary, path).map_err(|e| state_error(path, e))
}

impl Server {
    /// Binds 127.0.0.1:`port`, loads the state file if present, and starts serving.
    pub async fn start(options: Options) -> Result<Self, Error> {
        let addr = format!("127.0.0.1:{}", options.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| Error::Bind {
                addr: addr.clone(),
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let gc_wake = Arc::new(Notify::new());
        let mut store = Store::new(options.history_limit, gc_wake.clone());
        if let Some(path) = options.state_file.as_ref().filter(|p| p.exists()) {
            let text = std::fs::read(path).map_err(|e| state_error(path, e))?;
            let snapshot: serde_json::Value =
                serde_json::from_slice(&text).map_err(|e| state_error(path, e))?;
            store.restore(&snapshot).map_err(|e| state_error(path, e))?;
        }
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            faults: Faults::default(),
            bookmark_interval: options.bookmark_interval,
            gc_wake: gc_wake.clone(),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let app = server::router(shared.clone());
        let serving = tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(error) = served.await {
                tracing::warn!(%error, "kube-lite stopped serving");
            }
        });
        let gc_shared = shared.clone();
        let mut background = vec![tokio::spawn(async move {
            loop {
                gc_wake.notified().await;
                while gc_shared
                    .store
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .collect_garbage()
                {}
            }
        })];
        if let Some(path) = options.state_file.clone() {
            let saver = shared.clone();
            background.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tick.tick().await;
                    let dirty = saver
                        .store
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .dirty;
                    if dirty && let Err(error) = save(&saver, &path) {
                        tracing::warn!(%error, "kube-lite could not save its state");
                    }
                }
            }));
        }
        Ok(Server {
            addr,
            shared,
            state_file: options.state_file,
            stop: Some(stop),
            serving: Some(serving),
            background,
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A kube client for this server, with `default` as its namespace.
    pub fn client(&self) -> Result<kube::Client, Error> {
        let url: axum::http::Uri = self
            .url()
            .parse()
            .map_err(|e| Error::Client(format!("{e}")))?;
        let config = kube::Config::new(url);
        kube::Client::try_from(config).map_err(|e| Error::Client(e.to_string()))
    }

    /// A kubeconfig pointing at this server (no credentials), for kubectl.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig_yaml(&self.url())
    }

    /// Fault injection controls.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .rv
    }

    /// Writes the state file now (no-op without one).
    pub fn save_state(&self) -> Result<(), Error> {
        match &self.state_file {
            Some(path) => save(&self.shared, path),
            None => Ok(()),
        }
    }

    /// Closes watches and connections, stops serving, and saves the state file. The port is free afterwards.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        self.stop_serving().await;
        self.save_state()
    }

    async fn stop_serving(&mut self) {
        self.shared.faults.drop_watches();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut serving) = self.serving.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut serving)
                .await
                .is_err()
        {
            serving.abort();
        }
        for task in self.background.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.faults.drop_watches();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for task in self.background.drain(..) {
            task.abort();
        }
    }
}

/// A kubeconfig for a kube-lite server at `url`.
pub fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-lite\n  cluster:\n    server: {url}\n\
         contexts:\n- name: kube-lite\n  context:\n    cluster: kube-lite\n    user: kube-lite\n    namespace: default\n\
         current-context: kube-lite\nusers:\n- name: kube-lite\n  user: {{}}\n"
    )
}
