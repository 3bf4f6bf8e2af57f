//! `meshrig proxy` — the sidecar, standalone on real sockets.
//!
//! Loads the Istio configuration set and the registry file (static mode), or
//! subscribes to a control plane and waits for its first version (`--control`),
//! compiles the proxy's snapshot with mesh-core, binds the listeners asked for,
//! prints one `<listener> listening on ADDR` line per listener and then `ready` on
//! stdout (so tests and scripts can use port 0), and serves until SIGINT or SIGTERM
//! (or stdin's end, with `--exit-on-stdin-eof`). With `--control`, each new version
//! is swapped in without failing a request in flight.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use mesh_control::{ClientOptions, ProxyIdentity, Update};
use mesh_core::Locality;
use mesh_core::compile::{ProxyId, snapshot};
use mesh_core::config::{ConfigSet, Severity};
use mesh_core::identity::LifecycleConfig;
use mesh_proxy::tls::{Identity, Tls};
use mesh_proxy::{Listeners, Mesh, Proxy, RegistryFile};

use crate::exit::usage;

/// Run the sidecar proxy: outbound (routing, load balancing, retries, faults),
/// inbound (authorization), admin (/ready, /config_dump, /metrics).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Registry file (JSON): the services and where their instances listen\n  \
    {\"services\": [\n    \
      {\"name\": \"reviews\", \"namespace\": \"default\", \"instances\": [\n      \
        {\"address\": \"127.0.0.1:9081\", \"labels\": {\"app\": \"reviews\", \"version\": \"v1\"}, \"zone\": \"a\"},\n      \
        {\"address\": \"127.0.0.1:9082\", \"labels\": {\"app\": \"reviews\", \"version\": \"v2\"}}]}]}\n\
  namespace defaults to \"default\"; per instance also region, service_account, weight.\n\n\
Outbound requests name their destination in the Host header (`reviews`,\n\
`reviews.default.svc.cluster.local`). Answers the proxy makes itself carry\n\
`x-meshrig-flags` (UH no healthy upstream, UF connect failure/reset, URX retries\n\
exhausted, UO retry budget exhausted, UT timeout, DI delay injected, FI fault abort,\n\
NR no route, NC no cluster).\n\n\
Example:\n  \
    meshrig proxy --config istio/ --registry registry.json --service productpage \\\n    \
      --label app=productpage --outbound 127.0.0.1:15001 --inbound 127.0.0.1:15006 \\\n    \
      --app 127.0.0.1:8080 --admin 127.0.0.1:15000\n  \
    curl -H 'Host: reviews' http://127.0.0.1:15001/"
)]
pub struct ProxyArgs {
    /// Istio YAML file or directory (repeatable); together they form one configuration
    /// set, read once (static mode).
    #[arg(long = "config", value_name = "FILE_OR_DIR")]
    config: Vec<PathBuf>,

    /// Registry file (JSON, see below): services and their instances (static mode).
    #[arg(long, value_name = "FILE")]
    registry: Option<PathBuf>,

    /// Subscribe to a control plane (`meshrig control`) instead of --config/--registry:
    /// the proxy waits for its first configuration before `ready`, applies every new
    /// version without dropping requests, ACKs or NACKs it, and keeps the last good
    /// one while the control plane is unreachable.
    #[arg(long, value_name = "URL", conflicts_with_all = ["config", "registry"])]
    control: Option<String>,

    /// The id this proxy ACKs under at the control plane. Default: SERVICE.NAMESPACE@PID.
    #[arg(long, value_name = "ID", requires = "control")]
    proxy_id: Option<String>,

    /// Shut down when stdin reaches end of file (for a parent that pipes stdin, so the
    /// proxy never outlives it).
    #[arg(long)]
    exit_on_stdin_eof: bool,

    /// The service this proxy is the sidecar of (its workload name).
    #[arg(long, value_name = "NAME")]
    service: String,

    /// The proxy's namespace.
    #[arg(long, default_value = "default")]
    namespace: String,

    /// A label of the proxy's workload, `k=v` (repeatable, or comma-separated).
    #[arg(long = "label", value_name = "K=V")]
    labels: Vec<String>,

    /// The workload's service account.
    #[arg(long, default_value = "default")]
    service_account: String,

