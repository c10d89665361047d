//! `lienthong bench --in-process`: a mock IdP and a broker started inside the driver's own
//! process, so that one command measures a login with nothing else running.
//!
//! Each party gets a Tokio runtime of its own, as it has in its own process, with its worker
//! threads named: the CPU each spends is then read per thread from `/proc/self/task`, and "broker
//! CPU per login" means what it means against separate processes. The broker runs the bench's
//! configuration (config/bench/broker.toml, compiled in) on free loopback ports, with the memory
//! Store and a SQLite directory in a temporary folder that is removed afterwards — or, as `serve`
//! reads them, whatever `LIENTHONG__...` variables say: `LIENTHONG__STORE__URL` (and its
//! sealing key) for Redis, `LIENTHONG__DIRECTORY__URL` for PostgreSQL.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use lienthong_mock_idp::{ClientRegistration, Config as IdpConfig, MockIdp, Roster};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

/// The bench broker's configuration, the one `serve --config config/bench/broker.toml` runs.
const BROKER_CONFIG: &str = include_str!("../../../../config/bench/broker.toml");

/// Thread names (as `/proc` shows them, at most 15 bytes) by party. sqlx runs each SQLite
/// connection on a thread of its own, `sqlx-sqlite-worker-N`: only the broker's directory has one.
pub const BROKER_THREADS: &[&str] = &["lt-broker", super::SQLITE_THREADS[0]];
pub const IDP_THREADS: &[&str] = &["lt-mock-idp"];

/// The running pair. Dropping it stops both and removes the directory's folder.
pub struct InProcess {
    pub issuer: String,
    /// The temporary folder (the default directory's).
    folder: PathBuf,
    stop_broker: Option<oneshot::Sender<()>>,
    idp: Option<lienthong_mock_idp::Running>,
    runtimes: Vec<Runtime>,
}

fn runtime(name: &str) -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(name)
        // A thread of the blocking pool idle for Tokio's default 10 s would exit, and what it had
        // spent would then count as the driver's (an ended thread leaves no stat to read): kept
        // for longer than any run.
        .thread_keep_alive(std::time::Duration::from_secs(24 * 3600))
        .build()
        .with_context(|| format!("cannot start the {name} runtime"))
}

fn loopback_listener() -> anyhow::Result<(std::net::TcpListener, SocketAddr)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind loopback")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Starts the mock IdP, then the broker (which reads the IdP's discovery as it starts).
///
/// The broker's configuration is the bench's with this process's `LIENTHONG__...` variables
/// applied, as `serve` applies them; its issuer, address and upstream issuer are the run's own.
pub async fn start() -> anyhow::Result<InProcess> {
    let mut config: toml::Table =
        toml::from_str(BROKER_CONFIG).context("config/bench/broker.toml")?;
    let (broker_listener, broker_addr) = loopback_listener()?;
    let (idp_listener, idp_addr) = loopback_listener()?;
    let issuer = format!("http://{broker_addr}");

    let folder = std::env::temp_dir().join(format!(
        "lienthong-bench-{}-{}",
        std::process::id(),
        lienthong_protocol::secret::random_token(6)
    ));
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    // Ctrl-C ends the process without unwinding to `Drop`: the folder goes first.
    let doomed = folder.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = std::fs::remove_dir_all(&doomed);
            std::process::exit(130);
        }
    });
    let sqlite = format!(
        "sqlite://{}?mode=rwc",
        folder.join("directory.db").display()
    );
    set(&mut config, "directory", "url", &sqlite);
    crate::settings::apply_environment(&mut config, "LIENTHONG")?;
    let mut running = InProcess {
        issuer: issuer.clone(),
        folder,
        stop_broker: None,
        idp: None,
        runtimes: Vec::new(),
    };

    let upstream = config
        .get("upstream")
        .and_then(|u| u.as_table())
        .context("config/bench/broker.toml has no [upstream]")?;
    let text = |key: &str| {
        upstream
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .with_context(|| format!("config/bench/broker.toml has no upstream.{key}"))
    };
    let registration = ClientRegistration {
        id: text("client_id")?,
        secret: text("client_secret")?.into(),
        redirect_uris: vec![format!("{issuer}/callback")],
        post_logout_redirect_uris: vec![format!("{issuer}/logout/callback")],
    };
    // Each runtime goes into `running` before its start is awaited: dropped on the error path,
    // it is shut down by `Drop`, as a runtime may not be dropped on the driver's.
    let idp_runtime = runtime(IDP_THREADS[0])?;
    let idp = idp_runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(idp_listener)?;
        MockIdp::start_on(
            listener,
            IdpConfig::with_client(idp_addr, registration),
            Roster::builtin(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("the mock IdP did not start: {e}"))
    });
    running.runtimes.push(idp_runtime);
    let idp = idp.await??;

    config.insert("issuer".into(), issuer.clone().into());
    config.insert("bind".into(), broker_addr.to_string().into());
    set(&mut config, "upstream", "issuer", &idp.issuer);
    let config: lienthong_broker::Config = crate::settings::typed(config)
        .context("config/bench/broker.toml, with the LIENTHONG__ variables, does not load")?;
    // Said once, before the run: what it measures (the URLs without a password).
    let started = format!(
        "in process: broker {issuer}, mock IdP {}; Store {}; directory {} (their log on standard \
         error, at LIENTHONG_LOG's level)",
        idp.issuer,
        shown(&config.store.url),
        if config.directory.url == sqlite {
            format!("SQLite in {}", running.folder.display())
        } else {
            shown(&config.directory.url)
        }
    );
    running.idp = Some(idp);

    let broker_runtime = runtime(BROKER_THREADS[0])?;
    let (stop, stopped) = oneshot::channel::<()>();
    running.stop_broker = Some(stop);
    let broker = broker_runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(broker_listener)?;
        let broker = crate::runtime::serving_broker(config).await?;
        tokio::spawn(async move {
            if let Err(e) = broker
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
            {
                tracing::error!(error = %e, "the in-process broker stopped");
            }
        });
        anyhow::Ok(())
    });
    running.runtimes.push(broker_runtime);
    broker.await??;
    println!("{started}");
    Ok(running)
}

/// Sets `[section] key = value`, the section made if missing.
fn set(config: &mut toml::Table, section: &str, key: &str, value: &str) {
    if let Some(t) = config
        .entry(section)
        .or_insert_with(|| toml::Table::new().into())
        .as_table_mut()
    {
        t.insert(key.into(), value.into());
    }
}

/// A Store's or directory's URL (or comma-separated URLs) as printed: without a password or
/// query (where a password can also be given).
fn shown(urls: &str) -> String {
    let one = |u: &str| match url::Url::parse(u.trim()) {
        Ok(mut url) => {
            let _ = url.set_password(None);
            url.set_query(None);
            url.to_string()
        }
        Err(_) => u.trim().to_owned(),
    };
    urls.split(',').map(one).collect::<Vec<_>>().join(",")
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop_broker.take() {
            let _ = stop.send(());
        }
        drop(self.idp.take());
        for runtime in self.runtimes.drain(..) {
            runtime.shutdown_background();
        }
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}
