//! kube-lite driven by kube 5 the way a controller drives a real apiserver.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TestResult, Widget, api_error, eventually, install_widget_crd, widget};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, WatchEvent,
    WatchParams,
};
use kube::{Client, ResourceExt};
use kube_lite::{Options, Server};
use serde_json::json;

async fn start() -> Result<(Server, Client), Box<dyn std::error::Error + Send + Sync>> {
    let server = Server::start(Options::default()).await?;
    let client = server.client()?;
    Ok((server, client))
}

fn config_map(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    cm.data = Some(BTreeMap::from([("key".to_string(), "value".to_string())]));
    cm
}

#[tokio::test]
async fn create_get_replace_delete_with_metadata_and_conflicts() -> TestResult {
    let (_server, client) = start().await?;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let created = cms
        .create(&PostParams::default(), &config_map("a", &[]))
        .await?;
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert_eq!(
        created.metadata.generation, None,
        "ConfigMaps carry no generation, as on a real cluster"
    );
    let first_rv: u64 = created.resource_version().unwrap().parse()?;

    let duplicate = api_error(
        cms.create(&PostParams::default(), &config_map("a", &[]))
            .await,
    );
    assert_eq!(
        (duplicate.code, duplicate.reason.as_str()),
        (409, "AlreadyExists")
    );
    assert_eq!(duplicate.message, "configmaps \"a\" already exists");

    let mut generated = config_map("", &[]);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let generated = cms.create(&PostParams::default(), &generated).await?;
    assert!(generated.name_any().starts_with("gen-") && generated.name_any().len() == 9);

    let mut changed = cms.get("a").await?;
    changed.data = Some(BTreeMap::from([("key".to_string(), "new".to_string())]));
    let replaced = cms.replace("a", &PostParams::default(), &changed).await?;
    assert!(replaced.resource_version().unwrap().parse::<u64>()? > first_rv);
    let stale = api_error(cms.replace("a", &PostParams::default(), &changed).await);
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert!(stale.message.contains("the object has been modified"));

    let list = cms.list(&ListParams::default()).await?;
    assert_eq!(list.items.len(), 2);
    assert!(list.metadata.resource_version.is_some());

    let bad_name = api_error(
        cms.create(&PostParams::default(), &config_map("Not_Valid", &[]))
            .await,
    );
    assert_eq!((bad_name.code, bad_name.reason.as_str()), (422, "Invalid"));

    cms.delete("a", &DeleteParams::default()).await?;
    let missing = api_error(cms.get("a").await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    let no_namespace = api_error(
        Api::<ConfigMap>::namespaced(cms.clone().into_client(), "nope")
            .create(&PostParams::default(), &config_map("x", &[]))
            .await,
    );
    assert_eq!(no_namespace.code, 404);
    Ok(())
}

#[tokio::test]
async fn every_patch_type_and_noop_writes_keep_resource_version() -> TestResult {
    let (_server, client) = start().await?;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    cms.create(&PostParams::default(), &config_map("p", &[("a", "1")]))
        .await?;

    let merged = cms
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"b": "2"}}})),
        )
        .await?;
    assert_eq!(merged.labels().len(), 2);

    let json_patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["example.com/keep"]}
    ]))?;
    let patched = cms
        .patch("p", &PatchParams::default(), &Patch::Json::<()>(json_patch))
        .await?;
    assert_eq!(patched.finalizers(), ["example.com/keep"]);

    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/key", "value": "other"}]))?;
    let failed = api_error(
        cms.patch("p", &PatchParams::default(), &Patch::Json::<()>(failing))
            .await,
    );
    assert_eq!(failed.code, 422);

    let strategic = cms
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"extra": "x"}})),
        )
        .await?;
    assert_eq!(strategic.data.as_ref().unwrap().len(), 2);

    let rv = strategic.resource_version();
    let same = cms
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"extra": "x"}})),
        )
        .await?;
    assert_eq!(
        same.resource_version(),
        rv,
        "a no-op patch must not bump resourceVersion"
    );

    let dry = cms
        .patch(
            "p",
            &PatchParams::default().dry_run(),
            &Patch::Merge(json!({"data": {"extra": "dry"}})),
        )
        .await?;
    assert_eq!(dry.data.unwrap()["extra"], "dry");
    assert_eq!(cms.get("p").await?.data.unwrap()["extra"], "x");

    let stale = api_error(
        cms.patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "data": {"k": "v"}})),
        )
        .await,
    );
    assert_eq!(stale.code, 409);
    Ok(())
}

