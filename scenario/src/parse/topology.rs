//! `spec.topology`: zones and services, with the `instances` shorthand expanded to a
//! version `v1`, labels completed and each version's `app` merged over the service's.

use std::collections::BTreeMap;

use crate::dist::Dist;
use crate::model::{App, Call, Placement, Service, Topology, Version, Zone};

use super::dist::dist;
use super::values::{fraction, is_label_value, name, service_name, size, string, string_map, uint};
use super::yaml::{self, At, Ctx};

/// Default region of a zone given by name only.
pub const DEFAULT_REGION: &str = "region";

pub(crate) fn topology(cx: &mut Ctx<'_>, at: &At<'_>) -> Topology {
    let mut topo = Topology {
        zones: Vec::new(),
        services: Vec::new(),
    };
    let Some(m) = at.map(cx, &["zones", "services"]) else {
        return topo;
    };
    match m.get(cx, "zones") {
        Some(zones) => {
            for item in zones.items(cx) {
                if let Some(z) = zone(cx, &item) {
                    if topo.zones.iter().any(|o| o.name == z.name) {
                        cx.error(
                            &item,
                            format!("zone `{}` is listed twice (zone names are unique)", z.name),
                        );
                    } else {
                        topo.zones.push(z);
                    }
                }
            }
            if topo.zones.is_empty() && yaml::is_list(zones.node) {
                cx.error(&zones, "no zones (give at least one, e.g. zones: [a])");
            }
        }
        None => m.missing(cx, "zones", "at least one zone, e.g. zones: [a, b]"),
    }
    if let Some(services) = m.get(cx, "services") {
        for item in services.items(cx) {
            if let Some(s) = service(cx, &item) {
                if topo.services.iter().any(|o| o.name == s.name) {
                    cx.error(
                        &item,
                        format!(
                            "service `{}` is defined twice (service names are unique)",
                            s.name
                        ),
                    );
                } else {
                    topo.services.push(s);
                }
            }
        }
    }
    topo
}

