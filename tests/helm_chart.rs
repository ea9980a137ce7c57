//! The Helm chart (`charts/otaplane`) as a user meets it: `helm lint --strict` passes; what
//! `helm template` renders for the usual value sets (default, `watchNamespaces`, two replicas
//! with a ServiceMonitor, `crds.install=false`); values refused by `values.schema.json`; the
//! rendered built-in objects pass `kubernetes-validate --strict`; the chart's CRDs are the
//! generated ones; and the real kubectl and helm install the chart into an API server
//! (kube-lite).
//!
//! Tools: helm from `OTAPLANE_HELM`, kubectl from `OTAPLANE_KUBECTL`, Python (with
//! kubernetes-validate) from `OTAPLANE_TEST_PYTHON`; unset, the copies `scripts/install-test-tools`
//! puts under `.tools/` and `.venv/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kube_lite::{Options, Server};
use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const RELEASE: &str = "otaplane";
const NAMESPACE: &str = "otaplane-system";
const OUR_KINDS: [&str; 3] = ["otaproviders", "firmwarepackages", "upgradecampaigns"];

fn chart_dir() -> PathBuf {
    Path::new(ROOT).join("charts/otaplane")
}

/// A test tool: `$env` when set, otherwise `fallback` under the checkout, which must exist.
fn tool(env: &str, fallback: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return path.into();
    }
    let path = Path::new(ROOT).join(fallback);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-test-tools (it installs it), or set {env}",
        path.display()
    );
    path
}

fn helm_bin() -> PathBuf {
    tool("OTAPLANE_HELM", ".tools/bin/helm")
}

fn kubectl_bin() -> PathBuf {
    tool("OTAPLANE_KUBECTL", ".tools/bin/kubectl")
}

fn python_bin() -> PathBuf {
    tool("OTAPLANE_TEST_PYTHON", ".venv/bin/python")
}

/// Runs a command with HOME and helm's directories in `home`, so nothing of the user's is read.
fn run(program: &Path, args: &[&str], home: &Path) -> Output {
    Command::new(program)
        .args(args)
        .env("HOME", home)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG")
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "{} does not run ({err}): run scripts/install-test-tools, or point \
                 OTAPLANE_HELM, OTAPLANE_KUBECTL and OTAPLANE_TEST_PYTHON at working tools",
                program.display()
            )
        })
}

fn text(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    text
}

fn helm(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    run(&helm_bin(), args, home.path())
}

/// `helm template` of the chart as release `otaplane` in `otaplane-system`; returns the YAML.
fn template_yaml(args: &[&str]) -> String {
    let chart = chart_dir();
    let mut full = vec![
        "template",
        RELEASE,
        chart.to_str().unwrap(),
        "--namespace",
        NAMESPACE,
    ];
    full.extend_from_slice(args);
    let output = helm(&full);
    assert!(output.status.success(), "helm {full:?}:\n{}", text(&output));
    String::from_utf8(output.stdout).unwrap()
}

fn parse_documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap()
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The objects `helm template` renders.
struct Rendered(Vec<Value>);

impl Rendered {
    fn new(args: &[&str]) -> Self {
        Self(parse_documents(&template_yaml(args)))
    }