#[tokio::test]
async fn server_side_apply_tracks_managers_conflicts_and_force() -> TestResult {
    let (_server, client) = start().await?;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"owner": "alice", "shared": "same"}});
    let created = cms
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&first))
        .await?;
    assert_eq!(created.data.as_ref().unwrap()["owner"], "alice");
    let managers: Vec<String> = created
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, ["alice"]);

    let second = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"owner": "bob", "shared": "same"}});
    let conflict = api_error(
        cms.patch("ssa", &PatchParams::apply("bob"), &Patch::Apply(&second))
            .await,
    );
    assert_eq!(conflict.code, 409);
    assert_eq!(
        conflict.message,
        "Apply failed with 1 conflict: conflict with \"alice\": .data.owner"
    );
    assert_eq!(
        conflict.details.as_ref().unwrap().causes[0].field,
        ".data.owner"
    );

    let forced = cms
        .patch(
            "ssa",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&second),
        )
        .await?;
    assert_eq!(forced.data.as_ref().unwrap()["owner"], "bob");
    assert_eq!(forced.managed_fields().len(), 2);

    // alice stops applying "shared"; bob still owns it, so it stays. alice's own field goes away.
    let shrink = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"alice-only": "1"}});
    let after = cms
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&shrink))
        .await?;
    let data = after.data.unwrap();
    assert_eq!(data.get("shared").map(String::as_str), Some("same"));
    assert_eq!(data.get("alice-only").map(String::as_str), Some("1"));
    Ok(())
}

#[tokio::test]
async fn status_subresource_is_isolated_and_generation_tracks_spec() -> TestResult {
    let (_server, client) = start().await?;
    install_widget_crd(&client).await?;
    let widgets: Api<Widget> = Api::default_namespaced(client);
    let mut w = widget("w", 1);
    w.status = Some(common::WidgetStatus {
        phase: Some("Ignored".into()),
        ..Default::default()
    });
    let created = widgets.create(&PostParams::default(), &w).await?;
    assert!(created.status.is_none(), "status is dropped on create");
    assert_eq!(
        created.spec.color.as_deref(),
        Some("blue"),
        "schema default applied"
    );

    let status_patch = json!({"status": {"phase": "Ready"}, "spec": {"size": 9}});
    let updated = widgets
        .patch_status("w", &PatchParams::default(), &Patch::Merge(&status_patch))
        .await?;
    assert_eq!(updated.status.unwrap().phase.as_deref(), Some("Ready"));
    assert_eq!(updated.spec.size, 1, "status writes cannot change spec");
    assert_eq!(updated.metadata.generation, Some(1));

    let main_patch = json!({"status": {"phase": "Hacked"}, "spec": {"size": 2}});
    let updated = widgets
        .patch("w", &PatchParams::default(), &Patch::Merge(&main_patch))
        .await?;
    assert_eq!(
        updated.status.unwrap().phase.as_deref(),
        Some("Ready"),
        "main writes cannot change status"
    );
    assert_eq!(updated.metadata.generation, Some(2));

    let labelled = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await?;
    assert_eq!(
        labelled.metadata.generation,
        Some(2),
        "metadata changes do not bump generation"
    );
    Ok(())
}

#[tokio::test]
async fn custom_resources_are_validated_with_field_names() -> TestResult {
    let (_server, client) = start().await?;
    install_widget_crd(&client).await?;
    let widgets: Api<Widget> = Api::default_namespaced(client.clone());
    let too_big = api_error(
        widgets
            .create(&PostParams::default(), &widget("big", 20))
            .await,
    );
    assert_eq!((too_big.code, too_big.reason.as_str()), (422, "Invalid"));
    assert!(
        too_big
            .message
            .starts_with("Widget.example.com \"big\" is invalid: spec.size"),
        "{}",
        too_big.message
    );
    assert_eq!(
        too_big.details.as_ref().unwrap().causes[0].field,
        "spec.size"
    );

    let unlucky = api_error(
        widgets
            .create(&PostParams::default(), &widget("seven", 7))
            .await,
    );
    assert!(
        unlucky.message.contains("seven is unlucky"),
        "{}",
        unlucky.message
    );

    let mut fixed = widget("fixed", 1);
    fixed.spec.immutable_id = Some("one".into());
    widgets.create(&PostParams::default(), &fixed).await?;
    let change = json!({"spec": {"immutableId": "two"}});
    let immutable = api_error(
        widgets
            .patch("fixed", &PatchParams::default(), &Patch::Merge(&change))
            .await,
    );
    assert!(
        immutable.message.contains("immutableId is immutable"),
        "{}",
        immutable.message
    );

    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client);
    let mut broken = common::widget_crd();
    broken["metadata"]["name"] = json!("gadgets.example.com");
    broken["spec"]["names"] = json!({"plural": "gadgets", "kind": "Gadget"});
    broken["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"] =
        json!([{"rule": "self.size +"}]);
    let rejected = api_error(
        crds.create(&PostParams::default(), &serde_json::from_value(broken)?)
            .await,
    );
    assert_eq!(rejected.code, 422);
    Ok(())
}