    /// The proxy's zone (locality-aware load balancing).
    #[arg(long, default_value = "")]
    zone: String,

    /// The proxy's region (locality-aware load balancing).
    #[arg(long, default_value = "")]
    region: String,

    /// Outbound listener (IP:PORT; Istio uses 15001).
    #[arg(long, value_name = "IP:PORT")]
    outbound: Option<String>,

    /// Inbound listener (IP:PORT; Istio uses 15006); needs --app.
    #[arg(long, value_name = "IP:PORT", requires = "app")]
    inbound: Option<String>,

    /// The local application inbound requests are forwarded to.
    #[arg(long, value_name = "IP:PORT")]
    app: Option<String>,

    /// Admin listener (IP:PORT; Istio uses 15000).
    #[arg(long, value_name = "IP:PORT")]
    admin: Option<String>,

    /// Seed for every draw (weighted splits, fault percentages, load balancing, backoff).
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Tokio worker threads. Default: one per core.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,

    /// Access log: one JSON line per request (Envoy's fields), to PATH (appended) or
    /// `-` for stdout. Lines are dropped, not waited for, when the writer falls behind.
    #[arg(long, value_name = "PATH|-")]
    access_log: Option<String>,

    #[command(flatten)]
    identity: IdentityArgs,
}

/// The workload identity for mTLS: from a CA (`--ca`) or from files (`--cert`).
/// Without either the sidecar has no identity: plaintext, and TLS offered to it is
/// refused.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Identity (mTLS)")]
struct IdentityArgs {
    /// The SPIFFE trust domain: the proxy's identity is
    /// spiffe://TD/ns/NAMESPACE/sa/SERVICE_ACCOUNT, and peers must be in it.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,

    /// The CA (`meshrig ca serve`) to get the workload certificate from, HOST:PORT.
    /// The proxy makes its key in memory, sends a CSR at start (and is `ready` only
    /// once it has a certificate), renews at half the lifetime (±10% jitter), and
    /// backs off while the CA is unreachable.
    #[arg(
        long,
        value_name = "HOST:PORT",
        conflicts_with = "cert",
        requires = "ca_root"
    )]
    ca: Option<String>,

    /// The bootstrap token the CA knows this workload's service account by.
    #[arg(
        long,
        value_name = "TOKEN",
        requires = "ca",
        conflicts_with = "ca_token_file"
    )]
    ca_token: Option<String>,

    /// A file holding the bootstrap token (first line).
    #[arg(long, value_name = "FILE", requires = "ca")]
    ca_token_file: Option<PathBuf>,

    /// The trust bundle (PEM roots) to verify the CA's server certificate with; peers
    /// are verified against the bundle the CA returns with each certificate.
    #[arg(long, value_name = "FILE")]
    ca_root: Option<PathBuf>,

    /// The certificate lifetime asked of the CA (e.g. 24h, 1m, 10s).
    #[arg(long, value_name = "D", default_value = "24h", value_parser = humantime::parse_duration, requires = "ca")]
    cert_ttl: std::time::Duration,

    /// A static workload certificate chain (PEM, leaf first), e.g. from `meshrig ca
    /// issue`; needs --key and --bundle. Not renewed.
    #[arg(long, value_name = "FILE", requires_all = ["key", "bundle"])]
    cert: Option<PathBuf>,

    /// The static certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,

    /// The trust bundle (PEM roots) for a static certificate.
    #[arg(long, value_name = "FILE", requires = "cert")]
    bundle: Option<PathBuf>,
}

/// Where the identity comes from, checked.
enum IdentitySource {
    None,
    Static(Arc<Identity>),
    Ca {
        identity: Arc<Identity>,
        client: mesh_ca::CaClient,
        ttl: std::time::Duration,
    },
}

fn read(flag: &str, path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| usage(format!("{flag} {}: {e}", path.display())))
}

