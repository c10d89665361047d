//! `lienthong bench`: a load driver for a running broker and mock IdP (docs/performance.md).
//!
//! Workloads: `login` — complete brokered logins exactly as a citizen's browser and a provincial
//! system would perform them (authorize, the mock IdP's form, callback, consent, token,
//! userinfo), a cookie jar per simulated citizen and a different citizen per login; `sso` — a
//! signed-in citizen's next login (authorize answered from the SSO session, token), no trip to
//! the IdP; `refresh` — refresh-token rotations; `userinfo` and `introspect` — one request each.
//!
//! Per workload it reports operations per second, latency percentiles, errors by kind, and, for
//! the processes named by `--broker-pid` / `--idp-pid`, the CPU seconds and peak resident memory
//! they used over the run, read from `/proc` — so "broker CPU per login" is measured, not
//! estimated — beside the cryptographic floor of one login measured in the same run with the
//! same libraries; with `--store-pid` / `--directory-pid`, Redis's and PostgreSQL's CPU too;
//! how busy the whole machine was over the run, and what its hypervisor took (steal); and the
//! ceiling: the rate the machine's cores could bear at the parties' CPU per operation together.
//! Bounded in count and time; meant for loopback only.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum_extra::extract::cookie::Cookie;
use reqwest::header::LOCATION;
use tokio::sync::Mutex;
use url::Url;

mod in_process;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The broker's issuer URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    issuer: String,
    /// Start a mock IdP and a broker inside this process first (the bench's configuration, the
    /// memory Store, a SQLite directory in a temporary folder, free loopback ports) and drive
    /// those: nothing else to start. Their CPU is told apart by their threads. The broker
    /// reads `LIENTHONG__...` variables as `serve` does: `LIENTHONG__STORE__URL` and
    /// `LIENTHONG__DIRECTORY__URL` put it on Redis and PostgreSQL.
    #[arg(long, conflicts_with_all = ["issuer", "client_id", "client_secret", "redirect_uri",
        "password", "otp", "broker_pid", "idp_pid"])]
    in_process: bool,
    #[arg(long, default_value = "bench-portal")]
    client_id: String,
    #[arg(long, default_value = "bench-secret")]
    client_secret: String,
    #[arg(long, default_value = "http://127.0.0.1:8082/callback")]
    redirect_uri: String,
    #[arg(long, default_value = "openid profile citizen_id offline_access")]
    scope: String,
    /// login, sso, refresh, userinfo, introspect, all (those five in that order), or a
    /// comma-separated list of them: `login,login` measures first sign-ins, then the same
    /// citizens returning.
    #[arg(long, default_value = "login")]
    workload: String,
    /// The mock IdP's test password and OTP.
    #[arg(long, default_value = "matkhau-thu")]
    password: String,
    #[arg(long, default_value = "123456")]
    otp: String,
    /// Operations (logins, requests) to perform at most, per workload.
    #[arg(long, default_value_t = 1000)]
    logins: usize,
    /// Operations in flight at once (at most, with `--rate`).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Start operations at this many per second (an open loop: each has its start time,
    /// whether or not the ones before it have finished), instead of each as soon as one ends.
    /// Latency then counts from the scheduled start, so a queue behind a slow broker shows in it.
    #[arg(long, value_parser = positive_rate)]
    rate: Option<f64>,
    /// Stop after this many seconds even if fewer logins were done.
    #[arg(long, default_value_t = 120)]
    duration_secs: u64,
    /// First of the distinct synthetic citizens (their numbers are 001085xxxxxx from here on).
    /// A second run from the same citizen measures returning citizens, whose consent and
    /// account link exist; a new offset measures first sign-ins again.
    #[arg(long, default_value_t = 0)]
    first_citizen: usize,
    /// The broker process, for its CPU time and peak memory.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// The mock IdP process, likewise.
    #[arg(long)]
    idp_pid: Option<u32>,
    /// The Store's server (Redis), for the CPU it spends on the run: a login's cost to the
    /// machine is not the broker's alone.
    #[arg(long)]
    store_pid: Option<u32>,
    /// The directory's server (PostgreSQL's postmaster): its CPU and its children's, the
    /// backends that run the broker's statements.
    #[arg(long)]
    directory_pid: Option<u32>,
}

fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err("a number of operations per second above 0".into()),
    }
}

/// CPU time as `/proc` counts it, in clock ticks: in the program's own code (user) and in the
/// kernel on its behalf (system: its system calls, the network stack's work for its sockets,
/// its page faults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Ticks {
    user: u64,
    system: u64,
}

impl Ticks {
    fn secs(self) -> f64 {
        (self.user + self.system) as f64 / USER_HZ
    }

    /// The kernel's part of the time, in percent; `None` where no time was counted.
    fn kernel_percent(self) -> Option<f64> {
        let total = self.user + self.system;
        (total > 0).then(|| self.system as f64 * 100.0 / total as f64)
    }
}

impl std::ops::Add for Ticks {
    type Output = Ticks;
    fn add(self, other: Ticks) -> Ticks {
        Ticks {
            user: self.user + other.user,
            system: self.system + other.system,
        }
    }
}

