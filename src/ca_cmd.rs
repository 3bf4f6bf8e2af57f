//! `meshrig ca` — the certificate authority, standalone.
//!
//! `meshrig ca init` writes a new root (certificate and key); `meshrig ca issue` writes
//! a workload's SPIFFE SVID, its key and the trust bundle, for offline use and tests;
//! `meshrig ca serve` runs the CSR-signing HTTPS API (prints `ca listening on ADDR`,
//! then `ready`, on stdout, so tests and scripts can use port 0); `meshrig ca rotate`
//! starts a root rotation on a running CA; `meshrig ca bench` measures a running CA's
//! signing throughput with N concurrent clients.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use mesh_ca::roots::humanize;
use mesh_ca::tokens::generate_token;
use mesh_ca::{Ca, CaClient, CaServer, ServerConfig, SignOn, Tokens};

use crate::exit::usage;

/// The certificate authority: make a root, issue SPIFFE workload certificates, serve
/// the CSR-signing API, rotate its root.
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
    /// Run the CA: sign workloads' CSRs over HTTPS for holders of bootstrap tokens.
    Serve(Box<ServeArgs>),
    /// Start a root rotation on a running CA (both roots trusted for the overlap).
    #[command(after_help = "Example:\n  \
        meshrig ca rotate --ca 127.0.0.1:15012 --admin-token-file state/admin-token \\\n      \
        --ca-root state/root-cert.pem --overlap 48h")]
    Rotate(RotateArgs),
    /// Measure a running CA: N clients send CSRs over keep-alive connections for a
    /// fixed time; prints CSRs/s and latency.
    Bench(BenchArgs),
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

