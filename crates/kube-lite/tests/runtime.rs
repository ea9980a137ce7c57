//! kube-lite under kube::runtime: a Controller with the finalizer helper, and Lease-based leader election.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{TestResult, Widget, eventually, install_widget_crd, widget};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kube_lite::{Options, Server};
use serde_json::json;

const FINALIZER: &str = "example.com/cleanup";

struct Context {
    client: Client,
    cleanups: AtomicUsize,
}

async fn reconcile(
    widget: Arc<Widget>,
    ctx: Arc<Context>,
) -> Result<Action, kube::runtime::finalizer::Error<kube::Error>> {
    let api: Api<Widget> =
        Api::namespaced(ctx.client.clone(), &widget.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, widget, |event| async {
        match event {
            Event::Apply(widget) => {
                let status = json!({"status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}});
                api.patch_status(&widget.name_any(), &PatchParams::default(), &Patch::Merge(&status)).await?;
                Ok(Action::await_change())
            }
            Event::Cleanup(_) => {
                ctx.cleanups.fetch_add(1, Ordering::SeqCst);
                Ok(Action::await_change())
            }
        }
    })
    .await
}

fn error_policy(
    _: Arc<Widget>,
    _: &kube::runtime::finalizer::Error<kube::Error>,
    _: Arc<Context>,
) -> Action {
    Action::requeue(Duration::from_millis(100))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_with_finalizer_reconciles_and_cleans_up() -> TestResult {
    let server = Server::start(Options::default()).await?;
    let client = server.client()?;
    install_widget_crd(&client).await?;
    let widgets: Api<Widget> = Api::default_namespaced(client.clone());
    let ctx = Arc::new(Context {
        client: client.clone(),
        cleanups: AtomicUsize::new(0),
    });
    let controller = Controller::new(widgets.clone(), watcher::Config::default())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let running = tokio::spawn(controller);

    widgets
        .create(&PostParams::default(), &widget("managed", 2))
        .await?;
    let ready = eventually(|| async {
        let w = widgets.get("managed").await.unwrap();
        w.finalizers().iter().any(|f| f == FINALIZER)
            && w.status.and_then(|s| s.phase).as_deref() == Some("Ready")
    })
    .await;
    assert!(ready, "controller added its finalizer and reported Ready");

    // A watch drop must not stop the controller: it re-watches from its last resourceVersion.
    server.faults().drop_watches();
    widgets
        .create(&PostParams::default(), &widget("second", 3))
        .await?;
    assert!(eventually(|| async { widgets.get("second").await.unwrap().status.is_some() }).await);

    widgets.delete("managed", &DeleteParams::default()).await?;
    assert!(
        eventually(|| async { widgets.get_opt("managed").await.unwrap().is_none() }).await,
        "finalizer removed, object gone"
    );
    assert_eq!(ctx.cleanups.load(Ordering::SeqCst), 1);
    running.abort();
    Ok(())
}

/// Takes or renews the lease for `me`; false when someone else holds an unexpired lease or won a race.
async fn try_lead(api: &Api<Lease>, me: &str, duration: i32) -> Result<bool, kube::Error> {
    let now = MicroTime(jiff::Timestamp::now());
    let spec = LeaseSpec {
        holder_identity: Some(me.into()),
        lease_duration_seconds: Some(duration),
        acquire_time: Some(now.clone()),
        renew_time: Some(now.clone()),
        ..Default::default()
    };
    let Some(mut lease) = api.get_opt("leader").await? else {
        let mut lease = Lease::default();
        lease.metadata.name = Some("leader".into());
        lease.spec = Some(spec);
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let current = lease.spec.clone().unwrap_or_default();
    let mine = current.holder_identity.as_deref() == Some(me);
    let expires = current
        .renew_time
        .map(|t| t.0.as_millisecond())
        .unwrap_or(0)
        + i64::from(current.lease_duration_seconds.unwrap_or(0)) * 1000;
    if !mine && expires > now.0.as_millisecond() {
        return Ok(false);
    }
    lease.spec = Some(LeaseSpec {
        acquire_time: if mine {
            current.acquire_time
        } else {
            spec.acquire_time.clone()
        },
        ..spec
    });
    match api.replace("leader", &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_leader_election_between_two_clients() -> TestResult {
    let server = Server::start(Options::default()).await?;
    let alice: Api<Lease> = Api::default_namespaced(server.client()?);
    let bob: Api<Lease> = Api::default_namespaced(server.client()?);
    assert!(try_lead(&alice, "alice", 1).await?);
    assert!(
        !try_lead(&bob, "bob", 1).await?,
        "bob must wait while alice's lease is fresh"
    );
    assert!(try_lead(&alice, "alice", 1).await?, "alice renews");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        try_lead(&bob, "bob", 1).await?,
        "bob takes over the expired lease"
    );
    assert!(!try_lead(&alice, "alice", 1).await?);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (a, b) = tokio::join!(
        try_lead(&alice, "alice", 5),
        try_lead(&bob, "carol-is-bob", 5)
    );
    assert!(
        a? ^ b?,
        "exactly one contender wins a race for an expired lease"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_streaming_list_receives_initial_events_then_changes() -> TestResult {
    let server = Server::start(Options::default()).await?;
    let client = server.client()?;
    let leases: Api<Lease> = Api::default_namespaced(client);
    for name in ["one", "two"] {
        let mut lease = Lease::default();
        lease.metadata.name = Some(name.into());
        leases.create(&PostParams::default(), &lease).await?;
    }
    let mut events =
        watcher::watcher(leases.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut initial = Vec::new();
    loop {
        match events.next().await.expect("stream continues")? {
            watcher::Event::Init => {}
            watcher::Event::InitApply(lease) => initial.push(lease.name_any()),
            watcher::Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    initial.sort();
    assert_eq!(initial, ["one", "two"]);
    leases.delete("one", &DeleteParams::default()).await?;
    match events.next().await.expect("stream continues")? {
        watcher::Event::Delete(lease) => assert_eq!(lease.name_any(), "one"),
        other => panic!("unexpected {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn event_recorder_creates_then_updates_a_series() -> TestResult {
    use k8s_openapi::api::events::v1::Event as KubeEvent;
    use kube::Resource;
    use kube::runtime::events::{Event as RecordedEvent, EventType, Recorder, Reporter};

    let server = Server::start(Options::default()).await?;
    let client = server.client()?;
    install_widget_crd(&client).await?;
    let widgets: Api<Widget> = Api::default_namespaced(client.clone());
    let target = widgets
        .create(&PostParams::default(), &widget("noisy", 1))
        .await?;
    let reporter = Reporter {
        controller: "widget-controller".into(),
        instance: None,
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let event = RecordedEvent {
        type_: EventType::Normal,
        reason: "Synced".into(),
        note: Some("widget synced".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let reference = target.object_ref(&());
    recorder.publish(&event, &reference).await?;
    recorder.publish(&event, &reference).await?;
    let events: Api<KubeEvent> = Api::default_namespaced(client);
    let listed = events.list(&Default::default()).await?;
    assert_eq!(
        listed.items.len(),
        1,
        "a repeated event becomes a series on one object"
    );
    let recorded = &listed.items[0];
    assert_eq!(recorded.reason.as_deref(), Some("Synced"));
    assert_eq!(
        recorded.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("noisy")
    );
    assert_eq!(recorded.series.as_ref().map(|s| s.count), Some(2));
    Ok(())
}
