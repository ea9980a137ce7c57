//! `kube-lite`: run the in-memory Kubernetes API server and print a kubeconfig for it.

use std::path::PathBuf;

use clap::Parser;

/// In-memory Kubernetes API server for tests and local development (HTTP, no auth).
#[derive(Debug, Parser)]
#[command(name = "kube-lite", version)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Load objects from this file at start and keep it up to date.
    #[arg(long)]
    state: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), kube_lite::Error> {
    let args = Args::parse();
    let options = kube_lite::Options {
        port: args.port,
        state_file: args.state,
        ..Default::default()
    };
    let server = kube_lite::Server::start(options).await?;
    println!(
        "# kube-lite listening on {}; save this as a kubeconfig:",
        server.url()
    );
    print!("{}", server.kubeconfig_yaml());
    let _ = tokio::signal::ctrl_c().await;
    server.shutdown().await
}
