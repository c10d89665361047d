//! `lienthong bench`: a load driver that performs complete brokered logins exactly as a citizen's
//! browser and a provincial system would — authorize, the mock IdP's form, callback, consent,
//! token, userinfo — with a cookie jar per simulated citizen and a different citizen per login.
//!
//! It reports logins per second, latency percentiles, errors by kind, and, for the processes
//! named by `--broker-pid` / `--idp-pid`, the CPU seconds and peak resident memory they used
//! over the run, read from `/proc`: so "broker CPU per login" is measured, not estimated.
//! Bounded in count and time; meant for loopback only.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::header::LOCATION;
use tokio::sync::Mutex;
use url::Url;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The broker's issuer URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    issuer: String,
    #[arg(long, default_value = "cong-dich-vu-cong")]
    client_id: String,
    #[arg(long, default_value = "change-me")]
    client_secret: String,
    #[arg(
        long,
        default_value = "https://dichvucong.example.gov.vn/oidc/callback"
    )]
    redirect_uri: String,
    #[arg(long, default_value = "openid profile citizen_id")]
    scope: String,
    /// The mock IdP's test password and OTP.
    #[arg(long, default_value = "matkhau-thu")]
    password: String,
    #[arg(long, default_value = "123456")]
    otp: String,
    /// Complete logins to perform at most.
    #[arg(long, default_value_t = 1000)]
    logins: usize,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Stop after this many seconds even if fewer logins were done.
    #[arg(long, default_value_t = 120)]
    duration_secs: u64,
    /// First of the distinct synthetic citizens (their numbers are 001085xxxxxx from here on).
    #[arg(long, default_value_t = 0)]
    first_citizen: usize,
    /// The broker process, for its CPU time and peak memory.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// The mock IdP process, likewise.
    #[arg(long)]
    idp_pid: Option<u32>,
}

/// CPU seconds (user + system) and peak RSS of a process, from /proc.
#[derive(Debug, Clone, Copy)]
struct ProcessUsage {
    cpu_secs: f64,
    peak_rss_kib: u64,
}

fn usage(pid: u32) -> anyhow::Result<ProcessUsage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("no process {pid}"))?;
    // Fields after the command name (which may contain spaces) start at ") ".
    let rest = &stat[stat.rfind(')').context("malformed /proc stat")? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // /proc reports clock ticks of USER_HZ, which is 100 on every Linux architecture we run on.
    let hz = 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let peak_rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    Ok(ProcessUsage {
        cpu_secs: ticks as f64 / hz,
        peak_rss_kib,
    })
}

/// One synthetic citizen's 12-digit number: Hà Nội (001), male born 1985, serial `n`.
fn citizen_number(n: usize) -> String {
    format!("001085{:06}", n % 1_000_000)
}

fn location(r: &reqwest::Response) -> Result<String, &'static str> {
    if !r.status().is_redirection() {
        return Err("expected a redirect");
    }
    r.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or("redirect without Location")
}

fn hidden_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    Some(html[start..start + html[start..].find('"')?].to_owned())
}