/// Where a CA's certificate and key come from: files, or a new root.
#[derive(Debug, clap::Args)]
struct CaFiles {
    /// The signing CA's certificate (PEM; a root or an intermediate), optionally
    /// followed by its issuers (intermediate first, up to the root). Leaves carry the
    /// intermediates. Default: a new root.
    #[arg(long, value_name = "FILE", requires = "ca_key")]
    ca_cert: Option<PathBuf>,
    /// The signing CA's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    ca_key: Option<PathBuf>,
    /// The trust bundle for a loaded CA: the root(s) its chain leads to (PEM).
    /// Default: the last certificate of --ca-cert.
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    root_cert: Option<PathBuf>,
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
    #[command(flatten)]
    files: CaFiles,
    /// Where to write (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "API (HTTPS, TLS 1.3, HTTP/1.1 keep-alive; details in docs/cli.md):\n  \
    POST /v1/sign    {\"csr\": PEM, \"ttl_s\": N}  + Authorization: Bearer <token>\n       \
         -> {\"cert_chain\", \"bundle\", \"not_before\", \"not_after\"}\n  \
    GET  /v1/bundle  every root trusted now (PEM)\n  \
    POST /v1/rotate  {\"overlap_s\": N}  + the admin token -> the rotation's timeline\n  \
    GET  /ready, GET /metrics (Prometheus text)\n\n\
Refusals are 4xx with {\"error\": \"<why>\"} and one JSON line on stderr: 401 for a\n\
missing or unknown token, 403 when the CSR asks for another identity than the token's.\n\n\
Tokens file (JSON): [{\"token\": \"...\", \"namespace\": \"default\", \"serviceAccount\": \"reviews\"}]\n\n\
Example:\n  \
    meshrig ca serve --state-dir state/ --token s3cret=default/reviews\n  \
    meshrig proxy ... --ca 127.0.0.1:15012 --ca-root state/root-cert.pem"
)]
struct ServeArgs {
    /// Address to listen on (IP:PORT; port 0 picks a free one).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:15012")]
    listen: String,
    /// The SPIFFE trust domain.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    #[command(flatten)]
    files: CaFiles,
    /// Directory for root-cert.pem (the trust bundle, rewritten whenever it changes),
    /// a generated admin-token (created if missing), and a generated root's
    /// signing-cert.pem and signing-key.pem (0600): a CA restarted with the same
    /// directory signs with the same root.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Bootstrap tokens file (JSON list of {token, namespace, serviceAccount}).
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// A bootstrap token bound to namespace/serviceaccount (repeatable).
    #[arg(long = "token", value_name = "TOKEN=NS/SA")]
    token: Vec<String>,
    /// The token POST /v1/rotate needs. Default: a new one written to
    /// STATE_DIR/admin-token (without --state-dir, rotation is disabled).
    #[arg(long, value_name = "TOKEN")]
    admin_token: Option<String>,
    /// Certificate lifetime when a request names none.
    #[arg(long, value_name = "D", default_value = "24h", value_parser = parse_ttl)]
    ttl: Duration,
    /// The longest lifetime handed out (longer requests are capped).
    #[arg(long, value_name = "D", default_value = "24h", value_parser = parse_ttl)]
    max_ttl: Duration,
    /// Another name for the API's certificate: an IP or DNS name (repeatable;
    /// localhost and the listen IP are always there).
    #[arg(long, value_name = "NAME")]
    san: Vec<String>,
    /// Worker threads. Default: one per core.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    /// Where CSRs are signed: on the connection's task (inline) or tokio's blocking
    /// pool.
    #[arg(long, value_name = "WHERE", default_value = "inline", value_parser = ["inline", "blocking"])]
    sign_on: String,
    /// Shut down when stdin reaches end of file (for a parent that pipes stdin, so the
    /// CA never outlives it).
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

/// How to reach a running CA.
#[derive(Debug, clap::Args)]
struct CaTarget {
    /// The CA's API address (HOST:PORT).
    #[arg(long = "ca", value_name = "HOST:PORT")]
    ca: String,
    /// The trust bundle to verify the CA's certificate with (e.g. STATE_DIR/root-cert.pem).
    #[arg(long, value_name = "FILE")]
    ca_root: PathBuf,
}

#[derive(Debug, clap::Args)]
struct RotateArgs {
    #[command(flatten)]
    target: CaTarget,
    /// The CA's admin token.
    #[arg(
        long,
        value_name = "TOKEN",
        required_unless_present = "admin_token_file"
    )]
    admin_token: Option<String>,
    /// A file holding the CA's admin token (as `ca serve --state-dir` writes it).
    #[arg(long, value_name = "FILE", conflicts_with = "admin_token")]
    admin_token_file: Option<PathBuf>,
    /// How long both roots are trusted; the new root signs after half of it. At least
    /// twice the workload TTL (a shorter one is allowed, with a warning).
    #[arg(long, value_name = "D", value_parser = parse_ttl)]
    overlap: Duration,
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    #[command(flatten)]
    target: CaTarget,
    /// A bootstrap token of the CA.
    #[arg(long, value_name = "TOKEN")]
    token: String,
    /// The SPIFFE trust domain.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// The token's namespace.
    #[arg(long, default_value = "default")]
    ns: String,
    /// The token's service account.
    #[arg(long)]
    sa: String,
    /// Clients sending at once, each waiting for its answer before the next CSR.
    #[arg(long, value_name = "N", default_value = "16", value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: u16,
    /// How long to send for (after a 1 s warm-up that is not counted).
    #[arg(long, value_name = "D", default_value = "10s", value_parser = parse_ttl)]
    duration: Duration,
    /// Lifetime asked for.
    #[arg(long, value_name = "D", default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,
    /// Worker threads of the client.
    #[arg(long, value_name = "N", default_value = "1", value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    json: bool,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let d = results::units::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(1) {
        return Err(format!("{s}: must be at least 1s"));
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
            let ca = load_or_generate(&a.trust_domain, &a.files)?;
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
        CaCommand::Serve(a) => return serve(*a),
        CaCommand::Rotate(a) => return rotate(a),
        CaCommand::Bench(a) => return bench(a),
    }
    Ok(ExitCode::SUCCESS)
}

fn read(path: &Path, flag: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| usage(format!("{flag} {}: {e}", path.display())))
}

/// The CA from --ca-cert/--ca-key (and --root-cert), or a new root.
fn load_or_generate(trust_domain: &str, files: &CaFiles) -> anyhow::Result<Ca> {
    match (&files.ca_cert, &files.ca_key) {
        (Some(cert), Some(key)) => {
            let roots = match &files.root_cert {
                Some(p) => Some(read(p, "--root-cert")?),
                None => None,
            };
            Ca::load_with_roots(
                trust_domain,
                &read(cert, "--ca-cert")?,
                &read(key, "--ca-key")?,
                roots.as_deref(),
            )
            .map_err(|e| usage(format!("--ca-cert/--ca-key: {e}")))
        }
        _ => Ca::generate(trust_domain).map_err(|e| usage(format!("--trust-domain: {e}"))),
    }
}