/// What was spent between two readings. A thread that ended between them takes its time with
/// it: nothing falls below zero.
impl std::ops::Sub for Ticks {
    type Output = Ticks;
    fn sub(self, earlier: Ticks) -> Ticks {
        Ticks {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

impl std::iter::Sum for Ticks {
    fn sum<I: Iterator<Item = Ticks>>(iter: I) -> Ticks {
        iter.fold(Ticks::default(), |a, b| a + b)
    }
}

/// CPU ticks of a process and of its children: the live ones, read from their own `stat`, and
/// the ended ones it has waited for (`cutime` and `cstime`, fields 16 and 17 of its `stat`), so
/// a backend that ends during a run still counts.
fn tree_ticks(pid: u32) -> anyhow::Result<Ticks> {
    let stat = read_stat(pid)?;
    let rest = split_stat(&stat)?.1;
    let waited = Ticks {
        user: stat_field(rest, 16)?,
        system: stat_field(rest, 17)?,
    };
    let children: Ticks = children(pid)?.into_iter().map(|(_, t)| t).sum();
    Ok(cpu_ticks(rest)? + waited + children)
}

/// The name (as `/proc` shows it, cut to 15 bytes) of the thread sqlx runs a SQLite connection
/// on, `sqlx-sqlite-worker-N`: a broker whose directory is SQLite has one.
const SQLITE_THREADS: &[&str] = &["sqlx-sqlite-wor"];
/// The report's name for them: a part of the broker's CPU, not a party beside it.
const SQLITE_PARTY: &str = "broker's SQLite thread";

/// The CPU ticks spent so far by each live thread of `pid` (this process when `None`) whose name
/// starts with one of `prefixes`.
fn threads_ticks(pid: Option<u32>, prefixes: &[&str]) -> anyhow::Result<Vec<Ticks>> {
    let tasks = match pid {
        Some(pid) => format!("/proc/{pid}/task"),
        None => "/proc/self/task".to_owned(),
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&tasks).with_context(|| format!("cannot list {tasks}"))? {
        // A thread that ended since the listing has no stat to read: its time is not counted.
        let Ok(stat) = std::fs::read_to_string(entry?.path().join("stat")) else {
            continue;
        };
        let (name, rest) = split_stat(&stat)?;
        if prefixes.iter().any(|p| name.starts_with(p)) {
            found.push(cpu_ticks(rest)?);
        }
    }
    Ok(found)
}

/// CPU ticks spent so far by those threads together ([`threads_ticks`]).
fn threads_cpu(pid: Option<u32>, prefixes: &[&str]) -> anyhow::Result<Ticks> {
    Ok(threads_ticks(pid, prefixes)?.into_iter().sum())
}

/// The live children of a process, with the CPU ticks each has spent.
fn children(pid: u32) -> anyhow::Result<Vec<(u32, Ticks)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(child) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A process that ended since the listing has no stat to read: its parent's wait counts
        // it, once the parent has waited.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let rest = split_stat(&stat)?.1;
        if stat_field(rest, 4)? == u64::from(pid) {
            found.push((child, cpu_ticks(rest)?));
        }
    }
    Ok(found)
}

/// CPU ticks and peak RSS of a process, from /proc.
#[derive(Debug, Clone, Copy)]
struct ProcessUsage {
    cpu: Ticks,
    peak_rss_kib: u64,
}

/// /proc reports clock ticks of USER_HZ, which is 100 on every Linux architecture we run on.
const USER_HZ: f64 = 100.0;

/// A /proc `stat` line's command (or thread) name, and the fields after it.
fn split_stat(stat: &str) -> anyhow::Result<(&str, &str)> {
    // The name may contain spaces and parentheses: it runs from the first "(" to the last ")".
    let (open, close) = stat
        .find('(')
        .zip(stat.rfind(')'))
        .filter(|(open, close)| open < close)
        .context("malformed /proc stat")?;
    let rest = stat.get(close + 2..).context("malformed /proc stat")?;
    Ok((&stat[open + 1..close], rest))
}

/// A numeric field of a /proc `stat` line by its number in proc(5) (the pid is 1, the name 2),
/// given the fields after the name.
fn stat_field(after_name: &str, number: usize) -> anyhow::Result<u64> {
    let field = after_name
        .split(' ')
        .nth(number - 3)
        .context("short /proc stat")?;
    Ok(field.parse()?)
}

/// utime and stime of a /proc `stat` line (fields 14 and 15), given the fields after the name.
fn cpu_ticks(after_name: &str) -> anyhow::Result<Ticks> {
    Ok(Ticks {
        user: stat_field(after_name, 14)?,
        system: stat_field(after_name, 15)?,
    })
}

fn read_stat(pid: u32) -> anyhow::Result<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("no process {pid}"))
}

fn usage(pid: u32) -> anyhow::Result<ProcessUsage> {
    let stat = read_stat(pid)?;
    let cpu = cpu_ticks(split_stat(&stat)?.1)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let peak_rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    Ok(ProcessUsage { cpu, peak_rss_kib })
}

/// The whole machine's CPU time over all its CPUs, as the first line of `/proc/stat` counts it,
/// in ticks: what every process on it spent (busy), what no one did (idle, counting time waiting
/// for a disk), and what the hypervisor gave to others while this machine had work (steal). A
/// run's CPU per operation is only comparable with another's where the machine let it work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MachineTicks {
    cpus: usize,
    busy: u64,
    idle: u64,
    steal: u64,
}

impl MachineTicks {
    fn read() -> anyhow::Result<MachineTicks> {
        Self::parse(&std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?)
    }

