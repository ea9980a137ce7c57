//! The operator runtime (`otaplane run`): kube-rs controllers for the three kinds, sharing one
//! [`Context`] per watched scope, behind optional leader election, with `/metrics`, `/healthz`
//! and `/readyz` served on one address.
//!
//! Data flows one way: a watch event (or a drift signal, or a requeue) reaches a reconciler,
//! which loads what it needs from the caches, decides (see [`crate::reconcile`]), acts through a
//! [`crate::vendor::VendorClient`] and writes status with server-side apply.

pub mod args;
pub mod campaign;
pub mod context;
pub mod error;
pub mod health;
pub mod metrics;
pub mod package;
pub mod provider;
pub mod vendors;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use tokio::sync::watch;
use tracing::Instrument;

pub use context::Context;
pub use error::ControllerError;
pub use metrics::Metrics;

use crate::api::{FirmwarePackage, OtaProvider, UpgradeCampaign};
use crate::artifact::{ArtifactFetcher, ArtifactPolicy};
use crate::reconcile::PollIntervals;
use crate::vendor::HttpPolicy;
use health::Health;
use vendors::{VendorClients, referenced_secrets};

/// Name of the controller in Events (`reportingController`).
pub const CONTROLLER_NAME: &str = "otaplane.io/otaplane";

/// Leader election on a coordination.k8s.io Lease.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// Name of the Lease.
    pub lease_name: String,
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease lasts without renewal; a standby takes over after it expires.
    pub lease_duration: Duration,
    /// How long before expiry the holder renews.
    pub renew_grace: Duration,
}

/// Everything `otaplane run` can be told.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where `/metrics`, `/healthz` and `/readyz` are served (port 0 picks one).
    pub http_addr: SocketAddr,
    /// Namespaces to watch; empty: all.
    pub watch_namespaces: Vec<String>,
    /// Leader election; `None` acts at once (a single replica).
    pub leader_election: Option<LeaderElection>,
    /// Reconciles running at once, per kind.
    pub concurrency: u16,
    /// How often providers re-check credentials and drift.
    pub resync_interval: Duration,
    /// Artifact fetch policy (allowed networks, spool directory).
    pub artifact_policy: ArtifactPolicy,
    /// Vendor HTTP policy (timeouts, retries).
    pub http_policy: HttpPolicy,
    /// Campaign polling intervals.
    pub campaign_polling: PollIntervals,
    /// How long a shutdown waits for in-flight reconciles (an upload) before abandoning them.
    pub shutdown_grace: Duration,
    /// This replica's name in Events.
    pub instance: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            watch_namespaces: Vec::new(),
            leader_election: None,
            concurrency: 8,
            resync_interval: Duration::from_secs(600),
            artifact_policy: ArtifactPolicy::default(),
            http_policy: HttpPolicy::default(),
            campaign_polling: PollIntervals::default(),
            shutdown_grace: Duration::from_secs(25),
            instance: default_identity(),
        }
    }
}

/// The pod name (`POD_NAME`), else the host name, else a random name.
pub fn default_identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| format!("otaplane-{}", uuid::Uuid::new_v4().simple()))
}

/// Why the operator could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The health/metrics address could not be bound.
    #[error("serving {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Leader election failed.
    #[error("leader election: {0}")]
    LeaderElection(#[from] kube_lease_manager::LeaseManagerError),
}

/// A running operator.
pub struct OperatorHandle {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub http_addr: SocketAddr,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), RunError>>,
}

impl OperatorHandle {
    /// Graceful shutdown: no new reconciles; in-flight ones get `shutdown_grace` to finish.
    pub async fn shutdown(self) -> Result<(), RunError> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or(Ok(()))
    }

    /// Stops at once, wherever it is (what a crash or `kill -9` does to in-flight work).
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Waits until the operator stops by itself (an error) or is shut down.
    pub async fn wait(self) -> Result<(), RunError> {
        let stop = self.stop;
        let result = self.task.await.unwrap_or(Ok(()));
        drop(stop);
        result
    }

    /// A sender that triggers graceful shutdown (for signal handlers).
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