fn identity_source(args: &IdentityArgs, proxy: &ProxyId) -> anyhow::Result<IdentitySource> {
    let new_identity = || {
        Identity::new(&args.trust_domain, &proxy.namespace, &proxy.service_account)
            .map(Arc::new)
            .map_err(|e| usage(format!("--trust-domain/--namespace/--service-account: {e}")))
    };
    if let (Some(cert), Some(key), Some(bundle)) = (&args.cert, &args.key, &args.bundle) {
        let identity = new_identity()?;
        identity
            .set_bundle(&read("--bundle", bundle)?)
            .map_err(|e| usage(format!("--bundle {}: {e}", bundle.display())))?;
        identity
            .install(&read("--cert", cert)?, &read("--key", key)?)
            .map_err(|e| usage(format!("--cert {}: {e}", cert.display())))?;
        return Ok(IdentitySource::Static(identity));
    }
    let Some(ca) = &args.ca else {
        return Ok(IdentitySource::None);
    };
    let token = match (&args.ca_token, &args.ca_token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => read("--ca-token-file", f)?
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
        (None, None) => {
            return Err(usage(
                "--ca needs the workload's bootstrap token: --ca-token TOKEN or --ca-token-file FILE",
            ));
        }
    };
    let root_path = args
        .ca_root
        .as_ref()
        .ok_or_else(|| usage("--ca needs --ca-root FILE"))?;
    let roots = read("--ca-root", root_path)?;
    let identity = new_identity()?;
    identity
        .set_bundle(&roots)
        .map_err(|e| usage(format!("--ca-root {}: {e}", root_path.display())))?;
    let client =
        mesh_ca::CaClient::new(ca, &token, &roots).map_err(|e| usage(format!("--ca {ca}: {e}")))?;
    Ok(IdentitySource::Ca {
        identity,
        client,
        ttl: args.cert_ttl,
    })
}

fn addr(flag: &str, value: Option<&String>) -> anyhow::Result<Option<SocketAddr>> {
    value
        .map(|v| {
            v.parse().map_err(|_| {
                usage(format!(
                    "{flag}: '{v}' is not an IP:PORT address (e.g. 127.0.0.1:15001, port 0 for any free port)"
                ))
            })
        })
        .transpose()
}

pub fn run(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let listeners = Listeners {
        outbound: addr("--outbound", args.outbound.as_ref())?,
        inbound: addr("--inbound", args.inbound.as_ref())?,
        app: addr("--app", args.app.as_ref())?,
        admin: addr("--admin", args.admin.as_ref())?,
    };
    if listeners.outbound.is_none() && listeners.inbound.is_none() && listeners.admin.is_none() {
        return Err(usage(
            "nothing to listen on: give --outbound, --inbound (with --app) and/or --admin",
        ));
    }
    let mut labels = BTreeMap::new();
    for kv in args.labels.iter().flat_map(|l| l.split(',')) {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            usage(format!(
                "--label '{kv}' is not a label (expected k=v, e.g. app=reviews)"
            ))
        })?;
        labels.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    if matches!(args.threads, Some(0)) {
        return Err(usage("--threads: must be at least 1"));
    }
    let mut proxy = ProxyId::new(&args.service, &args.namespace);
    proxy.labels = labels;
    proxy.service_account = args.service_account;
    let identity = identity_source(&args.identity, &proxy)?;
    let locality = Locality {
        region: args.region,
        zone: args.zone,
        subzone: String::new(),
    };
    let (mesh, control) = match (&args.control, &args.registry) {
        (Some(url), _) => {
            let identity = ProxyIdentity {
                id: args.proxy_id.clone().unwrap_or_else(|| {
                    format!(
                        "{}.{}@{}",
                        proxy.workload,
                        proxy.namespace,
                        std::process::id()
                    )
                }),
                workload: proxy.workload.clone(),
                namespace: proxy.namespace.clone(),
                labels: proxy.labels.clone(),
                service_account: proxy.service_account.clone(),
            };
            let options =
                ClientOptions::new(url, identity).map_err(|e| usage(format!("--control: {e}")))?;
            // Version 0, empty, until the control plane's first version arrives.
            let set = ConfigSet::default();
            let snap = snapshot(&set, &Default::default(), &proxy, 0);
            (Mesh::new(set, snap, locality, args.seed), Some(options))
        }
        (None, Some(path)) => (
            static_mesh(&args.config, path, &proxy, locality, args.seed)?,
            None,
        ),
        (None, None) => {
            return Err(usage(
                "no configuration: give --registry FILE (with --config, static) or --control URL (a control plane)",
            ));
        }
    };
    let mesh = Arc::new(match &identity {
        IdentitySource::None => mesh,
        IdentitySource::Static(id) | IdentitySource::Ca { identity: id, .. } => {
            mesh.with_tls(Tls::with_identity(id.clone()))
        }
    });
    // One thread: a current-thread runtime, so a request's tasks (downstream
    // connection, upstream connection) wake each other without cross-thread wakeups.
    let mut builder = if args.threads == Some(1) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if let Some(n) = args.threads.filter(|n| *n > 1) {
        builder.worker_threads(n);
    }
    let runtime = builder.enable_all().build()?;
    let stop = runtime.block_on(async { crate::control_cmd::stop(args.exit_on_stdin_eof) })?;
    let seed = args.seed;
    runtime.block_on(serve(
        mesh,
        listeners,
        args.access_log,
        control,
        identity,
        seed,
        stop,
    ))?;
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(ExitCode::SUCCESS)
}