    fn parse(stat: &str) -> anyhow::Result<MachineTicks> {
        let line = stat
            .lines()
            .find_map(|l| l.strip_prefix("cpu "))
            .context("no cpu line in /proc/stat")?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .context("malformed cpu line in /proc/stat")?;
        // user nice system idle iowait irq softirq steal; a guest's time, after them, is
        // counted in user's already.
        let [user, nice, system, idle, iowait, irq, softirq, steal, ..] = fields[..] else {
            bail!("short cpu line in /proc/stat");
        };
        let cpus = stat
            .lines()
            .filter(|l| {
                l.strip_prefix("cpu")
                    .is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit()))
            })
            .count();
        Ok(MachineTicks {
            cpus,
            busy: user + nice + system + irq + softirq,
            idle: idle + iowait,
            steal,
        })
    }

    /// The busy and stolen shares of the time between `earlier` and this reading, in percent;
    /// `None` where no time passed.
    fn shares_since(self, earlier: MachineTicks) -> Option<(f64, f64)> {
        let busy = self.busy.saturating_sub(earlier.busy);
        let steal = self.steal.saturating_sub(earlier.steal);
        let total = busy + steal + self.idle.saturating_sub(earlier.idle);
        (total > 0).then(|| {
            let percent = |t: u64| t as f64 * 100.0 / total as f64;
            (percent(busy), percent(steal))
        })
    }
}

/// Whose CPU a run reports: a process named by its pid, or, when the broker and mock IdP run in
/// this process (`--in-process`), a part of it told apart by its threads' names.
#[derive(Debug, Clone, Copy)]
enum Party {
    Process(u32),
    /// A server that works in child processes (PostgreSQL's backends), counted with them.
    ProcessTree(u32),
    /// Threads of a process (this one when `None`) told apart by how their names start.
    Threads(Option<u32>, &'static [&'static str]),
    /// This process but for the threads of the parties started in it: the driver.
    RestOfThisProcess,
}

impl Party {
    fn cpu(self) -> anyhow::Result<Ticks> {
        match self {
            Party::Process(pid) => Ok(usage(pid)?.cpu),
            Party::ProcessTree(pid) => tree_ticks(pid),
            Party::Threads(pid, names) => threads_cpu(pid, names),
            Party::RestOfThisProcess => Ok(usage(std::process::id())?.cpu
                - threads_cpu(
                    None,
                    &[in_process::BROKER_THREADS, in_process::IDP_THREADS].concat(),
                )?),
        }
    }

    /// The process the party is or runs in: `None` for this one.
    fn process(self) -> Option<u32> {
        match self {
            Party::Process(pid) | Party::ProcessTree(pid) => Some(pid),
            Party::Threads(pid, _) => pid,
            Party::RestOfThisProcess => None,
        }
    }

    /// How the report names it, after the party's name.
    fn described(self) -> String {
        match self {
            Party::Process(pid) => format!("pid {pid}"),
            Party::ProcessTree(pid) => format!("pid {pid} and its children"),
            Party::Threads(pid, names) => format!(
                "threads {}* of {}",
                names.join("*, "),
                pid.map_or("this process".to_owned(), |pid| format!("pid {pid}"))
            ),
            Party::RestOfThisProcess => "the rest of this process".into(),
        }
    }
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

/// The provincial system's own HTTP client: one for the run, connections kept open, as a
/// portal's back end keeps them.
fn portal() -> &'static reqwest::Client {
    static PORTAL: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    PORTAL.get_or_init(reqwest::Client::new)
}

fn browser() -> Result<Browser, &'static str> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|_| "client")?;
    Ok(Browser {
        http,
        cookies: std::sync::Mutex::new(Vec::new()),
    })
}

/// A simulated citizen's browser: a connection of its own, no redirect followed, and the
/// cookies the broker and the mock IdP set, sent back as a browser sends them (RFC 6265): by
/// host and path, the ports of one host sharing them (§8.5), a cookie set again replaced, one
/// set to expire dropped. Kept here rather than by reqwest, whose cookie layer, once compiled in,
/// parses every request's URL in the broker's upstream client too.
struct Browser {
    http: reqwest::Client,
    cookies: std::sync::Mutex<Vec<Kept>>,
}

/// A cookie the browser keeps.
struct Kept {
    host: String,
    path: String,
    name: String,
    value: String,
}

impl Browser {
    async fn get(&self, url: &str) -> Result<reqwest::Response, &'static str> {
        self.send(self.http.get(url), url).await
    }

    async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<reqwest::Response, &'static str> {
        self.send(self.http.post(url).form(form), url).await
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, &'static str> {
        let url = Url::parse(url).map_err(|_| "url")?;
        let (host, path) = (url.host_str().unwrap_or_default(), url.path());
        let header = {
            let cookies = self.cookies.lock().map_err(|_| "cookies")?;
            let sent: Vec<String> = cookies
                .iter()
                .filter(|c| c.host == host && path_matches(path, &c.path))
                .map(|c| format!("{}={}", c.name, c.value))
                .collect();
            sent.join("; ")
        };
        let request = if header.is_empty() {
            request
        } else {
            request.header(reqwest::header::COOKIE, header)
        };
        let response = request.send().await.map_err(|_| "connection")?;
        let mut cookies = self.cookies.lock().map_err(|_| "cookies")?;
        for line in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let Some((name, value, at, gone)) =
                line.to_str().ok().and_then(|l| set_cookie(l, path))
            else {
                continue;
            };
            cookies.retain(|c| !(c.host == host && c.name == name && c.path == at));
            if !gone {
                cookies.push(Kept {
                    host: host.to_owned(),
                    path: at,
                    name,
                    value,
                });
            }
        }
        Ok(response)
    }
}

