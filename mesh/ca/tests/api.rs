//! The HTTPS API end to end, in process: a `CaServer` on 127.0.0.1:0 and `CaClient`s.
//! Signing, every refusal with its reason, the TTL cap, metrics, a rotation seen
//! through the client (which keeps reaching the CA across it), and shutdown.

use std::time::{Duration, SystemTime};

use mesh_ca::{Ca, CaClient, CaServer, ClientError, ServerConfig, Tokens, generate_csr};
use x509_parser::prelude::{FromDer, X509Certificate, parse_x509_pem};

const TD: &str = "cluster.local";

struct Running {
    addr: String,
    roots: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
    bundle_file: std::path::PathBuf,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), &mut self.done)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
    }
}

async fn start(name: &str, ttl: Duration, max_ttl: Duration) -> Running {
    let mut tokens = Tokens::new();
    tokens.insert("t-reviews", "default", "reviews").unwrap();
    tokens.insert("t-ratings", "default", "ratings").unwrap();
    let dir = std::env::temp_dir().join(format!("mesh-ca-api-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bundle_file = dir.join("root-cert.pem");
    let mut config = ServerConfig::new(Ca::generate(TD).unwrap(), tokens);
    config.admin_token = Some("admin-secret".to_owned());
    config.default_ttl = ttl;
    config.max_ttl = max_ttl;
    config.bundle_file = Some(bundle_file.clone());
    let server = CaServer::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let roots = server.bundle_pem();
    assert_eq!(std::fs::read_to_string(&bundle_file).unwrap(), roots);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(server.serve(async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        roots,
        stop: Some(tx),
        done,
        bundle_file,
    }
}

fn der_certs(pem: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = pem.as_bytes();
    while let Ok((r, p)) = parse_x509_pem(rest) {
        out.push(p.contents);
        rest = r;
    }
    out
}

/// Whether the first certificate of `chain_pem` is signed by one of `roots_pem`.
fn chains_to(chain_pem: &str, roots_pem: &str) -> bool {
    let leaf = &der_certs(chain_pem)[0];
    let (_, leaf) = X509Certificate::from_der(leaf).unwrap();
    der_certs(roots_pem).iter().any(|r| {
        let (_, root) = X509Certificate::from_der(r).unwrap();
        leaf.issuer() == root.subject() && leaf.verify_signature(Some(root.public_key())).is_ok()
    })
}

fn count(pem: &str) -> usize {
    der_certs(pem).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signs_its_own_identity_and_nothing_else() {
    let ca = start("sign", Duration::from_secs(3600), Duration::from_secs(7200)).await;
    let client = CaClient::new(&ca.addr, "t-reviews", &ca.roots).unwrap();
    let csr = generate_csr(TD, "default", "reviews").unwrap();
    let before = SystemTime::now();
    let signed = client
        .sign(&csr.csr_pem, Duration::from_secs(600))
        .await
        .unwrap();
    assert!(chains_to(&signed.cert_chain_pem, &signed.bundle_pem));
    assert_eq!(signed.bundle_pem, ca.roots);
    let life = signed.not_after.duration_since(before).unwrap();
    assert!(
        life <= Duration::from_secs(600) && life >= Duration::from_secs(598),
        "{life:?}"
    );
    assert!(signed.not_before < before);

    // The TTL is capped by the server's maximum.
    let signed = client
        .sign(&csr.csr_pem, Duration::from_secs(100_000))
        .await
        .unwrap();
    let life = signed.not_after.duration_since(before).unwrap();
    assert!(life <= Duration::from_secs(7201), "{life:?}");

    // A CSR for ratings with reviews' token: 403, saying both identities.
    let other = generate_csr(TD, "default", "ratings").unwrap();
    match client.sign(&other.csr_pem, Duration::from_secs(60)).await {
        Err(ClientError::Http { status, message }) => {
            assert_eq!(status, 403);
            assert_eq!(
                message,
                "token is bound to spiffe://cluster.local/ns/default/sa/reviews; the CSR asks for spiffe://cluster.local/ns/default/sa/ratings"
            );
        }
        other => panic!("expected a 403, got {other:?}"),
    }
    // An unknown token and no token: 401, saying so.
    let stranger = CaClient::new(&ca.addr, "nope", &ca.roots).unwrap();
    match stranger.sign(&csr.csr_pem, Duration::from_secs(60)).await {
        Err(ClientError::Http { status, message }) => {
            assert_eq!(status, 401);
            assert!(message.contains("unknown bootstrap token"), "{message}");
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    // A CSR that is not one: 400, saying why.
    match client.sign("garbage", Duration::from_secs(60)).await {
        Err(ClientError::Http { status, message }) => {
            assert_eq!(status, 400);
            assert_eq!(
                message,
                "the CSR is not PEM: no '-----BEGIN CERTIFICATE REQUEST-----' block found"
            );
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    // The bundle needs no token.
    assert_eq!(stranger.bundle().await.unwrap(), ca.roots);

    // Clones share connections; several at once all succeed.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (c, pem) = (client.clone(), csr.csr_pem.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                c.sign(&pem, Duration::from_secs(60)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    // A client that does not trust the CA's root fails the handshake, as TLS.
    let elsewhere = Ca::generate(TD).unwrap();
    let wrong = CaClient::new(&ca.addr, "t-reviews", elsewhere.bundle_pem()).unwrap();
    let err = wrong.bundle().await.unwrap_err();
    assert!(matches!(err, ClientError::Tls(_)), "{err}");
    assert!(err.is_unreachable());

    let metrics = get_metrics(&ca.addr, &client).await;
    for line in [
        "meshrig_ca_signed_total 42\n",
        "meshrig_ca_rejected_total{reason=\"forbidden\"} 1\n",
        "meshrig_ca_rejected_total{reason=\"unauthenticated\"} 1\n",
        "meshrig_ca_rejected_total{reason=\"bad_csr\"} 1\n",
        "meshrig_ca_rotation_phase 0\n",
        "meshrig_ca_trusted_roots 1\n",
        "meshrig_ca_tls_handshake_failures_total 1\n",
        "meshrig_ca_sign_duration_seconds_count 44\n",
    ] {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }
    let addr = ca.addr.clone();
    ca.stop().await;
    let err = CaClient::new(&addr, "t", &signed.bundle_pem)
        .unwrap()
        .bundle()
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect(_)), "{err}");
}

/// GET /metrics over TLS, trusting the CA's bundle now (the client has no such call).
async fn get_metrics(addr: &str, client: &CaClient) -> String {
    let roots = client.bundle().await.unwrap();
    raw_get(addr, &roots, "/metrics").await
}

async fn raw_get(addr: &str, roots_pem: &str, path: &str) -> String {
    use rustls_pki_types::pem::PemObject as _;
    let mut store = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
        store.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: ca\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out).await;
    out
}

/// Polls /metrics until it holds `line`, for at most 10 s.
async fn wait_for(addr: &str, client: &CaClient, line: &str) {
    for _ in 0..200 {
        if get_metrics(addr, client).await.contains(line) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/metrics never showed {line:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_is_seen_through_the_client_and_the_bundle_file() {
    let ca = start("rotate", Duration::from_secs(1), Duration::from_secs(60)).await;
    let client = CaClient::new(&ca.addr, "t-reviews", &ca.roots).unwrap();
    let csr = generate_csr(TD, "default", "reviews").unwrap();

    // Rotation needs the admin token.
    match client.rotate(Duration::from_secs(4)).await {
        Err(ClientError::Http { status, message }) => {
            assert_eq!(status, 401);
            assert_eq!(message, "that is not the admin token");
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    let admin = CaClient::new(&ca.addr, "admin-secret", &ca.roots).unwrap();
    let rotated = admin.rotate(Duration::from_secs(4)).await.unwrap();
    assert_eq!(rotated.phase, "overlap_old_signing");
    assert_eq!(rotated.switch_at - rotated.started, 2);
    assert_eq!(rotated.drop_old_at - rotated.started, 4);
    assert_eq!(rotated.note, None, "4 s is twice the 1 s TTL");
    assert_eq!(count(&rotated.bundle), 2);
    assert_eq!(
        std::fs::read_to_string(&ca.bundle_file).unwrap(),
        rotated.bundle
    );
    // A second rotation during the overlap is refused, saying why.
    match admin.rotate(Duration::from_secs(4)).await {
        Err(ClientError::Http { status, message }) => {
            assert_eq!(status, 409);
            assert!(message.contains("already under way"), "{message}");
        }
        other => panic!("expected a 409, got {other:?}"),
    }

    // Overlap, first half: the old root still signs; both are trusted.
    let signed = client
        .sign(&csr.csr_pem, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(count(&signed.bundle_pem), 2);
    assert!(
        chains_to(&signed.cert_chain_pem, &ca.roots),
        "old root signs"
    );

    // After the switch: the new root signs, and the API's certificate is from it too,
    // which the client reaches because it took the two-root bundle.
    wait_for(&ca.addr, &client, "meshrig_ca_rotation_phase 2\n").await;
    let new_only: String = {
        let certs = der_certs(&rotated.bundle);
        let second = pem::Pem::new("CERTIFICATE", certs[1].clone());
        pem::encode_config(
            &second,
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        )
    };
    let fresh = CaClient::new(&ca.addr, "t-reviews", &new_only).unwrap();
    let signed = fresh
        .sign(&csr.csr_pem, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        chains_to(&signed.cert_chain_pem, &new_only),
        "new root signs"
    );
    assert!(!chains_to(&signed.cert_chain_pem, &ca.roots));
    assert!(
        client
            .sign(&csr.csr_pem, Duration::from_secs(1))
            .await
            .is_ok()
    );

    // After the overlap: the old root is gone from the bundle (and its file).
    wait_for(&ca.addr, &client, "meshrig_ca_rotation_phase 0\n").await;
    let bundle = client.bundle().await.unwrap();
    assert_eq!(count(&bundle), 1);
    assert_eq!(bundle, new_only);
    assert_eq!(std::fs::read_to_string(&ca.bundle_file).unwrap(), bundle);
    let metrics = get_metrics(&ca.addr, &client).await;
    assert!(
        metrics.contains("meshrig_ca_rotation_phase 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("meshrig_ca_rotations_total 1\n"),
        "{metrics}"
    );
    ca.stop().await;
}
