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
    /// Run the vendor simulator (ThingSpace, IoTDA, OBS, IoTaaP) with a simulated device fleet,
    /// a virtual clock and fault injection, for tests, demos and trying manifests in CI.
    #[command(
        long_about = "Run the vendor simulator. One listener serves Verizon ThingSpace \
(under /api), Huawei IoTDA (under /v5 and /v3), IoTaaP (under /v1) and the admin API (under \
/_sim: state, faults, clock, token expiry, devices); a second listener serves Huawei OBS. \
Devices upgrade on a virtual clock; faults come from the configuration or POST /_sim/faults. \
Without --config, built-in demo accounts are used: their user names are printed at start-up, \
the demo secrets are documented in the otaplane::sim::config module."
    )]
    Sim(otaplane::sim::SimArgs),
    /// Run the operator: reconcile OtaProviders, FirmwarePackages and UpgradeCampaigns against
    /// the vendors, using the in-cluster configuration or KUBECONFIG.
    #[command(
        long_about = "Run the operator. It connects with the in-cluster configuration or \
KUBECONFIG, watches the three otaplane kinds (and the Secrets they reference), makes the \
vendor side match, and writes what it observed into status. /metrics, /healthz and /readyz are \
served on --metrics-addr. With --leader-elect, replicas share a Lease and only the holder acts. \
SIGTERM or Ctrl-C shuts down gracefully: in-flight reconciles get --shutdown-grace to finish. \
Every flag can also be set with the environment variable shown."
    )]
    Run(otaplane::controller::args::RunArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds => {
            print!("{}", otaplane::api::crds_yaml());
            std::process::ExitCode::SUCCESS
        }
        Command::Run(args) => {
            let outcome = tokio::runtime::Runtime::new()
                .map_err(|err| otaplane::controller::args::CliError::Flags(err.to_string()))
                .and_then(|runtime| runtime.block_on(otaplane::controller::args::run(args)));
            match outcome {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("otaplane run: {err}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Command::Sim(args) => {
            let outcome = tokio::runtime::Runtime::new()
                .map_err(otaplane::sim::SimError::from)
                .and_then(|runtime| runtime.block_on(otaplane::sim::run(args)));
            match outcome {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("otaplane sim: {err}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}