/// A `Set-Cookie` line, read by the cookie crate: its name, value, path (RFC 6265 §5.1.4's
/// default from `request_path` where none is given) and whether it removes the cookie (a
/// `Max-Age` of zero).
fn set_cookie(line: &str, request_path: &str) -> Option<(String, String, String, bool)> {
    let cookie = Cookie::parse(line).ok()?;
    let path = match cookie.path() {
        Some(path) if path.starts_with('/') => path.to_owned(),
        _ => match request_path.rfind('/') {
            Some(0) | None => "/".to_owned(),
            Some(i) => request_path[..i].to_owned(),
        },
    };
    let gone = cookie.max_age().is_some_and(|age| age.is_zero());
    Some((
        cookie.name().to_owned(),
        cookie.value().to_owned(),
        path,
        gone,
    ))
}

/// RFC 6265 §5.1.4: whether a cookie set for `cookie_path` goes with a request for `path`.
fn path_matches(path: &str, cookie_path: &str) -> bool {
    path == cookie_path
        || (path.starts_with(cookie_path)
            && (cookie_path.ends_with('/') || path[cookie_path.len()..].starts_with('/')))
}

/// PKCE pair and the authorization URL for one login.
fn authorization(args: &BenchArgs) -> Result<(String, Url), &'static str> {
    let verifier = lienthong_protocol::secret::random_token(32);
    // S256: the challenge is the verifier's SHA-256, base64url.
    let challenge = lienthong_protocol::secret::sha256_b64url(&verifier);
    let mut url = Url::parse(&format!("{}/authorize", args.issuer)).map_err(|_| "issuer")?;
    url.query_pairs_mut()
        .append_pair("client_id", &args.client_id)
        .append_pair("redirect_uri", &args.redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", &args.scope)
        .append_pair("state", &lienthong_protocol::secret::random_token(16))
        .append_pair("nonce", &lienthong_protocol::secret::random_token(16))
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    Ok((verifier, url))
}

async fn token_request(
    args: &BenchArgs,
    form: &[(&str, &str)],
    what: &'static str,
) -> Result<serde_json::Value, &'static str> {
    portal()
        .post(format!("{}/token", args.issuer))
        .basic_auth(&args.client_id, Some(&args.client_secret))
        .form(form)
        .send()
        .await
        .map_err(|_| "connection")?
        .error_for_status()
        .map_err(|_| what)?
        .json()
        .await
        .map_err(|_| "token body")
}

async fn redeem(
    args: &BenchArgs,
    code: &str,
    verifier: &str,
) -> Result<serde_json::Value, &'static str> {
    token_request(
        args,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &args.redirect_uri),
            ("code_verifier", verifier),
        ],
        "token",
    )
    .await
}

async fn userinfo(args: &BenchArgs, access: &str) -> Result<(), &'static str> {
    portal()
        .get(format!("{}/userinfo", args.issuer))
        .bearer_auth(access)
        .send()
        .await
        .map_err(|_| "connection")?
        .error_for_status()
        .map_err(|_| "userinfo")
        .map(|_| ())
}

/// What one complete login gave.
struct SignedIn {
    /// The token response.
    tokens: serde_json::Value,
    /// Whether the broker asked for consent: the citizen's first sign-in to the system (or
    /// their consent had lapsed), which also creates their account link.
    consent_asked: bool,
}

/// A complete login in `browser` — authorize, the IdP's form, callback, consent, token,
/// userinfo. The error names the step that failed.
async fn login(
    args: &BenchArgs,
    browser: &Browser,
    number: &str,
) -> Result<SignedIn, &'static str> {
    let (verifier, url) = authorization(args)?;
    let send_err = |_| "connection";
    let r = browser.get(url.as_str()).await?;
    let to_idp = location(&r).map_err(|_| "authorize")?;
    let form = browser.get(&to_idp).await?;
    let html = form.text().await.map_err(send_err)?;
    let flow = hidden_field(&html, "flow").ok_or("idp form")?;
    let form_url = to_idp.split('?').next().unwrap_or_default().to_owned();
    let r = browser
        .post_form(
            &form_url,
            &[
                ("flow", flow.as_str()),
                ("typed_number", number),
                ("password", &args.password),
                ("otp", &args.otp),
                ("action", "login"),
            ],
        )
        .await?;
    let callback = location(&r).map_err(|_| "idp login")?;
    let mut r = browser.get(&callback).await?;
    let consent_asked = r.status() == reqwest::StatusCode::OK;
    if consent_asked {
        let html = r.text().await.map_err(send_err)?;
        let consent_id = hidden_field(&html, "consent_id").ok_or("consent page")?;
        r = browser
            .post_form(
                &format!("{}/consent", args.issuer),
                &[("consent_id", consent_id.as_str()), ("decision", "allow")],
            )
            .await?;
    }
    let at_client = location(&r).map_err(|_| "callback")?;
    let code = query_value(&at_client, "code").ok_or("no code")?;
    let tokens = redeem(args, &code, &verifier).await?;
    userinfo(
        args,
        tokens["access_token"].as_str().ok_or("no access token")?,
    )
    .await?;
    Ok(SignedIn {
        tokens,
        consent_asked,
    })
}

