//! Client (outbound) TLS: what a sidecar does when it opens a connection upstream.
//!
//! The mode comes from the DestinationRule's `trafficPolicy.tls.mode` (`DISABLE`,
//! `SIMPLE`, `MUTUAL`, `ISTIO_MUTUAL`). When the DestinationRule sets none, Istio's
//! **auto mTLS** (on by default, `meshConfig.enableAutoMtls`) decides per endpoint:
//! ISTIO_MUTUAL if the endpoint has a sidecar (label `security.istio.io/tlsMode=istio`)
//! and its PeerAuthentication mode is not DISABLE, plaintext otherwise. With auto mTLS
//! off and no DestinationRule setting, the client sends plaintext. Source: Istio docs,
//! "Mutual TLS Migration" / "Auto mutual TLS" in the security concepts.
//!
//! [`handshake_outcome`] then says what the server side makes of it, given its
//! resolved [`super::MtlsMode`].

use serde::Serialize;

use super::peer_authn::MtlsMode;

/// A DestinationRule client TLS mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientTlsMode {
    /// Plaintext.
    Disable,
    /// TLS to the upstream, verifying its certificate; no client certificate.
    Simple,
    /// Mutual TLS with certificates given in the DestinationRule (not the mesh's).
    Mutual,
    /// Mutual TLS with the workload's mesh certificate (SPIFFE identity).
    IstioMutual,
}

/// What the client knows about the destination endpoint for auto mTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AutoMtls {
    /// `meshConfig.enableAutoMtls`. Istio's default is `true`.
    pub enabled: bool,
    /// The endpoint runs a sidecar (Istio: `security.istio.io/tlsMode=istio`).
    pub destination_has_sidecar: bool,
    /// The endpoint's resolved PeerAuthentication mode for the port, when known.
    pub destination_mtls: Option<MtlsMode>,
}

impl Default for AutoMtls {
    /// Enabled, destination with a sidecar, server mode unknown.
    fn default() -> Self {
        AutoMtls {
            enabled: true,
            destination_has_sidecar: true,
            destination_mtls: None,
        }
    }
}

/// Why the client picked its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientTlsReason {
    /// The DestinationRule sets the mode explicitly.
    DestinationRule,
    /// Auto mTLS: the destination has a sidecar that accepts mTLS.
    AutoMtlsSidecar,
    /// Auto mTLS: the destination has no sidecar, so plaintext.
    AutoMtlsNoSidecar,
    /// Auto mTLS: the destination's PeerAuthentication is DISABLE, so plaintext.
    AutoMtlsPeerDisabled,
    /// No DestinationRule setting and auto mTLS is off: plaintext.
    AutoMtlsOff,
}

/// The client's TLS decision with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClientTlsDecision {
    /// The effective mode; `Disable` means plaintext.
    pub mode: ClientTlsMode,
    pub reason: ClientTlsReason,
}

/// Decides the outbound TLS mode for one upstream endpoint.
///
/// Call it when the sidecar picks an endpoint (auto mTLS is per endpoint):
/// `destination_rule_mode` is the DestinationRule's TLS mode for the port/subset, or
/// `None` when it sets none.
pub fn decide_client_tls(
    destination_rule_mode: Option<ClientTlsMode>,
    auto: AutoMtls,
) -> ClientTlsDecision {
    let (mode, reason) = match destination_rule_mode {
        Some(mode) => (mode, ClientTlsReason::DestinationRule),
        None if !auto.enabled => (ClientTlsMode::Disable, ClientTlsReason::AutoMtlsOff),
        None if !auto.destination_has_sidecar => {
            (ClientTlsMode::Disable, ClientTlsReason::AutoMtlsNoSidecar)
        }
        None if auto.destination_mtls == Some(MtlsMode::Disable) => (
            ClientTlsMode::Disable,
            ClientTlsReason::AutoMtlsPeerDisabled,
        ),
        None => (ClientTlsMode::IstioMutual, ClientTlsReason::AutoMtlsSidecar),
    };
    ClientTlsDecision { mode, reason }
}

/// What the server sidecar does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum HandshakeOutcome {
    /// Mutual TLS terminated by the sidecar: the peer identity is known.
    Mtls,
    /// Plaintext accepted: no peer identity.
    Plaintext,
    /// The sidecar does not terminate this TLS; the bytes go to the application as-is
    /// (it works only if the application itself serves TLS). No peer identity.
    PassThrough,
    /// The connection fails.
    Rejected { reason: RejectReason },
}

/// Why the server side rejects a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// STRICT refuses plaintext.
    PlaintextToStrict,
    /// STRICT needs a client certificate from the mesh CA; SIMPLE has none and MUTUAL
    /// presents a non-mesh one.
    NonMeshTlsToStrict,
    /// With DISABLE the sidecar forwards the mesh-mTLS bytes as plaintext; the
    /// application cannot speak them.
    MtlsToDisabled,
}

