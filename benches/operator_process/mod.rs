//! `otaplane run` as a child process of a benchmark, against the benchmark's kube-lite, so its
//! own peak RSS and CPU time can be read from `/proc/<pid>`. Shared by the operator benchmarks
//! (each declares `mod operator_process;`).
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Kernel clock ticks per second for `/proc/<pid>/stat` times (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// Extra environment for the operator child only: `NAME=VALUE` pairs separated by commas,
/// for example `MALLOC_ARENA_MAX=2`.
pub const OPERATOR_ENV: &str = "OTAPLANE_BENCH_OPERATOR_ENV";

/// The `otaplane` binary: `OTAPLANE_BIN` when set, else the one Cargo built for this benchmark
/// (`<target>/release/otaplane`).
pub fn otaplane_binary() -> PathBuf {
    std::env::var_os("OTAPLANE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_otaplane")))
}

/// Memory and CPU of a process, from `/proc/<pid>/status` and `/proc/<pid>/stat`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessUsage {
    /// Peak resident set size (`VmHWM`), MiB.
    pub peak_rss_mib: f64,
    /// Current resident set size (`VmRSS`), MiB.
    pub rss_mib: f64,
    /// Threads.
    pub threads: u64,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
}

impl ProcessUsage {
    /// The usage of process `pid` (`"self"` for this one), if `/proc` has it.
    pub fn of(pid: &str) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<f64> {
            let line = status.lines().find(|line| line.starts_with(name))?;
            line.split_whitespace().nth(1)?.parse().ok()
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces) start at field 3, `state`;
        // utime and stime are fields 14 and 15.
        let after_name = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |field: usize| -> Option<f64> { fields.get(field - 3)?.parse().ok() };
        Some(Self {
            peak_rss_mib: field("VmHWM:")? / 1024.0,
            rss_mib: field("VmRSS:")? / 1024.0,
            threads: field("Threads:")? as u64,
            cpu_seconds: (ticks(14)? + ticks(15)?) / USER_HZ,
        })
    }

    /// This process's usage.
    pub fn current() -> Option<Self> {
        Self::of("self")
    }
}

/// `otaplane run` in a child process; interrupted (SIGTERM) and reaped when dropped, so a
/// panicking benchmark leaves no operator behind.
pub struct OperatorProcess {
    child: Child,
    log: PathBuf,
    /// Holds the kubeconfig, the spool directory and the log; removed after the child.
    _dir: tempfile::TempDir,
}

impl OperatorProcess {
    /// Starts `otaplane run` against the API server described by `kubeconfig` (YAML), with
    /// the health/metrics server on an ephemeral loopback port, no leader election, a private
    /// spool directory, JSON logs at `log_level` into a file, and `flags` appended (for
    /// example `["--resync-interval", "10s"]`). [`OPERATOR_ENV`] adds environment variables.
    pub fn start(kubeconfig: &str, log_level: &str, flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let kubeconfig_path = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig_path, kubeconfig).expect("kubeconfig written");
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).expect("spool directory");
        let log = dir.path().join("operator.log");
        let mut command = Command::new(otaplane_binary());
        command
            .arg("run")
            .args(["--metrics-addr", "127.0.0.1:0", "--leader-elect", "false"])
            .arg("--spool-dir")
            .arg(&spool)
            .args(["--log-format", "json", "--log-level", log_level])
            .args(flags)
            .env("KUBECONFIG", &kubeconfig_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"));
        for (name, value) in child_env() {
            command.env(name, value);
        }
        let child = command.spawn().unwrap_or_else(|err| {
            panic!("{} run does not start: {err}", otaplane_binary().display())
        });
        Self {
            child,
            log,
            _dir: dir,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's memory and CPU so far.
    pub fn usage(&self) -> ProcessUsage {
        ProcessUsage::of(&self.pid().to_string()).unwrap_or_default()
    }

    /// Panics, with the end of the child's log, if it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "otaplane run exited early ({status}); log ends with:\n{}",
                log_tail(&self.log, 30)
            );
        }
    }

    /// The child's health/metrics address, from its log line announcing it (waits for it).
    pub fn http_addr(&mut self) -> std::net::SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let announced = text.split("\"http_addr\":\"").nth(1).and_then(|rest| {
                let end = rest.find('"')?;
                rest[..end].parse().ok()
            });
            if let Some(addr) = announced {
                return addr;
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "otaplane run never logged its address"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lines and bytes the child has logged so far.
    pub fn log_size(&self) -> (usize, u64) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        (text.lines().count(), text.len() as u64)
    }

    /// Sends SIGTERM (as Kubernetes does) and waits for the child to exit; returns its status
    /// and how long the shutdown took.
    pub fn stop(mut self) -> (ExitStatus, Duration) {
        let started = Instant::now();
        let status = self.terminate();
        (status, started.elapsed())
    }

    fn terminate(&mut self) -> ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status;
        }
        let signalled = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while signalled && Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("otaplane run did not stop on SIGTERM; killing it");
        let _ = self.child.kill();
        self.child.wait().expect("the child is reaped")
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// `otaplane_reconciles_total` by kind, scraped from the operator's `/metrics` at `addr`.
pub async fn reconciles_by_kind(
    addr: std::net::SocketAddr,
) -> std::collections::BTreeMap<String, u64> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("/metrics body");
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("otaplane_reconciles_total{kind=\"")?;
            let (kind, value) = rest.split_once("\"}")?;
            Some((kind.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The environment [`OPERATOR_ENV`] asks for.
fn child_env() -> Vec<(String, String)> {
    std::env::var(OPERATOR_ENV)
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
