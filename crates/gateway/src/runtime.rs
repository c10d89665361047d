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
    if let Some((host, mode)) = unverified_postgres(url, std::env::var("PGSSLMODE").ok()) {
        tracing::warn!(
            host,
            sslmode = mode,
            "the account directory's PostgreSQL connection does not verify the server: ID numbers \
             cross the network with TLS unchecked or absent; set sslmode=verify-full and \
             sslrootcert (docs/operations.md, PostgreSQL)"
        );
    }
    lienthong_broker::Directory::connect(url)
        .await
        .with_context(|| "cannot open the account directory".to_string())
}

/// A serving broker from its configuration, as `serve` starts one: the directory connected and
/// its PostgreSQL connections opened ahead, the Store opened.
pub async fn serving_broker(
    config: lienthong_broker::Config,
) -> anyhow::Result<lienthong_broker::Broker> {
    let directory = connect_directory(&config.directory.url).await?;
    directory.warm();
    let store = lienthong_broker::store::open(&config.store)?;
    Ok(lienthong_broker::Broker::new(config, store, directory).await?)
}

/// The host and `sslmode` of a PostgreSQL directory URL whose connection would not check the
/// server's certificate: TCP to another host without `sslmode=verify-full` or `verify-ca` (in
/// the URL, or in `PGSSLMODE`, given as `env_mode`). sqlx's default, `prefer`, takes TLS when
/// the server offers it and checks nothing. `None` for SQLite, the Unix socket (`?host=/path`)
/// and loopback.
fn unverified_postgres(url: &str, env_mode: Option<String>) -> Option<(String, String)> {
    let url = url::Url::parse(url).ok()?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return None;
    }
    let mut host = url.host()?.to_owned();
    let mut mode = env_mode;
    for (key, value) in url.query_pairs() {
        match &*key {
            "host" if value.starts_with('/') => return None,
            "host" => host = url::Host::parse(&value).ok()?,
            "sslmode" | "ssl-mode" => mode = Some(value.into_owned()),
            _ => {}
        }
    }
    // The url crate leaves a postgres: URL's host a name, even 127.0.0.1: read it as one.
    let host = host.to_string();
    let name = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let mode = mode.unwrap_or_else(|| "prefer".into());
    let verified = matches!(mode.as_str(), "verify-full" | "verify-ca");
    (!loopback && !verified).then_some((host, mode))
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

#[cfg(test)]
mod tests {
    use super::unverified_postgres;

    #[test]
    fn a_postgres_directory_across_a_network_without_verified_tls_is_named() {
        let unverified =
            |url: &str| unverified_postgres(url, None).map(|(host, mode)| format!("{host} {mode}"));
        for quiet in [
            "sqlite://data/lienthong.db?mode=rwc",
            "postgres://lienthong:secret@127.0.0.1:5432/lienthong",
            "postgres://lienthong@localhost/lienthong",
            "postgres://lienthong@[::1]/lienthong",
            "postgres://lienthong@localhost/lienthong?host=/var/run/postgresql",
            "postgres://lienthong@db.example/lienthong?sslmode=verify-full&sslrootcert=/ca.pem",
            "postgresql://lienthong@10.0.0.5/lienthong?sslmode=verify-ca",
        ] {
            assert_eq!(unverified(quiet), None, "{quiet}");
        }
        assert_eq!(
            unverified("postgres://lienthong:secret@db.example:5432/lienthong").as_deref(),
            Some("db.example prefer")
        );
        assert_eq!(
            unverified("postgres://lienthong@10.0.0.5/lienthong?sslmode=require").as_deref(),
            Some("10.0.0.5 require")
        );
        let across = "postgres://lienthong@db.example/lienthong";
        assert_eq!(
            unverified_postgres(across, Some("verify-full".into())),
            None
        );
        assert_eq!(
            unverified_postgres(
                &format!("{across}?sslmode=disable"),
                Some("verify-full".into())
            ),
            Some(("db.example".into(), "disable".into())),
            "the URL's sslmode comes before PGSSLMODE"
        );
        assert_eq!(
            unverified("postgres://lienthong@localhost/lienthong?host=db.example").as_deref(),
            Some("db.example prefer"),
            "the host parameter names the server"
        );
    }
}
