//! Benchmark: the artifact pipeline against the vendor simulator running in its own process
//! (`otaplane sim`), with the artifact server in a third process (this benchmark run again in
//! a serving role), so the peak RSS measured here is the client side alone: fetcher, hashing,
//! spooling and the vendor clients.
//!
//! A random artifact (1 GiB by default; `OTAPLANE_BENCH_MIB` to change) is served over
//! loopback and measured through: fetch + SHA-256 + spool; IoTDA in two passes (fetch, then
//! OBS multipart from the spool file, for comparison); ThingSpace one pass; IoTDA one pass
//! (OBS multipart fed while downloading, [`fetch_and_register_iotda`]). Each line gives the
//! wall time, the ratio to `openssl dgst -sha256` of the same file (the floor: every byte has
//! to be hashed once) and this process's peak RSS during that phase (reset between phases
//! through `/proc/self/clear_refs`). Each phase starts after a `sync`, so none pays for the
//! writeback of another's gigabytes.
//!
//! The simulator binary is `OTAPLANE_BIN` when set, else the `otaplane` that Cargo built next
//! to this benchmark (`target/release/otaplane`), built with `cargo build --release` if missing.
//!
//! Run: `cargo bench --bench artifact_upload_external`

use std::{
    collections::HashMap,
    io::BufRead,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use axum::{Router, body::Body, http::header, response::IntoResponse, routing::get};
use otaplane::{
    artifact::{ArtifactFetcher, ArtifactPolicy, ArtifactRequest},
    pipeline::{fetch_and_register_iotda, fetch_and_register_thingspace},
    vendor::{
        CallObserver, PackageSpec, PackageVendorSpec, iotda::SigningChoice, obs::DEFAULT_PART_SIZE,
    },
};

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use common::{openssl_seconds, write_random_file};

/// Set in the artifact-server child: the file it serves.
const SERVE_ARTIFACT_ENV: &str = "OTAPLANE_BENCH_SERVE_ARTIFACT";
/// How long a child may take to print its addresses.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match std::env::var_os(SERVE_ARTIFACT_ENV) {
        Some(path) => runtime.block_on(serve_artifact(PathBuf::from(path))),
        None => runtime.block_on(run()),
    }
}

