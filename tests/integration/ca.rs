//! `meshrig ca`: SPIFFE workload certificates that `openssl` verifies against the
//! bundle, with exactly the expected URI SAN; a root made by `ca init` issues
//! certificates that chain to it; bad input is a usage error.

use std::process::Command;

use crate::support::{TempDir, meshrig};

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
