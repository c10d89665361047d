//! `lienthong`: the command line of the identity gateway. Argument parsing and wiring only; the
//! logic lives in the broker, adapter and mock-idp crates.

mod accounts;
mod bench;
mod demo;
mod runtime;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lienthong_broker::Broker;
use lienthong_citizen::CitizenId;
use lienthong_protocol::Clock;
use runtime::{connect_directory, serving_broker, shutdown_signal};
use serde_json::json;

/// jemalloc rather than glibc's malloc, which was about 14 % of the broker's samples in a login
/// profile: 1.00 → 0.89 ms of CPU per login at the same resident size (docs/performance-log.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "lienthong",
    version,
    about = "Single sign-on with the national e-ID for a province's systems"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (OpenID provider for provincial systems) from a configuration file.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run mock IdP + broker + a sample portal in one process, with nothing else needed.
    Demo(demo::DemoArgs),
    /// Run the mock national IdP from a configuration file.
    MockIdp {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a broker configuration file (and its keys) without serving.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
        /// Also fetch the national IdP's discovery and keys and check the configured
        /// algorithms, scopes, claim names and acr values against them.
        #[arg(long)]
        online: bool,
    },
    /// The account directory: import, export, show.
    Accounts {
        #[command(flatten)]
        target: accounts::Target,
        #[command(subcommand)]
        command: accounts::AccountsCommand,
    },
    /// Personal ID numbers.
    CitizenId {
        #[command(subcommand)]
        command: CitizenIdCommand,
    },
    /// Run the sample provincial portal alone, as one client of a running broker (the demo runs
    /// it together with the rest; this is for a deployment such as deploy/compose.yaml).
    Portal(PortalArgs),
    /// Drive complete logins against a running broker and mock IdP; report rate, latency and
    /// the processes' CPU per login.
    Bench(bench::BenchArgs),
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(clap::Args)]
struct PortalArgs {
    /// The broker's issuer URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    issuer: String,
    #[arg(long, default_value = "127.0.0.1:8082")]
    addr: std::net::SocketAddr,
    #[arg(long, default_value = "demo-portal")]
    client_id: String,
    /// The client secret (better from the environment).
    #[arg(long, env = "LIENTHONG_PORTAL_CLIENT_SECRET")]
    client_secret: String,
    /// The portal's public address, for its redirect URI (`{public_url}/callback`).
    #[arg(long, default_value = "http://127.0.0.1:8082")]
    public_url: String,
}

