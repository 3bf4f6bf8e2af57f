//! `meshrig load URL` — the load generator command.
//!
//! Parses Fortio-familiar flags into a [`loadgen::TargetConfig`], runs the engine on a
//! multi-threaded tokio runtime, shows progress on a terminal, and writes the result:
//! a human summary, `--json` (the meshrig schema) and `--fortio-json`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use indicatif::{ProgressBar, ProgressStyle};
use loadgen::report::ResultMeta;
use loadgen::tls::TlsOptions;
use loadgen::{HttpVersion, RateProfile, RunOptions, StopHandle, TargetConfig};
use results::units::{format_duration, parse_duration};

use crate::exit::usage;
use crate::summary;

/// Send HTTP load to URL and measure it (open loop with --qps N, closed loop with --qps 0).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    meshrig load --qps 1000 -c 8 -t 30s http://127.0.0.1:8080/\n  \
    meshrig load -n 10000 --http2 -c 2 --json out.json http://127.0.0.1:8080/?delay=5ms\n  \
    meshrig load --qps 500 --group-by-header x-meshrig-server http://127.0.0.1:8080/")]
pub struct LoadArgs {
    /// Target URL (http:// or https://).
    #[arg(value_parser = parse_url)]
    pub url: Uri,

    /// Requests per second across all connections (one global schedule; latency is
    /// measured from each request's intended send time). 0 = closed loop: every
    /// connection sends back-to-back, as fast as it can.
    #[arg(short = 'q', long, default_value = "0", allow_negative_numbers = true, value_parser = parse_qps)]
    pub qps: f64,

    /// Number of TCP connections (at most 100,000).
    #[arg(short = 'c', long, default_value_t = 4, value_parser = parse_connections)]
    pub connections: u32,

    /// How long to send (e.g. 30s, 2m). 0 = until -n is reached or Ctrl-C.
    #[arg(short = 't', long, default_value = "5s", value_parser = parse_duration_arg)]
    pub duration: Duration,

    /// Send exactly this many requests (then stop, whatever -t says).
    #[arg(short = 'n', long, value_parser = parse_positive_u64)]
    pub requests: Option<u64>,

    /// Per-request timeout, connection set-up included.
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    pub timeout: Duration,

    /// Extra request header "Name: value" (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,

    /// HTTP method. Default: GET, or POST when a body is given.
    #[arg(long, value_parser = parse_method)]
    pub method: Option<Method>,

    /// Request body.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,

    /// Read the request body from FILE.
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,

    /// Speak HTTP/2: h2c with prior knowledge on http://, ALPN h2 on https://.
    #[arg(long)]
    pub http2: bool,

    /// Concurrent requests per HTTP/2 connection (HTTP/1.1 always sends one at a time;
    /// at most 10,000).
    #[arg(long, default_value_t = 16, value_parser = parse_streams)]
    pub streams: u32,

    /// PEM CA certificate(s) to verify the server with (default: system roots).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// PEM client certificate for mutual TLS (with --key).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Do not verify the server certificate.
    #[arg(short = 'k', long)]
    pub insecure: bool,

    /// Free-form labels stored in the results.
    #[arg(long, default_value = "")]
    pub labels: String,

    /// Write the meshrig result (JSON) to FILE ("-" for stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write a Fortio-compatible result (JSON) to FILE ("-" for stdout).
    #[arg(long, value_name = "FILE")]
    pub fortio_json: Option<PathBuf>,

    /// Count responses per value of this response header (e.g. which backend answered).
    #[arg(long, value_name = "NAME", value_parser = parse_header_name)]
    pub group_by_header: Option<HeaderName>,

    /// No progress and no summary (errors and warnings still go to stderr).
    #[arg(long)]
    pub quiet: bool,

    /// Worker threads for the load generator (default: every core it may run on; at
    /// most 1,024).
    #[arg(long, value_parser = parse_threads)]
    pub threads: Option<u32>,
}