/// The artifact-server role: serves the file at `/artifact.bin` until interrupted. The file
/// is read in 1 MiB blocks on a blocking thread, as a static file server would, so the server
/// takes little of the CPU the measured client needs.
async fn serve_artifact(path: PathBuf) {
    let app = Router::new().route(
        "/artifact.bin",
        get(move || {
            let path = path.clone();
            async move {
                let length = std::fs::metadata(&path).unwrap().len();
                let (sender, blocks) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
                tokio::task::spawn_blocking(move || {
                    let mut file = std::fs::File::open(&path).unwrap();
                    loop {
                        let mut block = vec![0u8; 1 << 20];
                        match std::io::Read::read(&mut file, &mut block) {
                            Ok(0) => break,
                            Ok(read) => {
                                block.truncate(read);
                                if sender.blocking_send(Ok(block)).is_err() {
                                    break;
                                }
                            }
                            Err(err) => {
                                let _ = sender.blocking_send(Err(err));
                                break;
                            }
                        }
                    }
                });
                let stream = otaplane::streams::receiver_stream(blocks);
                (
                    [(header::CONTENT_LENGTH, length.to_string())],
                    Body::from_stream(stream),
                )
                    .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    println!("artifact http://{addr}/artifact.bin");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            tokio::signal::ctrl_c().await.ok();
        })
        .await
        .unwrap();
}

/// A child process, interrupted (SIGINT, so it cleans up) and reaped when dropped.
struct ChildProcess {
    name: &'static str,
    process: std::process::Child,
}

impl ChildProcess {
    /// Starts `command` and reads its stdout until every name in `wanted` was printed as
    /// `NAME URL` (leading spaces allowed); returns the URLs by name.
    fn start(
        name: &'static str,
        mut command: Command,
        wanted: &[&str],
    ) -> (Self, HashMap<String, String>) {
        let mut process = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| panic!("{name} does not start: {err}"));
        let stdout = process.stdout.take().expect("stdout is piped");
        let (lines, received) = mpsc::channel();
        // Drains stdout for the child's whole life, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let child = Self { name, process };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut urls = HashMap::new();
        while !wanted.iter().all(|want| urls.contains_key(*want)) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = received
                .recv_timeout(left)
                .unwrap_or_else(|err| panic!("{name} printed no addresses ({err}); got {urls:?}"));
            let mut words = line.split_whitespace();
            if let (Some(key), Some(url)) = (words.next(), words.next())
                && url.starts_with("http://")
            {
                urls.insert(key.to_string(), url.to_string());
            }
        }
        (child, urls)
    }

    /// The child's process id.
    fn id(&self) -> u32 {
        self.process.id()
    }

    /// Peak RSS (`VmHWM`) of the child so far, in MiB.
    fn peak_rss_mib(&self) -> Option<f64> {
        vm_hwm_mib(&format!("/proc/{}/status", self.process.id()))
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let interrupted = Command::new("kill")
            .args(["-INT", &self.process.id().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while interrupted && Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop on SIGINT; killing it", self.name);
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// `VmHWM` of a `/proc/*/status` file, in MiB.
fn vm_hwm_mib(status: &str) -> Option<f64> {
    let status = std::fs::read_to_string(status).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU time (user + system, all threads) a process has used so far, in seconds: fields 14
/// and 15 of `/proc/<pid>/stat`, in clock ticks of 1/100 s (Linux's `USER_HZ`).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; the fields after it are plain.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// The processes whose CPU time each phase reports: this one, the simulator and the artifact
/// server (all three share the machine's cores).
struct CpuAccounts(Vec<(&'static str, String)>);

impl CpuAccounts {
    fn snapshot(&self) -> Vec<Option<f64>> {
        self.0.iter().map(|(_, pid)| cpu_seconds(pid)).collect()
    }

    /// `label CPU s` for each process, from two snapshots.
    fn describe(&self, before: &[Option<f64>], after: &[Option<f64>]) -> String {
        self.0
            .iter()
            .zip(before.iter().zip(after))
            .map(|((label, _), (before, after))| match (before, after) {
                (Some(before), Some(after)) => format!("{label} {:.2} s", after - before),
                _ => format!("{label} n/a"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Resets this process's peak RSS to its current RSS (Linux `clear_refs` 5), so the next
/// reading covers one phase only. Returns whether the kernel allowed it.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The `otaplane` binary: `OTAPLANE_BIN`, else the one next to this benchmark's `deps`
/// directory, built first if it is missing.
fn otaplane_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("OTAPLANE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the benchmark knows its path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("benchmarks run from <target>/<profile>/deps");
    let binary = profile_dir.join("otaplane");
    if !binary.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "--release", "--bin", "otaplane"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(built.success(), "cargo build --release --bin otaplane");
    }
    binary
}

fn iotda_spec(version: &str) -> PackageSpec {
    PackageSpec {
        namespace: "bench".into(),
        name: "big".into(),
        version: version.into(),
        description: None,
        vendor: PackageVendorSpec::Iotda {
            product_id: "prod1".into(),
            app_id: Some(support::IOTDA_APP_ID.into()),
            package_type: "firmwarePackage".into(),
            module_name: None,
            support_source_versions: Vec::new(),
            custom_info: None,
        },
    }
}

/// When the last response of each vendor call arrived, and how many there were.
#[derive(Default)]
struct Timeline(Mutex<HashMap<&'static str, (Instant, usize)>>);

impl CallObserver for Timeline {
    fn on_attempt(&self, _: &'static str, endpoint: &'static str, _: Option<u16>) {
        let mut calls = self.0.lock().unwrap();
        let entry = calls.entry(endpoint).or_insert((Instant::now(), 0));
        *entry = (Instant::now(), entry.1 + 1);
    }
}

impl Timeline {
    /// Seconds from `start` to the last response of `endpoint`, and the number of calls.
    fn last(&self, endpoint: &str, start: Instant) -> Option<(f64, usize)> {
        self.0
            .lock()
            .unwrap()
            .get(endpoint)
            .map(|(at, count)| ((*at - start).as_secs_f64(), *count))
    }
}

/// One measured phase.
struct Phase {
    label: String,
    /// When the timing started (after the `sync`).
    started: Instant,
    seconds: f64,
    peak_rss_mib: Option<f64>,
    /// CPU seconds each process spent during the phase.
    cpu: String,
    /// Where the time went, printed under the phase.
    detail: Option<String>,
}

/// Runs `work` as one phase: wall time and this process's peak RSS during it. Dirty pages left
/// by earlier phases (each writes gigabytes: spool files, the simulator's objects) are flushed
/// first with `sync`, outside the timing, so that no phase pays for another's writeback.
async fn measure<T>(
    label: impl Into<String>,
    phases: &mut Vec<Phase>,
    accounts: &CpuAccounts,
    work: impl Future<Output = T>,
) -> T {
    // Without `sync` the phases still run, only less comparably.
    let _ = Command::new("sync").status();
    let resettable = reset_peak_rss();
    let cpu_before = accounts.snapshot();
    let started = Instant::now();
    let output = work.await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = accounts.describe(&cpu_before, &accounts.snapshot());
    phases.push(Phase {
        label: label.into(),
        started,
        seconds,
        peak_rss_mib: resettable
            .then(|| vm_hwm_mib("/proc/self/status"))
            .flatten(),
        cpu,
        detail: None,
    });
    output
}

async fn run() {
    let mib: usize = std::env::var("OTAPLANE_BENCH_MIB")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1024);
    let size = (mib as u64) << 20;
    let load_at_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let work = tempfile::tempdir().unwrap();
    let source = write_random_file(work.path(), mib);
    let openssl = openssl_seconds(&source);

    // The simulator spools uploads under TMPDIR: a directory of ours, so nothing outlives the
    // benchmark even if the simulator has to be killed. It is on tmpfs where there is one: the
    // simulator stands in for the vendor's storage, whose disk writes are not the client's
    // cost (the client's spool file stays in the system temporary directory).
    let sim_tmp = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let mut sim_command = Command::new(otaplane_binary());
    sim_command
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--obs-listen",
            "127.0.0.1:0",
        ])
        .env("TMPDIR", sim_tmp.path());
    let (sim, sim_urls) =
        ChildProcess::start("otaplane sim", sim_command, &["ThingSpace", "IoTDA", "OBS"]);
    let mut server_command = Command::new(std::env::current_exe().unwrap());
    server_command.env(SERVE_ARTIFACT_ENV, &source);
    let (server, server_urls) =
        ChildProcess::start("artifact server", server_command, &["artifact"]);

    let spool = tempfile::tempdir().unwrap();
    let fetcher = ArtifactFetcher::new(ArtifactPolicy {
        spool_dir: Some(spool.path().to_path_buf()),
        ..ArtifactPolicy::default()
    });
    let request = ArtifactRequest {
        url: server_urls["artifact"].clone(),
        expected_sha256: openssl.as_ref().map(|(_, digest)| digest.clone()),
        headers: Vec::new(),
        max_size_bytes: size,
    };
    let iotda = support::iotda_at(
        &sim_urls["IoTDA"],
        &sim_urls["OBS"],
        SigningChoice::Automatic,
        DEFAULT_PART_SIZE,
        "",
    );
    let thingspace = support::thingspace_at(&sim_urls["ThingSpace"], "demo-password");
    let part_mib = DEFAULT_PART_SIZE >> 20;
    let mut phases = Vec::new();
    let accounts = CpuAccounts(vec![
        ("this process", "self".to_string()),
        ("simulator", sim.id().to_string()),
        ("artifact server", server.id().to_string()),
    ]);

    let artifact = measure(
        "fetch + SHA-256 + spool",
        &mut phases,
        &accounts,
        fetcher.fetch(&request),
    )
    .await
    .unwrap();
    drop(artifact);

    // Both IoTDA paths are timed from the first byte fetched to the package created, so each
    // phase writes the same gigabytes (client spool, simulator parts and object).
    let (fetch_seconds, registered) = measure(
        format!(
            "IoTDA fetch, then OBS multipart from the spool file ({part_mib} MiB parts, 4 at once) + create package"
        ),
        &mut phases,
        &accounts,
        async {
            let started = Instant::now();
            let artifact = fetcher.fetch(&request).await.unwrap();
            let fetch_seconds = started.elapsed().as_secs_f64();
            let registered = iotda
                .register_package(
                    &iotda_spec("V1.0"),
                    artifact.path(),
                    artifact.sha256(),
                    artifact.size(),
                    "big.bin",
                )
                .await
                .unwrap();
            assert_eq!(registered.sha256.as_deref(), Some(artifact.sha256()));
            (fetch_seconds, registered)
        },
    )
    .await;
    drop(registered);
    if let Some(phase) = phases.last_mut() {
        phase.detail = Some(format!(
            "fetch {fetch_seconds:.2} s, then upload + create package {:.2} s",
            phase.seconds - fetch_seconds
        ));
    }

    let thingspace_spec = PackageSpec {
        namespace: "bench".into(),
        name: "big".into(),
        version: "1.1".into(),
        description: None,
        vendor: PackageVendorSpec::ThingSpace {
            make: "Acme".into(),
            model: "X1".into(),
            local_target_path: "/VZWFOTA/big-one-pass.bin".into(),
        },
    };
    let (one_pass_artifact, _) = measure(
        "ThingSpace one pass (upload while downloading, last chunk held until the checksum matched)",
        &mut phases,
        &accounts,
        fetch_and_register_thingspace(&fetcher, &request, &thingspace, &thingspace_spec),
    )
    .await
    .unwrap();
    drop(one_pass_artifact);

    let timeline = Arc::new(Timeline::default());
    let observed_iotda = iotda.clone().with_observer(timeline.clone());
    let (one_pass_artifact, registered) = measure(
        format!(
            "IoTDA one pass (OBS parts of {part_mib} MiB sent while downloading, completed after the checksum matched)"
        ),
        &mut phases,
        &accounts,
        fetch_and_register_iotda(
            &fetcher,
            &request,
            &observed_iotda,
            &iotda_spec("V1.1"),
            "big.bin",
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        registered.sha256.as_deref(),
        Some(one_pass_artifact.sha256())
    );
    drop(one_pass_artifact);
    let phase = phases.last_mut().expect("measured above");
    if let (Some((parts_done, parts)), Some((completed, _)), Some((created, _))) = (
        timeline.last("upload_part", phase.started),
        timeline.last("complete_multipart_upload", phase.started),
        timeline.last("create_ota_package", phase.started),
    ) {
        phase.detail = Some(format!(
            "download + {parts} parts up after {parts_done:.2} s; OBS completion {:.2} s; create package {:.2} s",
            completed - parts_done,
            created - completed
        ));
    }

    let sim_peak = sim.peak_rss_mib();
    let server_peak = server.peak_rss_mib();
    drop(server);
    drop(sim);

    let mib_f = mib as f64;
    println!(
        "artifact: {mib} MiB of random bytes over loopback; simulator ({}) and artifact server in their own processes",
        sim_urls["IoTDA"]
    );
    println!(
        "client spool: {}; simulator storage: {}",
        spool.path().display(),
        sim_tmp.path().display()
    );
    if let Some(load) = load_at_start.split_whitespace().next() {
        println!(
            "load average (1 min) at start: {load} on {} CPUs",
            std::thread::available_parallelism().map_or(0, usize::from)
        );
    }
    match &openssl {
        Some((seconds, _)) => println!(
            "openssl dgst -sha256 (floor): {seconds:.2} s ({:.0} MiB/s)",
            mib_f / seconds
        ),
        None => println!("openssl dgst -sha256: not available (no checksum gate)"),
    }
    for phase in &phases {
        let ratio = openssl.as_ref().map_or("n/a".to_string(), |(floor, _)| {
            format!("{:.2}x", phase.seconds / floor)
        });
        let rss = phase
            .peak_rss_mib
            .map_or("n/a".to_string(), |mib| format!("{mib:.1} MiB"));
        println!(
            "{}: {:.2} s ({:.0} MiB/s), {ratio} of openssl, peak RSS {rss}",
            phase.label,
            phase.seconds,
            mib_f / phase.seconds
        );
        println!("  CPU: {}", phase.cpu);
        if let Some(detail) = &phase.detail {
            println!("  {detail}");
        }
    }
    // With per-phase resets the highest phase is the run's peak; without them VmHWM also
    // covers writing the random file.
    let client_peak = phases
        .iter()
        .filter_map(|phase| phase.peak_rss_mib)
        .reduce(f64::max)
        .or_else(|| vm_hwm_mib("/proc/self/status"));
    println!(
        "peak RSS of this process (client side) over the measured phases: {:.1} MiB",
        client_peak.unwrap_or(f64::NAN)
    );
    println!(
        "for reference, peak RSS of the simulator process: {:.1} MiB, of the artifact server: {:.1} MiB",
        sim_peak.unwrap_or(f64::NAN),
        server_peak.unwrap_or(f64::NAN)
    );
}
