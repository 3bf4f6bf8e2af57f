//! A configuration set: the files given together, as `kubectl apply` would create
//! them.
//!
//! [`ConfigSet::load`] reads every document of every file, decodes the Istio kinds
//! into the typed model, reads Kubernetes documents as topology, resolves duplicates
//! (the later definition of a kind/namespace/name wins, with a warning), and runs the
//! checks that look across resources. It never panics and never stops early: every
//! problem comes back as a [`Finding`], sorted by file (in the order given) and line.

use std::collections::BTreeMap;

use super::decode::{Decode, Decoder};
use super::finding::Finding;
use super::host::{fqdn, host_matches};
use super::model::destination_rule::DestinationRule;
use super::model::gateway::Gateway;
use super::model::k8s::{self, Namespace, Service, ServiceAccount, TopologyItem, Workload};
use super::model::security::{AuthorizationPolicy, PeerAuthentication, RequestAuthentication};
use super::model::service_entry::ServiceEntry;
use super::model::sidecar::Sidecar;
use super::model::virtual_service::VirtualService;
use super::model::{Kind, Metadata, Origin, Resource};
use super::validate;
use super::yaml::{self, Node};

/// Every resource of a configuration set, typed, with its origin.
#[derive(Debug, Clone, Default)]
pub struct ConfigSet {
    files: Vec<String>,
    virtual_services: Vec<Resource<VirtualService>>,
    destination_rules: Vec<Resource<DestinationRule>>,
    service_entries: Vec<Resource<ServiceEntry>>,
    gateways: Vec<Resource<Gateway>>,
    sidecars: Vec<Resource<Sidecar>>,
    peer_authentications: Vec<Resource<PeerAuthentication>>,
    authorization_policies: Vec<Resource<AuthorizationPolicy>>,
    request_authentications: Vec<Resource<RequestAuthentication>>,
    services: Vec<Service>,
    workloads: Vec<Workload>,
    namespaces: Vec<Namespace>,
    service_accounts: Vec<ServiceAccount>,
}

impl ConfigSet {
    /// Loads the files of one configuration set. Each source is `(display path,
    /// contents)`; the caller reads the files. Returns the set (with whatever could be
    /// decoded, even when there are errors) and every finding, sorted by file in the
    /// order given, then line. The set is valid when no finding is an error.
    pub fn load(sources: &[(String, String)]) -> (ConfigSet, Vec<Finding>) {
        let mut set = ConfigSet::default();
        let mut findings = Vec::new();
        for (file, contents) in sources {
            set.files.push(file.clone());
            match yaml::load_stream(file, contents) {
                Ok(docs) => {
                    for doc in &docs {
                        set.read_document(file, doc, &mut findings);
                    }
                }
                Err(f) => findings.push(f),
            }
        }
        dedup(&mut set.virtual_services, &mut findings);
        dedup(&mut set.destination_rules, &mut findings);
        dedup(&mut set.service_entries, &mut findings);
        dedup(&mut set.gateways, &mut findings);
        dedup(&mut set.sidecars, &mut findings);
        dedup(&mut set.peer_authentications, &mut findings);
        dedup(&mut set.authorization_policies, &mut findings);
        dedup(&mut set.request_authentications, &mut findings);
        findings.extend(validate::check_set(&set));
        let order: BTreeMap<&str, usize> = set
            .files
            .iter()
            .enumerate()
            .rev()
            .map(|(i, f)| (f.as_str(), i))
            .collect();
        findings.sort_by_key(|f| {
            (
                order.get(f.file.as_str()).copied().unwrap_or(usize::MAX),
                f.line,
            )
        });
        (set, findings)
    }