/// The mesh of a static configuration: `config` and the registry file at
/// `registry`, read once.
fn static_mesh(
    config: &[PathBuf],
    registry: &std::path::Path,
    proxy: &ProxyId,
    locality: Locality,
    seed: u64,
) -> anyhow::Result<Mesh> {
    let text = std::fs::read_to_string(registry)
        .map_err(|e| usage(format!("--registry {}: {e}", registry.display())))?;
    let registry = RegistryFile::parse(&text)
        .map_err(|e| usage(format!("--registry {}: {e}", registry.display())))?
        .to_registry();
    let sources = if config.is_empty() {
        Vec::new()
    } else {
        crate::validate_cmd::read_sources(config)?
    };
    let (set, findings) = ConfigSet::load(&sources);
    let errors: Vec<_> = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    if !errors.is_empty() {
        for f in &errors {
            eprintln!("{f}");
        }
        return Err(usage(format!(
            "the configuration has {} error(s); run `meshrig validate` for every finding",
            errors.len()
        )));
    }
    let snap = snapshot(&set, &registry, proxy, 1);
    Ok(Mesh::new(set, snap, locality, seed))
}

/// Subscribes `mesh` to the control plane and waits for its first version (or
/// `stop`, whose reason is then returned).
async fn subscribe(
    mesh: &Arc<Mesh>,
    options: ClientOptions,
    stop: &mut crate::control_cmd::Stop,
) -> Option<&'static str> {
    let (first_tx, mut first_rx) = tokio::sync::watch::channel(false);
    let url = options.url();
    let m = mesh.clone();
    tokio::spawn(mesh_control::client::run(options, move |update: Update| {
        let stats = m.update(update.set, update.snapshot);
        eprintln!(
            "meshrig proxy: configuration version {} (snapshot {:016x}) in service; {} cluster(s) kept, {} rebuilt",
            update.version, update.hash, stats.kept, stats.rebuilt
        );
        first_tx.send_replace(true);
        Ok(())
    }));
    eprintln!("meshrig proxy: waiting for the first configuration from {url}");
    tokio::select! {
        _ = first_rx.wait_for(|got| *got) => None,
        reason = stop => Some(reason),
    }
}

/// The certificate lifecycle for a lifetime of `ttl`: Istio's defaults (renew at
/// half the lifetime ±10 %, backoff from 1 s doubling to 60 s, 10 s request timeout),
/// scaled down for short lifetimes as the simulator scales them — a request may take
/// a quarter of the lifetime, the first backoff is 1/60 of it — and the backoff is
/// capped at half the lifetime, so a CA that comes back is noticed before a fresh
/// certificate would be half used.
fn lifecycle_for(ttl: std::time::Duration) -> LifecycleConfig {
    use std::time::Duration;
    let clamp = |d: Duration, lo: Duration, hi: Duration| d.max(lo).min(hi);
    let ms = Duration::from_millis(1);
    let backoff_base = clamp(ttl / 60, ms, Duration::from_secs(1));
    LifecycleConfig {
        ttl,
        request_timeout: clamp(ttl / 4, ms, Duration::from_secs(10)),
        backoff_base,
        backoff_max: clamp(ttl / 2, backoff_base, Duration::from_secs(60)),
        ..LifecycleConfig::default()
    }
}