#[derive(Subcommand)]
enum CitizenIdCommand {
    /// Say what a 12-digit number encodes; exit 0 when valid, 1 when not.
    Check {
        number: String,
        /// Cross-check the birth year, YYYY-MM-DD.
        #[arg(long)]
        birthdate: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new PKCS#8 PEM private key for `[keys]` in the broker configuration.
    Generate {
        #[arg(long, default_value = "ES256", value_parser = ["ES256", "RS256", "EdDSA"])]
        alg: String,
    },
    /// Roll the shared signing keys of a broker's directory one step: next becomes current,
    /// current becomes previous, a new next is published. Every node follows within
    /// `keys.reload_secs`; no token in flight breaks.
    Rotate {
        #[arg(long, short)]
        config: PathBuf,
        /// Only this algorithm (default: every one whose keys are shared).
        #[arg(long, value_parser = ["ES256", "RS256", "EdDSA"])]
        alg: Option<String>,
    },
}

fn main() -> ExitCode {
    lienthong_protocol::crypto::install();
    let cli = Cli::parse();
    match cli.command {
        Command::CitizenId {
            command: CitizenIdCommand::Check { number, birthdate },
        } => check_citizen_id(&number, birthdate.as_deref()),
        Command::Keys {
            command: KeysCommand::Generate { alg },
        } => generate_key(&alg),
        Command::Keys {
            command: KeysCommand::Rotate { config, alg },
        } => {
            init_tracing();
            let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
            match runtime.block_on(rotate_keys(&config, alg.as_deref())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("lienthong: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Accounts { target, command } => {
            init_tracing();
            let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
            match runtime.block_on(accounts::run(target, command)) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("lienthong: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        command => {
            init_tracing();
            let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
            // The command runs as a task on the runtime's workers. `block_on` alone would run it
            // on this thread, outside the workers: a server's accept loop there costs a thread
            // wake-up for every new connection (the listener's readiness arrives on a worker).
            let task = runtime.block_on(async { tokio::spawn(run(command)).await });
            match task.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("lienthong: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_tracing() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("LIENTHONG_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: a log file, journald or a container's log
    // collector gets plain text, not escape sequences around every field.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // One JSON object per line, for a log collector: LIENTHONG_LOG_FORMAT=json.
    if std::env::var("LIENTHONG_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config } => {
            let config: lienthong_broker::Config = settings::load(&config, "LIENTHONG")?;
            let listener = tokio::net::TcpListener::bind(config.bind)
                .await
                .with_context(|| format!("cannot listen on {}", config.bind))?;
            let broker = serving_broker(config).await?;
            tracing::info!(issuer = broker.issuer(), addr = %listener.local_addr()?, "broker listening");
            broker.serve(listener, shutdown_signal()).await?;
            Ok(())
        }
        Command::MockIdp { config } => {
            let config: lienthong_mock_idp::Config = settings::load(&config, "LIENTHONG_MOCK_IDP")?;
            let roster = match &config.citizens {
                Some(path) => lienthong_mock_idp::Roster::load(path)?,
                None => lienthong_mock_idp::Roster::builtin(),
            };
            let running = lienthong_mock_idp::MockIdp::start(config, roster)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            println!(
                "Mock national IdP: {}/.well-known/openid-configuration",
                running.issuer
            );
            shutdown_signal().await;
            running.stop().await;
            Ok(())
        }
        Command::CheckConfig { config, online } => {
            let config: lienthong_broker::Config = settings::load(&config, "LIENTHONG")?;
            let clients = config.clients.len();
            let directory = connect_directory(&config.directory.url).await?;
            let store = lienthong_broker::store::open(&config.store)?;
            let broker = Broker::new(config, store, directory).await?;
            if online {
                let findings = broker
                    .check_upstream()
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot check against the national IdP: {e}"))?;
                for (severity, text) in &findings {
                    let label = match severity {
                        lienthong_broker::upstream::Severity::Ok => "ok",
                        lienthong_broker::upstream::Severity::Warning => "warning",
                        lienthong_broker::upstream::Severity::Error => "error",
                    };
                    println!("{label}: {text}");
                }
                if findings
                    .iter()
                    .any(|(s, _)| *s == lienthong_broker::upstream::Severity::Error)
                {
                    anyhow::bail!("the configuration does not match the national IdP");
                }
            }
            println!(
                "configuration is valid: issuer {}, {clients} client(s)",
                broker.issuer()
            );
            Ok(())
        }
        Command::Demo(args) => demo::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Portal(args) => {
            let listener = tokio::net::TcpListener::bind(args.addr)
                .await
                .with_context(|| format!("cannot listen on {}", args.addr))?;
            let config = lienthong_demo_portal::PortalConfig {
                issuer: args.issuer,
                title: "Cổng dịch vụ công (mẫu)".into(),
                systems: vec![lienthong_demo_portal::SystemConfig {
                    slug: String::new(),
                    title: "Cổng dịch vụ công".into(),
                    client_id: args.client_id,
                    client_secret: args.client_secret,
                    redirect_uri: format!("{}/callback", args.public_url.trim_end_matches('/')),
                    scopes: vec!["profile".into(), "citizen_id".into()],
                }],
            };
            let running = lienthong_demo_portal::start_on(listener, config).await?;
            println!("Sample portal: http://{}/", running.addr);
            shutdown_signal().await;
            Ok(())
        }
        Command::CitizenId { .. } | Command::Keys { .. } | Command::Accounts { .. } => {
            unreachable!("handled in main")
        }
    }
}

fn check_citizen_id(number: &str, birthdate: Option<&str>) -> ExitCode {
    let invalid = |reason: String| {
        println!("{}", json!({ "valid": false, "reason": reason }));
        ExitCode::from(1)
    };
    let date = match birthdate
        .map(|b| time::Date::parse(b, time::macros::format_description!("[year]-[month]-[day]")))
    {
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return invalid(format!("--birthdate must be YYYY-MM-DD: {e}")),
        None => None,
    };
    let this_year = time::OffsetDateTime::from_unix_timestamp(
        lienthong_protocol::SystemClock.now_secs() as i64,
    )
    .map(|t| t.year())
    .unwrap_or(i32::MAX);
    match CitizenId::parse_checked(number.trim(), date, None)
        .and_then(|id| id.check_not_born_after(this_year).map(|()| id))
    {
        Ok(id) => {
            let p = id.province();
            let out = json!({
                "valid": true,
                "province": { "code": p.code, "name": p.name, "current_province": p.current_province, "merger_verified": p.merger_verified },
                "sex": id.sex(),
                "birth_century": id.birth_century(),
                "birth_year": id.birth_year(),
            });
            println!("{}", serde_json::to_string_pretty(&out).expect("JSON"));
            ExitCode::SUCCESS
        }
        Err(e) => invalid(e.to_string()),
    }
}

fn parse_alg(alg: &str) -> jsonwebtoken::Algorithm {
    match alg {
        "RS256" => jsonwebtoken::Algorithm::RS256,
        "EdDSA" => jsonwebtoken::Algorithm::EdDSA,
        _ => jsonwebtoken::Algorithm::ES256,
    }
}

/// `lienthong keys rotate`: the shared keys in the directory of `config`.
async fn rotate_keys(config: &std::path::Path, only: Option<&str>) -> anyhow::Result<()> {
    let config: lienthong_broker::Config = settings::load(config, "LIENTHONG")?;
    let sealing_key = config.store.sealing_key.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "keys rotate needs store.sealing_key: the keys it rolls are the shared ones in the directory"
        )
    })?;
    let sealer = lienthong_broker::store::Sealer::from_base64(sealing_key.expose())?;
    let directory = connect_directory(&config.directory.url).await?;
    let pem = |alg| match alg {
        jsonwebtoken::Algorithm::ES256 => config.keys.es256_pem.is_some(),
        jsonwebtoken::Algorithm::RS256 => config.keys.rs256_pem.is_some(),
        _ => config.keys.eddsa_pem.is_some(),
    };
    for alg in lienthong_broker::keys::ALGORITHMS {
        if only.is_some_and(|o| parse_alg(o) != alg) || (only.is_none() && pem(alg)) {
            continue;
        }
        let ring = lienthong_broker::keys::rotate(&directory, &sealer, alg).await?;
        for (slot, kid) in ring {
            println!("{alg:?} {slot:?}: {kid}");
        }
    }
    println!(
        "rotated; every node signs with the new current key within keys.reload_secs ({} s)",
        config.keys.reload_secs
    );
    Ok(())
}

fn generate_key(alg: &str) -> ExitCode {
    let alg = parse_alg(alg);
    match lienthong_protocol::SigningKey::generate(alg) {
        Ok(key) => {
            print!("{}", key.pkcs8_pem());
            eprintln!("kid: {}", key.kid());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lienthong: {e}");
            ExitCode::FAILURE
        }
    }
}
