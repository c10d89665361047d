//! `lienthong demo`: the mock national IdP, the broker and a sample portal in one process, on the
//! memory store, with nothing else to install or start.
//!
//! All three listeners are bound first, because each party's configuration names the others'
//! addresses (the IdP must know the broker's callback, the broker the portal's). Port 0 picks
//! free ports; the printed URLs are the real ones.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use lienthong_adapter::directory::parse_csv;
use lienthong_broker::config::Config as BrokerConfig;
use lienthong_broker::{Broker, MemoryStore};
use lienthong_citizen::lookup_signature;
use lienthong_demo_portal::{PortalConfig, SystemConfig};
use lienthong_mock_idp::{ClientRegistration, Config as IdpConfig, MockIdp, Roster};
use lienthong_protocol::{Clock, SystemClock};
use tokio::net::TcpListener;

/// The demo portal's registration, documented in README.md.
pub const PORTAL_CLIENT_ID: &str = "demo-portal";
pub const PORTAL_CLIENT_SECRET: &str = "demo-secret";
const HEALTH_SECRET: &str = "demo-health-lookup-secret";

/// The health-records system's lookup endpoint, as a provincial system would run it: checks
/// Lienthong's signature and answers with its own record number. This demo system has records
/// for everyone born before 2010 (children's records are kept elsewhere).
async fn health_lookup_endpoint() -> anyhow::Result<String> {
    use axum::http::{HeaderMap, StatusCode};
    let app = axum::Router::new().route(
        "/lookup",
        axum::routing::post(|headers: HeaderMap, body: axum::body::Bytes| async move {
            let Some(request) =
                lookup_signature::accept(HEALTH_SECRET, &headers, &body, SystemClock.now_secs())
            else {
                return (StatusCode::UNAUTHORIZED, String::new());
            };
            match request
                .citizen_id
                .as_deref()
                .and_then(|n| lienthong_citizen::CitizenId::parse(n).ok())
            {
                Some(id) if id.birth_year() < 2010 => (
                    StatusCode::OK,
                    serde_json::json!({ "account_id": format!("SK-{}", &id.as_str()[3..]) })
                        .to_string(),
                ),
                _ => (StatusCode::NOT_FOUND, String::new()),
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/lookup", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where the broker (the OpenID provider for provincial systems) listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    broker_addr: SocketAddr,
    /// Where the mock national IdP listens.
    #[arg(long, default_value = "127.0.0.1:8081")]
    idp_addr: SocketAddr,
    /// Where the sample portal listens.
    #[arg(long, default_value = "127.0.0.1:8082")]
    portal_addr: SocketAddr,
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the {what} (use --{what}-addr)"))?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let (broker_listener, broker_addr) = bind(args.broker_addr, "broker").await?;
    let (idp_listener, _) = bind(args.idp_addr, "idp").await?;
    let (portal_listener, portal_addr) = bind(args.portal_addr, "portal").await?;
    let broker_issuer = format!("http://{broker_addr}");

    let upstream_secret = lienthong_protocol::secret::random_token(24);
    let idp_config = IdpConfig::with_client(
        idp_listener.local_addr()?,
        ClientRegistration {
            id: "lienthong".into(),
            secret: upstream_secret.clone().into(),
            redirect_uris: vec![format!("{broker_issuer}/callback")],
            post_logout_redirect_uris: vec![format!("{broker_issuer}/logout/callback")],
        },
    );
    let idp = MockIdp::start_on(idp_listener, idp_config, Roster::builtin())
        .await
        .map_err(|e| anyhow::anyhow!(e))?;

    let lookup_url = health_lookup_endpoint().await?;
    let portal = format!("http://{portal_addr}");
    let broker_config: BrokerConfig = toml::from_str(&format!(
        r#"
        issuer = "{broker_issuer}"
        home_url = "{portal}/"
        account_id_secret = "demo-only-account-id-secret"
        [upstream]
        issuer = "{idp_issuer}"
        client_id = "lienthong"
        client_secret = "{upstream_secret}"

        [[realms]]
        id = "cong-dvc"
        policy = "provision"
        [[realms]]
        id = "mot-cua"
        policy = "linked"
        office = "Bộ phận tiếp nhận và trả kết quả, Trung tâm Phục vụ hành chính công tỉnh (demo)"
        match_legacy_cmnd = true
        [[realms]]
        id = "suc-khoe"
        policy = "lookup"
        lookup = {{ url = "{lookup_url}", secret = "{HEALTH_SECRET}", timeout_ms = 2000 }}

        [[clients]]
        id = "{PORTAL_CLIENT_ID}"
        secret = "{PORTAL_CLIENT_SECRET}"
        name = "Cổng dịch vụ công tỉnh (demo)"
        redirect_uris = ["{portal}/callback"]
        post_logout_redirect_uris = ["{portal}/"]
        realm = "cong-dvc"
        claims = ["name", "family_name", "given_name", "birthdate", "gender", "citizen_id"]
        [[clients]]
        id = "demo-mot-cua"
        secret = "demo-secret-mot-cua"
        name = "Hệ thống một cửa điện tử (demo)"
        redirect_uris = ["{portal}/mot-cua/callback"]
        post_logout_redirect_uris = ["{portal}/mot-cua/"]
        realm = "mot-cua"
        claims = ["name"]
        [[clients]]
        id = "demo-suc-khoe"
        secret = "demo-secret-suc-khoe"
        name = "Hồ sơ sức khỏe điện tử (demo)"
        redirect_uris = ["{portal}/suc-khoe/callback"]
        post_logout_redirect_uris = ["{portal}/suc-khoe/"]
        realm = "suc-khoe"
        claims = ["citizen_id", "birthdate"]
        "#,
        idp_issuer = idp.issuer,
    ))?;
    let directory = crate::runtime::connect_directory("sqlite::memory:").await?;
    let (rows, bad) = parse_csv(include_str!("../../../config/demo/mot-cua-links.csv").as_bytes());
    anyhow::ensure!(bad.is_empty(), "config/demo/mot-cua-links.csv: {bad:?}");
    directory.import("mot-cua", &rows, false, "demo").await?;
    let broker = Broker::new(broker_config, Arc::new(MemoryStore::new()), directory).await?;

    let system = |slug: &str, title: &str, id: &str, secret: &str, scopes: &[&str]| SystemConfig {
        slug: slug.into(),
        title: title.into(),
        client_id: id.into(),
        client_secret: secret.into(),
        redirect_uri: if slug.is_empty() {
            format!("{portal}/callback")
        } else {
            format!("{portal}/{slug}/callback")
        },
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
    };
    let portal = lienthong_demo_portal::start_on(
        portal_listener,
        PortalConfig {
            issuer: broker_issuer.clone(),
            title: "Tỉnh Lạc Hồng (demo)".into(),
            systems: vec![
                system(
                    "",
                    "Cổng dịch vụ công",
                    PORTAL_CLIENT_ID,
                    PORTAL_CLIENT_SECRET,
                    &["profile", "citizen_id"],
                ),
                system(
                    "mot-cua",
                    "Một cửa điện tử",
                    "demo-mot-cua",
                    "demo-secret-mot-cua",
                    &["profile"],
                ),
                system(
                    "suc-khoe",
                    "Hồ sơ sức khỏe",
                    "demo-suc-khoe",
                    "demo-secret-suc-khoe",
                    &["profile", "citizen_id"],
                ),
            ],
        },
    )
    .await?;

    println!("Lienthong demo is running. Open the sample portal in a browser:");
    println!();
    println!("    http://{}/", portal.addr);
    println!();
    println!("  broker (OpenID provider): {broker_issuer}/.well-known/openid-configuration");
    println!("  mock national IdP:        {}/", idp.issuer);
    println!(
        "  portal client:            client_id={PORTAL_CLIENT_ID} client_secret={PORTAL_CLIENT_SECRET}"
    );
    println!("Press Ctrl-C to stop.");
    broker
        .serve(broker_listener, crate::runtime::shutdown_signal())
        .await?;
    drop(portal);
    idp.stop().await;
    Ok(())
}