// === serve ===

fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let listen: SocketAddr = a.listen.parse().map_err(|_| {
        usage(format!(
            "--listen: '{}' is not an IP:PORT address (e.g. 127.0.0.1:15012, port 0 for any free port)",
            a.listen
        ))
    })?;
    if a.ttl > a.max_ttl {
        return Err(usage(format!(
            "--ttl ({}) is longer than --max-ttl ({})",
            humanize(a.ttl),
            humanize(a.max_ttl)
        )));
    }
    let mut tokens = match &a.tokens {
        Some(path) => Tokens::from_json(&read(path, "--tokens")?, &path.display().to_string())
            .map_err(|e| usage(format!("--tokens {e}")))?,
        None => Tokens::new(),
    };
    for value in &a.token {
        let (token, id) = Tokens::parse_flag(value).map_err(|e| usage(format!("--token {e}")))?;
        tokens
            .insert(&token, &id.namespace, &id.service_account)
            .map_err(|e| usage(format!("--token '{value}': {e}")))?;
    }
    if let Some(dir) = &a.state_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| usage(format!("--state-dir {}: {e}", dir.display())))?;
    }
    // A generated root is kept in the state directory, so a restarted CA signs with
    // the root its workloads already trust.
    let saved = a
        .state_dir
        .as_ref()
        .filter(|_| a.files.ca_cert.is_none())
        .map(|d| (d.join("signing-cert.pem"), d.join("signing-key.pem")))
        .filter(|(c, k)| c.exists() && k.exists());
    let (ca, origin) = match &saved {
        Some((cert, key)) => (
            Ca::restore(
                &a.trust_domain,
                &read(cert, "--state-dir")?,
                &read(key, "--state-dir")?,
            )
            .map_err(|e| usage(format!("--state-dir {}: {e}", cert.display())))?,
            "the generated root saved in --state-dir",
        ),
        None if a.files.ca_cert.is_some() => (
            load_or_generate(&a.trust_domain, &a.files)?,
            "loaded from --ca-cert (rotation refused: restart with new files)",
        ),
        None => {
            let ca = load_or_generate(&a.trust_domain, &a.files)?;
            if let Some(dir) = &a.state_dir {
                write(dir, "signing-cert.pem", ca.cert_pem())?;
                write(dir, "signing-key.pem", &ca.key_pem())?;
            }
            (ca, "a generated root")
        }
    };
    let admin_token = match (&a.admin_token, &a.state_dir) {
        (Some(t), _) => {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(usage(
                    "--admin-token: must be non-empty printable ASCII without spaces",
                ));
            }
            Some(t.clone())
        }
        (None, Some(dir)) => {
            let token = generate_token();
            write(dir, "admin-token", &format!("{token}\n"))?;
            eprintln!(
                "meshrig ca: admin token written to {}",
                dir.join("admin-token").display()
            );
            Some(token)
        }
        (None, None) => {
            eprintln!(
                "meshrig ca: no --admin-token and no --state-dir: POST /v1/rotate is disabled"
            );
            None
        }
    };
    if tokens.is_empty() {
        eprintln!(
            "meshrig ca: no bootstrap tokens (--tokens, --token): every signing request will be refused"
        );
    }
    let token_count = tokens.len();
    let trust_domain = ca.trust_domain().to_owned();
    let mut config = ServerConfig::new(ca, tokens);
    config.admin_token = admin_token;
    config.default_ttl = a.ttl;
    config.max_ttl = a.max_ttl;
    config.bundle_file = a.state_dir.as_ref().map(|d| d.join("root-cert.pem"));
    if a.files.ca_cert.is_none() {
        config.signing_dir.clone_from(&a.state_dir);
    }
    config.extra_names = a.san.clone();
    config.sign_on = if a.sign_on == "blocking" {
        SignOn::Blocking
    } else {
        SignOn::Inline
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = a.threads {
        builder.worker_threads(usize::from(n));
    }
    let runtime = builder.enable_all().build()?;
    runtime.block_on(async move {
        let stop = crate::control_cmd::stop(a.exit_on_stdin_eof)?;
        let server = CaServer::bind(listen, config).await.map_err(|e| match e {
            mesh_ca::ServerError::Bind { .. } => anyhow::anyhow!("{e}"),
            other => usage(other.to_string()),
        })?;
        let addr = server.local_addr();
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "ca listening on {addr}");
            let _ = writeln!(out, "ready");
            let _ = out.flush();
        }
        eprintln!(
            "meshrig ca: trust domain {trust_domain}, {origin}, {token_count} token(s), TTL {} (max {}){}",
            humanize(a.ttl),
            humanize(a.max_ttl),
            a.state_dir
                .as_ref()
                .map(|d| format!(", bundle in {}", d.join("root-cert.pem").display()))
                .unwrap_or_default()
        );
        server
            .serve(async move {
                let reason = stop.await;
                eprintln!("meshrig ca: {reason}: shutting down");
            })
            .await;
        anyhow::Ok(())
    })?;
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(ExitCode::SUCCESS)
}

