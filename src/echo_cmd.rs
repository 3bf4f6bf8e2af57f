//! `meshrig echo` — the test server.
//!
//! Turns the flags into a [`loadgen::echo::EchoConfig`] (and a TLS config), binds the
//! address, prints `listening on ADDR` as the first stdout line (so tests and the
//! scenario runner can use port 0), and serves until SIGINT or SIGTERM, then drains
//! in-flight requests and exits 0. Everything else it says goes to stderr.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use loadgen::echo::{self, EchoConfig, EchoService, TlsConfigError, TlsServerConfig};
use results::units::{format_duration, parse_duration, parse_size};

use crate::exit::usage;
use crate::signals::stop_signal;

/// Run an echo/test server: echoes requests, shaped by Fortio-compatible query
/// parameters (delay, status, size, header, close); /healthz, /debug and /stats are
/// reserved.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Query parameters (on any path but /healthz, /debug, /stats):\n  \
    delay=10ms | delay=10ms:50,200ms:5     wait before answering (capped at --max-delay)\n  \
    status=503 | status=503:20,429:5       answer with this status (else 200)\n  \
    size=1000  | size=1KiB:50,64KiB:5      answer with N bytes instead of the echo\n  \
    header=X-Name:value                    add a response header (repeatable)\n  \
    close=true | close=5                   HTTP/1.1: close the connection after (5% of) responses\n\
Weighted lists give each value a percentage; the rest get the default.\n\n\
Examples:\n  \
    meshrig echo --addr 127.0.0.1:0\n  \
    meshrig echo --name reviews-v2 --seed 42\n  \
    curl 'http://127.0.0.1:8080/?delay=5ms:10&status=503:1'"
)]
pub struct EchoArgs {
    /// Address to listen on (IP:PORT). Port 0 picks a free port; the first stdout line
    /// is always `listening on ADDR`.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8080")]
    addr: String,

    /// TLS certificate chain (PEM, leaf first); needs --key. With TLS the port speaks
    /// HTTPS only, with ALPN h2 and http/1.1. Without it: HTTP/1.1 and h2c.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,

    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1); needs --cert.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,

    /// Add `x-meshrig-server: NAME` to every response (see `meshrig load
    /// --group-by-header`).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// Longest delay a request may ask for; longer ones are capped to this (and the
    /// response says `x-meshrig-delay-capped: true`).
    #[arg(long, value_name = "DURATION", default_value = "1.5s")]
    max_delay: String,

    /// Largest body: `size=` above this is a 400, a request body above it a 413.
    #[arg(long, value_name = "SIZE", default_value = "10MiB")]
    max_size: String,

    /// Seed for the weighted choices, so a run can be repeated (connection k uses
    /// SEED + k). Default: random.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,

    /// Tokio worker threads. 1 runs everything on one thread. Default: one per core.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

/// The flags, checked.
struct Settings {
    addr: SocketAddr,
    config: EchoConfig,
    service: EchoService,
    tls: Option<Arc<TlsServerConfig>>,
    threads: usize,
}

pub fn run(args: EchoArgs) -> anyhow::Result<ExitCode> {
    let settings = settings(args)?;
    let runtime = if settings.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.threads)
            .enable_all()
            .build()?
    };
    let code = runtime.block_on(serve(settings))?;
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(code)
}

fn settings(args: EchoArgs) -> anyhow::Result<Settings> {
    let addr: SocketAddr = args.addr.parse().map_err(|_| {
        usage(format!(
            "--addr: '{}' is not an IP:PORT address (expected e.g. 127.0.0.1:8080, [::1]:8080, or port 0 for any free port)",
            args.addr
        ))
    })?;
    let max_delay =
        parse_duration(&args.max_delay).map_err(|e| usage(format!("--max-delay: {e}")))?;
    let max_size = parse_size(&args.max_size).map_err(|e| usage(format!("--max-size: {e}")))?;
    let threads = match args.threads {
        Some(0) => return Err(usage("--threads: must be at least 1")),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let tls = match (&args.cert, &args.key) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(usage(
                "--cert needs --key (give both for TLS, or neither for plain HTTP)",
            ));
        }
        (None, Some(_)) => {
            return Err(usage(
                "--key needs --cert (give both for TLS, or neither for plain HTTP)",
            ));
        }
        (Some(cert), Some(key)) => {
            Some(echo::tls_server_config(cert, key).map_err(|e| match e {
                TlsConfigError::Cert(e) => usage(format!("--cert: {e}")),
                TlsConfigError::Key(e) => usage(format!("--key: {e}")),
                pair @ TlsConfigError::Pair { .. } => usage(format!("--cert/--key: {pair}")),
            })?)
        }
    };
    let config = EchoConfig {
        name: args.name,
        max_delay,
        max_size,
        seed: args.seed,
        ..EchoConfig::default()
    };
    let service = EchoService::new(config.clone()).map_err(|e| usage(format!("--name: {e}")))?;
    Ok(Settings {
        addr,
        config,
        service,
        tls,
        threads,
    })
}