    fn kinds(&self) -> BTreeMap<String, usize> {
        let mut kinds = BTreeMap::new();
        for object in &self.0 {
            *kinds
                .entry(object["kind"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        kinds
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.0
            .iter()
            .filter(|object| object["kind"] == kind)
            .collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let found = self.all(kind);
        assert_eq!(found.len(), 1, "one {kind} in {:?}", self.kinds());
        found[0]
    }

    fn named(&self, kind: &str, namespace: &str, name: &str) -> &Value {
        self.0
            .iter()
            .find(|object| {
                object["kind"] == kind
                    && object["metadata"]["name"] == name
                    && object["metadata"]["namespace"].as_str().unwrap_or_default() == namespace
            })
            .unwrap_or_else(|| panic!("{kind} {namespace}/{name} in {:?}", self.kinds()))
    }

    fn container(&self) -> &Value {
        &self.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    }

    /// The value of the operator container's environment variable `name`.
    fn env(&self, name: &str) -> &Value {
        self.container()["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|var| var["name"] == name)
            .unwrap_or_else(|| panic!("env {name} in {}", self.container()))
    }
}

fn kinds(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs
        .iter()
        .map(|(kind, count)| (kind.to_string(), *count))
        .collect()
}

/// The RBAC rules as (apiGroup, resource, sorted verbs, resourceNames) tuples.
fn rules(role: &Value) -> BTreeSet<(String, String, Vec<String>, Vec<String>)> {
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|item| item.as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        let mut verbs = strings(&rule["verbs"]);
        verbs.sort();
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                out.insert((
                    group.clone(),
                    resource,
                    verbs.clone(),
                    strings(&rule["resourceNames"]),
                ));
            }
        }
    }
    out
}

/// What the operator may do in the namespaces it watches (or cluster-wide).
fn expected_watch_rules() -> BTreeSet<(String, String, Vec<String>, Vec<String>)> {
    let rule = |group: &str, resource: String, verbs: &[&str]| {
        let mut verbs: Vec<String> = verbs.iter().map(|verb| verb.to_string()).collect();
        verbs.sort();
        (group.to_string(), resource, verbs, Vec::new())
    };
    let mut expected = BTreeSet::new();
    for kind in OUR_KINDS {
        expected.insert(rule(
            "otaplane.io",
            kind.to_string(),
            &["get", "list", "watch", "patch", "update"],
        ));
        expected.insert(rule(
            "otaplane.io",
            format!("{kind}/status"),
            &["get", "patch", "update"],
        ));
        expected.insert(rule(
            "otaplane.io",
            format!("{kind}/finalizers"),
            &["update"],
        ));
    }
    expected.insert(rule("", "secrets".into(), &["get", "list", "watch"]));
    expected.insert(rule("events.k8s.io", "events".into(), &["create", "patch"]));
    expected
}

fn chart_app_version() -> String {
    let chart: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    chart["appVersion"].as_str().unwrap().to_string()
}

#[test]
fn helm_lint_strict_passes() {
    let chart = chart_dir();
    for values in [
        vec![],
        vec!["--set", "watchNamespaces={a,b}"],
        vec![
            "--set",
            "replicas=2",
            "--set",
            "metrics.serviceMonitor.enabled=true",
        ],
    ] {
        let mut args = vec!["lint", "--strict", chart.to_str().unwrap()];
        args.extend_from_slice(&values);
        let output = helm(&args);
        let report = text(&output);
        assert!(output.status.success(), "helm {args:?}:\n{report}");
        assert!(
            report.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{report}"
        );
        assert!(!report.contains("[WARNING]"), "{report}");
    }
}

#[test]
fn the_chart_is_versioned_with_the_operator() {
    assert_eq!(chart_app_version(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn default_values_render_a_cluster_wide_operator() {
    let rendered = Rendered::new(&[]);
    assert_eq!(
        rendered.kinds(),
        kinds(&[
            ("ClusterRole", 1),
            ("ClusterRoleBinding", 1),
            ("CustomResourceDefinition", 3),
            ("Deployment", 1),
            ("Service", 1),
            ("ServiceAccount", 1),
        ])
    );

    let deployment = rendered.one("Deployment");
    assert_eq!(deployment["metadata"]["namespace"], NAMESPACE);
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], RELEASE);
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    let container = rendered.container();
    assert_eq!(
        container["image"],
        format!("ghcr.io/otaplane/otaplane:{}", chart_app_version())
    );
    assert_eq!(container["args"], json!(["run"]));

    for (name, value) in [
        ("OTAPLANE_METRICS_ADDR", "0.0.0.0:8080"),
        ("OTAPLANE_WATCH_NAMESPACES", ""),
        ("OTAPLANE_LEADER_ELECT", "false"),
        ("OTAPLANE_LEASE_NAME", "otaplane-leader"),
        ("OTAPLANE_LOG_FORMAT", "json"),
        ("OTAPLANE_LOG", "info"),
        ("OTAPLANE_CONCURRENCY", "8"),
        ("OTAPLANE_RESYNC_INTERVAL", "10m"),
        ("OTAPLANE_ARTIFACT_ALLOW_CIDRS", ""),
        ("OTAPLANE_LEASE_DURATION", "15s"),
        ("OTAPLANE_SHUTDOWN_GRACE", "25s"),
    ] {
        assert_eq!(rendered.env(name)["value"], value, "{name}");
    }
    assert_eq!(
        rendered.env("OTAPLANE_LEASE_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(
        rendered.env("POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );

    // Security: a fixed non-root user, nothing writable but the two emptyDirs.
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], 65532);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());

    // Probes on the metrics port.
    assert_eq!(container["ports"][0]["name"], "metrics");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "metrics");

    // The spool directory is the sized emptyDir; /tmp another one.
    let spool_dir = rendered.env("OTAPLANE_SPOOL_DIR")["value"]
        .as_str()
        .unwrap();
    let mounts = container["volumeMounts"].as_array().unwrap();
    let volume_at = |path: &str| {
        let mount = mounts
            .iter()
            .find(|mount| mount["mountPath"] == path)
            .unwrap_or_else(|| panic!("a volume at {path}"));
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|volume| volume["name"] == mount["name"])
            .unwrap()
            .clone()
    };
    assert_eq!(volume_at(spool_dir)["emptyDir"]["sizeLimit"], "2Gi");
    assert!(volume_at("/tmp")["emptyDir"].is_object());

