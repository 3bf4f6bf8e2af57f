//! The mesh's identity in real mode: a `meshrig ca serve` process, one bootstrap token
//! per service account, each sidecar getting its certificate from the CA, and the
//! scenario's mesh-wide mTLS mode as a PeerAuthentication.
//!
//! As in the simulator (and in Istio), every sidecar gets a certificate when both
//! ends of a hop have one (`proxiesPerHop: 2`), whatever the mTLS mode; with one
//! proxy per hop the callee has no sidecar to terminate mTLS, so none is issued.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use scenario::{Loaded, MtlsSetting, Scenario};

use super::plan::Plan;
use super::procs::Spec;

/// The CA process and what sidecars need to reach it.
#[derive(Debug, Clone)]
pub struct CaPlan {
    pub port: u16,
    /// `--state-dir`: the CA's root (kept across a restart) and `root-cert.pem`.
    pub dir: PathBuf,
    pub admin_token: String,
    pub trust_domain: String,
    /// The certificate lifetime sidecars ask for.
    pub ttl: Duration,
    /// (namespace, service account) → bootstrap token.
    tokens: BTreeMap<(String, String), String>,
}

/// A token that is hard to guess within one run (64 bits from `seed` and the
/// identity; a local laboratory's CA, not a production secret).
fn token(seed: u64, what: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in what.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("mr-{h:016x}")
}

/// Whole seconds for the CLI, at least 1 s (the CA's shortest lifetime).
pub fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs().max(1))
}

impl CaPlan {
    /// The CA of a run, when sidecars need certificates.
    pub fn new(sc: &Scenario, plan: &Plan, work_dir: &Path, seed: u64) -> Option<CaPlan> {
        if plan.proxies_per_hop < 2 {
            return None;
        }
        let mut tokens = BTreeMap::new();
        let identities = plan
            .insts
            .iter()
            .map(|i| (i.namespace.clone(), i.service_account.clone()))
            .chain(std::iter::once(("default".to_owned(), "client".to_owned())));
        for id in identities {
            let t = token(seed, &format!("{}/{}", id.0, id.1));
            tokens.entry(id).or_insert(t);
        }
        Some(CaPlan {
            port: plan.ca_port,
            dir: work_dir.join("ca"),
            admin_token: token(seed, "admin"),
            trust_domain: sc.mesh.trust_domain.clone(),
            ttl: Duration::from_nanos(sc.mesh.cert_ttl_ns).max(Duration::from_secs(1)),
            tokens,
        })
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn root_file(&self) -> PathBuf {
        self.dir.join("root-cert.pem")
    }

    /// `meshrig ca serve` for this run.
    pub fn spec(&self) -> Spec {
        let ttl = secs(self.ttl);
        let mut args = vec![
            "ca".into(),
            "serve".into(),
            "--listen".into(),
            self.addr(),
            "--trust-domain".into(),
            self.trust_domain.clone(),
            "--state-dir".into(),
            self.dir.display().to_string(),
            "--admin-token".into(),
            self.admin_token.clone(),
            "--ttl".into(),
            ttl.clone(),
            "--max-ttl".into(),
            ttl,
            "--exit-on-stdin-eof".into(),
        ];
        for ((ns, sa), t) in &self.tokens {
            args.push("--token".into());
            args.push(format!("{t}={ns}/{sa}"));
        }
        Spec {
            name: "ca".to_owned(),
            args,
        }
    }

    /// The flags that make a sidecar of `namespace`/`service_account` get its
    /// certificate from this CA.
    pub fn sidecar_flags(&self, namespace: &str, service_account: &str) -> Vec<String> {
        let token = self
            .tokens
            .get(&(namespace.to_owned(), service_account.to_owned()))
            .cloned()
            .unwrap_or_default();
        vec![
            "--trust-domain".into(),
            self.trust_domain.clone(),
            "--ca".into(),
            self.addr(),
            "--ca-root".into(),
            self.root_file().display().to_string(),
            "--ca-token".into(),
            token,
            "--cert-ttl".into(),
            secs(self.ttl),
        ]
    }

    /// Starts a root rotation with `overlap` (`meshrig ca rotate`); the CA carries
    /// out its later phases by itself.
    pub fn rotate(&self, exe: &Path, overlap: Duration) -> Result<(), String> {
        let out = std::process::Command::new(exe)
            .args(["ca", "rotate", "--ca", &self.addr(), "--ca-root"])
            .arg(self.root_file())
            .args(["--admin-token", &self.admin_token, "--overlap"])
            .arg(format!("{}ms", overlap.as_millis().max(1)))
            .output()
            .map_err(|e| format!("cannot run meshrig ca rotate: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

/// The scenario's mesh-wide `mtls` as a root-namespace PeerAuthentication, unless
/// the scenario's own configuration has a mesh-wide one (which then decides, as in
/// the simulator, where any PeerAuthentication overrides `mesh.mtls`).
pub fn mesh_peer_authentication(loaded: &Loaded) -> Option<String> {
    let set = &loaded.config;
    let has_mesh_wide = set
        .peer_authentications()
        .iter()
        .any(|pa| pa.metadata.namespace == "istio-system" && pa.spec.selector.is_none());
    if has_mesh_wide {
        return None;
    }
    let mode = match loaded.scenario.mesh.mtls {
        MtlsSetting::Strict => "STRICT",
        MtlsSetting::Permissive => "PERMISSIVE",
        MtlsSetting::Disable => "DISABLE",
    };
    Some(format!(
        "# The scenario's mesh.mtls, written by meshrig run --mode real.\n\
         apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata: {{name: meshrig-mesh-mtls, namespace: istio-system}}\n\
         spec:\n  mtls: {{mode: {mode}}}\n"
    ))
}