    fn read_document(&mut self, file: &str, doc: &Node<'_>, findings: &mut Vec<Finding>) {
        if yaml::is_null(doc) {
            return;
        }
        let line = yaml::line(doc);
        if yaml::entries(doc).is_none() {
            let found = yaml::describe(doc);
            findings.push(Finding::error(
                file,
                line,
                "(document)",
                format!("expected a Kubernetes object with apiVersion and kind, found {found}"),
            ));
            return;
        }
        let field = |name: &str| {
            yaml::get(doc, name)
                .and_then(yaml::as_str)
                .map(str::to_owned)
        };
        let (Some(api_version), Some(kind)) = (field("apiVersion"), field("kind")) else {
            for name in ["apiVersion", "kind"] {
                if field(name).is_none() {
                    let at = yaml::get(doc, name).map_or(line, yaml::line);
                    findings.push(Finding::error(
                        file,
                        at,
                        name,
                        format!("missing or non-string `{name}` (every document needs apiVersion and kind)"),
                    ));
                }
            }
            return;
        };
        let (group, version) = api_version
            .rsplit_once('/')
            .unwrap_or(("", api_version.as_str()));
        let at_api_version = yaml::get(doc, "apiVersion").map_or(line, yaml::line);
        let istio_group = matches!(group, "networking.istio.io" | "security.istio.io");
        let modelled = Kind::ALL.into_iter().find(|k| k.as_str() == kind);
        match modelled {
            Some(k) if k.group() == group => {
                if !k.versions().contains(&version) {
                    findings.push(Finding::error(
                        file,
                        at_api_version,
                        "apiVersion",
                        format!(
                            "{api_version} does not serve {kind} (use {}/{})",
                            k.group(),
                            k.versions().join(", ")
                        ),
                    ));
                }
                self.add_resource(k, api_version.clone(), file, doc, findings);
            }
            Some(k) => findings.push(Finding::error(
                file,
                at_api_version,
                "apiVersion",
                format!(
                    "{kind} is not served by {api_version} (use {}/{})",
                    k.group(),
                    k.versions()[0]
                ),
            )),
            None if istio_group => findings.push(Finding::note(
                file,
                line,
                "kind",
                format!("skipped {kind} ({api_version}): meshrig does not model this Istio kind"),
            )),
            None => {
                let origin = Origin::new(file, line, BTreeMap::new());
                let read = matches!(group, "" | "apps")
                    .then(|| k8s::read(&kind, doc, origin))
                    .flatten();
                match read {
                    Some(TopologyItem::Service(s)) => self.services.push(s),
                    Some(TopologyItem::Workload(w)) => self.workloads.push(w),
                    Some(TopologyItem::Namespace(n)) => self.namespaces.push(n),
                    Some(TopologyItem::ServiceAccount(a)) => self.service_accounts.push(a),
                    None => findings.push(Finding::note(
                        file,
                        line,
                        "kind",
                        format!("skipped {kind} ({api_version}): not a kind meshrig reads"),
                    )),
                }
            }
        }
    }

    fn add_resource(
        &mut self,
        kind: Kind,
        api_version: String,
        file: &str,
        doc: &Node<'_>,
        findings: &mut Vec<Finding>,
    ) {
        match kind {
            Kind::VirtualService => {
                self.virtual_services
                    .push(decode(kind, api_version, file, doc, findings))
            }
            Kind::DestinationRule => {
                self.destination_rules
                    .push(decode(kind, api_version, file, doc, findings))
            }
            Kind::ServiceEntry => {
                self.service_entries
                    .push(decode(kind, api_version, file, doc, findings))
            }
            Kind::Gateway => self
                .gateways
                .push(decode(kind, api_version, file, doc, findings)),
            Kind::Sidecar => self
                .sidecars
                .push(decode(kind, api_version, file, doc, findings)),
            Kind::PeerAuthentication => {
                self.peer_authentications
                    .push(decode(kind, api_version, file, doc, findings))
            }
            Kind::AuthorizationPolicy => {
                self.authorization_policies
                    .push(decode(kind, api_version, file, doc, findings))
            }
            Kind::RequestAuthentication => {
                self.request_authentications
                    .push(decode(kind, api_version, file, doc, findings))
            }
        }
    }

    /// The display paths of the files loaded, in the order given.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// VirtualServices, in load order (later duplicates replaced earlier ones).
    pub fn virtual_services(&self) -> &[Resource<VirtualService>] {
        &self.virtual_services
    }

    /// DestinationRules, in load order.
    pub fn destination_rules(&self) -> &[Resource<DestinationRule>] {
        &self.destination_rules
    }

    /// ServiceEntries, in load order.
    pub fn service_entries(&self) -> &[Resource<ServiceEntry>] {
        &self.service_entries
    }

    /// Gateways, in load order.
    pub fn gateways(&self) -> &[Resource<Gateway>] {
        &self.gateways
    }

    /// Sidecars, in load order.
    pub fn sidecars(&self) -> &[Resource<Sidecar>] {
        &self.sidecars
    }

    /// PeerAuthentications, in load order.
    pub fn peer_authentications(&self) -> &[Resource<PeerAuthentication>] {
        &self.peer_authentications
    }

    /// AuthorizationPolicies, in load order.
    pub fn authorization_policies(&self) -> &[Resource<AuthorizationPolicy>] {
        &self.authorization_policies
    }