/// Starts the operator on `client`: binds the HTTP address, then runs the controllers (after
/// winning the lease, with leader election) until shut down.
pub async fn start(settings: Settings, client: kube::Client) -> Result<OperatorHandle, RunError> {
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .map_err(|source| RunError::Bind {
            addr: settings.http_addr,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| RunError::Bind {
        addr: settings.http_addr,
        source,
    })?;
    let (stop, stop_rx) = watch::channel(false);
    let server = health::serve(listener, metrics.clone(), health.clone());
    let task = tokio::spawn({
        let metrics = metrics.clone();
        async move {
            // Aborting this task drops the server and every controller with it.
            let server = AbortOnDrop(tokio::spawn(server));
            let result = run(Arc::new(settings), client, metrics, health, stop_rx).await;
            drop(server);
            result
        }
    });
    tracing::info!(%http_addr, "serving /metrics, /healthz and /readyz");
    Ok(OperatorHandle {
        http_addr,
        metrics,
        stop,
        task,
    })
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    // An error means every sender is gone: nobody can ask for a stop any more, so stop.
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn run(
    settings: Arc<Settings>,
    client: kube::Client,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let shared = Shared {
        vendors: Arc::new(VendorClients::new(
            settings.http_policy.clone(),
            metrics.call_observer(),
        )),
        fetcher: ArtifactFetcher::new(settings.artifact_policy.clone()),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: CONTROLLER_NAME.into(),
                instance: Some(settings.instance.clone()),
            },
        ),
        settings: settings.clone(),
        client: client.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
    };
    let Some(election) = settings.leader_election.clone() else {
        metrics.leader.set(1);
        shared.run_controllers(stopped(stop)).await;
        metrics.leader.set(0);
        return Ok(());
    };
    let manager =
        kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &election.lease_name)
            .with_namespace(&election.lease_namespace)
            .with_identity(&election.identity)
            .with_duration(election.lease_duration.as_secs().max(1))
            .with_grace(election.renew_grace.as_secs().max(1))
            .build()
            .await?;
    let (mut leader, lease_task) = manager.watch().await;
    // A standby is healthy and ready: it takes over when the leader goes.
    health.set_ready(true);
    loop {
        tracing::info!(identity = %election.identity, lease = %election.lease_name, "waiting for the leader lease");
        tokio::select! {
            _ = stopped(stop.clone()) => break,
            acquired = leader.wait_for(|is_leader| *is_leader) => {
                if acquired.is_err() { break; }
            }
        }
        tracing::info!(identity = %election.identity, "acquired the leader lease");
        metrics.leader.set(1);
        let mut lost = leader.clone();
        let lost = async move {
            let _ = lost.wait_for(|is_leader| !*is_leader).await;
        };
        let stop_requested = stopped(stop.clone());
        let finished = tokio::select! {
            () = shared.run_controllers(stop_requested) => true,
            () = lost => false,
        };
        metrics.leader.set(0);
        if finished || *stop.borrow() {
            break;
        }
        tracing::warn!(identity = %election.identity, "lost the leader lease; controllers stopped");
    }
    // Dropping the receiver makes the lease task release the lease for the next replica.
    drop(leader);
    match lease_task.await {
        Ok(Ok(_)) | Err(_) => Ok(()),
        Ok(Err(err)) => Err(err.into()),
    }
}

/// What every scope shares.
struct Shared {
    settings: Arc<Settings>,
    client: kube::Client,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    vendors: Arc<VendorClients>,
    fetcher: ArtifactFetcher,
    recorder: Recorder,
}

