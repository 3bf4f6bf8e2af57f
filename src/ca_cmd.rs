//! `meshrig ca` — the certificate authority, standalone.
//!
//! `meshrig ca init` writes a new root (certificate and key); `meshrig ca issue` writes
//! a workload's SPIFFE SVID, its key and the trust bundle, from a given root or a new
//! one, for offline use and tests. (`meshrig ca serve`, the CSR-signing API, is not
//! built yet.)

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use mesh_ca::Ca;

use crate::exit::usage;

/// The certificate authority: make a root, issue SPIFFE workload certificates.
#[derive(Debug, clap::Args)]
pub struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CaCommand {
    /// Write a new self-signed root: DIR/ca-cert.pem and DIR/ca-key.pem.
    Init(InitArgs),
    /// Write an X.509-SVID for one workload: DIR/cert.pem, DIR/key.pem, DIR/bundle.pem.
    #[command(after_help = "Example:\n  \
        meshrig ca issue --trust-domain cluster.local --ns default --sa reviews --out certs/\n  \
        openssl verify -CAfile certs/bundle.pem certs/cert.pem")]
    Issue(IssueArgs),
}

#[derive(Debug, clap::Args)]
struct InitArgs {
    /// The SPIFFE trust domain.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// Where to write (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct IssueArgs {
    /// The SPIFFE trust domain.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// The workload's namespace.
    #[arg(long, default_value = "default")]
    ns: String,
    /// The workload's service account.
    #[arg(long)]
    sa: String,
    /// Certificate lifetime (e.g. 24h, 1m, 30s).
    #[arg(long, value_name = "D", default_value = "24h", value_parser = parse_ttl)]
    ttl: Duration,
    /// The issuing CA's certificate (PEM; a root or an intermediate). Default: a new root.
    #[arg(long, value_name = "FILE", requires = "ca_key")]
    ca_cert: Option<PathBuf>,
    /// The issuing CA's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    ca_key: Option<PathBuf>,
    /// Where to write (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let d = results::units::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(1) {
        return Err(format!("{s}: a certificate lifetime must be at least 1s"));
    }
    Ok(d)
}

/// Runs `meshrig ca`.
pub fn run(args: CaArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        CaCommand::Init(a) => {
            let ca =
                Ca::generate(&a.trust_domain).map_err(|e| usage(format!("--trust-domain: {e}")))?;
            write(&a.out, "ca-cert.pem", ca.bundle_pem())?;
            write(&a.out, "ca-key.pem", &ca.key_pem())?;
            println!("wrote {}/ca-cert.pem and ca-key.pem", a.out.display());
        }
        CaCommand::Issue(a) => {
            let ca = match (&a.ca_cert, &a.ca_key) {
                (Some(cert), Some(key)) => {
                    let read = |p: &Path, flag: &str| {
                        std::fs::read_to_string(p)
                            .map_err(|e| usage(format!("{flag} {}: {e}", p.display())))
                    };
                    Ca::load(
                        &a.trust_domain,
                        &read(cert, "--ca-cert")?,
                        &read(key, "--ca-key")?,
                    )
                    .map_err(|e| usage(format!("--ca-cert/--ca-key: {e}")))?
                }
                _ => Ca::generate(&a.trust_domain)
                    .map_err(|e| usage(format!("--trust-domain: {e}")))?,
            };
            let issued = ca
                .issue(&a.ns, &a.sa, a.ttl)
                .map_err(|e| usage(format!("--ns/--sa/--ttl: {e}")))?;
            write(&a.out, "cert.pem", &issued.cert_pem)?;
            write(&a.out, "key.pem", &issued.key_pem)?;
            write(&a.out, "bundle.pem", ca.bundle_pem())?;
            println!(
                "wrote {}/cert.pem, key.pem and bundle.pem for {}",
                a.out.display(),
                mesh_ca::spiffe_id(&a.trust_domain, &a.ns, &a.sa)?
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `name` in `dir` (created if missing); keys are readable by the owner only.
fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| usage(format!("--out {}: {e}", dir.display())))?;
    let path = dir.join(name);
    std::fs::write(&path, text)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    #[cfg(unix)]
    if name.contains("key") {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