    /// RequestAuthentications, in load order.
    pub fn request_authentications(&self) -> &[Resource<RequestAuthentication>] {
        &self.request_authentications
    }

    /// Kubernetes Services.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// Workloads from Deployments and Pods.
    pub fn workloads(&self) -> &[Workload] {
        &self.workloads
    }

    /// Namespaces declared by Namespace documents.
    pub fn namespaces(&self) -> &[Namespace] {
        &self.namespaces
    }

    /// ServiceAccounts.
    pub fn service_accounts(&self) -> &[ServiceAccount] {
        &self.service_accounts
    }

    /// The DestinationRules that apply to `host` (an FQDN): those whose host resolves
    /// to exactly `host`, or if there are none, those whose wildcard host covers it,
    /// most specific first.
    pub fn destination_rules_for(&self, host: &str) -> Vec<&Resource<DestinationRule>> {
        let resolved = |dr: &Resource<DestinationRule>| fqdn(&dr.spec.host, &dr.metadata.namespace);
        let exact: Vec<_> = self
            .destination_rules
            .iter()
            .filter(|dr| resolved(dr) == host)
            .collect();
        if !exact.is_empty() {
            return exact;
        }
        let mut wild: Vec<_> = self
            .destination_rules
            .iter()
            .filter(|dr| host_matches(&resolved(dr), host))
            .collect();
        wild.sort_by_key(|dr| std::cmp::Reverse(resolved(dr).len()));
        if let Some(best) = wild.first().map(|dr| resolved(dr)) {
            wild.retain(|dr| resolved(dr) == best);
        }
        wild
    }

    /// True if the set holds no Istio resource and no topology.
    pub fn is_empty(&self) -> bool {
        self.virtual_services.is_empty()
            && self.destination_rules.is_empty()
            && self.service_entries.is_empty()
            && self.gateways.is_empty()
            && self.sidecars.is_empty()
            && self.peer_authentications.is_empty()
            && self.authorization_policies.is_empty()
            && self.request_authentications.is_empty()
            && self.services.is_empty()
            && self.workloads.is_empty()
            && self.namespaces.is_empty()
            && self.service_accounts.is_empty()
    }
}

/// Decodes one Istio document of `kind` into a resource.
fn decode<T: Decode + Default>(
    kind: Kind,
    api_version: String,
    file: &str,
    doc: &Node<'_>,
    findings: &mut Vec<Finding>,
) -> Resource<T> {
    let mut d = Decoder::new(file);
    let parts = d.object(doc, |o| {
        o.ignore("apiVersion");
        o.ignore("kind");
        o.ignore("status");
        let metadata: Option<Metadata> = o.field("metadata");
        let spec: Option<T> = o.field("spec");
        if !o.has("metadata") {
            o.error_at(
                "metadata",
                "missing required field `metadata` (give at least a name)",
            );
        }
        (metadata, spec)
    });
    let (metadata, spec) = parts.unwrap_or_default();
    let (found, positions) = d.finish();
    findings.extend(found);
    let metadata = metadata.unwrap_or_else(|| Metadata {
        namespace: super::model::DEFAULT_NAMESPACE.to_owned(),
        ..Metadata::default()
    });
    Resource {
        kind,
        api_version,
        metadata,
        spec: spec.unwrap_or_default(),
        origin: Origin::new(file, yaml::line(doc), positions),
    }
}

/// Keeps the last resource of each namespace/name, warning about each earlier one
/// it replaces (`kubectl apply` semantics).
fn dedup<T>(items: &mut Vec<Resource<T>>, findings: &mut Vec<Finding>) {
    let mut last: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut keep = vec![true; items.len()];
    for (i, r) in items.iter().enumerate() {
        if r.metadata.name.is_empty() {
            continue;
        }
        let key = (r.metadata.namespace.clone(), r.metadata.name.clone());
        if let Some(j) = last.insert(key, i) {
            keep[j] = false;
            let earlier = items[j].locate("metadata.name");
            findings.push(Finding::warning(
                &r.origin.file,
                r.origin.line_of("metadata.name"),
                "metadata.name",
                format!(
                    "{} {} is defined again, replacing the definition at {earlier} (the later one wins, as with kubectl apply)",
                    r.kind,
                    r.key()
                ),
            ));
        }
    }
    let mut flags = keep.into_iter();
    items.retain(|_| flags.next().unwrap_or(true));
}
