//! Measurement helpers shared by the root benchmarks (each declares `mod common;`).
#![allow(dead_code)]

pub mod campaigns;

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
