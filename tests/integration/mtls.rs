//! mTLS between `meshrig proxy` sidecars on 127.0.0.1, with certificates from a CA
//! made in the test (and deliberately bad ones made with rcgen from the same CA key):
//! STRICT refuses plaintext (curl) and accepts mTLS; PERMISSIVE serves both; every
//! bad peer certificate is refused with its own log line; the peer identity reaches
//! AuthorizationPolicy `principals` and the metrics; ISTIO_MUTUAL between sidecars.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};

use crate::support::{Server, TempDir, meshrig, spawn_echo, wait_until};

const TD: &str = "cluster.local";

/// A CA made for the test, and the files it writes.
struct Pki {
    dir: TempDir,
    ca: mesh_ca::Ca,
}

/// What a test leaf certificate looks like.
struct LeafSpec<'a> {
    uris: Vec<String>,
    is_ca: bool,
    /// Validity relative to now, in seconds.
    valid_from: i64,
    valid_to: i64,
    /// Sign with this CA instead of the test's.
    other_ca: Option<&'a mesh_ca::Ca>,
}

fn spiffe(ns: &str, sa: &str) -> String {
    format!("spiffe://{TD}/ns/{ns}/sa/{sa}")
}

impl LeafSpec<'_> {
    fn good(sa: &str) -> Self {
        LeafSpec {
            uris: vec![spiffe("default", sa)],
            is_ca: false,
            valid_from: -60,
            valid_to: 3600,
            other_ca: None,
        }
    }
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("mtls");
        let ca = mesh_ca::Ca::generate(TD).expect("CA");
        std::fs::write(dir.path("bundle.pem"), ca.bundle_pem()).unwrap();
        Pki { dir, ca }
    }

    fn bundle(&self) -> PathBuf {
        self.dir.path("bundle.pem")
    }

    /// Writes `name.pem` and `name-key.pem`; returns their paths.
    fn leaf(&self, name: &str, spec: LeafSpec<'_>) -> (PathBuf, PathBuf) {
        let ca = spec.other_ca.unwrap_or(&self.ca);
        let ca_key = KeyPair::from_pem(&ca.key_pem()).unwrap();
        let ca_cert = CertificateParams::from_ca_cert_pem(ca.cert_pem())
            .unwrap()
            .self_signed(&ca_key)
            .unwrap();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::default();
        p.subject_alt_names = spec
            .uris
            .iter()
            .map(|u| SanType::URI(u.clone().try_into().unwrap()))
            .collect();
        p.is_ca = if spec.is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now + time::Duration::seconds(spec.valid_from);
        p.not_after = now + time::Duration::seconds(spec.valid_to);
        let cert = p.signed_by(&key, &ca_cert, &ca_key).unwrap();
        let (c, k) = (
            self.dir.path(&format!("{name}.pem")),
            self.dir.path(&format!("{name}-key.pem")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

/// A running `meshrig proxy` whose stderr goes to a file, killed when dropped.
struct Sidecar {
    child: Child,
    listeners: std::collections::BTreeMap<String, SocketAddr>,
    log: PathBuf,
    _dir: TempDir,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sidecar {
    fn addr(&self, listener: &str) -> SocketAddr {
        self.listeners[listener]
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has a line containing every one of `parts`.
    fn wait_for_log(&self, parts: &[&str]) {
        wait_until(
            Duration::from_secs(10),
            &format!("log line {parts:?}"),
            || {
                self.log()
                    .lines()
                    .any(|l| parts.iter().all(|p| l.contains(p)))
            },
        );
    }

    fn metrics(&self) -> String {
        let (_, body) = crate::support::http_get(self.addr("admin"), "/metrics");
        body
    }
}

/// Starts `meshrig proxy` for `service` (service account = the service name) with
/// `istio` config, `registry` JSON and `extra` flags; waits for `ready`.
fn sidecar(service: &str, istio: &str, registry: &str, extra: &[&str]) -> Sidecar {
    let dir = TempDir::new("mtls-proxy");
    let (config, reg, log) = (
        dir.path("istio.yaml"),
        dir.path("registry.json"),
        dir.path("stderr.log"),
    );
    std::fs::write(&config, istio).unwrap();
    std::fs::write(&reg, registry).unwrap();
    let mut cmd = meshrig();
    cmd.arg("proxy")
        .args(["--service", service, "--service-account", service])
        .args(["--label", &format!("app={service}")])
        .arg("--config")
        .arg(&config)
        .arg("--registry")
        .arg(&reg)
        .args(["--admin", "127.0.0.1:0", "--threads", "1"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = cmd.spawn().expect("spawn meshrig proxy");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut listeners = std::collections::BTreeMap::new();
    loop {
        let line = match lines.next() {
            Some(Ok(l)) => l,
            other => {
                let _ = child.kill();
                let err = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("meshrig proxy stopped before `ready`: {other:?}\n{err}");
            }
        };
        if line == "ready" {
            break;
        }
        let (name, addr) = line.split_once(" listening on ").expect("listener line");
        listeners.insert(name.to_owned(), addr.parse().expect("address"));
    }
    Sidecar {
        child,
        listeners,
        log,
        _dir: dir,
    }
}

fn registry(service: &str, address: SocketAddr) -> String {
    format!(
        r#"{{"services": [{{"name": "{service}", "instances": [{{"address": "{address}", "labels": {{"app": "{service}"}}, "service_account": "{service}"}}]}}]}}"#
    )
}

fn peer_authentication(mode: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: default}}\nspec:\n  mtls: {{mode: {mode}}}\n"
    )
}

/// A reviews sidecar in front of an echo server: inbound under `istio`, with the
/// reviews certificate.
fn reviews(pki: &Pki, istio: &str) -> (Sidecar, Server) {
    let app = spawn_echo(&[]);
    let (cert, key) = pki.leaf("reviews", LeafSpec::good("reviews"));
    let flags = [
        "--inbound".into(),
        "127.0.0.1:0".into(),
        "--app".into(),
        app.addr.to_string(),
        "--cert".into(),
        cert.display().to_string(),
        "--key".into(),
        key.display().to_string(),
        "--bundle".into(),
        pki.bundle().display().to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let proxy = sidecar("reviews", istio, &registry("reviews", app.addr), &flags);
    (proxy, app)
}

/// A `sleep` client sidecar (outbound) with its certificate from `pki`, routing by
/// `registry`.
fn sleep_with_identity(pki: &Pki, registry: &str) -> Sidecar {
    let (cert, key) = pki.leaf("sleep", LeafSpec::good("sleep"));
    let (c, k, b) = (
        cert.display().to_string(),
        key.display().to_string(),
        pki.bundle().display().to_string(),
    );
    let flags = [
        "--outbound",
        "127.0.0.1:0",
        "--cert",
        &c,
        "--key",
        &k,
        "--bundle",
        &b,
    ];
    sidecar("sleep", "", registry, &flags)
}

/// curl's status code for `url` (0 when the connection failed), with `args`.
fn curl(url: &str, args: &[&str]) -> u16 {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn curl_mtls(addr: SocketAddr, cert: &std::path::Path, key: &std::path::Path) -> u16 {
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    // -k: a SPIFFE certificate names no host; the server's identity is checked by
    // sidecars, not by curl.
    curl(
        &format!("https://{addr}/"),
        &["-k", "--cert", &c, "--key", &k],
    )
}

#[test]
fn strict_refuses_plaintext_and_accepts_mtls_with_the_peer_identity_in_metrics() {
    let pki = Pki::new();
    let (proxy, _app) = reviews(&pki, &peer_authentication("STRICT"));
    let inbound = proxy.addr("inbound");

    assert_eq!(
        curl(&format!("http://{inbound}/"), &[]),
        0,
        "plaintext refused"
    );
    proxy.wait_for_log(&[
        "mtls_handshake_failed",
        "plaintext connection refused",
        "STRICT",
    ]);

    let (cert, key) = pki.leaf("sleep", LeafSpec::good("sleep"));
    assert_eq!(curl_mtls(inbound, &cert, &key), 200);
    let metrics = proxy.metrics();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("istio_requests_total{") && l.contains("mutual_tls"))
        .unwrap_or_else(|| panic!("no mutual_tls request series in:\n{metrics}"));
    assert!(
        line.contains(&format!(
            "source_principal=\"{}\"",
            spiffe("default", "sleep")
        )),
        "{line}"
    );
    assert!(
        line.contains("connection_security_policy=\"mutual_tls\""),
        "{line}"
    );
}

#[test]
fn permissive_serves_plaintext_and_mtls_on_one_port() {
    let pki = Pki::new();
    let (proxy, _app) = reviews(&pki, &peer_authentication("PERMISSIVE"));
    let inbound = proxy.addr("inbound");
    assert_eq!(curl(&format!("http://{inbound}/"), &[]), 200);
    let (cert, key) = pki.leaf("sleep", LeafSpec::good("sleep"));
    assert_eq!(curl_mtls(inbound, &cert, &key), 200);
    let metrics = proxy.metrics();
    for policy in ["none", "mutual_tls"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("istio_requests_total{")
                    && l.contains(&format!("connection_security_policy=\"{policy}\""))),
            "no {policy} series in:\n{metrics}"
        );
    }
}

#[test]
fn disable_serves_plaintext_only() {
    let pki = Pki::new();
    let (proxy, _app) = reviews(&pki, &peer_authentication("DISABLE"));
    let inbound = proxy.addr("inbound");
    assert_eq!(curl(&format!("http://{inbound}/"), &[]), 200);
    let (cert, key) = pki.leaf("sleep", LeafSpec::good("sleep"));
    // The TLS bytes reach the HTTP server as they are: no TLS answer comes back.
    assert_eq!(curl_mtls(inbound, &cert, &key), 0);
}

#[test]
fn bad_peer_certificates_are_refused_each_with_its_own_log_line() {
    let pki = Pki::new();
    let (proxy, _app) = reviews(&pki, &peer_authentication("STRICT"));
    let inbound = proxy.addr("inbound");
    let foreign_ca = mesh_ca::Ca::generate(TD).unwrap();
    let cases: Vec<(&str, LeafSpec<'_>, &[&str])> = vec![
        (
            "foreign-td",
            LeafSpec {
                uris: vec!["spiffe://evil.example/ns/default/sa/sleep".into()],
                ..LeafSpec::good("sleep")
            },
            &["foreign_trust_domain", "trust domain \\\"evil.example\\\""],
        ),
        (
            "expired",
            LeafSpec {
                valid_from: -7200,
                valid_to: -3600,
                ..LeafSpec::good("sleep")
            },
            &["\"kind\":\"expired\"", "expired at"],
        ),
        (
            "ca-as-leaf",
            LeafSpec {
                is_ca: true,
                ..LeafSpec::good("sleep")
            },
            &["leaf_is_ca", "is a CA certificate"],
        ),
        (
            "two-uris",
            LeafSpec {
                uris: vec![spiffe("default", "sleep"), spiffe("default", "admin")],
                ..LeafSpec::good("sleep")
            },
            &["uri_san_count", "has 2 URI SANs"],
        ),
        (
            "other-root",
            LeafSpec {
                other_ca: Some(&foreign_ca),
                ..LeafSpec::good("sleep")
            },
            &["untrusted_issuer", "does not chain to a trusted root"],
        ),
    ];
    for (name, spec, expect) in cases {
        let (cert, key) = pki.leaf(name, spec);
        assert_eq!(curl_mtls(inbound, &cert, &key), 0, "{name} accepted");
        let mut parts = vec!["mtls_handshake_failed"];
        parts.extend_from_slice(expect);
        proxy.wait_for_log(&parts);
    }
    // Nothing bad reached the application.
    assert!(
        !proxy.metrics().contains("istio_requests_total{"),
        "a request was served"
    );
}

#[test]
fn authorization_policy_principals_use_the_mtls_identity() {
    let pki = Pki::new();
    let istio = format!(
        "{}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: only-sleep, namespace: default}}\nspec:\n  selector: {{matchLabels: {{app: reviews}}}}\n  action: ALLOW\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/default/sa/sleep\"]\n",
        peer_authentication("STRICT")
    );
    let (proxy, _app) = reviews(&pki, &istio);
    let inbound = proxy.addr("inbound");
    let (cert, key) = pki.leaf("sleep", LeafSpec::good("sleep"));
    assert_eq!(curl_mtls(inbound, &cert, &key), 200);
    let (cert, key) = pki.leaf("intruder", LeafSpec::good("intruder"));
    assert_eq!(curl_mtls(inbound, &cert, &key), 403);
}

#[test]
fn sidecars_speak_istio_mutual_and_a_sidecar_without_identity_is_refused() {
    let pki = Pki::new();
    let (server, _app) = reviews(&pki, &peer_authentication("STRICT"));
    let reg = registry("reviews", server.addr("inbound"));
    let client = sleep_with_identity(&pki, &reg);
    let (status, _) = crate::support::http_get_host(client.addr("outbound"), "reviews", "/");
    assert_eq!(status, 200, "client log:\n{}", client.log());
    let metrics = server.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_requests_total{")
                && l.contains(&format!(
                    "source_principal=\"{}\"",
                    spiffe("default", "sleep")
                ))
                && l.contains("mutual_tls")),
        "{metrics}"
    );

    // No identity: auto mTLS is off, plaintext goes out and STRICT refuses it.
    let plain = sidecar("sleep", "", &reg, &["--outbound", "127.0.0.1:0"]);
    let (status, _) = crate::support::http_get_host(plain.addr("outbound"), "reviews", "/");
    assert_eq!(status, 503);
    server.wait_for_log(&["plaintext connection refused"]);
}

#[test]
fn istio_mutual_checks_the_server_is_the_endpoint_identity() {
    // The registry says the endpoint runs as `ratings`, but the server presents
    // `reviews`: the client refuses it (a spoofed endpoint).
    let pki = Pki::new();
    let (server, _app) = reviews(&pki, &peer_authentication("STRICT"));
    let reg = format!(
        r#"{{"services": [{{"name": "reviews", "instances": [{{"address": "{}", "labels": {{"app": "reviews"}}, "service_account": "ratings"}}]}}]}}"#,
        server.addr("inbound")
    );
    let client = sleep_with_identity(&pki, &reg);
    let (status, _) = crate::support::http_get_host(client.addr("outbound"), "reviews", "/");
    assert_eq!(status, 503);
    client.wait_for_log(&["unexpected_identity", "sa/reviews", "sa/ratings"]);
}