    // Cluster-wide RBAC, bound to the ServiceAccount, with nothing beyond what the operator uses.
    let cluster_role = rendered.one("ClusterRole");
    assert_eq!(rules(cluster_role), expected_watch_rules());
    let binding = rendered.one("ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], cluster_role["metadata"]["name"]);
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}])
    );
    assert_eq!(rendered.one("ServiceAccount")["metadata"]["name"], RELEASE);

    // The metrics Service selects the operator pods.
    let service = rendered.one("Service");
    let selector = service["spec"]["selector"].as_object().unwrap();
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in selector {
        assert_eq!(&pod_labels[key], value, "pod label {key}");
    }
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");

    // The CRDs are kept by Helm on uninstall.
    let crds = rendered.all("CustomResourceDefinition");
    let names: BTreeSet<&str> = crds
        .iter()
        .map(|crd| crd["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "firmwarepackages.otaplane.io",
            "otaproviders.otaplane.io",
            "upgradecampaigns.otaplane.io",
        ])
    );
    for crd in crds {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{}",
            crd["metadata"]["name"]
        );
    }
}

#[test]
fn watch_namespaces_switch_to_one_role_per_namespace() {
    let rendered = Rendered::new(&["--set", "watchNamespaces={a,b}"]);
    assert_eq!(
        rendered.kinds(),
        kinds(&[
            ("CustomResourceDefinition", 3),
            ("Deployment", 1),
            ("Role", 2),
            ("RoleBinding", 2),
            ("Service", 1),
            ("ServiceAccount", 1),
        ]),
        "no ClusterRole nor ClusterRoleBinding"
    );
    for namespace in ["a", "b"] {
        let role = rendered.named("Role", namespace, RELEASE);
        assert_eq!(rules(role), expected_watch_rules(), "Role in {namespace}");
        let binding = rendered.named("RoleBinding", namespace, RELEASE);
        assert_eq!(binding["roleRef"]["kind"], "Role");
        assert_eq!(binding["roleRef"]["name"], RELEASE);
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}])
        );
    }
    assert_eq!(rendered.env("OTAPLANE_WATCH_NAMESPACES")["value"], "a,b");
}

