//! The registry file: which services exist and where their instances listen.
//!
//! JSON, strict (unknown fields are errors):
//!
//! ```json
//! { "services": [
//!     { "name": "reviews", "namespace": "default",
//!       "instances": [
//!         { "address": "127.0.0.1:9081", "labels": { "app": "reviews", "version": "v1" },
//!           "zone": "a", "via": { "productpage": "127.0.0.1:7001" } } ] } ] }
//! ```
//!
//! `namespace` defaults to `default`; `labels`, `zone`, `region`, `via` to empty;
//! `service_account` to `default`; `weight` to 1. Every address (and every `via`
//! address) must be `IP:PORT`.
//!
//! `via` maps a *source* workload name to another address for this instance: the
//! snapshot of a proxy whose workload is a key sees the instance at the `via`
//! address instead (see [`RegistryFile::for_workload`]). This is how a runner puts a
//! fault-injecting TCP relay between two specific sidecars while every other proxy
//! talks to the instance directly.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use mesh_core::compile::{Instance, Registry, RegistryService};
use serde::{Deserialize, Serialize};

/// The file as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    pub services: Vec<ServiceEntry>,
}

/// One service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub instances: Vec<InstanceEntry>,
}

/// One instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceEntry {
    /// `IP:PORT`.
    pub address: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub zone: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    #[serde(default = "default_namespace")]
    pub service_account: String,
    #[serde(default = "one")]
    pub weight: u32,
    /// Source workload name → the `IP:PORT` that workload's proxy reaches this
    /// instance at (a relay). Empty: everyone uses `address`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub via: BTreeMap<String, String>,
}

fn default_namespace() -> String {
    "default".to_owned()
}

fn one() -> u32 {
    1
}

/// What is wrong with a registry file.
#[derive(Debug, thiserror::Error)]
pub enum RegistryFileError {
    #[error(
        "not a valid registry file: {0} (expected {{\"services\": [{{\"name\": ..., \"instances\": [{{\"address\": \"127.0.0.1:9080\", ...}}]}}]}})"
    )]
    Parse(#[from] serde_json::Error),
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl RegistryFile {
    /// Parses and validates the file's text, reporting every bad value at once.
    pub fn parse(text: &str) -> Result<Self, RegistryFileError> {
        let file: RegistryFile = serde_json::from_str(text)?;
        file.validate()?;
        Ok(file)
    }

    /// Every problem, or none.
    pub fn validate(&self) -> Result<(), RegistryFileError> {
        let mut problems = Vec::new();
        for (s, service) in self.services.iter().enumerate() {
            if service.name.is_empty() {
                problems.push(format!("services[{s}].name: must not be empty"));
            }
            for (i, instance) in service.instances.iter().enumerate() {
                if instance.address.parse::<SocketAddr>().is_err() {
                    problems.push(format!(
                        "services[{s}].instances[{i}].address: '{}' is not IP:PORT (e.g. 127.0.0.1:9080)",
                        instance.address
                    ));
                }
                if instance.weight == 0 {
                    problems.push(format!(
                        "services[{s}].instances[{i}].weight: must be at least 1"
                    ));
                }
                for (source, via) in &instance.via {
                    if source.is_empty() {
                        problems.push(format!(
                            "services[{s}].instances[{i}].via: a source workload name must not be empty"
                        ));
                    }
                    if via.parse::<SocketAddr>().is_err() {
                        problems.push(format!(
                            "services[{s}].instances[{i}].via.{source}: '{via}' is not IP:PORT (e.g. 127.0.0.1:7001)"
                        ));
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(RegistryFileError::Invalid(problems))
        }
    }

    /// The file as the proxy of `workload` sees it: every instance whose `via` names
    /// `workload` moved to the `via` address, and no `via` maps left.
    pub fn for_workload(&self, workload: &str) -> RegistryFile {
        let mut file = self.clone();
        for instance in file.services.iter_mut().flat_map(|s| &mut s.instances) {
            if let Some(via) = instance.via.remove(workload) {
                instance.address = via;
            }
            instance.via.clear();
        }
        file
    }

    /// The registry mesh-core compiles snapshots from (addresses as written; apply
    /// [`RegistryFile::for_workload`] first for a proxy's view).
    pub fn to_registry(&self) -> Registry {
        let mut registry = Registry::default();
        for service in &self.services {
            let mut rs = RegistryService::new(&service.name, &service.namespace);
            for i in &service.instances {
                let mut instance = Instance::new(&i.address)
                    .service_account(&i.service_account)
                    .locality(&i.region, &i.zone);
                instance.labels.clone_from(&i.labels);
                instance.weight = i.weight;
                rs.push(instance);
            }
            registry = registry.with_service(rs);
        }
        registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_converts() {
        let file = RegistryFile::parse(
            r#"{"services":[{"name":"reviews","instances":[
                {"address":"127.0.0.1:9081","labels":{"version":"v1"},"zone":"a"},
                {"address":"127.0.0.1:9082","labels":{"version":"v2"}}]}]}"#,
        )
        .unwrap();
        let registry = file.to_registry();
        let s = registry
            .service("reviews.default.svc.cluster.local")
            .unwrap();
        assert_eq!(s.instances.len(), 2);
        assert_eq!(s.instances[1].id.0, 1);
        assert_eq!(s.instances[0].zone, "a");
        assert_eq!(s.instances[1].labels["version"], "v2");
    }

    #[test]
    fn reports_every_problem_and_unknown_fields() {
        let err = RegistryFile::parse(
            r#"{"services":[{"name":"","instances":[{"address":"nowhere","weight":0,
                "via":{"productpage":"relay"}}]}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("services[0].name"), "{err}");
        assert!(err.contains("instances[0].address"), "{err}");
        assert!(err.contains("instances[0].weight"), "{err}");
        assert!(
            err.contains("instances[0].via.productpage: 'relay'"),
            "{err}"
        );
        let err = RegistryFile::parse(r#"{"services":[{"name":"a","zone":"x"}]}"#).unwrap_err();
        assert!(err.to_string().contains("zone"), "{err}");
    }

    #[test]
    fn via_rewrites_only_for_the_named_source() {
        let file = RegistryFile::parse(
            r#"{"services":[{"name":"reviews","instances":[
                {"address":"127.0.0.1:9081","via":{"productpage":"127.0.0.1:7001"}},
                {"address":"127.0.0.1:9082"}]}]}"#,
        )
        .unwrap();
        let seen = |workload: &str| -> Vec<String> {
            let view = file.for_workload(workload);
            assert!(view.services[0].instances.iter().all(|i| i.via.is_empty()));
            view.to_registry().services[0]
                .instances
                .iter()
                .map(|i| i.address.clone())
                .collect()
        };
        assert_eq!(seen("productpage"), ["127.0.0.1:7001", "127.0.0.1:9082"]);
        assert_eq!(seen("ratings"), ["127.0.0.1:9081", "127.0.0.1:9082"]);
        // The resolved view round-trips through JSON (it is what proxies are sent).
        let json = serde_json::to_string(&file.for_workload("productpage")).unwrap();
        assert!(!json.contains("via"), "{json}");
        let back = RegistryFile::parse(&json).unwrap();
        assert_eq!(back, file.for_workload("productpage"));
    }
}