impl Shared {
    /// Runs the controllers of every scope until `stop` resolves, then gives in-flight
    /// reconciles `shutdown_grace` to finish.
    async fn run_controllers(&self, stop: impl Future<Output = ()> + Send + 'static) {
        let scopes: Vec<Option<String>> = if self.settings.watch_namespaces.is_empty() {
            vec![None]
        } else {
            self.settings
                .watch_namespaces
                .iter()
                .cloned()
                .map(Some)
                .collect()
        };
        let (signal, _) = tokio::sync::broadcast::channel::<()>(1);
        let shutdown = {
            let signal = signal.clone();
            async move {
                stop.await;
                let _ = signal.send(());
            }
        };
        let mut ready = Vec::new();
        let mut runs = Vec::new();
        for scope in scopes {
            let mut receiver = signal.subscribe();
            let (scope_ready, run) = self.scope(scope.as_deref(), async move {
                let _ = receiver.recv().await;
            });
            ready.push(scope_ready);
            runs.push(run);
        }
        let health = self.health.clone();
        let readiness = async move {
            futures::future::join_all(ready).await;
            health.set_ready(true);
            futures::future::pending::<()>().await;
        };
        let grace = self.settings.shutdown_grace;
        let controllers = futures::future::join_all(runs);
        tokio::pin!(controllers);
        // A stop before the caches are filled must not wait for them: the grace period starts
        // with the stop request either way.
        tokio::select! {
            _ = &mut controllers => return,
            () = shutdown => {}
            () = readiness => {}
        }
        tracing::info!(grace = ?grace, "shutting down: waiting for in-flight reconciles");
        if tokio::time::timeout(grace, controllers).await.is_err() {
            tracing::warn!(
                "shutdown grace period over: in-flight reconciles (uploads) abandoned; they restart from a vendor lookup"
            );
        }
    }

    /// The three controllers of one scope (a namespace, or all), and a future that resolves
    /// when their caches are filled.
    fn scope<S>(
        &self,
        namespace: Option<&str>,
        stop: S,
    ) -> (
        impl Future<Output = ()> + use<S>,
        impl Future<Output = ()> + use<S>,
    )
    where
        S: Future<Output = ()> + Send + Sync + 'static,
    {
        fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
        where
            K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
        {
            match namespace {
                Some(namespace) => Api::namespaced(client.clone(), namespace),
                None => Api::all(client.clone()),
            }
        }
        let client = &self.client;
        let config = watcher::Config::default().any_semantic();
        let concurrency = kube::runtime::controller::Config::default()
            .concurrency(self.settings.concurrency)
            .debounce(Duration::from_millis(200));

        let providers = Controller::new(api::<OtaProvider>(client, namespace), config.clone())
            .with_config(concurrency.clone());
        let packages = Controller::new(api::<FirmwarePackage>(client, namespace), config.clone())
            .with_config(concurrency.clone());
        let campaigns = Controller::new(api::<UpgradeCampaign>(client, namespace), config.clone())
            .with_config(concurrency);
        let (provider_store, package_store, campaign_store) =
            (providers.store(), packages.store(), campaigns.store());
        let (package_trigger, drifted) = tokio::sync::mpsc::unbounded_channel();
        let ctx = Arc::new(Context::new(
            client.clone(),
            self.settings.clone(),
            self.metrics.clone(),
            self.recorder.clone(),
            self.fetcher.clone(),
            self.vendors.clone(),
            (
                provider_store.clone(),
                package_store.clone(),
                campaign_store.clone(),
            ),
            package_trigger,
        ));

        let ready = {
            let (p, f, c) = (
                provider_store.clone(),
                package_store.clone(),
                campaign_store.clone(),
            );
            async move {
                let _ = futures::future::join3(
                    p.wait_until_ready(),
                    f.wait_until_ready(),
                    c.wait_until_ready(),
                )
                .await;
            }
        };

        let stop = futures::future::FutureExt::shared(Box::pin(stop));

        let by_secret = provider_store.clone();
        let providers = providers
            .watches(
                api::<KubeSecret>(client, namespace),
                watcher::Config::default().any_semantic(),
                move |secret| {
                    dependents(&by_secret, &secret, |provider, name| {
                        referenced_secrets(&provider.spec).contains(&name)
                    })
                },
            )
            .graceful_shutdown_on(stop.clone())
            .run(
                traced(provider::KIND, provider::reconcile),
                error_policy::<OtaProvider>(provider::KIND),
                ctx.clone(),
            )
            .for_each(|_| futures::future::ready(()));

        let of_provider = package_store.clone();
        let of_headers = package_store.clone();
        let of_campaign = package_store.clone();
        let packages = packages
            .watches(
                api::<OtaProvider>(client, namespace),
                config.clone(),
                move |provider| {
                    dependents(&of_provider, &provider, |pkg, name| {
                        pkg.spec.provider_ref.name == name
                    })
                },
            )
            .watches(
                api::<UpgradeCampaign>(client, namespace),
                config.clone(),
                move |campaign| {
                    // Only a package waiting to be deleted cares about its campaigns (a deletion
                    // blocked until they end); others would be woken for nothing.
                    let namespace = campaign.namespace()?;
                    let package =
                        ObjectRef::new(&campaign.spec.package_ref.name).within(&namespace);
                    of_campaign
                        .get(&package)
                        .filter(|pkg| pkg.metadata.deletion_timestamp.is_some())
                        .map(|_| package)
                },
            )
            .watches(
                api::<KubeSecret>(client, namespace),
                watcher::Config::default().any_semantic(),
                move |secret| {
                    dependents(&of_headers, &secret, |pkg, name| {
                        pkg.spec
                            .artifact
                            .headers_secret_ref
                            .as_ref()
                            .is_some_and(|r| r.name == name)
                    })
                },
            )
            .reconcile_on(crate::streams::unbounded_receiver_stream(drifted))
            .graceful_shutdown_on(stop.clone())
            .run(
                traced(package::KIND, package::reconcile),
                error_policy::<FirmwarePackage>(package::KIND),
                ctx.clone(),
            )
            .for_each(|_| futures::future::ready(()));

        let campaigns = campaign::configure(campaigns, client, namespace, &ctx)
            .graceful_shutdown_on(stop)
            .run(
                traced(campaign::KIND, campaign::reconcile),
                error_policy::<UpgradeCampaign>(campaign::KIND),
                ctx,
            )
            .for_each(|_| futures::future::ready(()));

        let run = async move {
            futures::future::join3(providers, packages, campaigns).await;
        };
        (ready, run)
    }
}