#[test]
fn two_replicas_elect_a_leader_and_a_service_monitor_scrapes_them() {
    let rendered = Rendered::new(&[
        "--set",
        "replicas=2",
        "--set",
        "metrics.serviceMonitor.enabled=true",
    ]);
    assert_eq!(
        rendered.kinds(),
        kinds(&[
            ("ClusterRole", 1),
            ("ClusterRoleBinding", 1),
            ("CustomResourceDefinition", 3),
            ("Deployment", 1),
            ("Role", 1),
            ("RoleBinding", 1),
            ("Service", 1),
            ("ServiceAccount", 1),
            ("ServiceMonitor", 1),
        ])
    );
    let deployment = rendered.one("Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert!(
        deployment["spec"]["strategy"].is_null(),
        "rolling updates are safe with a leader"
    );
    assert_eq!(rendered.env("OTAPLANE_LEADER_ELECT")["value"], "true");

    // Leases only in the release namespace, and only the operator's own beyond create.
    let role = rendered.named("Role", NAMESPACE, "otaplane-leader-election");
    let lease = |verbs: &[&str], names: &[&str]| {
        (
            "coordination.k8s.io".to_string(),
            "leases".to_string(),
            verbs
                .iter()
                .map(|verb| verb.to_string())
                .collect::<Vec<_>>(),
            names
                .iter()
                .map(|name| name.to_string())
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        rules(role),
        BTreeSet::from([
            lease(&["create"], &[]),
            lease(&["get", "patch", "update"], &["otaplane-leader"]),
        ])
    );
    let binding = rendered.named("RoleBinding", NAMESPACE, "otaplane-leader-election");
    assert_eq!(binding["roleRef"]["name"], "otaplane-leader-election");
    assert_eq!(binding["subjects"][0]["name"], RELEASE);

    // The ServiceMonitor selects the metrics Service and its port.
    let monitor = rendered.one("ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let service_labels = &rendered.one("Service")["metadata"]["labels"];
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&service_labels[key], value, "Service label {key}");
    }
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
}

#[test]
fn leader_election_follows_its_value() {
    let forced = Rendered::new(&["--set", "leaderElection.enabled=true"]);
    assert_eq!(forced.env("OTAPLANE_LEADER_ELECT")["value"], "true");
    assert_eq!(forced.kinds()["Role"], 1);

    let chart = chart_dir();
    let output = helm(&[
        "template",
        RELEASE,
        chart.to_str().unwrap(),
        "--set",
        "replicas=3",
        "--set",
        "leaderElection.enabled=false",
    ]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("replicas > 1 needs leader election"),
        "{}",
        text(&output)
    );
}

#[test]
fn crds_can_be_left_out() {
    let rendered = Rendered::new(&["--set", "crds.install=false"]);
    assert!(rendered.all("CustomResourceDefinition").is_empty());
    assert_eq!(rendered.kinds()["Deployment"], 1);
}

#[test]
fn the_values_schema_refuses_bad_values() {
    let chart = chart_dir();
    for (args, wanted) in [
        (vec!["--set-json", "replicas=\"two\""], "/replicas"),
        (vec!["--set", "replica=2"], "replica"),
        (
            vec!["--set", "operator.logFormat=xml"],
            "/operator/logFormat",
        ),
        (
            vec!["--set", "image.pullPolicy=Sometimes"],
            "/image/pullPolicy",
        ),
        (
            vec!["--set", "operator.resyncInterval=ten minutes"],
            "/operator/resyncInterval",
        ),
        (
            vec!["--set", "watchNamespaces={Fleet_EU}"],
            "/watchNamespaces/0",
        ),
    ] {
        let mut full = vec!["template", RELEASE, chart.to_str().unwrap()];
        full.extend_from_slice(&args);
        let output = helm(&full);
        let report = text(&output);
        assert!(!output.status.success(), "{args:?} is refused:\n{report}");
        assert!(
            report.contains("values don't meet the specifications of the schema"),
            "{args:?}: {report}"
        );
        assert!(report.contains(wanted), "{args:?} names {wanted}: {report}");
    }
}

