//! Health of the three kinds as GitOps tools compute it, from the files users install:
//!
//! - Argo CD: `charts/otaplane/argocd/otaplane.io/<Kind>/health.lua`, laid out like Argo CD's
//!   `resource_customizations`. Every case of each `health_test.yaml` runs under a Lua 5.1
//!   interpreter (Argo CD runs gopher-lua, which implements Lua 5.1), and the status and message
//!   must match. `charts/otaplane/argocd/argocd-cm.yaml` must hold exactly those scripts.
//! - Flux: the `healthCheckExprs` of `charts/otaplane/flux/kustomization.yaml` (shown in the
//!   chart README) are evaluated as CEL, in kustomize-controller's order, on the same objects, and
//!   must agree with the Argo CD result.
//!
//! Every test object is also checked against the CRD schema, so the cases describe statuses the
//! operator can actually write.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const KINDS: [&str; 3] = ["OtaProvider", "FirmwarePackage", "UpgradeCampaign"];
/// Set to 1 to rewrite `charts/otaplane/argocd/argocd-cm.yaml` from the health scripts.
const BLESS_VAR: &str = "OTAPLANE_BLESS";

fn argocd_dir() -> PathBuf {
    Path::new(ROOT).join("charts/otaplane/argocd")
}

fn kind_dir(kind: &str) -> PathBuf {
    argocd_dir().join("otaplane.io").join(kind)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn read_yaml(path: &Path) -> Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// One entry of a `health_test.yaml`, with the object it points at.
struct Case {
    input_path: String,
    status: String,
    message: String,
    object: Value,
}

fn cases(kind: &str) -> Vec<Case> {
    let dir = kind_dir(kind);
    let tests = read_yaml(&dir.join("health_test.yaml"));
    tests["tests"]
        .as_array()
        .unwrap_or_else(|| panic!("{kind}/health_test.yaml has a `tests` list"))
        .iter()
        .map(|test| {
            let input_path = test["inputPath"].as_str().unwrap().to_string();
            Case {
                object: read_yaml(&dir.join(&input_path)),
                status: test["healthStatus"]["status"].as_str().unwrap().to_string(),
                message: test["healthStatus"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                input_path,
            }
        })
        .collect()
}

/// Converts JSON to a Lua value the way Argo CD hands objects to gopher-lua: objects and arrays
/// become tables (arrays indexed from 1), every number a Lua number, null nothing at all.
fn to_lua(lua: &mlua::Lua, value: &Value) -> mlua::Result<mlua::Value> {
    Ok(match value {
        Value::Null => mlua::Value::Nil,
        Value::Bool(b) => mlua::Value::Boolean(*b),
        Value::Number(n) => mlua::Value::Number(n.as_f64().unwrap()),
        Value::String(s) => mlua::Value::String(lua.create_string(s)?),
        Value::Array(items) => {
            let table = lua.create_table()?;
            for (index, item) in items.iter().enumerate() {
                table.raw_set(index + 1, to_lua(lua, item)?)?;
            }
            mlua::Value::Table(table)
        }
        Value::Object(map) => {
            let table = lua.create_table()?;
            for (key, item) in map {
                table.raw_set(key.as_str(), to_lua(lua, item)?)?;
            }
            mlua::Value::Table(table)
        }
    })
}

/// Runs a health script on `object` as Argo CD does (the object in the global `obj`, the script's
/// return value read as `{status, message}`); returns (status, message).
fn run_health_script(name: &str, script: &str, object: &Value) -> Result<(String, String), String> {
    let lua = mlua::Lua::new();
    let run = || -> mlua::Result<(String, String)> {
        lua.globals().set("obj", to_lua(&lua, object)?)?;
        let result: mlua::Table = lua.load(script).set_name(name).eval()?;
        let status: Option<String> = result.get("status")?;
        let message: Option<String> = result.get("message")?;
        Ok((status.unwrap_or_default(), message.unwrap_or_default()))
    };
    run().map_err(|err| err.to_string())
}

#[test]
fn the_interpreter_is_lua_5_1() {
    let lua = mlua::Lua::new();
    let version: String = lua.globals().get("_VERSION").unwrap();
    assert_eq!(version, "Lua 5.1");
}

#[test]
fn every_argocd_health_test_case_passes() {
    let mut failures = Vec::new();
    for kind in KINDS {
        let script_path = kind_dir(kind).join("health.lua");
        let script = read(&script_path);
        let cases = cases(kind);
        let mut statuses = BTreeSet::new();
        for case in &cases {
            statuses.insert(case.status.clone());
            let name = format!("{kind}/{}", case.input_path);
            match run_health_script(&name, &script, &case.object) {
                Ok((status, message)) if status == case.status && message == case.message => {}
                Ok((status, message)) => failures.push(format!(
                    "{name}: got {status} {message:?}, want {} {:?}",
                    case.status, case.message
                )),
                Err(err) => failures.push(format!("{name}: the script failed: {err}")),
            }
        }
        let mut wanted = vec!["Degraded", "Healthy", "Progressing"];
        if kind == "UpgradeCampaign" {
            wanted.push("Suspended");
        }
        let covered: Vec<&str> = statuses.iter().map(String::as_str).collect();
        assert_eq!(
            covered, wanted,
            "{kind}: the cases cover every health status"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A script that raises an error (a nil concatenated, say) shows as a health error in Argo CD:
/// the scripts must survive objects with odd but possible shapes.
#[test]
fn health_scripts_survive_partial_objects() {
    let shapes = [
        serde_json::json!({"metadata": {}}),
        serde_json::json!({"metadata": {}, "status": {}}),
        serde_json::json!({"metadata": {}, "status": {"conditions": [{"type": "Ready", "status": "True", "observedGeneration": 4}]}}),
        serde_json::json!({"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "conditions": []}}),
        serde_json::json!({"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "phase": "Running", "conditions": [{"type": "Stalled", "status": "False"}]}}),
        serde_json::json!({"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "phase": "Unknown"}}),
    ];
    for kind in KINDS {
        let script = read(&kind_dir(kind).join("health.lua"));
        for shape in &shapes {
            let (status, message) = run_health_script(kind, &script, shape)
                .unwrap_or_else(|err| panic!("{kind} on {shape}: {err}"));
            assert!(
                ["Healthy", "Progressing", "Degraded", "Suspended"].contains(&status.as_str()),
                "{kind} on {shape}: {status}"
            );
            assert!(!message.is_empty(), "{kind} on {shape}: no message");
        }
    }
}

#[test]
fn every_testdata_file_is_a_case() {
    for kind in KINDS {
        let referenced: BTreeSet<String> = cases(kind).into_iter().map(|c| c.input_path).collect();
        let on_disk: BTreeSet<String> = std::fs::read_dir(kind_dir(kind).join("testdata"))
            .unwrap()
            .map(|entry| format!("testdata/{}", entry.unwrap().file_name().to_string_lossy()))
            .collect();
        assert_eq!(
            referenced, on_disk,
            "{kind}: health_test.yaml lists every testdata file"
        );
    }
}

/// The test objects must be objects the API server accepts: statuses of the shape the CRDs
/// define, with the condition fields Kubernetes requires.
#[test]
fn testdata_objects_match_the_crds() {
    let crds = read(&Path::new(ROOT).join("crds/otaplane-crds.yaml"));
    let validators: HashMap<String, crd_validate::CrdValidator> =
        serde_saphyr::from_multiple::<Value>(&crds)
            .unwrap()
            .into_iter()
            .filter(|crd| !crd.is_null())
            .map(|crd| {
                let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
                (
                    kind,
                    crd_validate::CrdValidator::from_crd(&crd, "v1alpha1").unwrap(),
                )
            })
            .collect();
    let mut failures = Vec::new();
    for kind in KINDS {
        for case in cases(kind) {
            assert_eq!(case.object["kind"], kind, "{kind}/{}", case.input_path);
            let errors = validators[kind].validate(&case.object, None);
            if !errors.is_empty() {
                let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
                failures.push(format!("{kind}/{}: {}", case.input_path, errors.join("; ")));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The `argocd-cm` entries, generated from the health scripts.
fn argocd_cm() -> String {
    let mut text = String::from(
        "# Health checks of the otaplane kinds for Argo CD, as argocd-cm entries. Generated from\n\
         # otaplane.io/<Kind>/health.lua by tests/argocd_health.rs (OTAPLANE_BLESS=1 rewrites it).\n\
         # Apply with: kubectl -n argocd patch configmap argocd-cm --patch-file argocd-cm.yaml\n\
         apiVersion: v1\n\
         kind: ConfigMap\n\
         metadata:\n\
         \x20 name: argocd-cm\n\
         \x20 labels:\n\
         \x20   app.kubernetes.io/name: argocd-cm\n\
         \x20   app.kubernetes.io/part-of: argocd\n\
         data:\n",
    );
    for kind in KINDS {
        text.push_str(&format!(
            "  resource.customizations.health.otaplane.io_{kind}: |\n"
        ));
        for line in read(&kind_dir(kind).join("health.lua")).lines() {
            if line.is_empty() {
                text.push('\n');
            } else {
                text.push_str(&format!("    {line}\n"));
            }
        }
    }
    text
}

#[test]
fn argocd_cm_snippet_holds_the_health_scripts() {
    let path = argocd_dir().join("argocd-cm.yaml");
    let generated = argocd_cm();
    if std::env::var(BLESS_VAR).is_ok_and(|value| value == "1") {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} differs from the health scripts. Regenerate it with:\n\n    \
         {BLESS_VAR}=1 cargo test --test argocd_health\n",
        path.display()
    );
    // The block scalars must hand Argo CD each script unchanged.
    let parsed: Value = serde_saphyr::from_str(&committed).unwrap();
    for kind in KINDS {
        let key = format!("resource.customizations.health.otaplane.io_{kind}");
        assert_eq!(
            parsed["data"][&key].as_str(),
            Some(read(&kind_dir(kind).join("health.lua")).as_str()),
            "{key}"
        );
    }
}

/// Health in kstatus terms, as Flux reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FluxStatus {
    Current,
    InProgress,
    Failed,
}

/// The `healthCheckExprs` entry of one kind.
struct FluxCheck {
    current: cel::Program,
    in_progress: Option<cel::Program>,
    failed: Option<cel::Program>,
}

fn flux_checks() -> HashMap<String, FluxCheck> {
    let kustomization = read_yaml(&Path::new(ROOT).join("charts/otaplane/flux/kustomization.yaml"));
    let compile = |entry: &Value, field: &str| {
        entry[field].as_str().map(|source| {
            cel::Program::compile(source)
                .unwrap_or_else(|err| panic!("{}.{field}: {err}", entry["kind"]))
        })
    };
    kustomization["spec"]["healthCheckExprs"]
        .as_array()
        .expect("spec.healthCheckExprs")
        .iter()
        .map(|entry| {
            assert_eq!(entry["apiVersion"], "otaplane.io/v1alpha1");
            let check = FluxCheck {
                current: compile(entry, "current").expect("current is required"),
                in_progress: compile(entry, "inProgress"),
                failed: compile(entry, "failed"),
            };
            (entry["kind"].as_str().unwrap().to_string(), check)
        })
        .collect()
}

fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap()),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let map: HashMap<String, cel::Value> = map
                .iter()
                .map(|(key, item)| (key.clone(), to_cel(item)))
                .collect();
            cel::Value::Map(cel::objects::Map::from(map))
        }
    }
}

/// kustomize-controller's evaluation (RFC 0009): a status.observedGeneration behind
/// metadata.generation is in progress; then inProgress, failed and current are tried in that
/// order, the first true one wins; none true is in progress. The top-level fields of the object
/// are the variables. An evaluation error is returned as such.
fn flux_status(check: &FluxCheck, object: &Value) -> Result<FluxStatus, String> {
    if let (Some(observed), Some(generation)) = (
        object["status"]["observedGeneration"].as_i64(),
        object["metadata"]["generation"].as_i64(),
    ) && observed != generation
    {
        return Ok(FluxStatus::InProgress);
    }
    let mut context = cel::Context::default();
    for (name, value) in object.as_object().unwrap() {
        context.add_variable_from_value(name.as_str(), to_cel(value));
    }
    for (program, status) in [
        (check.in_progress.as_ref(), FluxStatus::InProgress),
        (check.failed.as_ref(), FluxStatus::Failed),
        (Some(&check.current), FluxStatus::Current),
    ] {
        let Some(program) = program else { continue };
        match program.execute(&context) {
            Ok(cel::Value::Bool(true)) => return Ok(status),
            Ok(cel::Value::Bool(false)) => {}
            Ok(other) => return Err(format!("not a boolean: {other:?}")),
            Err(err) => return Err(err.to_string()),
        }
    }
    Ok(FluxStatus::InProgress)
}

/// What Flux must report for an Argo CD health status. Flux has no Suspended: a campaign paused
/// by `spec.suspend` is what the user asked for (Current); one paused by a crossed failure
/// threshold needs the user (Failed).
fn flux_equivalent(argo_status: &str, object: &Value) -> FluxStatus {
    match argo_status {
        "Healthy" => FluxStatus::Current,
        "Degraded" => FluxStatus::Failed,
        "Suspended" if object["spec"]["suspend"] == true => FluxStatus::Current,
        "Suspended" => FluxStatus::Failed,
        _ => FluxStatus::InProgress,
    }
}

#[test]
fn flux_health_check_exprs_agree_with_argocd() {
    let checks = flux_checks();
    let mut listed: Vec<&str> = checks.keys().map(String::as_str).collect();
    listed.sort_unstable();
    let mut kinds = KINDS.to_vec();
    kinds.sort_unstable();
    assert_eq!(listed, kinds, "one healthCheckExprs entry per kind");
    let mut failures = Vec::new();
    for kind in KINDS {
        for case in cases(kind) {
            let name = format!("{kind}/{}", case.input_path);
            let got = flux_status(&checks[kind], &case.object);
            if case.object.get("status").is_none() {
                // Before the operator writes a status, `status` is not a variable: Flux reports
                // the evaluation error and keeps polling, as for a resource in progress.
                match got {
                    Err(err) if err.contains("status") => {}
                    other => {
                        failures.push(format!("{name}: want an error on `status`, got {other:?}"))
                    }
                }
                continue;
            }
            let want = flux_equivalent(&case.status, &case.object);
            if got != Ok(want) {
                failures.push(format!(
                    "{name} ({}): got {got:?}, want {want:?}",
                    case.status
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_chart_readme_shows_the_flux_snippet() {
    let snippet = read(&Path::new(ROOT).join("charts/otaplane/flux/kustomization.yaml"));
    let readme = read(&Path::new(ROOT).join("charts/otaplane/README.md"));
    assert!(
        readme.contains(&format!("```yaml\n{snippet}```")),
        "charts/otaplane/README.md shows charts/otaplane/flux/kustomization.yaml verbatim"
    );
}
