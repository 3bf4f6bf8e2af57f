//! `meshrig route` — ask the mesh what it would do with one request.
//!
//! Loads an Istio configuration set (files or directories, as `meshrig validate`),
//! compiles it with mesh-core, and prints the routing decision for the request
//! described by the flags: the VirtualService and rule, every destination (with
//! weights for a split), timeout, retries, fault, mirrors — and, with
//! `--source-principal`, the authorization verdict at the destination.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use mesh_core::compile::{authorization_policies, route_table};
use mesh_core::config::{ConfigSet, Severity};
use mesh_core::route::{RouteDecision, RouteOutcome, RouteRequest, decide};
use mesh_core::security::authz::{AuthzDecision, RequestAttributes, Verdict, evaluate};
use mesh_core::security::{SpiffeId, authz::DEFAULT_ROOT_NAMESPACE};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::Serialize;

use crate::exit::usage;

/// Show the routing decision (and authorization verdict) for one request.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  \
    meshrig route --config samples/ --host reviews -H 'end-user: jason'")]
pub struct RouteArgs {
    /// Istio YAML file or directory (repeatable); together they form one configuration set.
    #[arg(long = "config", value_name = "FILE_OR_DIR", required = true)]
    pub config: Vec<PathBuf>,

    /// The request's host (`Host` header), short or qualified, optionally with a port.
    #[arg(long)]
    pub host: String,

    /// Path, with an optional query string.
    #[arg(long, default_value = "/")]
    pub path: String,

    /// HTTP method.
    #[arg(long, default_value = "GET")]
    pub method: String,

    /// Request header "Name: value" (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Labels of the calling workload, `k=v,k=v` (for `sourceLabels` matches).
    #[arg(long, value_name = "K=V,...")]
    pub source_labels: Option<String>,

    /// Namespace of the calling workload (short hosts expand in it).
    #[arg(long, default_value = "default")]
    pub source_namespace: String,

    /// The caller's identity (SPIFFE ID, e.g. spiffe://cluster.local/ns/default/sa/sleep):
    /// adds the authorization verdict at the destination.
    #[arg(long, value_name = "SPIFFE_ID")]
    pub source_principal: Option<String>,

    /// Gateway the request arrives at: `mesh` for a sidecar, or a Gateway's name.
    #[arg(long, default_value = "mesh")]
    pub gateway: String,

    /// Seed for the draws (weighted split, fault and mirror percentages).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Also list the rules that were skipped, and why.
    #[arg(long)]
    pub explain: bool,

    /// Print the full decision trace as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Output<'a> {
    request: RequestEcho<'a>,
    decision: &'a RouteDecision,
    authorization: Option<&'a AuthzDecision>,
}

#[derive(Debug, Serialize)]
struct RequestEcho<'a> {
    host: &'a str,
    method: &'a str,
    path: &'a str,
    headers: &'a BTreeMap<String, String>,
    source_labels: &'a BTreeMap<String, String>,
    source_namespace: &'a str,
    source_principal: Option<&'a str>,
    gateway: &'a str,
}