#[tokio::test]
async fn finalizers_and_preconditions_govern_deletion() -> TestResult {
    let (_server, client) = start().await?;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let mut cm = config_map("f", &[]);
    cm.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    let created = cms.create(&PostParams::default(), &cm).await?;

    let wrong_uid = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("nope".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    assert_eq!(api_error(cms.delete("f", &wrong_uid).await).code, 409);

    let right_uid = DeleteParams {
        preconditions: Some(Preconditions {
            uid: created.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    cms.delete("f", &right_uid).await?;
    let pending = cms.get("f").await?;
    assert!(pending.metadata.deletion_timestamp.is_some());
    let adding = api_error(
        cms.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "late"]}})),
        )
        .await,
    );
    assert_eq!(adding.code, 422);

    cms.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    assert_eq!(api_error(cms.get("f").await).code, 404);
    Ok(())
}

#[tokio::test]
async fn owners_namespaces_and_collections_cascade() -> TestResult {
    let (_server, client) = start().await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some("doomed".into());
    namespaces.create(&PostParams::default(), &ns).await?;
    let doomed: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    let mut held = config_map("inside", &[]);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    doomed.create(&PostParams::default(), &held).await?;

    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let owner = cms
        .create(&PostParams::default(), &config_map("owner", &[]))
        .await?;
    let mut child = config_map("child", &[]);
    child.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "owner".into(),
            uid: owner.uid().unwrap(),
            ..Default::default()
        },
    ]);
    cms.create(&PostParams::default(), &child).await?;

    cms.delete("owner", &DeleteParams::default()).await?;
    assert!(
        eventually(|| async { cms.get_opt("child").await.unwrap().is_none() }).await,
        "dependent collected"
    );

    namespaces
        .delete("doomed", &DeleteParams::default())
        .await?;
    let terminating = api_error(
        doomed
            .create(&PostParams::default(), &config_map("late", &[]))
            .await,
    );
    assert_eq!(terminating.code, 403);
    assert!(
        doomed
            .get("inside")
            .await?
            .metadata
            .deletion_timestamp
            .is_some(),
        "contents are being deleted"
    );
    doomed
        .patch(
            "inside",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await?;
    assert!(
        eventually(|| async { namespaces.get_opt("doomed").await.unwrap().is_none() }).await,
        "namespace removed"
    );

    for name in ["c1", "c2", "keep"] {
        let labels: &[(&str, &str)] = if name == "keep" {
            &[]
        } else {
            &[("batch", "yes")]
        };
        cms.create(&PostParams::default(), &config_map(name, labels))
            .await?;
    }
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("batch=yes"),
    )
    .await?;
    let left: Vec<String> = cms
        .list(&ListParams::default())
        .await?
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert_eq!(left, ["keep"]);
    Ok(())
}

#[tokio::test]
async fn selectors_and_paging() -> TestResult {
    let (_server, client) = start().await?;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    for (name, tier) in [
        ("a", "web"),
        ("b", "db"),
        ("c", "web"),
        ("d", "cache"),
        ("e", "web"),
    ] {
        cms.create(&PostParams::default(), &config_map(name, &[("tier", tier)]))
            .await?;
    }
    let names = |list: kube::core::ObjectList<ConfigMap>| {
        list.items.iter().map(|c| c.name_any()).collect::<Vec<_>>()
    };
    assert_eq!(
        names(cms.list(&ListParams::default().labels("tier=web")).await?),
        ["a", "c", "e"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier in (db,cache)"))
                .await?
        ),
        ["b", "d"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier!=web,tier"))
                .await?
        ),
        ["b", "d"]
    );
    assert_eq!(
        names(cms.list(&ListParams::default().labels("!tier")).await?).len(),
        0
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name=c"))
                .await?
        ),
        ["c"]
    );

    let first = cms.list(&ListParams::default().limit(2)).await?;
    let token = first.metadata.continue_.clone().expect("more pages");
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let second = cms
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await?;
    assert_eq!(names(first), ["a", "b"]);
    assert_eq!(names(second), ["c", "d"]);
    Ok(())
}

