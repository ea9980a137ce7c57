//! Runs every vendor client through success, retries and rejected credentials with all logs at
//! debug level (ours, reqwest's and hyper's), then greps the captured output and every error for
//! the secrets. Any hit fails the test.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use otaplane::{
    sim::{
        self, SimConfig, Vendor,
        faults::{FaultAction, FaultRule},
    },
    vendor::{PackageSpec, PackageVendorSpec, iotda::SigningChoice},
};

mod support;

const SECRETS: [&str; 4] = [
    "demo-client-secret",
    "demo-password",
    "ExampleSecretKey0000000000000000000000000",
    "wrong-password-9f2c",
];

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_appears_in_debug_logs_or_errors() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let sim = sim::start(SimConfig::default()).await.unwrap();
    sim.state.faults.add(vec![FaultRule {
        id: 0,
        vendor: Some(Vendor::Iotda),
        method: None,
        path: None,
        after: 0,
        count: Some(2),
        rate: None,
        action: FaultAction::Error {
            status: 503,
            code: None,
            message: None,
        },
    }]);
    let mut errors = Vec::new();

    let thingspace = |password: &str| support::thingspace(&sim, password);
    thingspace("demo-password").list_packages().await.unwrap();
    errors.push(
        thingspace("wrong-password-9f2c")
            .authenticate()
            .await
            .unwrap_err(),
    );

    let iotda = support::iotda(&sim, SigningChoice::Automatic, 128 * 1024, "");
    let image = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(image.path(), vec![1u8; 300 * 1024]).unwrap();
    let spec = PackageSpec {
        namespace: "default".into(),
        name: "meter".into(),
        version: "V1".into(),
        description: None,
        vendor: PackageVendorSpec::Iotda {
            product_id: "prod1".into(),
            app_id: Some("61f7e74d036aca5be29e1ed4".into()),
            package_type: "firmwarePackage".into(),
            module_name: None,
            support_source_versions: Vec::new(),
            custom_info: None,
        },
    };
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(vec![
        1u8;
        300 * 1024
    ]));
    iotda
        .register_package(&spec, image.path(), &sha, 300 * 1024, "fw.bin")
        .await
        .unwrap();
    // A wrong checksum is refused by the simulated IoTDA: an error that quotes the request.
    if let Err(err) = iotda
        .register_package(
            &PackageSpec {
                version: "V2".into(),
                ..spec.clone()
            },
            image.path(),
            &"0".repeat(64),
            300 * 1024,
            "fw.bin",
        )
        .await
    {
        errors.push(err);
    }

    let iotaap = |password: &str| support::iotaap(&sim, password);
    iotaap("demo-password").authenticate().await.unwrap();
    errors.push(
        iotaap("wrong-password-9f2c")
            .authenticate()
            .await
            .unwrap_err(),
    );

    let mut text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for err in &errors {
        text.push_str(&format!("{err}\n{err:?}\n"));
    }
    assert!(
        text.contains("retrying vendor call"),
        "the run exercised retries:\n{text}"
    );
    assert!(
        text.lines().count() > 20,
        "debug logs were captured:\n{text}"
    );
    for secret in SECRETS {
        let hits: Vec<&str> = text.lines().filter(|line| line.contains(secret)).collect();
        assert!(
            hits.is_empty(),
            "{secret:?} appears in:\n{}",
            hits.join("\n")
        );
    }
}