fn query_value(url: &str, key: &str) -> Option<String> {
    Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// One complete login as browser + portal; the error names the step that failed.
async fn one_login(args: &BenchArgs, number: &str) -> Result<(), &'static str> {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|_| "client")?;
    let verifier = lienthong_protocol::secret::random_token(32);
    // S256: the challenge is the verifier's SHA-256, base64url.
    let challenge = lienthong_protocol::secret::sha256_b64url(&verifier);
    let state = lienthong_protocol::secret::random_token(16);
    let mut url = Url::parse(&format!("{}/authorize", args.issuer)).map_err(|_| "issuer")?;
    url.query_pairs_mut()
        .append_pair("client_id", &args.client_id)
        .append_pair("redirect_uri", &args.redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", &args.scope)
        .append_pair("state", &state)
        .append_pair("nonce", &lienthong_protocol::secret::random_token(16))
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let send_err = |_| "connection";
    let r = browser.get(url).send().await.map_err(send_err)?;
    let to_idp = location(&r).map_err(|_| "authorize")?;
    let form = browser.get(&to_idp).send().await.map_err(send_err)?;
    let html = form.text().await.map_err(send_err)?;
    let flow = hidden_field(&html, "flow").ok_or("idp form")?;
    let form_url = to_idp.split('?').next().unwrap_or_default().to_owned();
    let r = browser
        .post(&form_url)
        .form(&[
            ("flow", flow.as_str()),
            ("typed_number", number),
            ("password", &args.password),
            ("otp", &args.otp),
            ("action", "login"),
        ])
        .send()
        .await
        .map_err(send_err)?;
    let callback = location(&r).map_err(|_| "idp login")?;
    let mut r = browser.get(&callback).send().await.map_err(send_err)?;
    if r.status() == reqwest::StatusCode::OK {
        let html = r.text().await.map_err(send_err)?;
        let consent_id = hidden_field(&html, "consent_id").ok_or("consent page")?;
        r = browser
            .post(format!("{}/consent", args.issuer))
            .form(&[("consent_id", consent_id.as_str()), ("decision", "allow")])
            .send()
            .await
            .map_err(send_err)?;
    }
    let at_client = location(&r).map_err(|_| "callback")?;
    let code = query_value(&at_client, "code").ok_or("no code")?;
    let portal = reqwest::Client::new();
    let tokens: serde_json::Value = portal
        .post(format!("{}/token", args.issuer))
        .basic_auth(&args.client_id, Some(&args.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", &args.redirect_uri),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .map_err(send_err)?
        .error_for_status()
        .map_err(|_| "token")?
        .json()
        .await
        .map_err(|_| "token body")?;
    let access = tokens["access_token"].as_str().ok_or("no access token")?;
    portal
        .get(format!("{}/userinfo", args.issuer))
        .bearer_auth(access)
        .send()
        .await
        .map_err(send_err)?
        .error_for_status()
        .map_err(|_| "userinfo")?;
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 || args.logins == 0 {
        bail!("--logins and --concurrency must be at least 1");
    }
    let args = Arc::new(args);
    let before: Vec<_> = [("broker", args.broker_pid), ("mock IdP", args.idp_pid)]
        .into_iter()
        .filter_map(|(name, pid)| pid.map(|p| (name, p)))
        .map(|(name, p)| usage(p).map(|u| (name, p, u)))
        .collect::<Result<_, _>>()?;
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new((Vec::new(), BTreeMap::<&str, usize>::new())));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_secs);
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (args, next, done, results) =
                (args.clone(), next.clone(), done.clone(), results.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= args.logins || Instant::now() >= deadline {
                        break;
                    }
                    let number = citizen_number(args.first_citizen + i);
                    let t = Instant::now();
                    let outcome = one_login(&args, &number).await;
                    let elapsed = t.elapsed();
                    let mut r = results.lock().await;
                    match outcome {
                        Ok(()) => r.0.push(elapsed),
                        Err(kind) => *r.1.entry(kind).or_default() += 1,
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let progress = {
        let (done, total) = (done.clone(), args.logins);
        tokio::spawn(async move {
            use std::io::IsTerminal;
            if !std::io::stderr().is_terminal() {
                return;
            }
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                eprint!("\r{} / {total} logins", done.load(Ordering::Relaxed));
                let _ = std::io::stderr().flush();
            }
        })
    };
    for w in workers {
        w.await?;
    }
    progress.abort();
    let wall = started.elapsed();
    let (mut latencies, errors) = std::mem::take(&mut *results.lock().await);
    latencies.sort();
    let ok = latencies.len();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "workload: complete brokered login (authorize, IdP form, callback, consent, token, userinfo)"
    );
    println!(
        "logins: {ok} ok, {} failed, in {:.2} s, concurrency {}",
        errors.values().sum::<usize>(),
        wall.as_secs_f64(),
        args.concurrency
    );
    println!("rate: {:.1} logins/s", ok as f64 / wall.as_secs_f64());
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.9)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    for (kind, n) in &errors {
        println!("error {kind}: {n}");
    }
    for (name, pid, start) in before {
        let end = usage(pid)?;
        let cpu = end.cpu_secs - start.cpu_secs;
        println!(
            "{name} (pid {pid}): {cpu:.2} CPU s, {:.3} ms CPU per login, peak RSS {:.1} MB",
            if ok > 0 {
                cpu * 1000.0 / ok as f64
            } else {
                0.0
            },
            end.peak_rss_kib as f64 / 1024.0
        );
    }
    Ok(())
}