// === rotate ===

fn rotate(a: RotateArgs) -> anyhow::Result<ExitCode> {
    let token = match (&a.admin_token, &a.admin_token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(p)) => read(p, "--admin-token-file")?.trim().to_owned(),
        (None, None) => return Err(usage("--admin-token or --admin-token-file is required")),
    };
    let roots = read(&a.target.ca_root, "--ca-root")?;
    let client = CaClient::new(&a.target.ca, &token, &roots)
        .map_err(|e| usage(format!("--ca/--ca-root: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let rotated = runtime
        .block_on(client.rotate(a.overlap))
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.target.ca))?;
    let at = |unix_s: u64| {
        humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(unix_s))
    };
    println!(
        "rotation started at {} (overlap {})",
        at(rotated.started),
        humanize(a.overlap)
    );
    println!("  now: both roots are trusted; the old root still signs");
    println!(
        "  {} (+{}s): the new root signs",
        at(rotated.switch_at),
        rotated.switch_at - rotated.started
    );
    println!(
        "  {} (+{}s): the old root leaves the bundle",
        at(rotated.drop_old_at),
        rotated.drop_old_at - rotated.started
    );
    if let Some(note) = &rotated.note {
        eprintln!("meshrig ca rotate: warning: {note}");
    }
    Ok(ExitCode::SUCCESS)
}

// === bench ===

/// What each bench client counted.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    /// Latencies of the counted requests, µs (at most `MAX_SAMPLES` per client).
    latencies_us: Vec<u32>,
}

/// Latency samples kept per client (a bound on memory: 16 clients × 1M × 4 bytes).
const MAX_SAMPLES: usize = 1_000_000;
const WARMUP: Duration = Duration::from_secs(1);

