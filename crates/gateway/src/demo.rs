//! `lienthong demo`: the mock national IdP, the broker and a sample portal in one process, on the
//! memory store, with nothing else to install or start.
//!
//! All three listeners are bound first, because each party's configuration names the others'
//! addresses (the IdP must know the broker's callback, the broker the portal's). Port 0 picks
//! free ports; the printed URLs are the real ones.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use lienthong_broker::config::{ClientConfig, Config as BrokerConfig};
use lienthong_broker::{Broker, MemoryStore};
use lienthong_demo_portal::PortalConfig;
use lienthong_mock_idp::{ClientRegistration, Config as IdpConfig, MockIdp, Roster};
use tokio::net::TcpListener;

/// The demo portal's registration, documented in README.md.
pub const PORTAL_CLIENT_ID: &str = "demo-portal";
pub const PORTAL_CLIENT_SECRET: &str = "demo-secret";

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
    let portal_redirect = format!("http://{portal_addr}/callback");

    let upstream_secret = lienthong_protocol::secret::random_token(24);
    let idp_config = IdpConfig::with_client(
        idp_listener.local_addr()?,
        ClientRegistration {
            id: "lienthong".into(),
            secret: upstream_secret.clone(),
            redirect_uris: vec![format!("{broker_issuer}/callback")],
            post_logout_redirect_uris: vec![format!("{broker_issuer}/")],
        },
    );
    let idp = MockIdp::start_on(idp_listener, idp_config, Roster::builtin())
        .await
        .map_err(|e| anyhow::anyhow!(e))?;

    let mut broker_config: BrokerConfig = toml::from_str(&format!(
        "issuer = {broker_issuer:?}\nhome_url = \"http://{portal_addr}/\"\naccount_id_secret = \"demo-only-account-id-secret\"\n[upstream]\nissuer = {:?}\nclient_id = \"lienthong\"\nclient_secret = {upstream_secret:?}\n",
        idp.issuer
    ))?;
    broker_config.clients.push(ClientConfig {
        id: PORTAL_CLIENT_ID.into(),
        secret: PORTAL_CLIENT_SECRET.into(),
        name: "Cổng dịch vụ công tỉnh (demo)".into(),
        redirect_uris: vec![portal_redirect.clone()],
        post_logout_redirect_uris: vec![format!("http://{portal_addr}/")],
        id_token_signed_response_alg: "ES256".into(),
        claims: [
            "name",
            "family_name",
            "given_name",
            "birthdate",
            "gender",
            "citizen_id",
        ]
        .map(String::from)
        .to_vec(),
        realm: None,
        require_consent: true,
        subject_type: Default::default(),
    });
    let directory = crate::connect_directory("sqlite::memory:").await?;
    let broker = Broker::new(broker_config, Arc::new(MemoryStore::new()), directory)?;

    let portal = lienthong_demo_portal::start_on(
        portal_listener,
        PortalConfig {
            issuer: broker_issuer.clone(),
            client_id: PORTAL_CLIENT_ID.into(),
            client_secret: PORTAL_CLIENT_SECRET.into(),
            redirect_uri: portal_redirect,
            title: "Cổng dịch vụ công tỉnh (demo)".into(),
            scopes: vec!["profile".into(), "citizen_id".into()],
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
        .serve(broker_listener, crate::shutdown_signal())
        .await?;
    drop(portal);
    idp.stop().await;
    Ok(())
}
