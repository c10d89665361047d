//! What every long-running command shares: the account directory's connection and the signal
//! that shuts a server down gracefully.

use anyhow::Context;

/// Connects the account directory; for a SQLite file, creates its folder first.
pub async fn connect_directory(url: &str) -> anyhow::Result<lienthong_broker::Directory> {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let path = std::path::Path::new(rest.split('?').next().unwrap_or(rest));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    lienthong_broker::Directory::connect(url)
        .await
        .with_context(|| "cannot open the account directory".to_string())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