fn bench(a: BenchArgs) -> anyhow::Result<ExitCode> {
    let roots = read(&a.target.ca_root, "--ca-root")?;
    let client = CaClient::new(&a.target.ca, &a.token, &roots)
        .map_err(|e| usage(format!("--ca/--ca-root/--token: {e}")))?;
    let csr = mesh_ca::generate_csr(&a.trust_domain, &a.ns, &a.sa)
        .map_err(|e| usage(format!("--trust-domain/--ns/--sa: {e}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(a.threads))
        .enable_all()
        .build()?;
    let (ttl, duration, addr) = (a.ttl, a.duration, a.target.ca.clone());
    let (tallies, elapsed) = runtime.block_on(async move {
        // One signing first: a CA that refuses is a failed run, not a benchmark.
        client
            .sign(&csr.csr_pem, ttl)
            .await
            .map_err(|e| anyhow::anyhow!("{addr}: {e}"))?;
        let start = Instant::now();
        let (count_from, end) = (start + WARMUP, start + WARMUP + duration);
        let tasks: Vec<_> = (0..a.concurrency)
            .map(|_| {
                let (client, csr_pem) = (client.clone(), csr.csr_pem.clone());
                tokio::spawn(async move {
                    let mut t = Tally::default();
                    loop {
                        let sent = Instant::now();
                        if sent >= end {
                            return t;
                        }
                        let result = client.sign(&csr_pem, ttl).await;
                        if sent < count_from {
                            continue;
                        }
                        match result {
                            Ok(_) => {
                                t.ok += 1;
                                if t.latencies_us.len() < MAX_SAMPLES {
                                    let us = sent.elapsed().as_micros();
                                    t.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                                }
                            }
                            Err(e) => {
                                t.errors += 1;
                                t.first_error.get_or_insert_with(|| e.to_string());
                            }
                        }
                    }
                })
            })
            .collect();
        let mut tallies = Vec::new();
        for task in tasks {
            tallies.push(task.await?);
        }
        let elapsed = start.elapsed().saturating_sub(WARMUP);
        anyhow::Ok((tallies, elapsed))
    })?;
    let ok: u64 = tallies.iter().map(|t| t.ok).sum();
    let errors: u64 = tallies.iter().map(|t| t.errors).sum();
    let mut latencies: Vec<u32> = tallies
        .iter()
        .flat_map(|t| t.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() - 1) as f64 * p).round() as usize;
        f64::from(latencies[i]) / 1000.0
    };
    let secs = elapsed.as_secs_f64();
    let rate = ok as f64 / secs;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "ca": a.target.ca,
                "concurrency": a.concurrency,
                "duration_s": secs,
                "signed": ok,
                "errors": errors,
                "csrs_per_s": rate,
                "latency_ms": { "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0) },
            })
        );
    } else {
        println!(
            "signed {ok} CSRs in {secs:.2}s with {} clients: {rate:.0} CSRs/s; latency p50 {:.2}ms p90 {:.2}ms p99 {:.2}ms max {:.2}ms; {errors} errors",
            a.concurrency,
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(1.0)
        );
    }
    if let Some(e) = tallies.iter().find_map(|t| t.first_error.as_ref()) {
        eprintln!("meshrig ca bench: first error: {e}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `name` in `dir` (created if missing); keys and tokens are readable by the
/// owner only.
fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| usage(format!("--out {}: {e}", dir.display())))?;
    let path = dir.join(name);
    std::fs::write(&path, text)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    #[cfg(unix)]
    if name.contains("key") || name.contains("token") {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: CaArgs,
    }

    fn run_args(argv: &[&str]) -> anyhow::Result<ExitCode> {
        let cli = Cli::try_parse_from(std::iter::once("ca").chain(argv.iter().copied()))
            .expect("flags parse");
        run(cli.args)
    }

    #[test]
    fn bad_serve_input_is_a_usage_error_naming_the_flag() {
        let dir = std::env::temp_dir().join(format!("meshrig-ca-cmd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad_tokens = dir.join("tokens.json");
        std::fs::write(
            &bad_tokens,
            r#"[{"token": "t", "namespace": "a/b", "serviceAccount": "x"}]"#,
        )
        .unwrap();
        let bad_tokens = bad_tokens.display().to_string();
        for (argv, says) in [
            (vec!["--listen", "localhost"], "--listen"),
            (vec!["--token", "abc"], "--token 'abc': no '='"),
            (
                vec!["--tokens", "/nonexistent/tokens.json"],
                "--tokens /nonexistent",
            ),
            (
                vec!["--tokens", bad_tokens.as_str()],
                "[0]: namespace 'a/b'",
            ),
            (
                vec!["--ttl", "48h"],
                "--ttl (48h) is longer than --max-ttl (24h)",
            ),
            (
                vec![
                    "--ca-cert",
                    "/nonexistent/c.pem",
                    "--ca-key",
                    "/nonexistent/k.pem",
                ],
                "--ca-cert /nonexistent/c.pem",
            ),
            (vec!["--trust-domain", "Bad Domain"], "--trust-domain"),
        ] {
            let mut full = vec!["serve"];
            if !argv.contains(&"--listen") {
                full.extend(["--listen", "127.0.0.1:0"]);
            }
            full.extend(&argv);
            let err = run_args(&full).expect_err("should fail");
            assert!(
                err.downcast_ref::<crate::exit::UsageError>().is_some(),
                "{argv:?}: not a usage error: {err}"
            );
            assert!(err.to_string().contains(says), "{argv:?}: {err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert!(Cli::try_parse_from(["ca", "serve", "--sign-on", "elsewhere"]).is_err());
        assert!(Cli::try_parse_from(["ca", "rotate", "--ca", "x:1", "--ca-root", "r"]).is_err());
    }
}
