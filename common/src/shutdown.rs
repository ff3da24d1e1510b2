//! Ordered shutdown.
//!
//! Every service's `serve` takes a [`Shutdown`] (a cancellation token). When it
//! is cancelled the service stops accepting work, lets in-flight requests
//! finish (tonic and axum graceful shutdown), and returns. Binaries cancel it on
//! the first SIGTERM/SIGINT and exit at once on the second.

pub use tokio_util::sync::CancellationToken as Shutdown;

/// Waits for SIGTERM or SIGINT (Ctrl-C).
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// A token cancelled on the first signal; a second signal exits the process.
pub fn on_signals() -> Shutdown {
    let shutdown = Shutdown::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        signal().await;
        tracing::info!("shutdown requested; draining (signal again to exit at once)");
        token.cancel();
        signal().await;
        tracing::warn!("second signal; exiting now");
        std::process::exit(130);
    });
    shutdown
}
