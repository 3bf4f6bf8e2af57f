//! Stopping a long-running command on SIGINT or SIGTERM.

use std::future::Future;

/// Resolves with the signal's name on the first SIGINT or SIGTERM.
#[cfg(unix)]
pub fn stop_signal() -> anyhow::Result<impl Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    })
}

/// Resolves on the first Ctrl-C.
#[cfg(not(unix))]
pub fn stop_signal() -> anyhow::Result<impl Future<Output = &'static str>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    })
}
