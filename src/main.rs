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
    /// Everything in one process, on loopback, no cluster or network needed: an in-memory
    /// Kubernetes API, the vendor simulator, an artifact server and the operator, rolling the
    /// demo firmware out to a simulated fleet on all three vendors.
    #[command(
        long_about = "Run the whole system in one process, on loopback, with no cluster, vendor \
account or network: kube-lite (an in-memory Kubernetes API server) with the otaplane CRDs, the \
vendor simulator with a demo fleet on a fast clock (--time-scale), a loopback server for a demo \
firmware image, and the operator. It then applies the manifests of examples/dev/ (a Secret, \
OtaProvider, FirmwarePackage and 3-wave UpgradeCampaign for ThingSpace, IoTDA and IoTaaP; \
${SIM_URL}, ${OBS_URL}, ${ARTIFACT_URL} and ${ARTIFACT_SHA256} are filled in at run time), \
shows a progress bar per campaign from its status (lines instead of bars when stderr is not a \
terminal), and when every campaign ended prints a summary like `kubectl get ota`. \
Exit status: 0 when every provider and package is Ready and every campaign Succeeded, 1 when \
something did not succeed, 2 when --timeout passed first, 130 when interrupted. With --serve \
everything keeps running afterwards and a kubeconfig is written to --kubeconfig-out, so the \
real kubectl can watch and change the resources (`kubectl --kubeconfig FILE get ota -w`), \
until Ctrl-C; the exit status is then the rollout's."
    )]
    Dev(otaplane::dev::DevArgs),
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
        Command::Dev(args) => {
            let outcome = tokio::runtime::Runtime::new()
                .map_err(|source| otaplane::dev::DevError::Io {
                    context: "starting the runtime".to_owned(),
                    source,
                })
                .and_then(|runtime| runtime.block_on(otaplane::dev::run(args)));
            match outcome {
                Ok(outcome) => outcome.exit_code(),
                Err(err) => {
                    eprintln!("otaplane dev: {err}");
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
