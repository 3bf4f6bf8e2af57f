//! `meshrig control` — the control plane, standalone on a real socket.
//!
//! Loads the Istio YAML and the registry file as version 1 (invalid input: one
//! message, exit 2), binds the listener, prints `control listening on ADDR` and then
//! `ready` on stdout (so tests and scripts can use port 0), watches the files, and
//! serves proxies until SIGINT or SIGTERM (or stdin's end, with
//! `--exit-on-stdin-eof`).

use std::future::Future;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use mesh_control::{ControlError, ControlOptions, ControlPlane};
use results::units::parse_duration;

use crate::exit::usage;
use crate::signals::stop_signal;

/// Run the control plane: serve versioned per-proxy configuration to `meshrig proxy
/// --control`, reloading the files when they change.
#[derive(Debug, clap::Args)]
#[command(after_help = "Protocol (HTTP/1.1, JSON; details in docs/cli.md):\n  \
    GET  /v1/config?workload=W&namespace=NS&label=K%3DV&id=ID&version=N\n       \
         long poll: answers when the version is newer than N (else 304 after\n       \
         --long-poll-timeout) with {version, proxy, snapshot_hash, sources, registry}\n  \
    POST /v1/ack     {\"proxy\": ID, \"version\": N, \"ok\": true|false, \"error\": TEXT}\n  \
    POST /v1/config[?name=NAME]  YAML body: publish it over the files (400 + findings\n       \
         if it has errors; the last good version stays)\n  \
    GET  /v1/status  proxies, ACKed versions, NACKs, propagation ms per version\n  \
    GET  /metrics    Prometheus text (meshrig_control_config_version, ..._propagation_seconds,\n       \
         ..._nacks_total, ..._rejections_total)\n  \
    GET  /ready\n\n\
A change of content (not mtime) that loads without errors bumps the one global\n\
version; a file that fails to parse or has error findings is rejected (one log line\n\
`file:line: ...`) and the last good version keeps being served.\n\n\
Registry file: as for `meshrig proxy`, plus an optional per-instance\n  \
  \"via\": {\"<source workload>\": \"IP:PORT\"}\n\
  (the proxy of that workload reaches the instance at the via address, e.g. a relay).\n\n\
Example:\n  \
    meshrig control --config istio/ --registry registry.json --listen 127.0.0.1:15010\n  \
    meshrig proxy --control http://127.0.0.1:15010 --service productpage --outbound 127.0.0.1:15001\n  \
    curl --data-binary @reviews-v2.yaml http://127.0.0.1:15010/v1/config")]
pub struct ControlArgs {
    /// Istio YAML file or directory (repeatable); together they form one
    /// configuration set, re-read when it changes.
    #[arg(long = "config", value_name = "FILE_OR_DIR")]
    config: Vec<PathBuf>,

    /// Registry file (JSON): services, their instances, optional `via` relays;
    /// re-read when it changes. Default: no services.
    #[arg(long, value_name = "FILE")]
    registry: Option<PathBuf>,

    /// Address to listen on (IP:PORT; port 0 picks a free one).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:15010")]
    listen: String,

    /// How often the files are re-read (their content is compared, not mtimes).
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse_positive)]
    poll_interval: Duration,

    /// How long a proxy's GET /v1/config waits for a new version before a 304.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_positive)]
    long_poll_timeout: Duration,

    /// Shut down when stdin reaches end of file (for a parent that pipes stdin, so the
    /// control plane never outlives it).
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

fn parse_positive(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be above 0 (e.g. 500ms)".to_owned());
    }
    Ok(d)
}

pub fn run(args: ControlArgs) -> anyhow::Result<ExitCode> {
    let listen: SocketAddr = args.listen.parse().map_err(|_| {
        usage(format!(
            "--listen: '{}' is not an IP:PORT address (e.g. 127.0.0.1:15010, port 0 for any free port)",
            args.listen
        ))
    })?;
    let options = ControlOptions {
        config: args.config,
        registry: args.registry,
        poll_interval: args.poll_interval,
        long_poll_timeout: args.long_poll_timeout,
    };
    let plane = ControlPlane::new(options).map_err(|e| match e {
        ControlError::Invalid(r) => {
            for line in r.errors.iter().skip(1) {
                eprintln!("{line}");
            }
            usage(format!(
                "the configuration has {} error(s): {}",
                r.errors.len(),
                r.errors.first().map_or("", String::as_str)
            ))
        }
        ControlError::Registry { path, message } => usage(format!("--registry {path}: {message}")),
        ControlError::Read(e) => usage(format!("cannot read {e}")),
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let stop = stop(args.exit_on_stdin_eof)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr()?;
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "control listening on {addr}");
            let _ = writeln!(out, "ready");
            let _ = out.flush();
        }
        let status = plane.status();
        eprintln!(
            "meshrig control: version {}: {} source(s), {} service(s)",
            status.version,
            status.sources.len(),
            status.services
        );
        let watcher = plane.spawn_watcher();
        plane
            .serve(listener, async move {
                let reason = stop.await;
                eprintln!("meshrig control: {reason}: shutting down");
            })
            .await;
        watcher.abort();
        anyhow::Ok(())
    })?;
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(ExitCode::SUCCESS)
}

/// What stops a long-running command: its reason.
pub type Stop = Pin<Box<dyn Future<Output = &'static str> + Send>>;

/// SIGINT or SIGTERM, or — with `exit_on_stdin_eof` — stdin reaching end of file.
/// Call inside a tokio runtime.
pub fn stop(exit_on_stdin_eof: bool) -> anyhow::Result<Stop> {
    let signal = stop_signal()?;
    if !exit_on_stdin_eof {
        return Ok(Box::pin(signal));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A blocking read on its own thread: tokio's stdin would keep the runtime from
    // shutting down while the read is pending.
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(());
    });
    Ok(Box::pin(async move {
        tokio::select! {
            s = signal => s,
            _ = rx => "stdin closed",
        }
    }))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ControlArgs,
    }

    #[test]
    fn bad_input_is_a_usage_error_naming_what() {
        let dir = std::env::temp_dir().join(format!("meshrig-control-cmd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad_yaml = dir.join("bad.yaml");
        std::fs::write(&bad_yaml, "kind: VirtualService\nspec: [unclosed\n").unwrap();
        let bad_registry = dir.join("registry.json");
        std::fs::write(
            &bad_registry,
            r#"{"services":[{"name":"a","instances":[{"address":"x"}]}]}"#,
        )
        .unwrap();
        let bad_yaml = bad_yaml.display().to_string();
        let bad_registry = bad_registry.display().to_string();
        for (argv, says) in [
            (vec!["--listen", "localhost"], "--listen"),
            (vec!["--config", "/nonexistent/istio"], "/nonexistent/istio"),
            (vec!["--config", bad_yaml.as_str()], "bad.yaml:"),
            (vec!["--registry", bad_registry.as_str()], "is not IP:PORT"),
        ] {
            let cli = Cli::try_parse_from(std::iter::once("control").chain(argv.iter().copied()))
                .unwrap();
            let err = run(cli.args).expect_err("should fail");
            assert!(
                err.downcast_ref::<crate::exit::UsageError>().is_some(),
                "{argv:?}: not a usage error: {err}"
            );
            assert!(err.to_string().contains(says), "{argv:?}: {err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert!(Cli::try_parse_from(["control", "--poll-interval", "0s"]).is_err());
    }
}
