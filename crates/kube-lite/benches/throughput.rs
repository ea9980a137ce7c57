//! Throughput benchmark: create 10,000 custom resources while a watch is open, then report requests per
//! second, watch delivery, list latency and the process's resident memory (server and client share it).
//!
//! Run: `cargo bench -p kube-lite --bench throughput`

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams, WatchEvent,
    WatchParams,
};
use kube_lite::{Options, Server};
use serde_json::json;

const OBJECTS: usize = 10_000;
const CONCURRENCY: usize = 16;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rss_start = rss_kib();
    let server = Server::start(Options::default()).await?;
    let client = server.client()?;
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["size"], "properties": {
                        "size": {"type": "integer", "minimum": 0, "maximum": 100000},
                        "firmware": {"type": "string", "pattern": "^[a-z0-9.-]+$"}},
                        "x-kubernetes-validations": [{"rule": "self.size >= 0", "message": "size must not be negative"}]},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}
    });
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        )),
    );
    crds.create(&PostParams::default(), &serde_json::from_value(crd)?)
        .await?;
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"));
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);

    let start_rv = widgets
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let watch_api = widgets.clone();
    let watcher = tokio::spawn(async move {
        let mut seen = 0usize;
        let mut rv = start_rv;
        while seen < OBJECTS {
            let mut events = watch_api
                .watch(&WatchParams::default().timeout(290), &rv)
                .await?
                .boxed();
            while let Some(event) = events.try_next().await? {
                if let WatchEvent::Added(obj) = event {
                    rv = obj.metadata.resource_version.clone().unwrap_or_default();
                    seen += 1;
                    if seen == OBJECTS {
                        break;
                    }
                }
            }
        }
        Ok::<_, kube::Error>(Instant::now())
    });

    let started = Instant::now();
    let created: Vec<Result<(), kube::Error>> = stream::iter(0..OBJECTS)
        .map(|i| {
            let widgets = widgets.clone();
            async move {
                let obj: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "example.com/v1", "kind": "Widget",
                    "metadata": {"name": format!("widget-{i:05}"), "labels": {"fleet": format!("f{}", i % 10)}},
                    "spec": {"size": i, "firmware": format!("fw-1.{}.0", i % 7)}
                }))
                .expect("valid object");
                widgets.create(&PostParams::default(), &obj).await.map(|_| ())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let create_time = started.elapsed();
    let failures = created.iter().filter(|r| r.is_err()).count();
    let watch_done = tokio::time::timeout(Duration::from_secs(120), watcher).await???;
    let watch_time = watch_done.duration_since(started);

    let rss_loaded = rss_kib();
    let list_started = Instant::now();
    let listed = widgets.list(&ListParams::default()).await?.items.len();
    let list_time = list_started.elapsed();
    let selector_started = Instant::now();
    let selected = widgets
        .list(&ListParams::default().labels("fleet=f3"))
        .await?
        .items
        .len();
    let selector_time = selector_started.elapsed();
    let rss_end = rss_kib();

    println!(
        "kube-lite throughput benchmark ({OBJECTS} custom resources, {CONCURRENCY} concurrent creates, 1 open watch)"
    );
    println!(
        "  create:            {:>8.0} requests/s ({:.2} s total, {failures} failures)",
        OBJECTS as f64 / create_time.as_secs_f64(),
        create_time.as_secs_f64()
    );
    println!(
        "  watch delivered:   {OBJECTS} ADDED events, all within {:.2} s of the first create",
        watch_time.as_secs_f64()
    );
    println!(
        "  list all:          {listed} items in {:.1} ms",
        list_time.as_secs_f64() * 1000.0
    );
    println!(
        "  list by label:     {selected} items in {:.1} ms",
        selector_time.as_secs_f64() * 1000.0
    );
    println!(
        "  RSS (server+client in one process): {:.1} MiB at start, {:.1} MiB after creating and watching \
         ({:.1} KiB per object), {:.1} MiB after the two lists",
        rss_start as f64 / 1024.0,
        rss_loaded as f64 / 1024.0,
        rss_loaded.saturating_sub(rss_start) as f64 / OBJECTS as f64,
        rss_end as f64 / 1024.0,
    );
    Ok(())
}