/// Starts the identity agent and waits for the first certificate (or `stop`, whose
/// reason is then returned).
async fn first_certificate(
    mesh: &Mesh,
    identity: Arc<Identity>,
    client: mesh_ca::CaClient,
    ttl: std::time::Duration,
    seed: u64,
    stop: &mut crate::control_cmd::Stop,
) -> Option<&'static str> {
    let (ready_tx, mut ready_rx) = tokio::sync::watch::channel(false);
    let config = lifecycle_for(ttl);
    eprintln!(
        "meshrig proxy: requesting a certificate for {} from the CA",
        identity.id().as_str()
    );
    tokio::spawn(mesh_proxy::agent::run(
        identity, client, config, mesh.clock, seed, ready_tx,
    ));
    tokio::select! {
        _ = ready_rx.wait_for(|got| *got) => None,
        reason = stop => Some(reason),
    }
}

async fn serve(
    mesh: Arc<Mesh>,
    listeners: Listeners,
    access_log: Option<String>,
    control: Option<ClientOptions>,
    identity: IdentitySource,
    seed: u64,
    mut stop: crate::control_cmd::Stop,
) -> anyhow::Result<()> {
    if let Some(options) = control
        && let Some(reason) = subscribe(&mesh, options, &mut stop).await
    {
        eprintln!("meshrig proxy: {reason}: shutting down");
        return Ok(());
    }
    if let IdentitySource::Ca {
        identity,
        client,
        ttl,
    } = identity
        && let Some(reason) = first_certificate(&mesh, identity, client, ttl, seed, &mut stop).await
    {
        eprintln!("meshrig proxy: {reason}: shutting down");
        return Ok(());
    }
    let mut proxy = Proxy::bind(mesh.clone(), &listeners).await?;
    if let Some(path) = &access_log {
        let log =
            mesh_proxy::access_log::AccessLog::open(&mesh_proxy::access_log::Sink::parse(path))
                .map_err(|e| usage(format!("--access-log: {e}")))?;
        proxy = proxy.with_access_log(log);
    }
    let (outbound, inbound, admin) = proxy.local_addrs();
    {
        let mut out = std::io::stdout().lock();
        for (name, a) in [
            ("outbound", outbound),
            ("inbound", inbound),
            ("admin", admin),
        ] {
            if let Some(a) = a {
                let _ = writeln!(out, "{name} listening on {a}");
            }
        }
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    }
    let snap = mesh.snapshot();
    eprintln!(
        "meshrig proxy: {} in {}: version {}: {} VirtualService(s), {} cluster(s), {} inbound policy(ies)",
        snap.proxy.workload,
        snap.proxy.namespace,
        snap.version,
        snap.routes.services().len(),
        snap.clusters.len(),
        snap.inbound_authz.len(),
    );
    proxy
        .serve(async move {
            let signal = stop.await;
            eprintln!("meshrig proxy: {signal}: shutting down");
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ProxyArgs,
    }

    fn run_with(argv: &[&str]) -> anyhow::Result<ExitCode> {
        let base = ["proxy", "--registry", "/nonexistent/registry.json"];
        let cli = Cli::try_parse_from(base.iter().chain(argv.iter()).copied())?;
        run(cli.args)
    }

    #[test]
    fn bad_flags_are_usage_errors_naming_the_flag() {
        for (argv, says) in [
            (
                &["--service", "a", "--outbound", "localhost"][..],
                "--outbound",
            ),
            (&["--service", "a"], "nothing to listen on"),
            (
                &["--service", "a", "--admin", "127.0.0.1:0", "--label", "app"],
                "--label",
            ),
            (
                &["--service", "a", "--admin", "127.0.0.1:0", "--threads", "0"],
                "--threads",
            ),
            (&["--service", "a", "--admin", "127.0.0.1:0"], "--registry"),
        ] {
            let err = run_with(argv).expect_err("should fail");
            assert!(
                err.downcast_ref::<crate::exit::UsageError>().is_some(),
                "{argv:?}: not a usage error: {err}"
            );
            assert!(err.to_string().contains(says), "{argv:?}: {err}");
        }
    }
}
