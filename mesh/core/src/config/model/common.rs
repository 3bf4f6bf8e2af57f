//! Types shared by several kinds: string matches, destinations, header operations,
//! workload selectors, ports, policy target references.

use std::collections::BTreeMap;

use crate::config::decode::{Decode, Decoder, Obj};
use crate::config::values::RegexPattern;
use crate::config::yaml::Node;

/// Reports `name` as a missing required field of the object being decoded, unless
/// it has a value or its key is present (a present key with a bad value was already
/// reported).
pub(crate) fn require(o: &mut Obj<'_, '_, '_>, present: bool, name: &str) {
    if !present && !o.has(name) {
        o.error_at(name, format!("missing required field `{name}`"));
    }
}

/// How a string is matched (Istio `StringMatch`): exactly one of `exact`, `prefix`,
/// `regex`; `{}` (none) matches any value, which for headers means "present".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    /// RE2 syntax, matched against the whole value.
    Regex(RegexPattern),
    /// `{}`: any value.
    #[default]
    Any,
}

impl StringMatch {
    /// The Istio field names of a `StringMatch`.
    pub const FIELDS: &'static [&'static str] = &["exact", "prefix", "regex"];
}

impl Decode for StringMatch {
    fn decode(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Self> {
        d.object(node, |o| {
            let exact: Option<String> = o.field("exact");
            let prefix: Option<String> = o.field("prefix");
            let regex: Option<RegexPattern> = o.field("regex");
            let given = ["exact", "prefix", "regex"]
                .into_iter()
                .filter(|f| o.has(f))
                .collect::<Vec<_>>();
            if given.len() > 1 {
                o.error(format!(
                    "sets {} together (a string match takes exactly one of exact, prefix, regex)",
                    given.join(" and ")
                ));
            }
            if let Some(v) = exact {
                StringMatch::Exact(v)
            } else if let Some(v) = prefix {
                StringMatch::Prefix(v)
            } else if let Some(v) = regex {
                StringMatch::Regex(v)
            } else {
                StringMatch::Any
            }
        })
    }
}

istio_struct! {
    /// A port of a destination: `port: {number: 9080}`.
    pub struct PortSelector {
        number: Option<u32> = "number",
    }
}

istio_struct! {
    /// Where traffic goes: a service host (short names are relative to the
    /// resource's namespace), an optional subset of a DestinationRule, a port.
    pub struct Destination check check_destination {
        host: String = "host",
        subset: Option<String> = "subset",
        port: Option<PortSelector> = "port",
    }
}

fn check_destination(v: &mut Destination, o: &mut Obj<'_, '_, '_>) {
    require(o, !v.host.is_empty(), "host");
}

istio_struct! {
    /// Header edits: `set` replaces, `add` appends, `remove` deletes.
    pub struct HeaderOperations {
        set: BTreeMap<String, String> = "set",
        add: BTreeMap<String, String> = "add",
        remove: Vec<String> = "remove",
    }
}

istio_struct! {
    /// Header edits on the request (before forwarding) and the response.
    pub struct Headers {
        request: Option<HeaderOperations> = "request",
        response: Option<HeaderOperations> = "response",
    }
}

istio_struct! {
    /// Selects workloads by their pod labels, `{matchLabels: {app: x}}` (Istio's
    /// `type.v1beta1.WorkloadSelector`: policies and DestinationRule).
    pub struct WorkloadSelector {
        match_labels: BTreeMap<String, String> = "matchLabels",
    }
}

istio_struct! {
    /// Selects workloads by their pod labels, `{labels: {app: x}}` (the networking
    /// API's `WorkloadSelector`: Sidecar and ServiceEntry).
    pub struct NetworkingWorkloadSelector {
        labels: BTreeMap<String, String> = "labels",
    }
}

istio_struct! {
    /// A reference to the object a policy attaches to (`targetRef`).
    pub struct PolicyTargetReference {
        group: Option<String> = "group",
        kind: Option<String> = "kind",
        name: Option<String> = "name",
        namespace: Option<String> = "namespace",
    }
}

istio_struct! {
    /// A port a service, gateway server or sidecar listener exposes.
    pub struct Port {
        number: Option<u32> = "number",
        /// `HTTP`, `HTTPS`, `GRPC`, `HTTP2`, `MONGO`, `TCP`, `TLS`.
        protocol: Option<String> = "protocol",
        name: Option<String> = "name",
        target_port: Option<u32> = "targetPort",
    }
}