pub fn run(args: RouteArgs) -> anyhow::Result<ExitCode> {
    let mut headers = BTreeMap::new();
    for h in &args.headers {
        let (k, v) = h.split_once(':').ok_or_else(|| {
            usage(format!(
                "--header '{h}' is not a header (expected \"Name: value\", e.g. -H 'end-user: jason')"
            ))
        })?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    let mut labels = BTreeMap::new();
    if let Some(text) = &args.source_labels {
        for kv in text.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                usage(format!(
                    "--source-labels '{kv}' is not a label (expected k=v, e.g. app=productpage)"
                ))
            })?;
            labels.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    let principal = match &args.source_principal {
        Some(p) => Some(
            p.parse::<SpiffeId>()
                .map_err(|e| usage(format!("--source-principal '{p}': {e}")))?,
        ),
        None => None,
    };

    let sources = crate::validate_cmd::read_sources(&args.config)?;
    let (set, findings) = ConfigSet::load(&sources);
    let errors: Vec<_> = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    if !errors.is_empty() {
        for f in &errors {
            eprintln!("{f}");
        }
        anyhow::bail!(
            "the configuration has {} error(s); run `meshrig validate` for every finding",
            errors.len()
        );
    }
    let table = route_table(&set);
    let request = RouteRequest {
        authority: &args.host,
        method: &args.method,
        path: &args.path,
        scheme: "http",
        headers: &headers,
        source_labels: &labels,
        source_namespace: &args.source_namespace,
        gateway: &args.gateway,
    };
    let mut rng = SmallRng::seed_from_u64(args.seed);
    let decision = decide(&table, &request, &mut rng, args.explain || args.json);

    let authz = principal.as_ref().and_then(|peer| {
        let dest = match &decision.outcome {
            RouteOutcome::Forward(f) => f.destination().clone(),
            RouteOutcome::Passthrough { destination, .. } => destination.clone(),
            _ => return None,
        };
        let (policies, problems) = authorization_policies(&set);
        for p in problems {
            eprintln!("meshrig route: warning: {p}");
        }
        let (labels, namespace) = destination_workload(&set, &dest.host, dest.subset.as_deref());
        let path = decision_path(&decision, &args.path);
        let port = dest.port.unwrap_or(80);
        let req = RequestAttributes::http(&args.method, &path, &dest.host, port).with_peer(peer);
        let req = headers.iter().fold(req, |r, (k, v)| r.with_header(k, v));
        Some(evaluate(
            &policies,
            &req,
            &labels,
            &namespace,
            DEFAULT_ROOT_NAMESPACE,
        ))
    });

    if args.json {
        let out = Output {
            request: RequestEcho {
                host: &args.host,
                method: &args.method,
                path: &args.path,
                headers: &headers,
                source_labels: &labels,
                source_namespace: &args.source_namespace,
                source_principal: args.source_principal.as_deref(),
                gateway: &args.gateway,
            },
            decision: &decision,
            authorization: authz.as_ref(),
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", render(&decision, authz.as_ref(), args.explain));
    }
    Ok(ExitCode::SUCCESS)
}

/// The path the destination sees (after a rewrite).
fn decision_path(decision: &RouteDecision, original: &str) -> String {
    match &decision.outcome {
        RouteOutcome::Forward(f) => f
            .rewritten_path
            .clone()
            .unwrap_or_else(|| original.to_owned()),
        _ => original.to_owned(),
    }
}

/// Labels and namespace of the workload behind `host` (and `subset`): `app` is the
/// service's short name, the subset's labels from the DestinationRule are added, and a
/// Kubernetes Service of that name contributes its selector.
fn destination_workload(
    set: &ConfigSet,
    host: &str,
    subset: Option<&str>,
) -> (BTreeMap<String, String>, String) {
    let mut parts = host.split('.');
    let name = parts.next().unwrap_or(host).to_owned();
    let namespace = parts
        .next()
        .filter(|_| host.ends_with(".svc.cluster.local"))
        .unwrap_or("default")
        .to_owned();
    let mut labels: BTreeMap<String, String> = [("app".to_owned(), name.clone())].into();
    if let Some(svc) = set
        .services()
        .iter()
        .find(|s| s.name == name && s.namespace == namespace)
    {
        labels.extend(svc.selector.clone());
    }
    if let Some(subset) = subset {
        for dr in set.destination_rules_for(host) {
            if let Some(s) = dr.spec.subsets.iter().find(|s| s.name == subset) {
                labels.extend(s.labels.clone());
            }
        }
    }
    (labels, namespace)
}

/// The human-readable decision.
pub fn render(d: &RouteDecision, authz: Option<&AuthzDecision>, explain: bool) -> String {
    let mut out = String::new();
    let t = &d.trace;
    let _ = writeln!(out, "host: {} ({})", t.host, t.host_match);
    match &t.virtual_service {
        Some(vs) => {
            let rule = match (t.rule, &t.rule_name) {
                (Some(i), Some(name)) => format!("http[{i}] \"{name}\""),
                (Some(i), None) => format!("http[{i}]"),
                _ => "no rule matched".to_owned(),
            };
            let at = t
                .origin
                .as_deref()
                .map(|o| format!(" at {o}"))
                .unwrap_or_default();
            let _ = writeln!(out, "virtual service: {vs}, rule {rule}{at}");
            if let Some(m) = t.match_index {
                let _ = writeln!(out, "matched: match[{m}]");
            }
        }
        None => {
            let _ = writeln!(
                out,
                "virtual service: none claims this host (Istio's default route to the service)"
            );
        }
    }
    match &d.outcome {
        RouteOutcome::Passthrough {
            destination,
            retries,
        } => {
            let _ = writeln!(out, "destination: {}", describe(destination));
            let _ = writeln!(out, "timeout: none (Istio's default)");
            let _ = writeln!(out, "{}", retries_line(retries));
        }
        RouteOutcome::Forward(f) => {
            let split = f.destinations.len() > 1;
            for (i, wd) in f.destinations.iter().enumerate() {
                let weight = if split {
                    format!(" (weight {})", wd.weight)
                } else {
                    String::new()
                };
                let chosen = if split && i == f.chosen {
                    "  ← this request"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "destination: {}{weight}{chosen}",
                    describe(&wd.destination)
                );
            }
            if let Some(p) = &f.rewritten_path {
                let _ = writeln!(out, "rewrite: path → {p}");
            }
            if let Some(a) = f.rewrite.as_ref().and_then(|r| r.authority.as_ref()) {
                let _ = writeln!(out, "rewrite: authority → {a}");
            }
            match f.timeout {
                Some(t) => {
                    let _ = writeln!(out, "timeout: {t:?} (all tries)");
                }
                None => {
                    let _ = writeln!(out, "timeout: none (Istio's default)");
                }
            }
            let _ = writeln!(out, "{}", retries_line(&f.retries));
            match (f.delay, f.abort) {
                (None, None) => {
                    let _ = writeln!(out, "fault: none for this request");
                }
                (delay, abort) => {
                    if let Some(d) = delay {
                        let _ = writeln!(out, "fault: delay {d:?}");
                    }
                    if let Some(s) = abort {
                        let _ = writeln!(out, "fault: abort with HTTP {s}");
                    }
                }
            }
            for m in &f.mirrors {
                let _ = writeln!(out, "mirror: {}", describe(m));
            }
            if !f.headers.is_empty() {
                let _ = writeln!(
                    out,
                    "headers: {}",
                    serde_json::to_string(&*f.headers).unwrap_or_default()
                );
            }
        }
        RouteOutcome::Redirect(r) => {
            let _ = writeln!(
                out,
                "redirect: {} to {}{}",
                r.status,
                r.authority.as_deref().unwrap_or("(same host)"),
                r.uri.as_deref().unwrap_or("(same path)")
            );
        }
        RouteOutcome::DirectResponse { status, body } => {
            let _ = writeln!(
                out,
                "direct response: {status}{}",
                body.as_deref()
                    .map(|b| format!(" {b:?}"))
                    .unwrap_or_default()
            );
        }
        RouteOutcome::NoRoute => {
            let _ = writeln!(
                out,
                "no route: the client-side proxy answers 404 (response flag NR)"
            );
        }
    }
    if let Some(a) = authz {
        let verdict = match &a.verdict {
            Verdict::Allow => "ALLOW".to_owned(),
            Verdict::Deny => "DENY (403)".to_owned(),
            Verdict::Custom { provider, .. } => {
                format!("CUSTOM: ask external authorizer {provider}")
            }
        };
        let _ = writeln!(out, "authorization: {verdict} — {}", authz_reason(a));
    }
    if explain {
        for s in &t.skipped {
            let name = s
                .name
                .as_deref()
                .map(|n| format!(" \"{n}\""))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "skipped http[{}]{name}: {}",
                s.rule,
                s.reasons.join("; ")
            );
        }
        for vs in &t.shadowed {
            let _ = writeln!(
                out,
                "shadowed: {vs} also claims this host; the first defined wins"
            );
        }
    }
    out
}

