//! What the server sidecar knows about a request (or a TCP connection) when it
//! authorizes it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::security::spiffe::SpiffeId;

/// Whether the request is HTTP (all attributes available) or plain TCP (connection
/// attributes only: HTTP-only policy fields cannot be evaluated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Http,
    Tcp,
}

/// The attributes authorization reads. `None` means "not known": a pattern never
/// matches an absent value, so a `not_` field always passes on it (Istio: without
/// mTLS there is no principal, and `notPrincipals: ["*"]` matches plaintext).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RequestAttributes {
    pub protocol: Protocol,
    /// The peer's identity from mTLS, in Istio's form without the scheme
    /// (`cluster.local/ns/default/sa/sleep`); a leading `spiffe://` is tolerated.
    pub source_principal: Option<String>,
    /// The peer's namespace, from its identity (mTLS only).
    pub source_namespace: Option<String>,
    /// The direct peer's address.
    pub source_ip: Option<IpAddr>,
    /// The original client's address (X-Forwarded-For / PROXY protocol); when `None`,
    /// `source_ip` is used, as Envoy does without those headers.
    pub remote_ip: Option<IpAddr>,
    /// The address the connection was made to.
    pub destination_ip: Option<IpAddr>,
    /// The destination (workload) port.
    pub port: u16,
    /// TLS server name indication, if any.
    pub sni: Option<String>,
    /// HTTP: the authenticated JWT principal, `<iss>/<sub>`.
    pub request_principal: Option<String>,
    /// HTTP: JWT claims. Nested claim paths are joined with `.` (`nested1.nested2`);
    /// a string claim is a one-element list. `aud` and `azp` back
    /// `request.auth.audiences` and `request.auth.presenter`.
    pub claims: BTreeMap<String, Vec<String>>,
    /// HTTP: the method (`GET`).
    pub method: Option<String>,
    /// HTTP: the path, possibly with a query string (ignored for matching).
    pub path: Option<String>,
    /// HTTP: the host (`:authority`).
    pub host: Option<String>,
    /// HTTP: request headers; names are matched case-insensitively.
    pub headers: BTreeMap<String, String>,
}

impl RequestAttributes {
    /// An HTTP request with a method, path and host, to `port`; add the peer with
    /// [`with_peer`](Self::with_peer).
    pub fn http(method: &str, path: &str, host: &str, port: u16) -> Self {
        RequestAttributes {
            protocol: Protocol::Http,
            method: Some(method.to_owned()),
            path: Some(path.to_owned()),
            host: Some(host.to_owned()),
            port,
            ..Default::default()
        }
    }

    /// A TCP connection to `port`.
    pub fn tcp(port: u16) -> Self {
        RequestAttributes {
            protocol: Protocol::Tcp,
            port,
            ..Default::default()
        }
    }

    /// Sets the mTLS peer: its principal and, for Istio workload IDs, its namespace.
    pub fn with_peer(mut self, peer: &SpiffeId) -> Self {
        self.source_principal = Some(peer.istio_principal().to_owned());
        self.source_namespace = peer.namespace().map(str::to_owned);
        self
    }

    /// Sets the direct peer's address.
    pub fn with_source_ip(mut self, ip: IpAddr) -> Self {
        self.source_ip = Some(ip);
        self
    }

    /// Adds a request header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name.to_owned(), value.to_owned());
        self
    }

    /// The principal without any `spiffe://` prefix.
    pub(crate) fn principal(&self) -> Option<&str> {
        self.source_principal
            .as_deref()
            .map(|p| p.strip_prefix("spiffe://").unwrap_or(p))
    }

    /// The header's value, looking its name up case-insensitively.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The remote address: `remote_ip`, else `source_ip`.
    pub(crate) fn remote(&self) -> Option<IpAddr> {
        self.remote_ip.or(self.source_ip)
    }
}
