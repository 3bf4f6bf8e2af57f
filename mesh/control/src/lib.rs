//! `mesh-control` — meshrig's control plane, and the client sidecars subscribe with.
//!
//! The control plane holds the mesh's Istio configuration (YAML files and
//! directories, re-read when they change, plus sources published through the API)
//! and the service registry ([`RegistryFile`], also re-read). Every change of
//! content — not of mtime — that loads without error findings becomes the next
//! value of one global, monotonically increasing **version**; a change with errors is
//! **rejected** and the last good version stays in service. Each proxy gets its own
//! view of a version: the snapshot mesh-core compiles for it
//! ([`mesh_core::compile::snapshot`]), with the registry's `via` addresses resolved
//! for its workload.
//!
//! What it is not: no xDS, no gRPC, no TLS, no Kubernetes watch. Proxies receive
//! the *inputs* of the snapshot and compile it themselves with the same mesh-core,
//! checking the hash (compilation is deterministic on both sides).
//!
//! # Protocol (HTTP/1.1, JSON)
//!
//! * `GET /v1/config?id=ID&workload=W&namespace=NS&service_account=SA&label=K%3DV...&version=N`
//!   — long poll. `workload` is required; `namespace` and `service_account` default
//!   to `default`, `id` to `W.NS` (give each replica its own), `version` to 0; values
//!   are percent-encoded, `label` repeats. Answers at once when the version in
//!   service is newer than `N`, otherwise when one is published, or after the long
//!   poll timeout (30 s by default) with `304 Not Modified`. Both answers carry
//!   `x-meshrig-config-version`. The `200` body ([`wire::ConfigResponse`]):
//!
//!   ```json
//!   { "version": 7,
//!     "proxy": { "id": "productpage-1", "workload": "productpage", "namespace": "default",
//!                "labels": { "app": "productpage" }, "service_account": "default" },
//!     "snapshot_hash": "9f1c2b3a4d5e6f70",
//!     "sources": [ { "name": "istio/reviews.yaml", "text": "apiVersion: ..." } ],
//!     "registry": { "services": [ { "name": "reviews", "namespace": "default",
//!                   "instances": [ { "address": "127.0.0.1:7001", "service_account": "default",
//!                                    "weight": 1, "labels": { "version": "v1" } } ] } ] } }
//!   ```
//!
//!   `snapshot_hash` is [`mesh_core::compile::Snapshot::digest`] as 16 hex digits;
//!   `sources` are loaded in order as one set; `registry` is a [`RegistryFile`] with
//!   no `via` left (already applied for this proxy).
//! * `POST /v1/ack` with [`wire::Ack`] `{"proxy": ID, "version": N, "ok": true}` or
//!   `{"proxy": ID, "version": N, "ok": false, "error": "why"}` → `204`.
//! * `POST /v1/config[?name=NAME]` with a YAML body: publishes it as the source
//!   `NAME` (default `api`) on top of the files, replacing an earlier source of that
//!   name. `200 {"version": N}`, or `400` with the rejection
//!   `{"origin": "api", "kept_version": N, "errors": ["file:line: path: message", ...]}`.
//! * `GET /v1/status` — [`state::Status`]: the version, the proxies (connected, ACKed
//!   version, NACKs and the last NACK's error), per version the milliseconds until
//!   50 %, 90 % and 100 % of the proxies connected at publish time ACKed it, NACK and
//!   rejection counts, the last rejection.
//! * `GET /metrics` — Prometheus text: `meshrig_control_config_version`,
//!   `meshrig_control_proxies_connected`,
//!   `meshrig_control_propagation_seconds{version,quantile="0.5|0.9|1"}`,
//!   `meshrig_control_nacks_total`, `meshrig_control_rejections_total`.
//! * `GET /ready` — `200` once serving.
//!
//! # Modules
//!
//! * [`registry`] — the registry file, with `via` relays.
//! * [`wire`] — the request and response bodies, the query encoding.
//! * [`state`] — versions, layers, rejections, ACKs, propagation; no IO.
//! * [`server`] — [`ControlPlane`]: the watcher and the HTTP server.
//! * [`client`] — [`client::run`]: the sidecar's subscription.

pub mod client;
pub mod files;
pub mod registry;
pub mod server;
pub mod state;
pub mod wire;

pub use client::{ClientOptions, Update};
pub use registry::{RegistryFile, RegistryFileError};
pub use server::{ControlError, ControlOptions, ControlPlane};
pub use state::{Rejection, Status};
pub use wire::{Ack, ConfigResponse, ProxyIdentity, Source};