fn authz_reason(a: &AuthzDecision) -> String {
    use mesh_core::security::authz::AuthzReason;
    let by = a
        .trace
        .decided_by
        .as_ref()
        .map(|m| {
            format!(
                " ({}/{} rules[{}]: {})",
                m.policy.namespace,
                m.policy.name,
                m.rule_index,
                m.because.join(", ")
            )
        })
        .unwrap_or_default();
    let why = match a.trace.reason {
        AuthzReason::DenyMatched => "a DENY policy matched",
        AuthzReason::AllowMatched => "an ALLOW policy matched",
        AuthzReason::NoAllowMatched => "ALLOW policies apply here but none matched",
        AuthzReason::NoAllowPolicies => "no ALLOW policy applies to the destination",
    };
    format!("{why}{by}")
}

fn describe(d: &mesh_core::route::Destination) -> String {
    let mut s = d.host.clone();
    if let Some(subset) = &d.subset {
        let _ = write!(s, " subset {subset}");
    }
    if let Some(port) = d.port {
        let _ = write!(s, " port {port}");
    }
    s
}

fn retries_line(r: &mesh_core::route::RouteRetries) -> String {
    let per_try = r
        .per_try_timeout
        .map(|t| format!(", {t:?} per try"))
        .unwrap_or_default();
    let source = if r.istio_default {
        " (Istio's default: not configured)"
    } else {
        ""
    };
    format!("retries: {} on {}{per_try}{source}", r.attempts, r.retry_on)
}
