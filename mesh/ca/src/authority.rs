//! The certificate authority proper: one signing certificate and its key, the chain its
//! leaves carry, and the trust bundle they verify against.
//!
//! Two ways to get one. [`Ca::generate`] makes a self-signed root (the chain is empty,
//! the bundle is the root). [`Ca::load`] plugs into an existing PKI: a PEM file whose
//! first certificate is the signing CA (a root or an intermediate) followed by its
//! issuers, and the signing CA's key. Leaves then carry every certificate of that file
//! that is not self-signed (the intermediates), and the trust bundle is the roots
//! given with [`Ca::load_with_roots`] — or, without them, the last certificate of the
//! file (the root, when the file ends with it).

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::csr::VerifiedCsr;
use crate::pem_util::{certificate_pem, certificates};
use crate::{CaError, ROOT_TTL, check_trust_domain, spiffe_id};

/// How far back a leaf's notBefore is set, for clocks that disagree by seconds.
const BACKDATE: Duration = Duration::from_secs(60);

/// A certificate and its private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The leaf, then the intermediates it chains through (none under a root CA).
    pub cert_pem: String,
    pub key_pem: String,
}

/// A signed workload certificate and its validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// The leaf, then the intermediates it chains through (none under a root CA).
    pub cert_chain_pem: String,
    /// Whole seconds, as written in the certificate.
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// Where a CA's certificate and key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A root this process generated; it can be rotated by generating another.
    Generated,
    /// Loaded from PEM files (an existing PKI); meshrig cannot mint its successor.
    Loaded,
}

/// The certificate authority.
pub struct Ca {
    trust_domain: String,
    /// The signing certificate as rcgen's issuer: rebuilt from the same subject, key
    /// identifier and key, so what it signs chains to the certificate as given.
    cert: Certificate,
    key: KeyPair,
    /// The signing certificate as given (loaded) or made (generated).
    cert_pem: String,
    /// The intermediates every leaf carries after itself (empty for a root).
    chain_pem: String,
    /// The trust bundle: every root a leaf may chain to.
    bundle_pem: String,
    origin: Origin,
    not_after: SystemTime,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

// === impl Ca ===

impl Ca {
    /// A new self-signed root for `trust_domain`, valid from now (less 5 minutes) for
    /// [`ROOT_TTL`].
    pub fn generate(trust_domain: &str) -> Result<Ca, CaError> {
        Ca::generate_at(trust_domain, SystemTime::now())
    }

    /// [`Ca::generate`] with the clock passed in. The root's subject names the moment,
    /// so two roots of one trust domain are told apart in logs and by `openssl`.
    pub fn generate_at(trust_domain: &str, now: SystemTime) -> Result<Ca, CaError> {
        check_trust_domain(trust_domain)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, trust_domain);
        dn.push(
            DnType::CommonName,
            format!("meshrig root CA ({trust_domain}) {}", unix_s(now)),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now_s = unix_s(now);
        params.not_before = offset(now_s.saturating_sub(300));
        params.not_after = offset(now_s + ROOT_TTL.as_secs());
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        Ok(Ca {
            trust_domain: trust_domain.to_owned(),
            cert,
            key,
            bundle_pem: cert_pem.clone(),
            cert_pem,
            chain_pem: String::new(),
            origin: Origin::Generated,
            not_after: UNIX_EPOCH + Duration::from_secs(now_s + ROOT_TTL.as_secs()),
        })
    }

    /// A root or intermediate from PEM: `chain_pem` holds the signing CA's
    /// certificate, which must be a CA, first, then its issuers (optional); `key_pem`
    /// its private key. The trust bundle is the last certificate of `chain_pem`.
    pub fn load(trust_domain: &str, chain_pem: &str, key_pem: &str) -> Result<Ca, CaError> {
        Ca::load_with_roots(trust_domain, chain_pem, key_pem, None)
    }

