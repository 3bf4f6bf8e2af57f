//! `meshrig echo` (being written).
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct EchoArgs {}

pub fn run(_args: EchoArgs) -> anyhow::Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}
