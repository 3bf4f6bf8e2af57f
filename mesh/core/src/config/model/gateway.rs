//! `Gateway`: listeners of a standalone (ingress/egress) proxy.

use std::collections::BTreeMap;

use super::common::Port;

istio_struct! {
    /// The spec of a Gateway.
    pub struct Gateway {
        servers: Vec<Server> = "servers",
        /// Pod labels of the gateway workload (user data, not checked).
        selector: BTreeMap<String, String> = "selector",
    }
}

istio_struct! {
    /// One listener: a port, the hosts it serves, its TLS settings.
    pub struct Server {
        port: Option<Port> = "port",
        bind: Option<String> = "bind",
        hosts: Vec<String> = "hosts",
        tls: Option<ServerTlsSettings> = "tls",
        default_endpoint: Option<String> = "defaultEndpoint",
        name: Option<String> = "name",
    }
}

istio_enum! {
    /// Server-side TLS modes.
    pub enum ServerTlsMode {
        Passthrough = "PASSTHROUGH",
        Simple = "SIMPLE",
        Mutual = "MUTUAL",
        AutoPassthrough = "AUTO_PASSTHROUGH",
        IstioMutual = "ISTIO_MUTUAL",
        OptionalMutual = "OPTIONAL_MUTUAL",
    }
}

istio_enum! {
    /// TLS protocol versions.
    pub enum TlsProtocol {
        TlsAuto = "TLS_AUTO",
        TlsV1_0 = "TLSV1_0",
        TlsV1_1 = "TLSV1_1",
        TlsV1_2 = "TLSV1_2",
        TlsV1_3 = "TLSV1_3",
    }
}

istio_struct! {
    /// A certificate/key pair of a server.
    pub struct TlsCertificate {
        server_certificate: Option<String> = "serverCertificate",
        private_key: Option<String> = "privateKey",
        ca_certificates: Option<String> = "caCertificates",
    }
}

istio_struct! {
    /// TLS a gateway server (or sidecar ingress listener) terminates.
    pub struct ServerTlsSettings {
        https_redirect: Option<bool> = "httpsRedirect",
        mode: Option<ServerTlsMode> = "mode",
        server_certificate: Option<String> = "serverCertificate",
        private_key: Option<String> = "privateKey",
        ca_certificates: Option<String> = "caCertificates",
        ca_crl: Option<String> = "caCrl",
        credential_name: Option<String> = "credentialName",
        credential_names: Vec<String> = "credentialNames",
        tls_certificates: Vec<TlsCertificate> = "tlsCertificates",
        subject_alt_names: Vec<String> = "subjectAltNames",
        verify_certificate_spki: Vec<String> = "verifyCertificateSpki",
        verify_certificate_hash: Vec<String> = "verifyCertificateHash",
        min_protocol_version: Option<TlsProtocol> = "minProtocolVersion",
        max_protocol_version: Option<TlsProtocol> = "maxProtocolVersion",
        cipher_suites: Vec<String> = "cipherSuites",
    }
}