/// An SSO login: the session answers authorize (no trip to the IdP), the code is redeemed.
async fn sso_login(args: &BenchArgs, browser: &Browser) -> Result<(), &'static str> {
    let (verifier, url) = authorization(args)?;
    let r = browser.get(url.as_str()).await?;
    let at_client = location(&r).map_err(|_| "authorize")?;
    let code = query_value(&at_client, "code").ok_or("sso gave no code")?;
    redeem(args, &code, &verifier).await.map(|_| ())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// What one workload's run gave.
struct Outcome {
    latencies: Vec<Duration>,
    errors: BTreeMap<&'static str, usize>,
    wall: Duration,
}

/// Runs `op(i)` for i in 0..count with `concurrency` in flight (each started at its time, with
/// `--rate`), until done or the deadline.
async fn drive<F, Fut>(args: &BenchArgs, label: &str, op: F) -> Outcome
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), &'static str>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new((
        Vec::new(),
        BTreeMap::<&'static str, usize>::new(),
    )));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_secs);
    let (total, rate) = (args.logins, args.rate);
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (op, next, done, results) =
                (op.clone(), next.clone(), done.clone(), results.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let scheduled = rate.map(|r| started + Duration::from_secs_f64(i as f64 / r));
                    if i >= total || scheduled.unwrap_or_else(Instant::now) >= deadline {
                        break;
                    }
                    let t = match scheduled {
                        Some(at) => {
                            tokio::time::sleep_until(at.into()).await;
                            at
                        }
                        None => Instant::now(),
                    };
                    let outcome = op(i).await;
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
        let (done, label) = (done.clone(), label.to_owned());
        tokio::spawn(async move {
            use std::io::IsTerminal;
            if !std::io::stderr().is_terminal() {
                return;
            }
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                eprint!("\r{label}: {} / {total}", done.load(Ordering::Relaxed));
                let _ = std::io::stderr().flush();
            }
        })
    };
    for w in workers {
        let _ = w.await;
    }
    progress.abort();
    let wall = started.elapsed();
    let (mut latencies, errors) = std::mem::take(&mut *results.lock().await);
    latencies.sort();
    Outcome {
        latencies,
        errors,
        wall,
    }
}

/// Prints one workload's figures, with the processes' CPU and memory over the run.
fn report(
    args: &BenchArgs,
    label: &str,
    (unit, one): (&str, &str),
    outcome: &Outcome,
    before: &[(&str, Party, Ticks)],
    machine_before: MachineTicks,
) -> anyhow::Result<()> {
    let ok = outcome.latencies.len();
    let failed: usize = outcome.errors.values().sum();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("workload: {label}");
    println!(
        "  {unit}: {ok} ok, {failed} failed, in {:.2} s, concurrency {}",
        outcome.wall.as_secs_f64(),
        args.concurrency
    );
    let rate = ok as f64 / outcome.wall.as_secs_f64();
    println!("  rate: {rate:.1} {unit}/s");
    if let Some(offered) = args.rate {
        println!("  offered: {offered:.1} {unit}/s (latency from each one's scheduled start)");
    }
    let done = ok + failed;
    if done < args.logins {
        // Said plainly: a run cut short holds fewer sessions than asked for, and its memory
        // figures measure that many.
        println!(
            "  stopped by --duration-secs {} before --logins {}: {done} done",
            args.duration_secs, args.logins
        );
    }
    let l = &outcome.latencies;
    println!(
        "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        ms(percentile(l, 0.5)),
        ms(percentile(l, 0.9)),
        ms(percentile(l, 0.99)),
        ms(l.last().copied().unwrap_or_default())
    );
    for (kind, n) in &outcome.errors {
        println!("  error {kind}: {n}");
    }
    let mb = |kib: u64| kib as f64 / 1024.0;
    // The parties' CPU per operation together, the broker's SQLite thread counted once, in the
    // broker's.
    let mut together = 0.0;
    for (name, party, start) in before {
        let spent = party.cpu()? - *start;
        let cpu = spent.secs();
        let per_one = if ok > 0 {
            cpu * 1000.0 / ok as f64
        } else {
            0.0
        };
        // How much of it the kernel spent on the party's behalf: on loopback, each request's
        // system calls, the TCP stack's work on both ends and the thread wake-ups around them.
        let kernel = spent
            .kernel_percent()
            .map(|k| format!(", {k:.0} % in the kernel"))
            .unwrap_or_default();
        let peak = match party {
            Party::Process(pid) => format!(", peak RSS {:.1} MB", mb(usage(*pid)?.peak_rss_kib)),
            _ => String::new(),
        };
        println!(
            "  {name} ({}): {cpu:.2} CPU s, {per_one:.3} ms CPU per {one}{kernel}{peak}",
            party.described()
        );
        if *name != SQLITE_PARTY {
            together += per_one;
        }
    }
    // Everything the machine did over the run, the parties' work and anything else's: how near
    // the run came to using every core, and how much the host took from it.
    let cpus = machine_before.cpus;
    match MachineTicks::read()?.shares_since(machine_before) {
        Some((busy, steal)) => println!(
            "  machine ({cpus} CPUs): {busy:.0} % busy, {steal:.1} % taken by the host (steal)"
        ),
        None => println!("  machine ({cpus} CPUs): the run was shorter than a tick of /proc/stat"),
    }
    // On cores the parties share, what they spend together on one operation bounds the rate:
    // how near the run came to it tells a target out of the machine's reach from one the run
    // fell short of (docs/performance.md).
    match ceiling(cpus, together) {
        Some(most) => println!(
            "  ceiling ({cpus} CPUs): {together:.3} ms of CPU per {one} by the parties above, at \
             most {most:.0} {unit}/s with every core theirs; this run {:.0} % of it",
            rate / most * 100.0
        ),
        None => println!(
            "  ceiling ({cpus} CPUs): the parties' CPU over the run was under a tick of /proc"
        ),
    }
    if args.in_process {
        // One process, one resident size: the parties' memory cannot be told apart.
        println!(
            "  this process (driver, broker and mock IdP): peak RSS {:.1} MB",
            mb(usage(std::process::id())?.peak_rss_kib)
        );
    }
    Ok(())
}