#[tokio::test]
async fn watch_resumes_after_drop_and_expires_when_too_old() -> TestResult {
    let options = Options {
        history_limit: 5,
        bookmark_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let server = Server::start(options).await?;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client()?);
    let list = cms.list(&ListParams::default()).await?;
    let start_rv = list.metadata.resource_version.unwrap();

    let mut stream = cms
        .watch(&WatchParams::default().labels("watched=yes"), &start_rv)
        .await?
        .boxed();
    cms.create(
        &PostParams::default(),
        &config_map("w1", &[("watched", "yes")]),
    )
    .await?;
    cms.create(&PostParams::default(), &config_map("ignored", &[]))
        .await?;
    let last_rv;
    loop {
        match stream.try_next().await?.expect("event") {
            WatchEvent::Added(cm) => {
                assert_eq!(cm.name_any(), "w1");
                last_rv = cm.resource_version().unwrap();
                break;
            }
            WatchEvent::Bookmark(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    server.faults().drop_watches();
    while stream.try_next().await?.is_some() {}

    cms.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"n": "2"}})),
    )
    .await?;
    cms.patch(
        "ignored",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"watched": "yes"}}})),
    )
    .await?;
    let mut resumed = cms
        .watch(&WatchParams::default().labels("watched=yes"), &last_rv)
        .await?
        .boxed();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match resumed.try_next().await?.expect("event") {
            WatchEvent::Modified(cm) => seen.push(format!("MODIFIED {}", cm.name_any())),
            WatchEvent::Added(cm) => seen.push(format!("ADDED {}", cm.name_any())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen,
        ["MODIFIED w1", "ADDED ignored"],
        "label change into the selector is an ADDED"
    );

    for i in 0..10 {
        cms.create(
            &PostParams::default(),
            &config_map(&format!("churn{i}"), &[]),
        )
        .await?;
    }
    let mut expired = cms.watch(&WatchParams::default(), &start_rv).await?.boxed();
    match expired.try_next().await {
        Ok(Some(WatchEvent::Error(status))) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn secrets_and_faults_and_restart_from_state_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state.json");
    let server = Server::start(Options {
        state_file: Some(state.clone()),
        ..Default::default()
    })
    .await?;
    let port = server.port();
    let client = server.client()?;
    install_widget_crd(&client).await?;
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "s"}, "stringData": {"token": "hunter2"}}),
    )?;
    let secret = secrets.create(&PostParams::default(), &secret).await?;
    assert_eq!(secret.data.unwrap()["token"].0, b"hunter2");
    Api::<Widget>::default_namespaced(client.clone())
        .create(&PostParams::default(), &widget("kept", 3))
        .await?;

    server.faults().fail_next("get", "secrets", 2, 500);
    assert_eq!(api_error(secrets.get("s").await).code, 500);
    assert_eq!(api_error(secrets.get("s").await).reason, "InternalError");
    assert!(secrets.get("s").await.is_ok());
    server.faults().set_latency(Duration::from_millis(150));
    let started = std::time::Instant::now();
    secrets.get("s").await?;
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "injected latency applies to every request"
    );
    server.faults().clear();
    let rv_before = server.resource_version();
    server.shutdown().await?;

    let restarted = Server::start(Options {
        port,
        state_file: Some(state),
        ..Default::default()
    })
    .await?;
    assert_eq!(restarted.resource_version(), rv_before);
    let client = restarted.client()?;
    let kept = Api::<Widget>::default_namespaced(client.clone())
        .get("kept")
        .await?;
    assert_eq!(kept.spec.size, 3);
    let created = Api::<ConfigMap>::default_namespaced(client)
        .create(&PostParams::default(), &config_map("after", &[]))
        .await?;
    assert!(created.resource_version().unwrap().parse::<u64>()? > rv_before);
    Ok(())
}

#[tokio::test]
async fn crd_deletion_removes_its_resource_and_objects() -> TestResult {
    let (_server, client) = start().await?;
    install_widget_crd(&client).await?;
    let widgets: Api<Widget> = Api::default_namespaced(client.clone());
    widgets
        .create(&PostParams::default(), &widget("gone", 1))
        .await?;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get("widgets.example.com").await?;
    let conditions = crd.status.unwrap().conditions.unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await?;
    assert!(
        eventually(|| async { crds.get_opt("widgets.example.com").await.unwrap().is_none() }).await
    );
    assert_eq!(
        api_error(widgets.list(&ListParams::default()).await).code,
        404
    );
    Ok(())
}