fn zone(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<Zone> {
    if !yaml::is_map(at.node) {
        return name(cx, at).map(|name| Zone {
            name,
            region: DEFAULT_REGION.to_owned(),
        });
    }
    let m = at.map(cx, &["name", "region"])?;
    let zone_name = m.get(cx, "name").and_then(|f| name(cx, &f));
    if !m.has("name") {
        m.missing(cx, "name", "e.g. { name: a, region: r1 }");
    }
    let region = m.get(cx, "region").and_then(|f| name(cx, &f));
    Some(Zone {
        name: zone_name?,
        region: region.unwrap_or_else(|| DEFAULT_REGION.to_owned()),
    })
}

const SERVICE_FIELDS: [&str; 8] = [
    "name",
    "namespace",
    "serviceAccount",
    "port",
    "cores",
    "instances",
    "app",
    "versions",
];

fn service(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<Service> {
    let m = at.map(cx, &SERVICE_FIELDS)?;
    let svc_name = m.get(cx, "name").and_then(|f| service_name(cx, &f));
    if !m.has("name") {
        m.missing(cx, "name", "e.g. name: reviews");
    }
    let namespace = m.get(cx, "namespace").and_then(|f| name(cx, &f));
    let account = m.get(cx, "serviceAccount").and_then(|f| name(cx, &f));
    let port = match m.get(cx, "port") {
        Some(f) => match uint(cx, &f, u64::from(u16::MAX)) {
            Some(0) => {
                cx.error(&f, "port 0 is not a port (1..=65535)");
                None
            }
            Some(p) => u16::try_from(p).ok(),
            None => None,
        },
        None => None,
    };
    let cores = match m.get(cx, "cores") {
        Some(f) => match uint(cx, &f, 64) {
            Some(0) => {
                cx.error(&f, "an instance needs at least 1 core");
                None
            }
            c => c.and_then(|c| u32::try_from(c).ok()),
        },
        None => None,
    };
    let defaults = m
        .get(cx, "app")
        .map(|f| app_patch(cx, &f))
        .unwrap_or_default();
    let svc_name = svc_name?;
    let mut versions = Vec::new();
    match (m.get(cx, "instances"), m.get(cx, "versions")) {
        (Some(_), Some(v)) => {
            cx.error(
                &v,
                "give either `instances` (one version, v1) or `versions`, not both",
            );
        }
        (Some(inst), None) => {
            let placements = placements(cx, &inst);
            versions.push(version(
                &svc_name,
                "v1",
                placements,
                BTreeMap::new(),
                defaults.merge(&AppPatch::default()),
            ));
        }
        (None, Some(vs)) => {
            let entries = vs.user_map(cx);
            if entries.is_empty() && !cx.has_errors() {
                cx.error(&vs, "no versions (give at least one, e.g. v1: { instances: [{ zone: a, count: 1 }] })");
            }
            for (vname, vat) in entries {
                if !is_label_value(&vname) {
                    cx.error(
                        &vat,
                        format!(
                            "`{vname}` is not a valid version name: use letters, digits, `-`, `_` \
                             and `.`, starting and ending with a letter or digit (e.g. `v2`)"
                        ),
                    );
                    continue;
                }
                if let Some(v) = version_entry(cx, &svc_name, &vname, &vat, &defaults) {
                    versions.push(v);
                }
            }
        }
        (None, None) => m.missing(
            cx,
            "instances",
            "where it runs, e.g. instances: [{ zone: a, count: 2 }], or `versions`",
        ),
    }
    Some(Service {
        service_account: account.unwrap_or_else(|| svc_name.clone()),
        name: svc_name,
        namespace: namespace.unwrap_or_else(|| mesh_core::config::DEFAULT_NAMESPACE.to_owned()),
        port: port.unwrap_or(9080),
        cores: cores.unwrap_or(2),
        versions,
    })
}

fn version_entry(
    cx: &mut Ctx<'_>,
    service: &str,
    vname: &str,
    at: &At<'_>,
    defaults: &AppPatch,
) -> Option<Version> {
    let m = at.map(cx, &["instances", "labels", "app"])?;
    let placements = match m.get(cx, "instances") {
        Some(f) => placements(cx, &f),
        None => {
            m.missing(cx, "instances", "e.g. instances: [{ zone: a, count: 1 }]");
            Vec::new()
        }
    };
    let labels = match m.get(cx, "labels") {
        Some(f) => {
            let labels = string_map(cx, &f);
            for (key, want) in [("app", service), ("version", vname)] {
                if let Some(v) = labels.get(key).filter(|v| *v != want) {
                    let path = format!("{}.{key}", f.path);
                    let line = cx.positions.get(&path).copied().unwrap_or(f.line);
                    cx.error_at(line, &path, format!("label `{key}: {v}` contradicts the {key} name `{want}` (meshrig sets {key}={want}; leave it out)"));
                }
            }
            labels
        }
        None => BTreeMap::new(),
    };
    let patch = m
        .get(cx, "app")
        .map(|f| app_patch(cx, &f))
        .unwrap_or_default();
    Some(version(
        service,
        vname,
        placements,
        labels,
        defaults.merge(&patch),
    ))
}

fn version(
    service: &str,
    name: &str,
    placements: Vec<Placement>,
    mut labels: BTreeMap<String, String>,
    app: App,
) -> Version {
    labels.insert("app".to_owned(), service.to_owned());
    labels.insert("version".to_owned(), name.to_owned());
    Version {
        name: name.to_owned(),
        placements,
        labels,
        app,
    }
}

fn placements(cx: &mut Ctx<'_>, at: &At<'_>) -> Vec<Placement> {
    let mut out = Vec::new();
    for item in at.items(cx) {
        let Some(m) = item.map(cx, &["zone", "count"]) else {
            continue;
        };
        let zone = m.get(cx, "zone").and_then(|f| name(cx, &f));
        if !m.has("zone") {
            m.missing(cx, "zone", "e.g. { zone: a, count: 2 }");
        }
        let count = match m.get(cx, "count") {
            Some(f) => uint(cx, &f, 100_000).and_then(|c| u32::try_from(c).ok()),
            None => Some(1),
        };
        if let (Some(zone), Some(count)) = (zone, count) {
            out.push(Placement { zone, count });
        }
    }
    out
}

/// An `app` block: each field optional, merged field by field.
#[derive(Debug, Clone, Default)]
pub(crate) struct AppPatch {
    service_time: Option<Dist>,
    error_rate: Option<f64>,
    error_status: Option<u16>,
    response_bytes: Option<u64>,
    calls: Option<Vec<Call>>,
}

impl AppPatch {
    /// `over`'s fields where given, else this patch's, else the defaults.
    fn merge(&self, over: &AppPatch) -> App {
        let d = App::default();
        App {
            service_time: over
                .service_time
                .clone()
                .or_else(|| self.service_time.clone())
                .unwrap_or(d.service_time),
            error_rate: over.error_rate.or(self.error_rate).unwrap_or(d.error_rate),
            error_status: over
                .error_status
                .or(self.error_status)
                .unwrap_or(d.error_status),
            response_bytes: over
                .response_bytes
                .or(self.response_bytes)
                .unwrap_or(d.response_bytes),
            calls: over
                .calls
                .clone()
                .or_else(|| self.calls.clone())
                .unwrap_or(d.calls),
        }
    }
}

const APP_FIELDS: [&str; 5] = [
    "serviceTime",
    "errorRate",
    "errorStatus",
    "responseBytes",
    "calls",
];

fn app_patch(cx: &mut Ctx<'_>, at: &At<'_>) -> AppPatch {
    let Some(m) = at.map(cx, &APP_FIELDS) else {
        return AppPatch::default();
    };
    let error_status = m
        .get(cx, "errorStatus")
        .and_then(|f| match uint(cx, &f, 599) {
            Some(s) if s >= 100 => u16::try_from(s).ok(),
            Some(s) => {
                cx.error(
                    &f,
                    format!("{s} is not an HTTP status (100..=599, e.g. 500 or 503)"),
                );
                None
            }
            None => None,
        });
    AppPatch {
        service_time: m.get(cx, "serviceTime").and_then(|f| dist(cx, &f)),
        error_rate: m.get(cx, "errorRate").and_then(|f| fraction(cx, &f)),
        error_status,
        response_bytes: m.get(cx, "responseBytes").and_then(|f| size(cx, &f)),
        calls: m.get(cx, "calls").map(|f| calls(cx, &f)),
    }
}

fn calls(cx: &mut Ctx<'_>, at: &At<'_>) -> Vec<Call> {
    let mut out = Vec::new();
    for item in at.items(cx) {
        let Some(m) = item.map(cx, &["service", "path", "headers"]) else {
            continue;
        };
        let service = m.get(cx, "service").and_then(|f| name(cx, &f));
        if !m.has("service") {
            m.missing(
                cx,
                "service",
                "the service called, e.g. { service: reviews }",
            );
        }
        let path = m.get(cx, "path").and_then(|f| string(cx, &f));
        let headers = m
            .get(cx, "headers")
            .map(|f| string_map(cx, &f))
            .unwrap_or_default();
        if let Some(service) = service {
            out.push(Call {
                service,
                path: path.unwrap_or_else(|| "/".to_owned()),
                headers,
            });
        }
    }
    out
}
