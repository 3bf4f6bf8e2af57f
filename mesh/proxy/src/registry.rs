//! The registry file: which services exist and where their instances listen.
//!
//! The format lives in the control plane's crate ([`mesh_control::registry`]), which
//! serves it to proxies; a standalone proxy reads the same file.

pub use mesh_control::registry::{InstanceEntry, RegistryFile, RegistryFileError, ServiceEntry};
