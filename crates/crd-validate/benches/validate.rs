//! Figures for the work the apiserver stand-in does per request: compiling a
//! CRD's schema (once per CRD version) and pruning, defaulting and validating
//! one object (every create and update). Prints microseconds per operation.

use crd_validate::CrdValidator;
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::Instant;

fn crd() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rollout-crd.yaml"
    ))
    .expect("fixture is readable");
    serde_saphyr::from_str(&text).expect("fixture is valid YAML")
}

fn rollout(devices: usize) -> Value {
    let devices: Vec<String> = (0..devices).map(|i| format!("device-{i}")).collect();
    json!({
        "apiVersion": "test.otaplane.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "r1", "namespace": "default"},
        "spec": {
            "version": "1.2.3",
            "artifact": {"url": "https://files.example.com/fw.bin", "sha256": "a".repeat(64), "size": 1024},
            "devices": devices,
            "thingspace": {"make": "acme", "model": "m1"},
            "schedule": {"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-02T00:00:00Z"},
            "strategy": {"wavePercentages": [10, 50, 100], "waveSize": 20, "soakTime": "1h"},
            "labels": {"team": "firmware"},
            "targets": [{"region": "eu", "weight": 2}, {"region": "us", "weight": 1}]
        }
    })
}

fn measure(name: &str, iterations: u32, mut operation: impl FnMut()) {
    operation();
    let start = Instant::now();
    for _ in 0..iterations {
        operation();
    }
    let per_operation = start.elapsed().as_secs_f64() * 1e6 / f64::from(iterations);
    println!("{name:<45} {per_operation:>10.1} µs/op ({iterations} iterations)");
}

fn main() {
    let crd = crd();
    measure("compile the sample CRD (16 CEL rules)", 200, || {
        black_box(CrdValidator::from_crd(&crd, "v1alpha1").expect("compiles"));
    });
    let validator = CrdValidator::from_crd(&crd, "v1alpha1").expect("compiles");
    let object = rollout(5);
    measure("prune_and_default one object", 5_000, || {
        let mut copy = object.clone();
        validator.prune_and_default(&mut copy);
        black_box(copy);
    });
    measure("validate on create", 5_000, || {
        black_box(validator.validate(&object, None));
    });
    measure("validate on update (transition rules)", 5_000, || {
        black_box(validator.validate(&object, Some(&object)));
    });
    let invalid = {
        let mut invalid = object.clone();
        invalid["spec"]["strategy"]["wavePercentages"] = json!([50, 10]);
        invalid
    };
    measure("validate an object failing two rules", 5_000, || {
        black_box(validator.validate(&invalid, None));
    });
}
