//! `spec.network` and `spec.mesh`, and the pieces faults share with them (zone pairs,
//! config sources).

use crate::model::{ConfigSource, Link, LinkOverride, Mesh, MtlsSetting, Network};

use super::dist::dist;
use super::values::{bandwidth, boolean, duration, enumerated, fraction, name, string, uint};
use super::yaml::{At, Ctx};

pub(crate) fn network(cx: &mut Ctx<'_>, at: &At<'_>) -> Network {
    let mut net = Network::default();
    let Some(m) = at.map(cx, &["intraZone", "interZone", "links"]) else {
        return net;
    };
    if let Some(f) = m.get(cx, "intraZone") {
        net.intra_zone = link(cx, &f, &net.intra_zone, &[]);
    }
    if let Some(f) = m.get(cx, "interZone") {
        net.inter_zone = link(cx, &f, &net.inter_zone, &[]);
    }
    if let Some(f) = m.get(cx, "links") {
        for item in f.items(cx) {
            let Some(lm) = item.map(cx, &["between", "latency", "bandwidth", "loss"]) else {
                continue;
            };
            let Some(between) = lm.get(cx, "between") else {
                lm.missing(cx, "between", "the two zones, e.g. between: [a, b]");
                continue;
            };
            let Some((a, b)) = pair(cx, &between) else {
                continue;
            };
            let base = if a == b {
                &net.intra_zone
            } else {
                &net.inter_zone
            };
            let link = link(cx, &item, &base.clone(), &["between"]);
            net.links.push(LinkOverride {
                between: (a, b),
                link,
            });
        }
    }
    net
}

/// A link's fields over `base` (unset fields keep `base`'s values).
fn link(cx: &mut Ctx<'_>, at: &At<'_>, base: &Link, extra: &[&'static str]) -> Link {
    let mut fields = vec!["latency", "bandwidth", "loss"];
    fields.extend_from_slice(extra);
    let mut out = base.clone();
    let Some(m) = at.map(cx, &fields) else {
        return out;
    };
    if let Some(d) = m.get(cx, "latency").and_then(|f| dist(cx, &f)) {
        out.latency = d;
    }
    if let Some(b) = m.get(cx, "bandwidth").and_then(|f| bandwidth(cx, &f)) {
        out.bandwidth_bps = Some(b);
    }
    if let Some(l) = m.get(cx, "loss").and_then(|f| fraction(cx, &f)) {
        out.loss = l;
    }
    out
}

/// `[a, b]`: exactly two names.
pub(crate) fn pair(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<(String, String)> {
    let items = at.items(cx);
    if items.len() != 2 {
        if !items.is_empty() || super::yaml::is_list(at.node) {
            cx.error(
                at,
                format!(
                    "expected two names, found {} (e.g. between: [a, b])",
                    items.len()
                ),
            );
        }
        return None;
    }
    let a = name(cx, &items[0]);
    let b = name(cx, &items[1]);
    Some((a?, b?))
}

const MESH_FIELDS: [&str; 6] = [
    "enabled",
    "proxiesPerHop",
    "mtls",
    "config",
    "controlPlane",
    "ca",
];

pub(crate) fn mesh(cx: &mut Ctx<'_>, at: &At<'_>) -> Mesh {
    let mut mesh = Mesh::default();
    let Some(m) = at.map(cx, &MESH_FIELDS) else {
        return mesh;
    };
    let enabled = m.get(cx, "enabled").and_then(|f| boolean(cx, &f));
    let hop_at = m.get(cx, "proxiesPerHop");
    let per_hop = hop_at.as_ref().and_then(|f| uint(cx, f, 2));
    match (enabled, per_hop, &hop_at) {
        (Some(false), Some(n), Some(f)) if n > 0 => {
            cx.error(
                f,
                format!("proxiesPerHop: {n} contradicts enabled: false (leave one out)"),
            );
        }
        (Some(false), _, _) => mesh.proxies_per_hop = 0,
        (_, Some(n), _) => mesh.proxies_per_hop = n as u8,
        _ => {}
    }
    if let Some(v) = m
        .get(cx, "mtls")
        .and_then(|f| enumerated(cx, &f, &MtlsSetting::ALL))
    {
        mesh.mtls = v;
    }
    if let Some(f) = m.get(cx, "config") {
        mesh.config = config_sources(cx, &f);
    }
    if let Some(f) = m.get(cx, "controlPlane")
        && let Some(cp) = f.map(cx, &["pushDelay"])
        && let Some(d) = cp.get(cx, "pushDelay").and_then(|f| dist(cx, &f))
    {
        mesh.push_delay = d;
    }
    if let Some(f) = m.get(cx, "ca")
        && let Some(ca) = f.map(cx, &["trustDomain", "certTtl", "issueLatency"])
    {
        if let Some(td) = ca.get(cx, "trustDomain").and_then(|f| name(cx, &f)) {
            mesh.trust_domain = td;
        }
        if let Some(f) = ca.get(cx, "certTtl") {
            match duration(cx, &f) {
                Some(0) => cx.error(&f, "a certificate lifetime of 0 expires at once (e.g. 24h)"),
                Some(ttl) => mesh.cert_ttl_ns = ttl,
                None => {}
            }
        }
        if let Some(d) = ca.get(cx, "issueLatency").and_then(|f| dist(cx, &f)) {
            mesh.issue_latency = d;
        }
    }
    mesh
}

/// `[{ file: path }, { inline: "yaml" }]`.
pub(crate) fn config_sources(cx: &mut Ctx<'_>, at: &At<'_>) -> Vec<ConfigSource> {
    let mut out = Vec::new();
    for item in at.items(cx) {
        let Some(m) = item.map(cx, &["file", "inline"]) else {
            continue;
        };
        match (m.get(cx, "file"), m.get(cx, "inline")) {
            (Some(f), None) => {
                if let Some(path) = name(cx, &f) {
                    out.push(ConfigSource::File { path, line: f.line });
                }
            }
            (None, Some(f)) => {
                if let Some(text) = string(cx, &f) {
                    out.push(ConfigSource::Inline { text, line: f.line });
                }
            }
            (Some(_), Some(_)) => cx.error(&item, "give either `file` or `inline`, not both"),
            (None, None) => cx.error(
                &item,
                "missing `file` or `inline` (e.g. { file: istio/reviews.yaml })",
            ),
        }
    }
    out
}
