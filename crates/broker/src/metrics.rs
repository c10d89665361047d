//! `/metrics`: what an operator watches, in the Prometheus text format.
//!
//! - `lienthong_logins_total{outcome, level}`: every browser step that ends a login — `success`
//!   when a code goes back to the system (with the level obtained), otherwise the page or the
//!   error the citizen or the system got (`login_expired`, `access_denied`, ...);
//! - `lienthong_http_request_duration_seconds{endpoint}`: a latency histogram per endpoint;
//! - `lienthong_store_errors_total`, `lienthong_upstream_errors_total`;
//! - `lienthong_sessions_opened_total`.
//!
//! Counts are this node's; Prometheus adds the nodes up. No label carries personal data. The
//! endpoint and the timing middleware are in `ops`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    logins: Mutex<BTreeMap<(String, String), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    pub(crate) store_errors: std::sync::Arc<AtomicU64>,
    upstream_errors: AtomicU64,
    sessions_opened: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    /// A login step ended: `outcome` is `success` or the refusal's name; `level` when known.
    pub fn login(&self, outcome: &str, level: Option<u8>) {
        let level = level.map(|l| l.to_string()).unwrap_or_default();
        *lock(&self.logins)
            .entry((outcome.to_owned(), level))
            .or_default() += 1;
    }

    pub fn upstream_error(&self) {
        self.upstream_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn session_opened(&self) {
        self.sessions_opened.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe(&self, endpoint: &str, took: Duration) {
        let secs = took.as_secs_f64();
        let mut all = lock(&self.latency);
        // The name is allocated once per endpoint, not once per request.
        if !all.contains_key(endpoint) {
            all.insert(endpoint.to_owned(), Histogram::default());
        }
        let h = all.get_mut(endpoint).expect("inserted above");
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP lienthong_logins_total Login steps that ended, by outcome and level.\n",
        );
        out.push_str("# TYPE lienthong_logins_total counter\n");
        for ((outcome, level), n) in lock(&self.logins).iter() {
            let _ = writeln!(
                out,
                "lienthong_logins_total{{outcome=\"{outcome}\",level=\"{level}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP lienthong_http_request_duration_seconds Time to answer, by endpoint.\n",
        );
        out.push_str("# TYPE lienthong_http_request_duration_seconds histogram\n");
        for (endpoint, h) in lock(&self.latency).iter() {
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "lienthong_http_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "lienthong_http_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "lienthong_http_request_duration_seconds_sum{{endpoint=\"{endpoint}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "lienthong_http_request_duration_seconds_count{{endpoint=\"{endpoint}\"}} {}",
                h.count
            );
        }
        for (name, help, value) in [
            (
                "lienthong_store_errors_total",
                "Store operations that failed.",
                self.store_errors.load(Ordering::Relaxed),
            ),
            (
                "lienthong_upstream_errors_total",
                "Calls to the national IdP that failed or were refused.",
                self.upstream_errors.load(Ordering::Relaxed),
            ),
            (
                "lienthong_sessions_opened_total",
                "SSO sessions opened.",
                self.sessions_opened.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        out
    }
}
