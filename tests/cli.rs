//! The command line a user meets first: --version, --help, and `crds` piped into kubectl.

use std::process::Command;

fn otaplane(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_otaplane"))
        .args(args)
        .output()
        .expect("otaplane runs");
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn version_names_the_release() {
    let (ok, stdout, _) = otaplane(&["--version"]);
    assert!(ok);
    assert_eq!(
        stdout.trim(),
        format!("otaplane {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_explains_every_subcommand() {
    let (ok, stdout, _) = otaplane(&["--help"]);
    assert!(ok);
    assert!(stdout.contains("crds"), "{stdout}");
    assert!(stdout.contains("CustomResourceDefinitions"), "{stdout}");
    let (ok, stdout, _) = otaplane(&["crds", "--help"]);
    assert!(ok);
    assert!(stdout.contains("kubectl apply"), "{stdout}");
}

#[test]
fn an_unknown_subcommand_is_a_clear_error() {
    let (ok, _, stderr) = otaplane(&["deploy"]);
    assert!(!ok);
    assert!(
        stderr.contains("unrecognized subcommand 'deploy'"),
        "{stderr}"
    );
}

/// The printed stream reads back as exactly the three CRDs (applying them to an API server
/// with kubectl is tested against kube-lite).
#[test]
fn crds_output_reads_back_as_three_crds() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let (ok, yaml, _) = otaplane(&["crds"]);
    assert!(ok);
    let crds: Vec<CustomResourceDefinition> = serde_saphyr::from_multiple(&yaml).unwrap();
    let names: Vec<_> = crds
        .iter()
        .map(|crd| crd.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "otaproviders.otaplane.io",
            "firmwarepackages.otaplane.io",
            "upgradecampaigns.otaplane.io"
        ]
    );
    assert_eq!(crds, otaplane::api::crds());
}

#[test]
fn sim_help_names_its_options() {
    let (ok, stdout, _) = otaplane(&["sim", "--help"]);
    assert!(ok);
    for option in [
        "--config",
        "--listen",
        "--obs-listen",
        "--time-scale",
        "--seed",
    ] {
        assert!(stdout.contains(option), "{stdout}");
    }
}

#[test]
fn sim_with_a_broken_config_says_what_is_wrong() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "time_scale: 10\nthingspce: {}\n").unwrap();
    let (ok, _, stderr) = otaplane(&["sim", "--config", config.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.starts_with("otaplane sim:"), "{stderr}");
    assert!(
        stderr.contains("thingspce"),
        "the unknown key is named: {stderr}"
    );
}
