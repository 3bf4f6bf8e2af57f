//! `meshrig` — a laboratory for service-mesh behaviour.
//!
//! The binary is a thin CLI: each verb parses its flags, turns them into the library
//! types of the crate that does the work, and maps the outcome to an exit code
//! (0 ok, 1 the run failed, 2 usage error).

mod app_cmd;
mod ca_cmd;
mod control_cmd;
mod echo_cmd;
mod exit;
mod load_cmd;
mod proxy_cmd;
mod route_cmd;
mod run_cmd;
mod signals;
mod summary;
mod validate_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A laboratory for service-mesh behaviour.
#[derive(Debug, Parser)]
#[command(name = "meshrig", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send HTTP load to a URL and measure latency (coordinated-omission corrected).
    Load(Box<load_cmd::LoadArgs>),
    /// Run an echo/test server (Fortio-compatible query parameters).
    Echo(echo_cmd::EchoArgs),
    /// Check Istio configuration files as one set (exit 0 valid, 1 invalid, 2 usage).
    Validate(validate_cmd::ValidateArgs),
    /// Show what the mesh would do with one request: route, retries, fault, authorization.
    Route(Box<route_cmd::RouteArgs>),
    /// Run a scenario file (in the simulator, or on real processes) and check its assertions.
    Run(Box<run_cmd::RunArgs>),
    /// Run the sidecar proxy on real sockets (outbound, inbound, admin listeners).
    Proxy(Box<proxy_cmd::ProxyArgs>),
    /// Run the control plane: versioned per-proxy configuration for `meshrig proxy --control`.
    Control(Box<control_cmd::ControlArgs>),
    /// Serve one instance of a scenario's application model (service time, errors,
    /// fan-out calls) on real sockets, as `meshrig run --mode real` does.
    App(Box<app_cmd::AppArgs>),
    /// The certificate authority: make a root, issue SPIFFE workload certificates.
    Ca(Box<ca_cmd::CaArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    loadgen::pem::install_crypto_provider();
    let outcome = match cli.command {
        Command::Load(args) => load_cmd::run(*args),
        Command::Echo(args) => echo_cmd::run(args),
        Command::Validate(args) => validate_cmd::run(args),
        Command::Route(args) => route_cmd::run(*args),
        Command::Run(args) => run_cmd::run(*args),
        Command::Proxy(args) => proxy_cmd::run(*args),
        Command::Control(args) => control_cmd::run(*args),
        Command::App(args) => app_cmd::run(*args),
        Command::Ca(args) => ca_cmd::run(*args),
    };
    exit::report("meshrig", outcome)
}
