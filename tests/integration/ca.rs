//! `meshrig ca`: SPIFFE workload certificates that `openssl` verifies against the
//! bundle, with exactly the expected URI SAN; a root made by `ca init` issues
//! certificates that chain to it; bad input is a usage error.
//!
//! `meshrig ca serve` on 127.0.0.1:0: a CSR signed for its token's identity verifies
//! with `openssl verify` against the bundle in the state directory; a token for
//! another service account gets a 403 with the reason, no token a 401, each logged as
//! one JSON line; `meshrig ca rotate` makes the bundle two roots then one, and a leaf
//! signed after the switch verifies against the new root only; an intermediate made by
//! `openssl` plugs in, its leaves carry the chain, and it refuses to rotate; SIGTERM
//! stops the CA cleanly.

use std::io::{BufRead, BufReader, Read as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mesh_ca::{CaClient, ClientError, generate_csr};

use crate::support::{TempDir, meshrig, wait_until};

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn issued_certificates_verify_and_carry_one_spiffe_uri() {
    let dir = TempDir::new("ca-issue");
    let out = dir.path("certs");
    let status = meshrig()
        .args([
            "ca",
            "issue",
            "--trust-domain",
            "cluster.local",
            "--ns",
            "default",
        ])
        .args(["--sa", "reviews", "--ttl", "1m", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let (cert, bundle) = (out.join("cert.pem"), out.join("bundle.pem"));
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        bundle.to_str().unwrap(),
        cert.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let (ok, text) = openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-ext",
        "subjectAltName,basicConstraints",
    ]);
    assert!(ok, "{text}");
    let uris: Vec<&str> = text.matches("URI:").collect();
    assert_eq!(uris.len(), 1, "{text}");
    assert!(
        text.contains("URI:spiffe://cluster.local/ns/default/sa/reviews\n"),
        "{text}"
    );
    assert!(text.contains("CA:FALSE"), "{text}");
    let mode = std::fs::metadata(out.join("key.pem")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn a_root_from_ca_init_issues_certificates_that_chain_to_it() {
    let dir = TempDir::new("ca-init");
    let root = dir.path("root");
    assert!(
        meshrig()
            .args(["ca", "init", "--out"])
            .arg(&root)
            .status()
            .unwrap()
            .success()
    );
    let certs = dir.path("certs");
    assert!(
        meshrig()
            .args(["ca", "issue", "--sa", "ratings", "--ca-cert"])
            .arg(root.join("ca-cert.pem"))
            .arg("--ca-key")
            .arg(root.join("ca-key.pem"))
            .arg("--out")
            .arg(&certs)
            .status()
            .unwrap()
            .success()
    );
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        root.join("ca-cert.pem").to_str().unwrap(),
        certs.join("cert.pem").to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
}

#[test]
fn bad_identities_and_ttls_are_usage_errors() {
    let dir = TempDir::new("ca-bad");
    for (args, needle) in [
        (vec!["--sa", "a/b"], "service account 'a/b'"),
        (
            vec!["--sa", "a", "--trust-domain", "Bad Domain"],
            "trust domain",
        ),
        (vec!["--sa", "a", "--ttl", "0s"], "at least 1s"),
    ] {
        let out = meshrig()
            .args(["ca", "issue", "--out"])
            .arg(dir.path("x"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

/// How long any one wait in these tests may take.
const LIMIT: Duration = Duration::from_secs(15);

/// A running `meshrig ca serve`, killed when dropped. Its stdin is a pipe
/// (`--exit-on-stdin-eof`), so closing it stops the CA too.
struct Ca {
    child: Child,
    addr: SocketAddr,
    state: PathBuf,
}

impl Drop for Ca {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Ca {
    /// Starts `meshrig ca serve --listen 127.0.0.1:0 --state-dir STATE EXTRA...` and
    /// reads stdout up to `ready`.
    fn spawn(state: &Path, extra: &[&str]) -> Ca {
        let mut child = meshrig()
            .args([
                "ca",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--exit-on-stdin-eof",
            ])
            .arg("--state-dir")
            .arg(state)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn meshrig ca serve");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let Some(addr) = first.strip_prefix("ca listening on ") else {
            let _ = child.kill();
            let mut stderr = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
            panic!("unexpected first line {first:?}; stderr: {stderr}");
        };
        let addr = addr.parse().expect("an address");
        assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"));
        Ca {
            child,
            addr,
            state: state.to_owned(),
        }
    }

    fn roots_file(&self) -> PathBuf {
        self.state.join("root-cert.pem")
    }

    fn roots(&self) -> String {
        std::fs::read_to_string(self.roots_file()).expect("root-cert.pem")
    }

    /// Closes stdin and returns (exit code, stderr).
    fn stop(mut self) -> (Option<i32>, String) {
        drop(self.child.stdin.take());
        let status = wait_exit(&mut self.child);
        let mut stderr = String::new();
        let _ = self
            .child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr);
        (status, stderr)
    }
}

fn wait_exit(child: &mut Child) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(start.elapsed() < LIMIT, "the CA did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `curl` against the CA, trusting `roots`: (HTTP status, body).
fn curl(
    addr: SocketAddr,
    roots: &Path,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "10",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "--cacert",
    ])
    .arg(roots)
    .arg(format!("https://{addr}{path}"));
    if let Some(t) = token {
        cmd.args(["-H", &format!("authorization: Bearer {t}")]);
    }
    if !body.is_empty() {
        cmd.args(["--data-binary", body]);
    }
    let out = cmd.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.parse().unwrap_or(0), body.to_owned())
}

fn certificates_in(pem: &str) -> usize {
    pem.matches("-----BEGIN CERTIFICATE-----").count()
}

fn verify(ca_file: &Path, cert: &Path, untrusted: Option<&Path>) -> (bool, String) {
    let mut args = vec![
        "verify".to_owned(),
        "-CAfile".to_owned(),
        ca_file.display().to_string(),
    ];
    if let Some(u) = untrusted {
        args.extend(["-untrusted".to_owned(), u.display().to_string()]);
    }
    args.push(cert.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    openssl(&args)
}

#[test]
fn ca_serve_signs_for_the_token_identity_and_refuses_others_with_the_reason() {
    let dir = TempDir::new("ca-serve");
    let ca = Ca::spawn(
        &dir.path("state"),
        &["--token", "t-reviews=default/reviews", "--ttl", "1h"],
    );
    let roots = ca.roots();
    assert_eq!(certificates_in(&roots), 1);
    let client = CaClient::new(&ca.addr.to_string(), "t-reviews", &roots).unwrap();
    let csr = generate_csr("cluster.local", "default", "reviews").unwrap();
    let signed = runtime()
        .block_on(client.sign(&csr.csr_pem, Duration::from_secs(600)))
        .unwrap();
    let leaf = dir.path("leaf.pem");
    std::fs::write(&leaf, &signed.cert_chain_pem).unwrap();
    let (ok, text) = verify(&ca.roots_file(), &leaf, None);
    assert!(ok, "{text}");
    let (ok, text) = openssl(&[
        "x509",
        "-in",
        leaf.to_str().unwrap(),
        "-noout",
        "-ext",
        "subjectAltName",
    ]);
    assert!(ok, "{text}");
    assert_eq!(text.matches("URI:").count(), 1, "{text}");
    assert!(
        text.contains("URI:spiffe://cluster.local/ns/default/sa/reviews\n"),
        "{text}"
    );
    let life = signed.not_after.duration_since(signed.not_before).unwrap();
    assert_eq!(
        life,
        Duration::from_secs(660),
        "600 s asked + 60 s back-dated"
    );

    // A CSR for ratings with the reviews token: 403, saying both identities.
    let other = generate_csr("cluster.local", "default", "ratings").unwrap();
    let body = serde_json::json!({ "csr": other.csr_pem }).to_string();
    let (status, text) = curl(
        ca.addr,
        &ca.roots_file(),
        "/v1/sign",
        Some("t-reviews"),
        &body,
    );
    assert_eq!(status, 403, "{text}");
    let error: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        error["error"],
        "token is bound to spiffe://cluster.local/ns/default/sa/reviews; the CSR asks for spiffe://cluster.local/ns/default/sa/ratings"
    );
    // No token: 401, saying so; the same through the client.
    let (status, text) = curl(ca.addr, &ca.roots_file(), "/v1/sign", None, &body);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("no bootstrap token"), "{text}");
    let stranger = CaClient::new(&ca.addr.to_string(), "guess", &roots).unwrap();
    match runtime().block_on(stranger.sign(&csr.csr_pem, Duration::from_secs(60))) {
        Err(ClientError::Http {
            status: 401,
            message,
        }) => {
            assert!(message.contains("unknown bootstrap token"), "{message}");
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    let (status, metrics) = curl(ca.addr, &ca.roots_file(), "/metrics", None, "");
    assert_eq!(status, 200);
    assert!(metrics.contains("meshrig_ca_signed_total 1\n"), "{metrics}");
    assert!(
        metrics.contains("meshrig_ca_rejected_total{reason=\"unauthenticated\"} 2\n"),
        "{metrics}"
    );

    let (code, stderr) = ca.stop();
    assert_eq!(code, Some(0), "{stderr}");
    let rejections: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["event"] == "rejected")
        .collect();
    assert_eq!(rejections.len(), 3, "{stderr}");
    assert_eq!(rejections[0]["status"], 403);
    assert_eq!(rejections[0]["reason"], "forbidden");
    assert!(
        rejections[0]["error"]
            .as_str()
            .unwrap()
            .contains("sa/ratings")
    );
    assert_eq!(rejections[1]["status"], 401);
    assert!(stderr.contains("stdin closed: shutting down"), "{stderr}");
}

#[test]
fn ca_rotate_trusts_two_roots_then_one_and_the_new_root_signs_after_the_switch() {
    let dir = TempDir::new("ca-rotate");
    let ca = Ca::spawn(
        &dir.path("state"),
        &["--token", "t=default/reviews", "--ttl", "3s"],
    );
    let old_roots = ca.roots();
    let old_root_file = dir.path("old-root.pem");
    std::fs::write(&old_root_file, &old_roots).unwrap();
    let client = CaClient::new(&ca.addr.to_string(), "t", &old_roots).unwrap();
    let csr = generate_csr("cluster.local", "default", "reviews").unwrap();
    let rt = runtime();

    let out = meshrig()
        .args([
            "ca",
            "rotate",
            "--ca",
            &ca.addr.to_string(),
            "--overlap",
            "4s",
        ])
        .arg("--admin-token-file")
        .arg(ca.state.join("admin-token"))
        .arg("--ca-root")
        .arg(ca.roots_file())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("(+2s): the new root signs"), "{stdout}");
    assert!(
        stdout.contains("(+4s): the old root leaves the bundle"),
        "{stdout}"
    );
    assert!(
        stderr.contains(
            "warning: the overlap (4s) is shorter than twice the default workload TTL (3s)"
        ),
        "{stderr}"
    );
    // Both roots are trusted at once; the old one still signs.
    assert_eq!(certificates_in(&ca.roots()), 2);
    let signed = rt
        .block_on(client.sign(&csr.csr_pem, Duration::from_secs(3)))
        .unwrap();
    assert_eq!(certificates_in(&signed.bundle_pem), 2);
    let leaf = dir.path("before.pem");
    std::fs::write(&leaf, &signed.cert_chain_pem).unwrap();
    assert!(verify(&old_root_file, &leaf, None).0);

    // After the switch the new root signs: a new leaf verifies against the new root
    // alone and not against the old one.
    wait_until(LIMIT, "the switch to the new root", || {
        let (_, m) = curl(ca.addr, &ca.roots_file(), "/metrics", None, "");
        m.contains("meshrig_ca_rotation_phase 2\n")
    });
    let signed = rt
        .block_on(client.sign(&csr.csr_pem, Duration::from_secs(3)))
        .unwrap();
    let after = dir.path("after.pem");
    std::fs::write(&after, &signed.cert_chain_pem).unwrap();
    assert!(
        !verify(&old_root_file, &after, None).0,
        "not by the old root"
    );

    // Then the old root leaves the bundle (and root-cert.pem).
    wait_until(LIMIT, "the old root to be dropped", || {
        certificates_in(&ca.roots()) == 1
    });
    assert_ne!(ca.roots(), old_roots);
    let (ok, text) = verify(&ca.roots_file(), &after, None);
    assert!(ok, "{text}");
    assert!(
        !verify(&ca.roots_file(), &leaf, None).0,
        "the old root is gone"
    );
    let bundle = rt.block_on(client.bundle()).unwrap();
    assert_eq!(bundle, ca.roots());
}

/// A root and an intermediate made by openssl: (root.pem, int.pem, int-key.pem).
fn openssl_pki(dir: &TempDir) -> (PathBuf, PathBuf, PathBuf) {
    let p = |f: &str| dir.path(f).display().to_string();
    let ext = dir.path("ext.cnf");
    std::fs::write(
        &ext,
        "[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .unwrap();
    for args in [
        vec![
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &p("root-key.pem"),
        ],
        vec![
            "req",
            "-x509",
            "-new",
            "-key",
            &p("root-key.pem"),
            "-subj",
            "/O=Example Corp/CN=Example Root",
            "-days",
            "30",
            "-out",
            &p("root.pem"),
        ],
        vec![
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &p("int-key.pem"),
        ],
        vec![
            "req",
            "-new",
            "-key",
            &p("int-key.pem"),
            "-subj",
            "/O=Example Corp/CN=Mesh Intermediate",
            "-out",
            &p("int.csr"),
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &p("int.csr"),
            "-CA",
            &p("root.pem"),
            "-CAkey",
            &p("root-key.pem"),
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            &p("ext.cnf"),
            "-extensions",
            "ca",
            "-out",
            &p("int.pem"),
        ],
    ] {
        let (ok, text) = openssl(&args);
        assert!(ok, "openssl {args:?}: {text}");
    }
    (
        dir.path("root.pem"),
        dir.path("int.pem"),
        dir.path("int-key.pem"),
    )
}

#[test]
fn an_openssl_intermediate_plugs_in_and_its_leaves_carry_the_chain() {
    let dir = TempDir::new("ca-intermediate");
    let (root, int, int_key) = openssl_pki(&dir);
    // The chain file: the intermediate, then the root.
    let chain = dir.path("chain.pem");
    std::fs::write(
        &chain,
        std::fs::read_to_string(&int).unwrap() + &std::fs::read_to_string(&root).unwrap(),
    )
    .unwrap();
    let ca = Ca::spawn(
        &dir.path("state"),
        &[
            "--token",
            "t=default/reviews",
            "--admin-token",
            "adm",
            "--ca-cert",
            chain.to_str().unwrap(),
            "--ca-key",
            int_key.to_str().unwrap(),
        ],
    );
    assert_eq!(
        ca.roots(),
        std::fs::read_to_string(&root)
            .unwrap()
            .replace("\r\n", "\n")
    );
    let client = CaClient::new(&ca.addr.to_string(), "t", &ca.roots()).unwrap();
    let csr = generate_csr("cluster.local", "default", "reviews").unwrap();
    let signed = runtime()
        .block_on(client.sign(&csr.csr_pem, Duration::from_secs(60)))
        .unwrap();
    assert_eq!(
        certificates_in(&signed.cert_chain_pem),
        2,
        "leaf, intermediate"
    );
    let leaf = dir.path("leaf.pem");
    std::fs::write(&leaf, &signed.cert_chain_pem).unwrap();
    let (ok, text) = verify(&root, &leaf, Some(&leaf));
    assert!(ok, "{text}");
    // Without the intermediate the leaf does not verify: it is not signed by the root.
    assert!(!verify(&root, &leaf, None).0);

    // A plugged-in CA refuses to mint a new root, saying why.
    let out = meshrig()
        .args([
            "ca",
            "rotate",
            "--ca",
            &ca.addr.to_string(),
            "--overlap",
            "1h",
        ])
        .args(["--admin-token", "adm", "--ca-root"])
        .arg(ca.roots_file())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("(409)") && stderr.contains("cannot mint its successor root"),
        "{stderr}"
    );

    // `ca issue` takes the same files, with the root given apart.
    let out_dir = dir.path("issued");
    let status = meshrig()
        .args(["ca", "issue", "--sa", "web", "--ca-cert"])
        .arg(&int)
        .arg("--ca-key")
        .arg(&int_key)
        .arg("--root-cert")
        .arg(&root)
        .arg("--out")
        .arg(&out_dir)
        .status()
        .unwrap();
    assert!(status.success());
    let cert = out_dir.join("cert.pem");
    let (ok, text) = verify(&out_dir.join("bundle.pem"), &cert, Some(&cert));
    assert!(ok, "{text}");
}

#[test]
fn ca_serve_stops_cleanly_on_sigterm_and_bad_flags_are_usage_errors() {
    let dir = TempDir::new("ca-term");
    let mut ca = Ca::spawn(&dir.path("state"), &["--token", "t=default/a"]);
    let pid = ca.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let code = wait_exit(&mut ca.child);
    let mut stderr = String::new();
    let _ = ca.child.stderr.take().unwrap().read_to_string(&mut stderr);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("SIGTERM: shutting down"), "{stderr}");

    let bad = dir.path("bad.json");
    std::fs::write(&bad, r#"[{"token": "x", "namespace": "default"}]"#).unwrap();
    for (args, says) in [
        (vec!["--token", "abc"], "--token 'abc': no '='"),
        (
            vec!["--tokens", bad.to_str().unwrap()],
            "missing field `serviceAccount`",
        ),
        (
            vec!["--listen", "nowhere"],
            "--listen: 'nowhere' is not an IP:PORT",
        ),
        (
            vec!["--ttl", "2h", "--max-ttl", "1h"],
            "--ttl (2h) is longer than --max-ttl (1h)",
        ),
    ] {
        let out = meshrig()
            .args(["ca", "serve"])
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
