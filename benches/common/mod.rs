//! Measurement helpers shared by the root benchmarks (each declares `mod common;`).
#![allow(dead_code)]

use std::time::Duration;

/// Peak resident set size of this process (`VmHWM`), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Prints the best of several upload runs of `bytes` each, with every run's time.
pub fn print_upload_runs(label: &str, bytes: u64, timings: &[Duration]) {
    let best = timings.iter().min().copied().unwrap_or_default();
    let mib = bytes as f64 / (1024.0 * 1024.0);
    println!(
        "{label}: best {:.2} s ({:.0} MiB/s), runs {:?}",
        best.as_secs_f64(),
        mib / best.as_secs_f64(),
        timings
            .iter()
            .map(|t| format!("{:.2}s", t.as_secs_f64()))
            .collect::<Vec<_>>()
    );
}

/// Writes `mib` MiB of seeded random bytes to `dir/artifact.bin` and returns its path.
pub fn write_random_file(dir: &std::path::Path, mib: usize) -> std::path::PathBuf {
    use rand::{RngCore, SeedableRng};
    use std::io::Write;
    let path = dir.join("artifact.bin");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        rng.fill_bytes(&mut block);
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
    path
}

/// How long `openssl dgst -sha256` takes over `path` (the hashing floor), and the digest it
/// printed; `None` without openssl.
pub fn openssl_seconds(path: &std::path::Path) -> Option<(f64, String)> {
    let started = std::time::Instant::now();
    let output = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-r"])
        .arg(path)
        .output()
        .ok()?;
    let elapsed = started.elapsed().as_secs_f64();
    let digest = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()?
        .to_string();
    Some((elapsed, digest))
}