/// The cached objects in `changed`'s namespace that refer to it by name, to re-queue them.
fn dependents<K, C>(
    store: &kube::runtime::reflector::Store<K>,
    changed: &C,
    refers_to: impl Fn(&K, &str) -> bool,
) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
    C: Resource,
{
    let namespace = changed.meta().namespace.as_deref();
    let name = changed.meta().name.as_deref().unwrap_or_default();
    store
        .state()
        .into_iter()
        .filter(|object| object.meta().namespace.as_deref() == namespace)
        .filter(|object| refers_to(object, name))
        .map(|object| ObjectRef::from_obj(&*object))
        .collect()
}

/// Wraps a reconciler with a span per reconcile, the reconcile metrics and backoff reset.
fn traced<K, F, Fut>(
    kind: &'static str,
    reconcile: F,
) -> impl FnMut(
    Arc<K>,
    Arc<Context>,
) -> futures::future::BoxFuture<'static, Result<Action, ControllerError>>
where
    K: Resource + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Result<Action, ControllerError>> + Send + 'static,
{
    move |obj: Arc<K>, ctx: Arc<Context>| {
        let namespace = obj.meta().namespace.clone().unwrap_or_default();
        let name = obj.meta().name.clone().unwrap_or_default();
        let span = tracing::info_span!("reconcile", kind, namespace = %namespace, name = %name);
        Box::pin(
            async move {
                let _timer = ctx.metrics.reconcile_started(kind);
                let result = reconcile(obj, ctx.clone()).await;
                match &result {
                    Ok(action) => {
                        ctx.reset_backoff(&format!("{kind}/{namespace}/{name}"));
                        tracing::debug!(?action, "reconciled");
                    }
                    Err(err) => {
                        ctx.metrics.reconcile_failed(kind, err.reason());
                        if err.is_retryable() {
                            tracing::info!(error = %err, reason = err.reason(), "reconcile failed; retrying");
                        } else {
                            tracing::warn!(error = %err, reason = err.reason(), "reconcile failed");
                        }
                    }
                }
                result
            }
            .instrument(span),
        )
    }
}

/// Backoff per object and error class after a failed reconcile.
fn error_policy<K: Resource>(
    kind: &'static str,
) -> impl Fn(Arc<K>, &ControllerError, Arc<Context>) -> Action {
    move |obj, err, ctx| {
        let key = format!(
            "{kind}/{}/{}",
            obj.meta().namespace.as_deref().unwrap_or_default(),
            obj.meta().name.as_deref().unwrap_or_default()
        );
        ctx.backoff(key, err)
    }
}
