//! The `otaplane` command line.
use clap::{Parser, Subcommand};

/// otaplane: declarative IoT firmware over-the-air updates on Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "otaplane", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions of the three otaplane kinds as one multi-document YAML
    /// stream (what `crds/` holds), ready for `kubectl apply -f -`.
    Crds,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds => {
            print!("{}", otaplane::api::crds_yaml());
            std::process::ExitCode::SUCCESS
        }
    }
}
