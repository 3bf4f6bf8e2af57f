//! `sim` — the deterministic discrete-event simulator, the sim driver of mesh-core.