    /// [`Ca::load`] with the trust bundle given: `roots_pem` holds the root(s) the
    /// chain leads to (default: the last certificate of `chain_pem`).
    ///
    /// Checks that the key belongs to the first certificate, that each certificate of
    /// the chain is signed by the next, and that rcgen reproduces the signing CA's
    /// subject byte for byte (else leaves would name an issuer nobody has).
    pub fn load_with_roots(
        trust_domain: &str,
        chain_pem: &str,
        key_pem: &str,
        roots_pem: Option<&str>,
    ) -> Result<Ca, CaError> {
        check_trust_domain(trust_domain)?;
        let ders = certificates(chain_pem, "the CA certificate file")?;
        let key = key_from_pem(key_pem)?;
        let parsed = ders
            .iter()
            .map(|d| {
                X509Certificate::from_der(d)
                    .map(|(_, c)| c)
                    .map_err(|e| CaError::Chain(format!("a certificate does not parse: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let signing = &parsed[0];
        let is_ca = signing
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(CaError::NotCa(
                "its basicConstraints do not say cA=true".to_owned(),
            ));
        }
        if signing.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CaError::KeyMismatch);
        }
        for (i, pair) in parsed.windows(2).enumerate() {
            let (child, parent) = (&pair[0], &pair[1]);
            if child.issuer() != parent.subject()
                || child.verify_signature(Some(parent.public_key())).is_err()
            {
                return Err(CaError::Chain(format!(
                    "certificate {} ({}) is not signed by certificate {} ({}); give the signing CA first, then each issuer in turn",
                    i + 1,
                    child.subject(),
                    i + 2,
                    parent.subject()
                )));
            }
        }
        let self_signed =
            |c: &X509Certificate<'_>| c.issuer() == c.subject() && c.verify_signature(None).is_ok();
        let chain_pem: String = ders
            .iter()
            .zip(&parsed)
            .filter(|(_, c)| !self_signed(c))
            .map(|(d, _)| certificate_pem(d))
            .collect();
        let bundle_pem = match roots_pem {
            Some(roots) => {
                let roots = certificates(roots, "the root certificate file")?;
                roots.iter().map(|d| certificate_pem(d)).collect()
            }
            None => certificate_pem(ders.last().expect("at least one certificate")),
        };
        let not_after = UNIX_EPOCH
            + Duration::from_secs(
                u64::try_from(signing.validity().not_after.timestamp()).unwrap_or(0),
            );
        let signing_subject = signing.subject().as_raw().to_vec();
        let params = CertificateParams::from_ca_cert_der(&ders[0].clone().into())?;
        let cert = params.self_signed(&key)?;
        let ca = Ca {
            trust_domain: trust_domain.to_owned(),
            cert,
            key,
            cert_pem: certificate_pem(&ders[0]),
            chain_pem,
            bundle_pem,
            origin: Origin::Loaded,
            not_after,
        };
        // A probe leaf must name the signing CA's subject exactly.
        let probe = ca.leaf_params(
            vec![SanType::URI(
                spiffe_id(trust_domain, "probe", "probe")?.try_into()?,
            )],
            Duration::from_secs(60),
            SystemTime::now(),
        )?;
        let probe_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let probe = probe.signed_by(&probe_key, &ca.cert, &ca.key)?;
        let (_, probe) = X509Certificate::from_der(probe.der())
            .map_err(|e| CaError::Chain(format!("a probe certificate does not parse: {e}")))?;
        if probe.issuer().as_raw() != signing_subject.as_slice() {
            return Err(CaError::Chain(format!(
                "its subject ({}) cannot be reproduced byte for byte, so leaves would not chain to it",
                signing.subject()
            )));
        }
        Ok(ca)
    }

    /// A root this CA generated earlier and saved (`signing-cert.pem` and
    /// `signing-key.pem` of `ca serve --state-dir`): loaded as [`Origin::Generated`],
    /// so it can still be rotated. Refuses a certificate that is not self-signed.
    pub fn restore(trust_domain: &str, cert_pem: &str, key_pem: &str) -> Result<Ca, CaError> {
        let mut ca = Ca::load(trust_domain, cert_pem, key_pem)?;
        if !ca.chain_pem.is_empty() {
            return Err(CaError::Chain(
                "a saved root must be self-signed; this is an intermediate".to_owned(),
            ));
        }
        ca.origin = Origin::Generated;
        Ok(ca)
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Where the certificate and key came from.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The trust bundle: the root(s) leaves chain to, PEM.
    pub fn bundle_pem(&self) -> &str {
        &self.bundle_pem
    }

    /// The signing CA's certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The intermediates each leaf carries after itself, PEM (empty for a root CA).
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// When the signing CA's certificate expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The CA's private key, PEM (to save a generated root).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// An SVID for `ns`/`sa` with a new P-256 key, valid for `ttl` from now.
    pub fn issue(&self, ns: &str, sa: &str, ttl: Duration) -> Result<Issued, CaError> {
        let id = spiffe_id(&self.trust_domain, ns, sa)?;
        self.issue_with_sans(vec![SanType::URI(id.try_into()?)], ttl, SystemTime::now())
    }

    /// A server certificate for the CA's own API: the URI SAN of `ns`/`sa`, plus DNS
    /// names and IP addresses, with a new P-256 key, valid for `ttl` from `now`.
    pub fn issue_server(
        &self,
        ns: &str,
        sa: &str,
        dns: &[&str],
        ips: &[IpAddr],
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Issued, CaError> {
        let id = spiffe_id(&self.trust_domain, ns, sa)?;
        let mut sans = Vec::with_capacity(1 + dns.len() + ips.len());
        for name in dns {
            sans.push(SanType::DnsName((*name).try_into()?));
        }
        sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        sans.push(SanType::URI(id.try_into()?));
        self.issue_with_sans(sans, ttl, now)
    }

    fn issue_with_sans(
        &self,
        sans: Vec<SanType>,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Issued, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let params = self.leaf_params(sans, ttl, now)?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem() + &self.chain_pem,
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a workload's CSR (PEM) for the identity `ns`/`sa` it was authenticated as;
    /// the CSR must ask for exactly that SPIFFE ID and nothing else. The certificate's
    /// other fields are the CA's, whatever the CSR asked. Returns the leaf, then the
    /// intermediates.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        ns: &str,
        sa: &str,
        ttl: Duration,
    ) -> Result<String, CaError> {
        let csr = VerifiedCsr::from_pem(csr_pem)?;
        Ok(self
            .sign(&csr, ns, sa, ttl, SystemTime::now())?
            .cert_chain_pem)
    }

    /// Signs a parsed and verified CSR for `ns`/`sa`, valid for `ttl` from `now` (less
    /// a minute of back-dating). Refuses a CSR for any other identity.
    pub fn sign(
        &self,
        csr: &VerifiedCsr,
        ns: &str,
        sa: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Leaf, CaError> {
        let allowed = spiffe_id(&self.trust_domain, ns, sa)?;
        if csr.spiffe_id() != allowed {
            return Err(CaError::WrongIdentity {
                asked: csr.spiffe_id().to_owned(),
                allowed,
            });
        }
        let params = self.leaf_params(vec![SanType::URI(allowed.try_into()?)], ttl, now)?;
        let (not_before, not_after) = (params.not_before, params.not_after);
        let cert = params.signed_by(csr, &self.cert, &self.key)?;
        Ok(Leaf {
            cert_chain_pem: cert.pem() + &self.chain_pem,
            not_before: system_time(not_before),
            not_after: system_time(not_after),
        })
    }

    fn leaf_params(
        &self,
        sans: Vec<SanType>,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<CertificateParams, CaError> {
        if ttl < Duration::from_secs(1) || ttl > ROOT_TTL {
            return Err(CaError::Ttl);
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let now_s = unix_s(now);
        params.not_before = offset(now_s.saturating_sub(BACKDATE.as_secs()));
        params.not_after = offset(now_s + ttl.as_secs());
        Ok(params)
    }
}

/// A private key from PEM: PKCS#8 (`PRIVATE KEY`, as rcgen and `openssl genpkey`
/// write it) or SEC1 (`EC PRIVATE KEY`, as `openssl ecparam -genkey` writes it; P-256
/// only), which is wrapped into PKCS#8 for ring.
fn key_from_pem(key_pem: &str) -> Result<KeyPair, CaError> {
    let block = pem::parse(key_pem)
        .map_err(|_| CaError::Key("no '-----BEGIN ... PRIVATE KEY-----' block".to_owned()))?;
    let der = match block.tag() {
        "PRIVATE KEY" => block.into_contents(),
        "EC PRIVATE KEY" => sec1_p256_to_pkcs8(block.contents()),
        other => {
            return Err(CaError::Key(format!(
                "a '{other}' block; expected 'PRIVATE KEY' (PKCS#8) or 'EC PRIVATE KEY' (SEC1, P-256)"
            )));
        }
    };
    KeyPair::try_from(der.as_slice())
        .map_err(|e| CaError::Key(format!("{e} (ECDSA P-256 expected)")))
}

/// PKCS#8 `PrivateKeyInfo` around a SEC1 `ECPrivateKey` on P-256 (RFC 5915 § 3,
/// RFC 5208 § 5): version 0, algorithm id-ecPublicKey with prime256v1.
fn sec1_p256_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    fn tlv(tag: u8, body: &[u8], out: &mut Vec<u8>) {
        out.push(tag);
        match body.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n <= 0xff => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(body);
    }
    const ALGORITHM: [u8; 21] = [
        0x30, 0x13, // SEQUENCE
        0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, // id-ecPublicKey
        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, // prime256v1
    ];
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(&ALGORITHM);
    tlv(0x04, sec1, &mut body);
    let mut out = Vec::with_capacity(body.len() + 4);
    tlv(0x30, &body, &mut out);
    out
}

/// Whole seconds since the Unix epoch (0 before it).
pub(crate) fn unix_s(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn offset(unix_s: u64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix_s).unwrap_or(i64::MAX))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn system_time(t: time::OffsetDateTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(t.unix_timestamp()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_TTL;
    use x509_parser::prelude::{GeneralName, parse_x509_pem};

    fn parse(pem: &str) -> Vec<u8> {
        let (_, p) = parse_x509_pem(pem.as_bytes()).expect("PEM");
        p.contents
    }

    fn csr_for(key: &KeyPair, id: &str) -> String {
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
        p.serialize_request(key).unwrap().pem().unwrap()
    }

    #[test]
    fn an_svid_has_one_spiffe_uri_and_is_no_ca() {
        let ca = Ca::generate("cluster.local").unwrap();
        let svid = ca
            .issue("default", "reviews", Duration::from_secs(60))
            .unwrap();
        let der = parse(&svid.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let sans = cert.subject_alternative_name().unwrap().unwrap();
        let uris: Vec<_> = sans
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some(*u),
                _ => None,
            })
            .collect();
        assert_eq!(uris, ["spiffe://cluster.local/ns/default/sa/reviews"]);
        assert_eq!(sans.value.general_names.len(), 1);
        let bc = cert.basic_constraints().unwrap().map(|b| b.value.ca);
        assert_ne!(bc, Some(true));
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
        let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(life, 120, "60 s TTL plus 60 s of back-dating");
        // Signed by the root.
        let root_der = parse(ca.bundle_pem());
        let (_, root) = X509Certificate::from_der(&root_der).unwrap();
        assert!(cert.verify_signature(Some(root.public_key())).is_ok());
        assert_eq!(cert.issuer(), root.subject());
        assert!(ca.chain_pem().is_empty(), "a root's leaves carry no chain");
    }

    #[test]
    fn a_csr_for_another_identity_is_refused_and_the_right_one_signed() {
        let ca = Ca::generate("cluster.local").unwrap();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let ttl = Duration::from_secs(60);
        let good = csr_for(&key, "spiffe://cluster.local/ns/default/sa/reviews");
        let pem = ca.sign_csr(&good, "default", "reviews", ttl).unwrap();
        let der = parse(&pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        // The workload's key, not a new one.
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
        let other = csr_for(&key, "spiffe://cluster.local/ns/default/sa/ratings");
        let err = ca.sign_csr(&other, "default", "reviews", ttl).unwrap_err();
        assert!(
            err.to_string().contains("sa/ratings") && err.to_string().contains("refused"),
            "{err}"
        );
        let foreign = csr_for(&key, "spiffe://evil.example/ns/default/sa/reviews");
        assert!(matches!(
            ca.sign_csr(&foreign, "default", "reviews", ttl),
            Err(CaError::WrongIdentity { .. })
        ));
    }

    #[test]
    fn sign_reports_the_validity_written_in_the_certificate() {
        let ca = Ca::generate("cluster.local").unwrap();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = csr_for(&key, "spiffe://cluster.local/ns/default/sa/reviews");
        let csr = VerifiedCsr::from_pem(&csr).unwrap();
        let now = UNIX_EPOCH + Duration::from_millis(1_800_000_000_500);
        let leaf = ca
            .sign(&csr, "default", "reviews", Duration::from_secs(600), now)
            .unwrap();
        assert_eq!(unix_s(leaf.not_before), 1_800_000_000 - 60);
        assert_eq!(unix_s(leaf.not_after), 1_800_000_000 + 600);
        let der = parse(&leaf.cert_chain_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.validity().not_after.timestamp(), 1_800_000_600);
    }

    #[test]
    fn bad_names_and_ttls_are_refused_with_the_reason() {
        assert!(matches!(
            spiffe_id("Cluster Local", "a", "b"),
            Err(CaError::TrustDomain(_))
        ));
        assert!(matches!(
            spiffe_id("cluster.local", "a/b", "c"),
            Err(CaError::Segment {
                field: "namespace",
                ..
            })
        ));
        let ca = Ca::generate("cluster.local").unwrap();
        assert!(matches!(
            ca.issue("default", "a", Duration::ZERO),
            Err(CaError::Ttl)
        ));
    }

    #[test]
    fn a_loaded_root_signs_certificates_that_chain_to_it() {
        let original = Ca::generate("cluster.local").unwrap();
        let loaded = Ca::load("cluster.local", original.bundle_pem(), &original.key_pem()).unwrap();
        assert_eq!(loaded.bundle_pem(), original.bundle_pem());
        assert_eq!(loaded.origin(), Origin::Loaded);
        let svid = loaded.issue("default", "web", DEFAULT_TTL).unwrap();
        let der = parse(&svid.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let root_der = parse(original.bundle_pem());
        let (_, root) = X509Certificate::from_der(&root_der).unwrap();
        assert!(cert.verify_signature(Some(root.public_key())).is_ok());
        // A leaf is not a CA to load.
        assert!(matches!(
            Ca::load("cluster.local", &svid.cert_pem, &svid.key_pem),
            Err(CaError::NotCa(_))
        ));
        // Another CA's key is refused.
        let stranger = Ca::generate("cluster.local").unwrap();
        assert!(matches!(
            Ca::load("cluster.local", original.bundle_pem(), &stranger.key_pem()),
            Err(CaError::KeyMismatch)
        ));
    }

    /// An intermediate (signed by a root made here) with its key, PEM.
    fn intermediate(root: &Ca) -> (String, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "intermediate");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &root.cert, &root.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_loaded_intermediate_issues_leaves_that_carry_the_chain() {
        let root = Ca::generate("cluster.local").unwrap();
        let (int_pem, int_key) = intermediate(&root);
        // Chain file: the intermediate, then the root.
        let chain = format!("{int_pem}{}", root.cert_pem());
        let ca = Ca::load("cluster.local", &chain, &int_key).unwrap();
        assert_eq!(
            ca.bundle_pem(),
            root.cert_pem(),
            "the root ends the chain file"
        );
        assert_eq!(crate::pem_util::count_certificates(ca.chain_pem()), 1);
        let svid = ca.issue("default", "web", DEFAULT_TTL).unwrap();
        let certs = certificates(&svid.cert_pem, "test").unwrap();
        assert_eq!(certs.len(), 2, "leaf then intermediate");
        let (_, leaf) = X509Certificate::from_der(&certs[0]).unwrap();
        let (_, int) = X509Certificate::from_der(&certs[1]).unwrap();
        assert!(leaf.verify_signature(Some(int.public_key())).is_ok());
        assert_eq!(leaf.issuer(), int.subject());
        // Without the root in the file, the bundle is given separately.
        let ca = Ca::load_with_roots("cluster.local", &int_pem, &int_key, Some(root.cert_pem()))
            .unwrap();
        assert_eq!(ca.bundle_pem(), root.cert_pem());
        // A chain in the wrong order is refused, naming why.
        let wrong = format!("{}{int_pem}", root.cert_pem());
        let err = Ca::load("cluster.local", &wrong, &int_key).unwrap_err();
        assert!(matches!(err, CaError::KeyMismatch), "{err}");
        let stranger = Ca::generate("cluster.local").unwrap();
        let broken = format!("{int_pem}{}", stranger.cert_pem());
        let err = Ca::load("cluster.local", &broken, &int_key).unwrap_err();
        assert!(err.to_string().contains("is not signed by"), "{err}");
    }
}

#[cfg(test)]
mod restore_tests {
    use super::*;

    #[test]
    fn a_saved_root_is_restored_as_generated_and_signs_leaves_that_chain_to_it() {
        let ca = Ca::generate("cluster.local").unwrap();
        let back = Ca::restore("cluster.local", ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(back.origin(), Origin::Generated);
        assert_eq!(back.bundle_pem(), ca.bundle_pem());
        let leaf = back
            .issue("default", "reviews", Duration::from_secs(60))
            .unwrap();
        let (_, cert) = x509_parser::pem::parse_x509_pem(leaf.cert_pem.as_bytes()).unwrap();
        let cert = cert.parse_x509().unwrap();
        let (_, root) = x509_parser::pem::parse_x509_pem(ca.cert_pem().as_bytes()).unwrap();
        let root = root.parse_x509().unwrap();
        assert!(cert.verify_signature(Some(root.public_key())).is_ok());
        // A key that is not the certificate's is refused.
        let other = Ca::generate("cluster.local").unwrap();
        assert!(Ca::restore("cluster.local", ca.cert_pem(), &other.key_pem()).is_err());
    }
}
