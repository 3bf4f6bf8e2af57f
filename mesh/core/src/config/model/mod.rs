//! The typed model of the Istio resources meshrig reads, one module per kind, and
//! what every resource carries: its metadata and where it came from.
//!
//! Field names follow Istio's API reference (lowerCamelCase in YAML, snake_case in
//! Rust). Optional scalars are `Option`, lists and maps are empty when absent. Every
//! struct has a `FIELDS` constant listing its Istio field names.

pub mod common;
pub mod destination_rule;
pub mod gateway;
pub mod k8s;
pub mod security;
pub mod service_entry;
pub mod sidecar;
pub mod virtual_service;

use std::collections::BTreeMap;

use super::decode::{Decode, Decoder, Obj};
use super::yaml::Node;

/// The Istio kinds meshrig models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    VirtualService,
    DestinationRule,
    ServiceEntry,
    Gateway,
    Sidecar,
    PeerAuthentication,
    AuthorizationPolicy,
    RequestAuthentication,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 8] = [
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::ServiceEntry,
        Kind::Gateway,
        Kind::Sidecar,
        Kind::PeerAuthentication,
        Kind::AuthorizationPolicy,
        Kind::RequestAuthentication,
    ];

    /// The `kind:` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::Gateway => "Gateway",
            Kind::Sidecar => "Sidecar",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::RequestAuthentication => "RequestAuthentication",
        }
    }

    /// The API group: `networking.istio.io` or `security.istio.io`.
    pub fn group(self) -> &'static str {
        match self {
            Kind::PeerAuthentication | Kind::AuthorizationPolicy | Kind::RequestAuthentication => {
                "security.istio.io"
            }
            _ => "networking.istio.io",
        }
    }

    /// The API versions Istio serves this kind under.
    pub fn versions(self) -> &'static [&'static str] {
        if self.group() == "security.istio.io" {
            &["v1", "v1beta1"]
        } else {
            &["v1", "v1beta1", "v1alpha3"]
        }
    }

    /// The kind spelled `name` in `group`.
    pub fn from_group_and_name(group: &str, name: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.group() == group && k.as_str() == name)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The namespace of a resource whose metadata names none (what `kubectl apply`
/// without `-n` uses).
pub const DEFAULT_NAMESPACE: &str = "default";

/// `metadata` of a resource: name, namespace (default `default`), labels,
/// annotations. Other Kubernetes object-metadata fields are accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// Kubernetes object-metadata fields meshrig accepts in `metadata` and ignores.
const IGNORED_METADATA: &[&str] = &[
    "generateName",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
    "finalizers",
    "managedFields",
    "selfLink",
];

impl Decode for Metadata {
    fn decode(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Self> {
        d.object(node, |o: &mut Obj<'_, '_, '_>| {
            let name: Option<String> = o.field("name");
            let namespace: Option<String> = o.field("namespace");
            let labels = o.field("labels");
            let annotations = o.field("annotations");
            for f in IGNORED_METADATA {
                o.ignore(f);
            }
            if name.is_none() && !o.has("name") && !o.has("generateName") {
                o.error_at("name", "missing required field `name`");
            }
            Metadata {
                name: name.unwrap_or_default(),
                namespace: namespace
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
                labels,
                annotations,
            }
        })
    }
}

/// Where a resource came from, with the line of every field path in its document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// Display path of the file.
    pub file: String,
    /// Line where the document starts.
    pub line: u32,
    positions: BTreeMap<String, u32>,
}

impl Origin {
    pub(crate) fn new(file: &str, line: u32, positions: BTreeMap<String, u32>) -> Self {
        Origin {
            file: file.to_owned(),
            line,
            positions,
        }
    }

    /// The line of `path` (`spec.http[0].route[1].weight`) in the document, or of its
    /// closest recorded ancestor, or of the document.
    pub fn line_of(&self, path: &str) -> u32 {
        let mut p = path;
        loop {
            if let Some(line) = self.positions.get(p) {
                return *line;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return self.line,
            }
        }
    }

    /// `file:line` of `path`.
    pub fn locate(&self, path: &str) -> String {
        format!("{}:{}", self.file, self.line_of(path))
    }
}

/// One Istio resource of the set: what `kind:`/`apiVersion:` said, its metadata, its
/// typed spec, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource<T> {
    pub kind: Kind,
    /// As written (`networking.istio.io/v1alpha3`).
    pub api_version: String,
    pub metadata: Metadata,
    pub spec: T,
    pub origin: Origin,
}

impl<T> Resource<T> {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.metadata.namespace, self.metadata.name)
    }

    /// `file:line` of a field path in this resource's document.
    pub fn locate(&self, path: &str) -> String {
        self.origin.locate(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_of_falls_back_to_the_closest_ancestor() {
        let positions = BTreeMap::from([
            ("spec".to_owned(), 5),
            ("spec.http".to_owned(), 6),
            ("spec.http[0]".to_owned(), 7),
        ]);
        let o = Origin::new("f", 1, positions);
        assert_eq!(o.line_of("spec.http[0]"), 7);
        assert_eq!(o.line_of("spec.http[0].route[2].weight"), 7);
        assert_eq!(o.line_of("spec.http[1]"), 6);
        assert_eq!(o.line_of("metadata.name"), 1);
        assert_eq!(o.locate("spec"), "f:5");
    }

    #[test]
    fn kinds_know_their_group_and_versions() {
        assert_eq!(
            Kind::from_group_and_name("security.istio.io", "PeerAuthentication"),
            Some(Kind::PeerAuthentication)
        );
        assert_eq!(
            Kind::from_group_and_name("networking.istio.io", "PeerAuthentication"),
            None
        );
        assert!(Kind::VirtualService.versions().contains(&"v1alpha3"));
        assert!(!Kind::AuthorizationPolicy.versions().contains(&"v1alpha3"));
    }
}