async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    // Signal handlers first: a SIGINT right after the address is printed must already
    // mean "shut down gracefully", not the default "die".
    let stop = stop_signal()?;
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                " (is another server running there? pick another --addr, or port 0 for a free one)"
            } else {
                ""
            };
            anyhow::anyhow!("cannot listen on {}: {e}{hint}", settings.addr)
        })?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        // If nobody reads stdout any more, keep serving anyway.
        let _ = writeln!(out, "listening on {addr}");
        let _ = out.flush();
    }
    let config = &settings.config;
    eprintln!(
        "meshrig echo: serving {} on {addr} (max delay {}, max size {} bytes, {} thread{}{})",
        if settings.tls.is_some() {
            "HTTPS (h2, http/1.1)"
        } else {
            "HTTP/1.1 and h2c"
        },
        format_duration(config.max_delay),
        config.max_size,
        settings.threads,
        if settings.threads == 1 { "" } else { "s" },
        config
            .seed
            .map(|s| format!(", seed {s}"))
            .unwrap_or_default(),
    );
    let grace = format_duration(config.shutdown_timeout);
    let shutdown = async move {
        let signal = stop.await;
        eprintln!(
            "meshrig echo: {signal}: stopped accepting; finishing in-flight requests (up to {grace})"
        );
    };
    let summary = echo::serve_service(listener, settings.service, settings.tls, shutdown).await;
    if summary.unfinished_connections > 0 {
        eprintln!(
            "meshrig echo: closed {} connection(s) still busy after the grace period",
            summary.unfinished_connections
        );
    }
    eprintln!(
        "meshrig echo: stopped after {} requests on {} connections",
        summary.stats.requests_total, summary.stats.connections_total
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: EchoArgs,
    }

    fn settings_of(argv: &[&str]) -> anyhow::Result<Settings> {
        let cli = Cli::try_parse_from(std::iter::once("echo").chain(argv.iter().copied()))?;
        settings(cli.args)
    }

    #[test]
    fn flag_defaults_match_the_library_defaults() {
        let s = settings_of(&[]).unwrap();
        assert_eq!(s.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.config, EchoConfig::default());
        assert!(s.tls.is_none());
        assert!(s.threads >= 1);
    }

    #[test]
    fn flags_fill_the_config() {
        let s = settings_of(&[
            "--addr",
            "0.0.0.0:0",
            "--name",
            "east",
            "--max-delay",
            "250ms",
            "--max-size",
            "1KiB",
            "--seed",
            "42",
            "--threads",
            "1",
        ])
        .unwrap();
        assert_eq!(s.addr, "0.0.0.0:0".parse().unwrap());
        assert_eq!(s.config.name.as_deref(), Some("east"));
        assert_eq!(s.config.max_delay, std::time::Duration::from_millis(250));
        assert_eq!(s.config.max_size, 1024);
        assert_eq!(s.config.seed, Some(42));
        assert_eq!(s.threads, 1);
    }

    #[test]
    fn bad_flags_are_usage_errors_naming_the_flag() {
        for (argv, flag) in [
            (&["--addr", "localhost"][..], "--addr"),
            (&["--max-delay", "nonsense"], "--max-delay"),
            (&["--max-size", "lots"], "--max-size"),
            (&["--threads", "0"], "--threads"),
            (&["--name", "a\u{7}b"], "--name"),
            (&["--cert", "x.pem"], "--cert needs --key"),
            (&["--key", "x.pem"], "--key needs --cert"),
        ] {
            let err = settings_of(argv).err().expect("should fail");
            assert!(
                err.downcast_ref::<crate::exit::UsageError>().is_some(),
                "{argv:?}: not a usage error: {err}"
            );
            assert!(err.to_string().contains(flag), "{argv:?}: {err}");
        }
    }
}