pub fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let config = target_config(&args)?;
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |t| t as usize,
    );
    // One thread: a current-thread runtime, which skips the work-stealing machinery.
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let runtime = builder
        .enable_all()
        .thread_name("meshrig-load")
        .build()
        .context("starting the tokio runtime")?;

    let stop = StopHandle::new();
    let show_progress = !args.quiet && std::io::stdout().is_terminal();
    let bar = show_progress.then(|| progress_bar(&config));
    let progress = bar.clone().map(|bar| {
        Box::new(move |snaps: &[loadgen::TargetProgress]| {
            if let Some(p) = snaps.first() {
                bar.set_position(p.elapsed.as_secs());
                bar.set_message(format!(
                    "{} responses  {:.0} rps  p99 {}  errors {}",
                    p.responses,
                    p.rps_last,
                    loadgen::report::fmt_us(p.p99_us),
                    p.errors
                ));
            }
        }) as loadgen::ProgressFn
    });

    let timeout = config.timeout;
    let reports = runtime.block_on(async {
        let signal_stop = stop.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            eprintln!(
                "meshrig load: interrupted; stopping sends and waiting up to {} for in-flight requests",
                format_duration(timeout)
            );
            signal_stop.stop();
        });
        loadgen::run(
            vec![config],
            RunOptions {
                stop: stop.clone(),
                progress,
                observer: None,
                start_at: None,
            },
        )
        .await
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let reports = match reports {
        Ok(r) => r,
        Err(e) if e.is_usage() => return Err(usage(flag_message(&e))),
        Err(e) => return Err(anyhow::Error::new(e)),
    };
    let report = reports.into_iter().next().expect("one target, one report");
    let meta = ResultMeta {
        labels: args.labels.clone(),
        command: std::env::args().collect(),
    };
    let result = report.to_result(&meta);
    drop(runtime);

    // Files first, so a closed stdout cannot lose the result.
    let mut write_failed = false;
    if let Some(path) = &args.json
        && let Err(e) = write_json(path, &result)
    {
        eprintln!("meshrig load: error: --json {}: {e:#}", path.display());
        write_failed = true;
    }
    if let Some(path) = &args.fortio_json {
        let written = results::fortio::FortioResult::from_load(&result)
            .map_err(anyhow::Error::new)
            .and_then(|f| write_json(path, &f));
        if let Err(e) = written {
            eprintln!(
                "meshrig load: error: --fortio-json {}: {e:#}",
                path.display()
            );
            write_failed = true;
        }
    }
    for w in &result.warnings {
        eprintln!("meshrig load: warning: {w}");
    }
    if !args.quiet {
        let text = summary::render(&result);
        let to_stdout_taken = [&args.json, &args.fortio_json]
            .iter()
            .any(|p| p.as_deref() == Some(Path::new("-")));
        if to_stdout_taken {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    }
    if write_failed || result.success_total == 0 {
        if result.success_total == 0 {
            eprintln!(
                "meshrig load: error: no request succeeded ({} sent, {} errors, {} non-2xx/3xx responses)",
                result.requests_total,
                result.errors_total,
                result.responses_total - result.success_total
            );
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn target_config(args: &LoadArgs) -> anyhow::Result<TargetConfig> {
    let mut config = TargetConfig::new(args.url.clone());
    config.connections = args.connections;
    config.streams_per_connection = args.streams;
    config.version = if args.http2 {
        HttpVersion::Http2
    } else {
        HttpVersion::Http1
    };
    config.rate = if args.qps > 0.0 {
        RateProfile::Constant { rps: args.qps }
    } else {
        RateProfile::Max
    };
    config.duration = (!args.duration.is_zero()).then_some(args.duration);
    config.max_requests = args.requests;
    if args.requests.is_some() {
        // -n is an exact count: the duration does not cut it short.
        config.duration = None;
    }
    config.timeout = args.timeout;
    config.group_by_header = args.group_by_header.clone();
    let mut headers = HeaderMap::new();
    for (name, value) in &args.headers {
        headers.append(name.clone(), value.clone());
    }
    config.headers = headers;
    config.body = match (&args.body, &args.body_file) {
        (Some(text), _) => Bytes::from(text.clone()),
        (None, Some(path)) => Bytes::from(
            std::fs::read(path)
                .map_err(|e| usage(format!("--body-file {}: cannot read: {e}", path.display())))?,
        ),
        (None, None) => Bytes::new(),
    };
    config.method = match &args.method {
        Some(m) => m.clone(),
        None if !config.body.is_empty() => Method::POST,
        None => Method::GET,
    };
    config.tls = TlsOptions {
        ca_file: args.cacert.clone(),
        cert_file: args.cert.clone(),
        key_file: args.key.clone(),
        insecure: args.insecure,
    };
    Ok(config)
}

/// A target error in the words of the flags: TLS file problems name the flag that
/// gave the file.
fn flag_message(e: &loadgen::ConfigError) -> String {
    use loadgen::tls::TlsConfigError as T;
    match e {
        loadgen::ConfigError::Tls(T::Ca(p)) => format!("--cacert: {p}"),
        loadgen::ConfigError::Tls(T::ClientCert(p)) => format!("--cert: {p}"),
        loadgen::ConfigError::Tls(T::ClientKey(p)) => format!("--key: {p}"),
        loadgen::ConfigError::Tls(T::BadCa { .. }) => format!("--cacert: {e}"),
        loadgen::ConfigError::Tls(T::BadClientCert(_)) => format!("--cert/--key: {e}"),
        other => other.to_string(),
    }
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    if path == Path::new("-") {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        return Ok(());
    }
    // Write beside the target and rename, so a crash mid-write never leaves half a file.
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn progress_bar(config: &TargetConfig) -> ProgressBar {
    let bar = match config.duration {
        Some(d) => ProgressBar::new(d.as_secs().max(1)),
        None => ProgressBar::new_spinner(),
    };
    let template = if config.duration.is_some() {
        "{elapsed_precise} [{bar:30}] {msg}"
    } else {
        "{elapsed_precise} {spinner} {msg}"
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(format!("{} → {}", config.rate.describe(), config.url));
    bar
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

// === flag parsers: each error names what was wrong and what would be right ===

fn parse_url(s: &str) -> Result<Uri, String> {
    let uri: Uri = s
        .parse()
        .map_err(|e| format!("'{s}' is not a URL ({e}); expected e.g. http://127.0.0.1:8080/"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(format!(
                "unsupported scheme '{other}' in '{s}' (expected http:// or https://)"
            ));
        }
        None => {
            return Err(format!(
                "'{s}' has no scheme (expected http:// or https://, e.g. http://{s})"
            ));
        }
    }
    let authority = uri.authority().map_or("", |a| a.as_str());
    if let Some((_, port)) = authority.rsplit_once(':')
        && !port.contains(']')
        && !port.is_empty()
        && !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(format!("'{s}' has a port outside 1-65535"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!(
            "'{s}' has no host (expected e.g. http://127.0.0.1:8080/)"
        ));
    }
    Ok(uri)
}

/// The lowest open-loop rate accepted.
const MIN_QPS: f64 = 0.001;

fn parse_qps(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| {
        format!(
            "'{s}' is not a number (expected requests per second, e.g. 1000, or 0 for max speed)"
        )
    })?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!(
            "'{s}' is negative or not finite (expected 0 for max speed, or a rate above 0)"
        ));
    }
    if v > 0.0 && v < MIN_QPS {
        return Err(format!(
            "'{s}' is below the lowest rate, {MIN_QPS} requests per second (one per ~17 minutes)"
        ));
    }
    Ok(v)
}

fn parse_connections(s: &str) -> Result<u32, String> {
    bounded_u32(s, 100_000)
}

fn parse_streams(s: &str) -> Result<u32, String> {
    bounded_u32(s, 10_000)
}

fn parse_threads(s: &str) -> Result<u32, String> {
    bounded_u32(s, 1_024)
}

/// A whole number from 1 to `max`: limits keep a typo (`-c 4000000000`) from asking
/// for billions of tasks.
fn bounded_u32(s: &str, max: u32) -> Result<u32, String> {
    let v = parse_positive_u32(s)?;
    if v > max {
        return Err(format!("{v} is more than the limit of {max}"));
    }
    Ok(v)
}

fn parse_positive_u32(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("'{s}' is not a whole number ≥ 1")),
    }
}

fn parse_positive_u64(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("'{s}' is not a whole number ≥ 1")),
    }
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration_arg(s)?;
    if d.is_zero() {
        return Err("must be above 0 (e.g. 10s)".to_owned());
    }
    Ok(d)
}

fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = s.split_once(':').ok_or_else(|| {
        format!("'{s}' is not a header (expected \"Name: value\", e.g. -H \"X-User: alice\")")
    })?;
    let name = parse_header_name(name.trim())?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("'{s}': the value has characters not allowed in a header"))?;
    Ok((name, value))
}

fn parse_header_name(s: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(s.as_bytes()).map_err(|_| {
        format!("'{s}' is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)")
    })
}

fn parse_method(s: &str) -> Result<Method, String> {
    Method::from_bytes(s.as_bytes()).map_err(|_| format!("'{s}' is not an HTTP method"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_checks() {
        assert!(parse_url("http://127.0.0.1:8080/x?y=1").is_ok());
        assert!(parse_url("https://example.test/").is_ok());
        assert!(
            parse_url("ftp://x/")
                .unwrap_err()
                .contains("unsupported scheme")
        );
        assert!(parse_url("127.0.0.1:8080").is_err());
        assert!(parse_url("http://").is_err());
        assert!(parse_url("http://exa mple/").is_err());
        assert!(
            parse_url("http://127.0.0.1:99999/").is_err(),
            "port out of range"
        );
    }

    #[test]
    fn header_checks() {
        let (n, v) = parse_header("X-User:  alice ").unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("x-user", "alice"));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
        assert!(parse_header(": x").is_err());
    }

    #[test]
    fn qps_checks() {
        assert_eq!(parse_qps("0"), Ok(0.0));
        assert_eq!(parse_qps("12.5"), Ok(12.5));
        assert!(parse_qps("-1").is_err());
        assert!(parse_qps("inf").is_err());
        assert!(parse_qps("fast").is_err());
        assert!(parse_qps("1e-30").is_err(), "below the minimum rate");
    }
}
