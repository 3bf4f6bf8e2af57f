//! Kubernetes documents read as topology: `Service`, `Deployment`, `Pod`,
//! `ServiceAccount`, `Namespace`.
//!
//! meshrig is not a Kubernetes validator: these are read leniently (no unknown-field
//! checks; a value of the wrong shape is skipped) and only for what the mesh needs —
//! which services exist with which selectors and ports, which workloads carry which
//! labels and service account, which namespaces exist.

use std::collections::BTreeMap;

use super::{DEFAULT_NAMESPACE, Origin};
use crate::config::yaml::{self, Node};

/// A Kubernetes Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// Pod labels that select its endpoints.
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
    pub origin: Origin,
}

/// A port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u32,
    /// A number or a named container port, as written.
    pub target_port: Option<String>,
    pub protocol: Option<String>,
    pub app_protocol: Option<String>,
}

/// What kind of object a workload came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WorkloadKind {
    Deployment,
    Pod,
}

/// Pods of a Deployment, or a single Pod: their labels and identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
    pub namespace: String,
    /// Pod labels (a Deployment's pod template labels).
    pub labels: BTreeMap<String, String>,
    /// `serviceAccountName`, `default` when not given.
    pub service_account: String,
    /// Replicas (1 for a Pod; a Deployment's default is 1).
    pub replicas: u32,
    pub origin: Origin,
}

/// A Namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub origin: Origin,
}

/// A ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub name: String,
    pub namespace: String,
    pub origin: Origin,
}

/// One topology object read from a Kubernetes document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TopologyItem {
    Service(Service),
    Workload(Workload),
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
}

fn text(node: Option<&Node<'_>>) -> Option<String> {
    node.and_then(yaml::scalar_text)
}

fn string_map(node: Option<&Node<'_>>) -> BTreeMap<String, String> {
    node.and_then(yaml::entries)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| Some((yaml::scalar_text(k)?, yaml::scalar_text(v)?)))
        .collect()
}

fn number(node: Option<&Node<'_>>) -> Option<u32> {
    text(node)?.parse().ok()
}

fn path<'n, 'a>(node: &'n Node<'a>, keys: &[&str]) -> Option<&'n Node<'a>> {
    keys.iter().try_fold(node, |n, k| yaml::get(n, k))
}

/// Reads a document of `kind` (`Service`, `Deployment`, `Pod`, `ServiceAccount`,
/// `Namespace`); `None` for other kinds.
pub(crate) fn read(kind: &str, doc: &Node<'_>, origin: Origin) -> Option<TopologyItem> {
    let name = text(path(doc, &["metadata", "name"])).unwrap_or_default();
    let namespace =
        text(path(doc, &["metadata", "namespace"])).unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    let labels = string_map(path(doc, &["metadata", "labels"]));
    let item = match kind {
        "Namespace" => TopologyItem::Namespace(Namespace {
            name,
            labels,
            origin,
        }),
        "ServiceAccount" => TopologyItem::ServiceAccount(ServiceAccount {
            name,
            namespace,
            origin,
        }),
        "Service" => {
            let ports = path(doc, &["spec", "ports"])
                .and_then(yaml::items)
                .unwrap_or_default()
                .iter()
                .filter_map(|p| {
                    Some(ServicePort {
                        name: text(yaml::get(p, "name")),
                        port: number(yaml::get(p, "port"))?,
                        target_port: text(yaml::get(p, "targetPort")),
                        protocol: text(yaml::get(p, "protocol")),
                        app_protocol: text(yaml::get(p, "appProtocol")),
                    })
                })
                .collect();
            TopologyItem::Service(Service {
                name,
                namespace,
                labels,
                selector: string_map(path(doc, &["spec", "selector"])),
                ports,
                origin,
            })
        }
        "Deployment" => TopologyItem::Workload(Workload {
            kind: WorkloadKind::Deployment,
            name,
            namespace,
            labels: string_map(path(doc, &["spec", "template", "metadata", "labels"])),
            service_account: text(path(
                doc,
                &["spec", "template", "spec", "serviceAccountName"],
            ))
            .unwrap_or_else(|| "default".to_owned()),
            replicas: number(path(doc, &["spec", "replicas"])).unwrap_or(1),
            origin,
        }),
        "Pod" => TopologyItem::Workload(Workload {
            kind: WorkloadKind::Pod,
            name,
            namespace,
            labels,
            service_account: text(path(doc, &["spec", "serviceAccountName"]))
                .unwrap_or_else(|| "default".to_owned()),
            replicas: 1,
            origin,
        }),
        _ => return None,
    };
    Some(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(text: &str) -> Node<'_> {
        yaml::load_stream("f", text).expect("valid").remove(0)
    }

    #[test]
    fn deployment_gives_template_labels_and_service_account() {
        let doc = first(
            "kind: Deployment\nmetadata: {name: r, namespace: ns}\nspec:\n  replicas: 3\n  template:\n    metadata: {labels: {app: r, version: v2}}\n    spec: {serviceAccountName: bookinfo-reviews}\n",
        );
        let Some(TopologyItem::Workload(w)) = read("Deployment", &doc, Origin::default()) else {
            panic!("a workload")
        };
        assert_eq!(w.labels.get("version").map(String::as_str), Some("v2"));
        assert_eq!(
            (w.service_account.as_str(), w.replicas, w.namespace.as_str()),
            ("bookinfo-reviews", 3, "ns")
        );
    }

    #[test]
    fn service_gives_selector_and_ports() {
        let doc = first(
            "kind: Service\nmetadata: {name: s}\nspec:\n  selector: {app: s}\n  ports:\n  - {port: 9080, name: http}\n",
        );
        let Some(TopologyItem::Service(s)) = read("Service", &doc, Origin::default()) else {
            panic!("a service")
        };
        assert_eq!(s.namespace, "default");
        assert_eq!(s.ports[0].port, 9080);
        assert_eq!(s.selector.get("app").map(String::as_str), Some("s"));
        assert!(read("ConfigMap", &doc, Origin::default()).is_none());
    }
}