/// Every value in values.yaml is in the schema (and the reverse) down to the free-form objects,
/// and each of those is in the README's values table.
#[test]
fn every_value_is_in_the_schema_and_the_readme() {
    let values: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap())
            .unwrap();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("values.schema.json")).unwrap(),
    )
    .unwrap();
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).unwrap();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["additionalProperties"], false);

    let mut documented = Vec::new();
    let mut problems = Vec::new();
    walk_values(&values, &schema, "", &mut documented, &mut problems);
    for path in &documented {
        if !readme.contains(&format!("| `{path}` |")) {
            problems.push(format!("{path} is not in the README's values table"));
        }
    }
    assert!(documented.len() > 30, "{documented:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Recurses into the objects the schema closes (`additionalProperties: false`); the others are
/// values in their own right.
fn walk_values(
    values: &Value,
    schema: &Value,
    path: &str,
    documented: &mut Vec<String>,
    problems: &mut Vec<String>,
) {
    if schema["additionalProperties"] != false {
        documented.push(path.to_string());
        return;
    }
    let (Some(values), Some(properties)) = (values.as_object(), schema["properties"].as_object())
    else {
        problems.push(format!("{path}: an object in values.yaml and the schema"));
        return;
    };
    let value_keys: BTreeSet<&String> = values.keys().collect();
    let schema_keys: BTreeSet<&String> = properties.keys().collect();
    if value_keys != schema_keys {
        problems.push(format!(
            "{path}: values.yaml has {value_keys:?}, the schema {schema_keys:?}"
        ));
    }
    for (key, value) in values {
        let Some(child_schema) = properties.get(key) else {
            continue;
        };
        if child_schema["description"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
        {
            problems.push(format!("{path}.{key} has no description in the schema"));
        }
        let child = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        walk_values(value, child_schema, &child, documented, problems);
    }
}

/// Kinds the built-in schemas of kubernetes-validate cannot know.
fn is_custom(object: &Value) -> bool {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    api_version.starts_with("otaplane.io/") || api_version.starts_with("monitoring.coreos.com/")
}

/// Runs `kubernetes-validate --strict` for Kubernetes 1.34 on `yaml`; returns (success, report).
fn kubernetes_validate(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, yaml).unwrap();
    let output = run(
        &python_bin(),
        &[
            "-m",
            "kubernetes_validate",
            "--strict",
            "--kubernetes-version",
            "1.34",
            file.to_str().unwrap(),
        ],
        dir.path(),
    );
    (output.status.success(), text(&output))
}

#[test]
fn rendered_objects_pass_kubernetes_validate_strict() {
    for args in [
        vec![],
        vec!["--set", "watchNamespaces={a,b}"],
        vec![
            "--set",
            "replicas=2",
            "--set",
            "metrics.serviceMonitor.enabled=true",
        ],
    ] {
        let rendered = Rendered::new(&args);
        let builtin: Vec<&Value> = rendered.0.iter().filter(|o| !is_custom(o)).collect();
        assert!(
            rendered.0.len() - builtin.len() <= 1,
            "only a ServiceMonitor is skipped"
        );
        let yaml: String = builtin
            .iter()
            .map(|object| format!("---\n{}\n", serde_json::to_string(object).unwrap()))
            .collect();
        let (success, report) = kubernetes_validate(&yaml);
        assert!(success, "{args:?}:\n{report}");
        assert!(!report.contains("WARN"), "{args:?}:\n{report}");
        for object in builtin {
            let resource = format!(
                "passed for resource {}/{}",
                object["kind"].as_str().unwrap().to_lowercase(),
                object["metadata"]["name"].as_str().unwrap()
            );
            assert!(report.contains(&resource), "{args:?} {resource}:\n{report}");
        }
    }
}

/// The validator is strict: a misspelt field of a rendered Deployment is refused.
#[test]
fn kubernetes_validate_refuses_a_misspelt_field() {
    let rendered = Rendered::new(&[]);
    let mut deployment = rendered.one("Deployment").clone();
    deployment["spec"]["template"]["spec"]["serviceAcountName"] = json!(RELEASE);
    let (success, report) = kubernetes_validate(&serde_json::to_string(&deployment).unwrap());
    assert!(!success, "{report}");
    assert!(report.contains("serviceAcountName"), "{report}");
}

/// Numbers compared by value: the chart's YAML writes `64` where the generated file has `64.0`.
fn normalize(value: &Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| (key.clone(), normalize(item)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[test]
fn the_chart_crds_are_the_generated_crds() {
    let generated =
        std::fs::read_to_string(Path::new(ROOT).join("crds/otaplane-crds.yaml")).unwrap();
    let copy = std::fs::read_to_string(chart_dir().join("files/crds.yaml")).unwrap();
    assert!(
        copy == generated,
        "charts/otaplane/files/crds.yaml differs from crds/otaplane-crds.yaml. Refresh it with:\n\n    \
         cp crds/otaplane-crds.yaml charts/otaplane/files/crds.yaml\n"
    );

    let expected: Vec<Value> = parse_documents(&generated).iter().map(normalize).collect();
    let rendered: Vec<Value> = Rendered::new(&[])
        .all("CustomResourceDefinition")
        .into_iter()
        .map(|crd| {
            let mut crd = crd.clone();
            let metadata = crd["metadata"].as_object_mut().unwrap();
            let annotations = metadata.remove("annotations").unwrap();
            assert_eq!(annotations, json!({"helm.sh/resource-policy": "keep"}));
            let labels = metadata.remove("labels").unwrap();
            assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm");
            normalize(&crd)
        })
        .collect();
    assert_eq!(rendered.len(), 3);
    assert!(
        rendered == expected,
        "the rendered CRDs differ from crds/otaplane-crds.yaml"
    );
}

#[test]
fn the_image_runs_as_the_chart_user() {
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    assert!(lines.contains(&"FROM rust:1-bookworm AS builder"));
    assert!(lines.contains(&"FROM gcr.io/distroless/cc-debian12:nonroot"));
    assert!(dockerfile.contains("cargo build --release --locked --bin otaplane"));
    assert!(lines.contains(&"ENTRYPOINT [\"/otaplane\"]"));
    assert!(lines.contains(&"CMD [\"run\"]"));
    let rendered = Rendered::new(&[]);
    let user = &rendered.container()["securityContext"]["runAsUser"];
    assert!(
        lines.contains(&format!("USER {user}:{user}").as_str()),
        "the image user is the chart's runAsUser {user}"
    );
    let ignored = std::fs::read_to_string(Path::new(ROOT).join(".dockerignore")).unwrap();
    for entry in ["target/", ".tools/", ".venv/", ".git"] {
        assert!(
            ignored.lines().any(|line| line == entry),
            ".dockerignore has {entry}"
        );
    }
}

/// kubectl against a kube-lite server, with a kubeconfig file and a private HOME.
struct Kubectl {
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl Kubectl {
    fn new(server: &Server) -> Self {
        let home = tempfile::tempdir().unwrap();
        let kubeconfig = home.path().join("kubeconfig");
        std::fs::write(&kubeconfig, server.kubeconfig_yaml()).unwrap();
        Self { kubeconfig, home }
    }

    fn file(&self, name: &str, contents: &str) -> String {
        let path = self.home.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// Runs `program` with `--kubeconfig` off the async runtime; returns (success, output).
    async fn run(&self, program: PathBuf, args: &[&str]) -> (bool, String) {
        let mut full = vec![
            "--kubeconfig".to_string(),
            self.kubeconfig.to_str().unwrap().into(),
        ];
        full.extend(args.iter().map(|arg| arg.to_string()));
        let home = self.home.path().to_path_buf();
        let output = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = full.iter().map(String::as_str).collect();
            run(&program, &args, &home)
        })
        .await
        .unwrap();
        (output.status.success(), text(&output))
    }

    async fn kubectl(&self, args: &[&str]) -> String {
        let (success, output) = self.run(kubectl_bin(), args).await;
        assert!(success, "kubectl {args:?}:\n{output}");
        output
    }

    async fn helm(&self, args: &[&str]) -> String {
        let (success, output) = self.run(helm_bin(), args).await;
        assert!(success, "helm {args:?}:\n{output}");
        output
    }

    async fn get_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["get"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-o", "json"]);
        let output = self.kubectl(&full).await;
        serde_json::from_str(&output).unwrap_or_else(|err| panic!("{err}: {output}"))
    }
}

/// The rendered chart, without the ServiceMonitor (its CRD belongs to the Prometheus Operator).
fn installable(args: &[&str]) -> String {
    Rendered::new(args)
        .0
        .iter()
        .filter(|object| object["kind"] != "ServiceMonitor")
        .map(|object| format!("---\n{}\n", serde_json::to_string(object).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_the_rendered_chart() {
    let server = Server::start(Options::default()).await.unwrap();
    let kube = Kubectl::new(&server);
    for namespace in [NAMESPACE, "a", "b"] {
        kube.kubectl(&["create", "namespace", namespace]).await;
    }

    let cluster_wide = installable(&[]);
    let applied = kube
        .kubectl(&["apply", "-f", &kube.file("default.yaml", &cluster_wide)])
        .await;
    for created in [
        "serviceaccount/otaplane created",
        "customresourcedefinition.apiextensions.k8s.io/otaproviders.otaplane.io created",
        "clusterrole.rbac.authorization.k8s.io/otaplane created",
        "clusterrolebinding.rbac.authorization.k8s.io/otaplane created",
        "deployment.apps/otaplane created",
    ] {
        assert!(applied.contains(created), "{created}:\n{applied}");
    }
    let namespaced = installable(&[
        "--set",
        "watchNamespaces={a,b}",
        "--set",
        "replicas=2",
        "--set",
        "metrics.serviceMonitor.enabled=true",
    ]);
    let applied = kube
        .kubectl(&["apply", "-f", &kube.file("namespaced.yaml", &namespaced)])
        .await;
    assert!(
        applied.contains(
            "customresourcedefinition.apiextensions.k8s.io/upgradecampaigns.otaplane.io unchanged"
        ),
        "{applied}"
    );
    kube.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd",
        "--all",
        "--timeout=30s",
    ])
    .await;

    let stored = kube.get_json(&["clusterrole", RELEASE]).await;
    assert_eq!(rules(&stored), expected_watch_rules());
    for namespace in ["a", "b"] {
        let stored = kube.get_json(&["role", RELEASE, "-n", namespace]).await;
        assert_eq!(
            rules(&stored),
            expected_watch_rules(),
            "Role in {namespace}"
        );
        let binding = kube
            .get_json(&["rolebinding", RELEASE, "-n", namespace])
            .await;
        assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
    }
    let lease_role = kube
        .get_json(&["role", "otaplane-leader-election", "-n", NAMESPACE])
        .await;
    assert_eq!(rules(&lease_role).len(), 2);
    let crd = kube
        .get_json(&["crd", "firmwarepackages.otaplane.io"])
        .await;
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );

    // The CRDs from the chart serve the kinds: an example applies.
    let example = Path::new(ROOT).join("examples/iotda.yaml");
    let applied = kube
        .kubectl(&["apply", "-f", example.to_str().unwrap()])
        .await;
    assert!(
        applied.contains("otaprovider.otaplane.io/iotda created"),
        "{applied}"
    );
    let listed = kube.kubectl(&["get", "ota"]).await;
    assert!(listed.contains("otaprovider.otaplane.io/iotda"), "{listed}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_and_upgrades_the_release() {
    let server = Server::start(Options::default()).await.unwrap();
    let kube = Kubectl::new(&server);
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    kube.helm(&[
        "install",
        RELEASE,
        chart,
        "--namespace",
        NAMESPACE,
        "--create-namespace",
    ])
    .await;
    let crds = kube.kubectl(&["get", "crd"]).await;
    for name in [
        "otaproviders.otaplane.io",
        "firmwarepackages.otaplane.io",
        "upgradecampaigns.otaplane.io",
    ] {
        assert!(crds.contains(name), "{crds}");
    }
    let (found, _) = kube
        .run(
            kubectl_bin(),
            &["get", "role", "otaplane-leader-election", "-n", NAMESPACE],
        )
        .await;
    assert!(!found, "no lease Role with one replica");

    let upgraded = kube
        .helm(&[
            "upgrade",
            RELEASE,
            chart,
            "--namespace",
            NAMESPACE,
            "--set",
            "replicas=2",
        ])
        .await;
    assert!(upgraded.contains("has been upgraded"), "{upgraded}");
    let deployment = kube
        .get_json(&["deployment", RELEASE, "-n", NAMESPACE])
        .await;
    assert_eq!(deployment["spec"]["replicas"], 2);
    let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .contains(&json!({"name": "OTAPLANE_LEADER_ELECT", "value": "true"})),
        "{env}"
    );
    kube.get_json(&["role", "otaplane-leader-election", "-n", NAMESPACE])
        .await;
    let releases = kube.helm(&["list", "--namespace", NAMESPACE]).await;
    assert!(releases.contains("deployed"), "{releases}");

    // Uninstalling removes the operator but keeps the CRDs (helm.sh/resource-policy: keep), so
    // no custom resource is lost with them.
    let uninstalled = kube
        .helm(&["uninstall", RELEASE, "--namespace", NAMESPACE])
        .await;
    assert!(uninstalled.contains("uninstalled"), "{uninstalled}");
    let (found, _) = kube
        .run(
            kubectl_bin(),
            &["get", "deployment", RELEASE, "-n", NAMESPACE],
        )
        .await;
    assert!(!found, "the Deployment is gone");
    let crds = kube.kubectl(&["get", "crd"]).await;
    for plural in OUR_KINDS {
        assert!(crds.contains(&format!("{plural}.otaplane.io")), "{crds}");
    }
    server.shutdown().await.unwrap();
}

/// CRDs applied with kubectl before the chart: the install is refused until they are handed to
/// the release as the chart README shows, then succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_adopts_crds_applied_with_kubectl_as_documented() {
    let server = Server::start(Options::default()).await.unwrap();
    let kube = Kubectl::new(&server);
    let crds = Path::new(ROOT).join("crds/otaplane-crds.yaml");
    kube.kubectl(&["apply", "--server-side", "-f", crds.to_str().unwrap()])
        .await;
    kube.kubectl(&["create", "namespace", NAMESPACE]).await;
    let chart = chart_dir();
    let install = ["install", RELEASE, chart.to_str().unwrap(), "-n", NAMESPACE];
    let (installed, output) = kube.run(helm_bin(), &install).await;
    assert!(!installed, "{output}");
    assert!(output.contains("invalid ownership metadata"), "{output}");

    let readme = std::fs::read_to_string(chart_dir().join("README.md")).unwrap();
    assert!(readme.contains("invalid ownership metadata"));
    for plural in OUR_KINDS {
        let crd = format!("{plural}.otaplane.io");
        let label = "app.kubernetes.io/managed-by=Helm";
        assert!(readme.contains(label));
        kube.kubectl(&["label", "crd", &crd, label, "--overwrite"])
            .await;
        let name = format!("meta.helm.sh/release-name={RELEASE}");
        let namespace = format!("meta.helm.sh/release-namespace={NAMESPACE}");
        assert!(readme.contains(&name) && readme.contains(&namespace));
        kube.kubectl(&["annotate", "crd", &crd, &name, &namespace, "--overwrite"])
            .await;
    }
    kube.helm(&install).await;
    let crd = kube
        .get_json(&["crd", "upgradecampaigns.otaplane.io"])
        .await;
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    server.shutdown().await.unwrap();
}