/// The server side's view of a client mode, given the server's resolved mTLS mode.
///
/// Modelled on Istio's inbound filter chains: STRICT has only the mTLS chain;
/// PERMISSIVE also has a plaintext chain and sends non-Istio TLS (no `istio` ALPN)
/// through untouched; DISABLE has only the plaintext chain.
pub fn handshake_outcome(client: ClientTlsMode, server: MtlsMode) -> HandshakeOutcome {
    use ClientTlsMode as C;
    use HandshakeOutcome as O;
    use MtlsMode as S;
    match (client, server) {
        (C::IstioMutual, S::Strict | S::Permissive) => O::Mtls,
        (C::IstioMutual, S::Disable) => O::Rejected {
            reason: RejectReason::MtlsToDisabled,
        },
        (C::Disable, S::Strict) => O::Rejected {
            reason: RejectReason::PlaintextToStrict,
        },
        (C::Disable, S::Permissive | S::Disable) => O::Plaintext,
        (C::Simple | C::Mutual, S::Strict) => O::Rejected {
            reason: RejectReason::NonMeshTlsToStrict,
        },
        (C::Simple | C::Mutual, S::Permissive | S::Disable) => O::PassThrough,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_rule_mode_wins_over_auto_mtls() {
        for mode in [
            ClientTlsMode::Disable,
            ClientTlsMode::Simple,
            ClientTlsMode::Mutual,
            ClientTlsMode::IstioMutual,
        ] {
            let got = decide_client_tls(Some(mode), AutoMtls::default());
            assert_eq!(got.mode, mode);
            assert_eq!(got.reason, ClientTlsReason::DestinationRule);
        }
    }

    #[test]
    fn auto_mtls_table() {
        use ClientTlsMode::*;
        use ClientTlsReason::*;
        let cases = [
            (true, true, None, IstioMutual, AutoMtlsSidecar),
            (
                true,
                true,
                Some(MtlsMode::Strict),
                IstioMutual,
                AutoMtlsSidecar,
            ),
            (
                true,
                true,
                Some(MtlsMode::Permissive),
                IstioMutual,
                AutoMtlsSidecar,
            ),
            (
                true,
                true,
                Some(MtlsMode::Disable),
                Disable,
                AutoMtlsPeerDisabled,
            ),
            (true, false, None, Disable, AutoMtlsNoSidecar),
            (false, true, None, Disable, AutoMtlsOff),
        ];
        for (enabled, sidecar, peer, mode, reason) in cases {
            let auto = AutoMtls {
                enabled,
                destination_has_sidecar: sidecar,
                destination_mtls: peer,
            };
            assert_eq!(
                decide_client_tls(None, auto),
                ClientTlsDecision { mode, reason },
                "{auto:?}"
            );
        }
    }

    /// sectest-peerauthn-mtls-off.yaml: PeerAuthentication DISABLE plus a
    /// DestinationRule `tls.mode: DISABLE` — plaintext end to end.
    #[test]
    fn sample_mtls_off_is_plaintext_end_to_end() {
        let client = decide_client_tls(Some(ClientTlsMode::Disable), AutoMtls::default());
        assert_eq!(
            handshake_outcome(client.mode, MtlsMode::Disable),
            HandshakeOutcome::Plaintext
        );
    }

    #[test]
    fn handshake_table() {
        use ClientTlsMode as C;
        use HandshakeOutcome::*;
        use MtlsMode as S;
        let rejected = |reason| Rejected { reason };
        let cases = [
            (C::IstioMutual, S::Strict, Mtls),
            (C::IstioMutual, S::Permissive, Mtls),
            (
                C::IstioMutual,
                S::Disable,
                rejected(RejectReason::MtlsToDisabled),
            ),
            (
                C::Disable,
                S::Strict,
                rejected(RejectReason::PlaintextToStrict),
            ),
            (C::Disable, S::Permissive, Plaintext),
            (C::Disable, S::Disable, Plaintext),
            (
                C::Simple,
                S::Strict,
                rejected(RejectReason::NonMeshTlsToStrict),
            ),
            (
                C::Mutual,
                S::Strict,
                rejected(RejectReason::NonMeshTlsToStrict),
            ),
            (C::Simple, S::Permissive, PassThrough),
            (C::Mutual, S::Disable, PassThrough),
        ];
        for (client, server, want) in cases {
            assert_eq!(
                handshake_outcome(client, server),
                want,
                "{client:?} -> {server:?}"
            );
        }
        let json = serde_json::to_value(rejected(RejectReason::PlaintextToStrict)).unwrap();
        assert_eq!(json["outcome"], "rejected");
        assert_eq!(json["reason"], "plaintext_to_strict");
    }
}