/// The most operations per second `cpus` cores can do at `ms_per_op` milliseconds of CPU each;
/// `None` when nothing was measured.
fn ceiling(cpus: usize, ms_per_op: f64) -> Option<f64> {
    (ms_per_op > 0.0).then(|| cpus as f64 * 1000.0 / ms_per_op)
}

/// The cryptography of one brokered login, measured here with the broker's own libraries:
/// verify the upstream RS256 ID token, sign the ES256 ID and access tokens, verify the access
/// token at userinfo. Milliseconds per login.
fn crypto_floor() -> anyhow::Result<f64> {
    use jsonwebtoken::Algorithm;
    use lienthong_protocol::{Expected, KeySet, PublicKeys};
    let upstream = KeySet::generate(&[Algorithm::RS256])?;
    // The IdP's published keys, parsed once as the broker does at discovery.
    let published = PublicKeys::new(&upstream.jwks());
    let ours = KeySet::generate(&[Algorithm::ES256])?;
    let claims = serde_json::json!({"iss": "x", "sub": "s", "aud": "a", "exp": 4102444800u64});
    let id_upstream = upstream.sign(Algorithm::RS256, "JWT", &claims)?;
    let expected = Expected {
        issuer: "x",
        audience: Some("a"),
        typ: Some("at+jwt"),
    };
    let rounds = 2000;
    let started = Instant::now();
    for _ in 0..rounds {
        published.verify(&[Algorithm::RS256], &id_upstream)?;
        ours.sign(Algorithm::ES256, "JWT", &claims)?;
        let at = ours.sign(Algorithm::ES256, "at+jwt", &claims)?;
        ours.verify::<serde_json::Value>(&at, &expected)?;
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0 / rounds as f64)
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 || args.logins == 0 {
        bail!("--logins and --concurrency must be at least 1");
    }
    const ALL: [&str; 5] = ["login", "sso", "refresh", "userinfo", "introspect"];
    let mut workloads: Vec<&'static str> = Vec::new();
    for name in args.workload.split(',').map(str::trim) {
        match ALL.iter().find(|w| **w == name) {
            Some(w) => workloads.push(w),
            None if name == "all" => workloads.extend(ALL),
            None => bail!(
                "--workload {name:?}: login, sso, refresh, userinfo, introspect, all, or a \
                 comma-separated list of them"
            ),
        }
    }
    let mut args = args;
    // `in_process` is kept until the end of the run: dropping it stops the broker and the mock
    // IdP.
    let (in_process, mut parties): (_, Vec<(&str, Party)>) = if args.in_process {
        let started = in_process::start().await?;
        args.issuer = started.issuer.clone();
        let parties = vec![
            ("broker", Party::Threads(None, in_process::BROKER_THREADS)),
            ("mock IdP", Party::Threads(None, in_process::IDP_THREADS)),
            ("bench driver", Party::RestOfThisProcess),
        ];
        (Some(started), parties)
    } else {
        let parties = [
            ("broker", args.broker_pid),
            ("mock IdP", args.idp_pid),
            ("bench driver", Some(std::process::id())),
        ]
        .into_iter()
        .filter_map(|(name, pid)| pid.map(|p| (name, Party::Process(p))))
        .collect();
        (None, parties)
    };
    // Of the broker's CPU, what its SQLite thread spent, where its directory is SQLite: the
    // directory's share of a login (docs/performance.md weighs its levers by it), on the line
    // after the broker's, in the broker's process.
    if let Some(at) = parties.iter().position(|(name, _)| *name == "broker") {
        let process = parties[at].1.process();
        if !threads_ticks(process, SQLITE_THREADS)?.is_empty() {
            let sqlite = Party::Threads(process, SQLITE_THREADS);
            parties.insert(at + 1, (SQLITE_PARTY, sqlite));
        }
    }
    // The servers are processes of their own whether or not the broker is.
    parties.extend(
        [
            ("Redis", args.store_pid.map(Party::Process)),
            ("PostgreSQL", args.directory_pid.map(Party::ProcessTree)),
        ]
        .into_iter()
        .filter_map(|(name, party)| party.map(|p| (name, p))),
    );
    let args = Arc::new(args);
    let floor = crypto_floor()?;
    println!("crypto floor (same libraries, this machine): {floor:.3} ms CPU per login");
    for workload in workloads {
        // Setup (not measured): the citizens, sessions and tokens a workload starts from.
        let setup = match workload {
            "login" => Vec::new(),
            _ => {
                let n = args.concurrency.max(8);
                let mut v = Vec::new();
                for i in 0..n {
                    let b = browser().map_err(|e| anyhow::anyhow!(e))?;
                    let number = citizen_number(args.first_citizen + 500_000 + i);
                    let signed_in = login(&args, &b, &number)
                        .await
                        .map_err(|e| anyhow::anyhow!("setup login failed at {e}"))?;
                    v.push((b, signed_in.tokens));
                }
                v
            }
        };
        // The driver's own CPU too: on a machine it shares with the broker, the three
        // processes' costs together set the ceiling on the rate.
        let before: Vec<_> = parties
            .iter()
            .map(|&(name, party)| party.cpu().map(|cpu| (name, party, cpu)))
            .collect::<Result<_, _>>()?;
        let machine = MachineTicks::read()?;
        let setup = Arc::new(setup);
        let a = args.clone();
        let consents = Arc::new(AtomicUsize::new(0));
        let asked = consents.clone();
        let (label, unit, outcome) = match workload {
            "login" => (
                "complete brokered login (authorize, IdP form, callback, consent, token, userinfo)",
                ("logins", "login"),
                drive(&args, workload, move |i| {
                    let (a, asked) = (a.clone(), asked.clone());
                    async move {
                        let number = citizen_number(a.first_citizen + i);
                        let signed_in = login(&a, &browser()?, &number).await?;
                        if signed_in.consent_asked {
                            asked.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(())
                    }
                })
                .await,
            ),
            "sso" => (
                "SSO login, no trip to the IdP (authorize from the session, token)",
                ("logins", "login"),
                drive(&args, workload, move |i| {
                    let (a, s) = (a.clone(), setup.clone());
                    async move { sso_login(&a, &s[i % s.len()].0).await }
                })
                .await,
            ),
            "refresh" => {
                // Each simulated system holds its latest refresh token and rotates it.
                let holders: Arc<Vec<Mutex<String>>> = Arc::new(
                    setup
                        .iter()
                        .map(|(_, t)| Mutex::new(t["refresh_token"].as_str().unwrap_or("").into()))
                        .collect(),
                );
                (
                    "refresh-token rotation (grant_type=refresh_token)",
                    ("refreshes", "refresh"),
                    drive(&args, workload, move |i| {
                        let (a, h) = (a.clone(), holders.clone());
                        async move {
                            let mut current = h[i % h.len()].lock().await;
                            let t = token_request(
                                &a,
                                &[("grant_type", "refresh_token"), ("refresh_token", &current)],
                                "refresh",
                            )
                            .await?;
                            *current = t["refresh_token"]
                                .as_str()
                                .ok_or("no refresh token")?
                                .into();
                            Ok(())
                        }
                    })
                    .await,
                )
            }
            "userinfo" => (
                "userinfo (GET with a bearer token)",
                ("requests", "request"),
                drive(&args, workload, move |i| {
                    let (a, s) = (a.clone(), setup.clone());
                    async move {
                        let t = &s[i % s.len()].1;
                        userinfo(&a, t["access_token"].as_str().ok_or("no access token")?).await
                    }
                })
                .await,
            ),
            _ => (
                "introspection (POST /introspect of an access token)",
                ("requests", "request"),
                drive(&args, workload, move |i| {
                    let (a, s) = (a.clone(), setup.clone());
                    async move {
                        let t = &s[i % s.len()].1;
                        let answer: serde_json::Value = portal()
                            .post(format!("{}/introspect", a.issuer))
                            .basic_auth(&a.client_id, Some(&a.client_secret))
                            .form(&[("token", t["access_token"].as_str().unwrap_or(""))])
                            .send()
                            .await
                            .map_err(|_| "connection")?
                            .json()
                            .await
                            .map_err(|_| "introspect body")?;
                        if answer["active"] == true {
                            Ok(())
                        } else {
                            Err("inactive")
                        }
                    }
                })
                .await,
            ),
        };
        report(&args, label, unit, &outcome, &before, machine)?;
        if workload == "login" {
            // A first sign-in (consent asked, account linked) costs more than a returning
            // citizen's: the figures above are for this mix.
            println!(
                "  consent asked (first sign-in to the system): {} of {} logins",
                consents.load(Ordering::Relaxed),
                outcome.latencies.len()
            );
        }
    }
    // The in-process broker and mock IdP stop here, and their temporary directory goes.
    drop(in_process);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn the_browser_reads_set_cookie_lines_and_sends_them_by_path() {
        let line =
            "__Host-lienthong=sid.secret; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=1800";
        assert_eq!(
            set_cookie(line, "/callback"),
            Some((
                "__Host-lienthong".into(),
                "sid.secret".into(),
                "/".into(),
                false
            ))
        );
        let removal = concat!(
            "lienthong_upstream=; HttpOnly; Path=/b/logout; Max-Age=0; ",
            "Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        );
        assert_eq!(
            set_cookie(removal, "/b/logout"),
            Some((
                "lienthong_upstream".into(),
                String::new(),
                "/b/logout".into(),
                true
            ))
        );
        // No Path: the request path's directory (RFC 6265 §5.1.4).
        assert_eq!(
            set_cookie("a=b", "/realms/citizen/login").unwrap().2,
            "/realms/citizen"
        );
        assert_eq!(set_cookie("a=b", "/login").unwrap().2, "/");
        assert_eq!(set_cookie("no value", "/"), None);

        assert!(path_matches("/b/logout", "/b/logout"));
        assert!(path_matches("/b/logout/x", "/b/logout"));
        assert!(path_matches("/anything", "/"));
        assert!(!path_matches("/b/logoutx", "/b/logout"));
        assert!(!path_matches("/callback", "/b/logout"));
    }

    /// Polls `condition` every 20 ms for up to 20 s.
    fn eventually(mut condition: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if condition() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// PostgreSQL's work is its backends': a server counted with its children counts a child's
    /// CPU while the child runs, and still counts it once the child has ended and been waited for.
    #[test]
    fn a_process_tree_counts_its_children_live_and_ended() {
        let mut server = Command::new("sh")
            .args(["-c", "sh -c 'while :; do :; done' & wait; sleep 60"])
            .spawn()
            .unwrap();
        let pid = server.id();
        let own = || usage(pid).unwrap().cpu.secs();
        let tree = || tree_ticks(pid).unwrap().secs();
        let live = eventually(|| tree() >= 0.2);
        let busy = children(pid).unwrap();
        let busy_child = busy
            .iter()
            .find(|(_, ticks)| ticks.secs() > 0.0)
            .map(|(c, _)| *c);
        let counted_live = tree();
        let own_secs = own();
        if let Some(child) = busy_child {
            Command::new("kill")
                .arg(child.to_string())
                .status()
                .unwrap();
        }
        // The shell waits for the child it started, then sleeps: the child's time moves to the
        // shell's count of waited-for children.
        let ended = eventually(|| {
            children(pid)
                .unwrap()
                .iter()
                .all(|(c, _)| Some(*c) != busy_child)
        });
        let counted_ended = tree();
        let _ = server.kill();
        let _ = server.wait();
        assert!(
            live,
            "a busy child's CPU counted while it runs: {counted_live}"
        );
        assert!(
            own_secs < counted_live / 2.0,
            "the shell itself is idle: {own_secs} of {counted_live}"
        );
        assert!(
            busy_child.is_some() && ended,
            "the busy child was found and ended"
        );
        assert!(
            counted_ended >= counted_live,
            "an ended child still counts: {counted_ended} after {counted_live}"
        );
    }

    /// A process's CPU is told apart into its own code's time and the kernel's: a shell looping
    /// on a builtin spends it in user space, `dd` reading zeroes a megabyte at a time in the
    /// kernel, which fills its buffer with them (copying a byte at a time, `dd` spent half of
    /// its CPU in its own code on the twelfth session's EPYC).
    #[test]
    fn cpu_is_told_apart_into_user_and_kernel_time() {
        let mut user_bound = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let mut kernel_bound = Command::new("dd")
            .args(["if=/dev/zero", "of=/dev/null", "bs=1M"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let cpu = |child: &std::process::Child| usage(child.id()).unwrap().cpu;
        let busy =
            eventually(|| cpu(&user_bound).secs() >= 0.5 && cpu(&kernel_bound).secs() >= 0.5);
        let (user, kernel) = (cpu(&user_bound), cpu(&kernel_bound));
        for child in [&mut user_bound, &mut kernel_bound] {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(busy, "both worked: {user:?} {kernel:?}");
        let share = |t: Ticks| t.kernel_percent().unwrap();
        assert!(share(user) < 25.0, "a loop in the shell: {user:?}");
        assert!(
            share(kernel) > 50.0,
            "zeroes written by the kernel: {kernel:?}"
        );
        // What was spent between two readings, each part on its own.
        let later = Ticks {
            user: user.user + 7,
            system: user.system + 3,
        };
        assert_eq!(later - user, Ticks { user: 7, system: 3 });
        assert_eq!(Ticks::default().kernel_percent(), None);
    }

    #[test]
    fn the_machine_is_read_as_busy_idle_and_stolen_time() {
        let stat = |cpu: &str| {
            format!("{cpu}\ncpu0 1 2 3 4 5 6 7 8 0 0\ncpu1 1 2 3 4 5 6 7 8 0 0\nintr 12345 0\n")
        };
        // user nice system idle iowait irq softirq steal guest guest_nice
        let before = MachineTicks::parse(&stat("cpu  100 5 50 1000 20 3 7 11 9 0")).unwrap();
        assert_eq!(
            before,
            MachineTicks {
                cpus: 2,
                busy: 165,
                idle: 1020,
                steal: 11
            }
        );
        let after = MachineTicks::parse(&stat("cpu  180 5 70 1250 70 3 7 111 9 0")).unwrap();
        assert_eq!(after.shares_since(before), Some((20.0, 20.0)));
        assert_eq!(before.shares_since(before), None);
        assert!(MachineTicks::parse(&stat("cpu  100 5 50 1000 20 3 7")).is_err());
        assert!(MachineTicks::parse("intr 1\n").is_err());

        // This machine, read live: a thread spinning for half a second is busy time.
        let start = MachineTicks::read().unwrap();
        assert!(start.cpus >= 1, "{start:?}");
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(500) {
            std::hint::black_box(0);
        }
        let end = MachineTicks::read().unwrap();
        assert!(end.busy >= start.busy + 30, "{start:?} {end:?}");
        let (busy, steal) = end.shares_since(start).unwrap();
        assert!(busy > 0.0 && busy <= 100.0 && (0.0..=100.0).contains(&steal));
    }
}
