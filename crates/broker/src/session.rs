//! The SSO session: one per citizen's browser, shared by every provincial system.
//!
//! The browser holds a cookie `<sid>.<secret>`: the session's public id (the `sid` claim of its
//! ID tokens) and 32 random bytes. The Store holds the session under its `sid`, with the
//! secret's digest, and a TTL that is the idle limit, capped by the absolute limit counted from
//! sign-in: a cookie opens the session only with the secret, and a token, which carries the
//! `sid` alone, never reveals it. One key a session: a sign-out by `sid` (no cookie) and a
//! refresh reading the citizen's current identity find it directly, as the session's client
//! set beside it.
//!
//! Sessions of earlier releases — the cookie a secret alone, the session under its hash and an
//! index from `sid` to that key — are still read, until the last of them ends (one absolute
//! session lifetime after an upgrade). A cookie of this release shown to a node of an earlier
//! one during a rolling update is not found there: the citizen signs in upstream again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum_extra::extract::CookieJar;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use lienthong_protocol::secret::{constant_time_eq, random_token, sha256_b64url};
use serde::{Deserialize, Serialize};

use crate::identity::CitizenIdentity;
use crate::level::Level;
use crate::set_cookie::SetCookie;
use crate::state::Inner;
use crate::store::{Batch, Record, StoreError, keys};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SsoSession {
    /// The public session id, the `sid` claim.
    pub sid: String,
    pub identity: CitizenIdentity,
    pub level: Level,
    /// When the citizen last authenticated upstream (seconds since the epoch).
    pub auth_time: u64,
    pub amr: Vec<String>,
    pub created_at: u64,
    /// The SHA-256 of the secret in the browser's cookie; empty in a session of an earlier
    /// release, whose key is the cookie's hash.
    #[serde(default)]
    pub cookie: String,
    /// The upstream ID token, for ending the upstream session at logout, where it is not in
    /// the browser's cookie ([`Inner::keep_upstream_id_token`]): too long for one, or a session
    /// written by an earlier release.
    pub upstream_id_token: Option<String>,
}

impl Record for SsoSession {
    const KIND: &'static str = "SSO session";
    const VERSION: u8 = 2;
    const JSON_VERSION: Option<u8> = Some(1);
}

/// The sealed form of the upstream ID token in its cookie.
const UPSTREAM_TOKEN_VERSION: u8 = 1;
/// The longest cookie (name and value) kept: browsers keep 4,096 bytes, and drop a longer one
/// without a word.
const MAX_COOKIE: usize = 4000;

/// A session found from the browser's cookie, or opened by this request.
pub struct LiveSession {
    pub key: String,
    pub session: SsoSession,
    /// Opened by this request and not yet in any batch: see [`Inner::open_session`].
    unsaved: AtomicBool,
}

impl LiveSession {
    fn stored(key: String, session: SsoSession) -> Self {
        Self {
            key,
            session,
            unsaved: AtomicBool::new(false),
        }
    }
}

impl Inner {
    pub fn session_cookie_name(&self) -> &'static str {
        if self.secure_cookies {
            "__Host-lienthong"
        } else {
            "lienthong_sso"
        }
    }

    /// The cookie that ties a pending login to the browser that started it.
    pub fn login_cookie_name(&self, state: &str) -> String {
        let tag = &sha256_b64url(state)[..10];
        if self.secure_cookies {
            format!("__Host-lienthong_login_{tag}")
        } else {
            format!("lienthong_login_{tag}")
        }
    }

    /// A cookie of the broker's at `/`, kept for `max_age`.
    pub fn cookie(&self, name: &str, value: &str, max_age: Duration) -> SetCookie {
        SetCookie::new(name, value, "/", max_age, self.secure_cookies)
    }

    /// The removal of the cookie `name` set at `path` ([`SetCookie::removal`]).
    pub fn removal(&self, name: &str, path: &str) -> SetCookie {
        SetCookie::removal(name, path, self.secure_cookies)
    }

    fn session_ttl(&self, session: &SsoSession) -> Option<Duration> {
        let c = &self.config.sessions;
        let left = (session.created_at + c.absolute_secs).checked_sub(self.now())?;
        (left > 0).then(|| Duration::from_secs(left.min(c.idle_secs)))
    }

    /// The browser's live session, if any.
    pub async fn current_session(
        &self,
        jar: &CookieJar,
    ) -> Result<Option<LiveSession>, StoreError> {
        let Some(cookie) = jar.get(self.session_cookie_name()) else {
            return Ok(None);
        };
        let (key, digest) = match cookie.value().split_once('.') {
            Some((sid, secret)) => (keys::session(sid), Some(sha256_b64url(secret))),
            None => (keys::sso_session(cookie.value()), None),
        };
        let session: Option<SsoSession> = self.store.get(&key).await?;
        Ok(session
            .filter(|s| digest.is_none_or(|d| constant_time_eq(&d, &s.cookie)))
            .filter(|s| self.session_ttl(s).is_some())
            .map(|session| LiveSession::stored(key, session)))
    }

    /// Opens a session; returns it with the cookie to set. Nothing is written yet: the session
    /// goes to the Store with the login's next write — the pending consent, or the code — in
    /// the same round trip ([`Inner::save_session`]), and a login that ends before either (a
    /// system that turns the citizen away, a level too low, the directory down) writes it on its
    /// own ([`Inner::save_session_alone`]), so the citizen stays signed in for the other
    /// systems. The session is written once; what changes later (its clients, its idle
    /// deadline) changes without rewriting it.
    pub fn open_session(&self, mut session: SsoSession) -> (LiveSession, SetCookie) {
        let secret = random_token(32);
        session.cookie = sha256_b64url(&secret);
        let value = format!("{}.{secret}", session.sid);
        let live = LiveSession {
            key: keys::session(&session.sid),
            session,
            unsaved: AtomicBool::new(true),
        };
        let absolute = Duration::from_secs(self.config.sessions.absolute_secs);
        (
            live,
            self.cookie(self.session_cookie_name(), &value, absolute),
        )
    }

    fn upstream_token_cookie_name(&self) -> &'static str {
        // Not `__Host-`, which allows no path but `/`; sealed and bound to the session, so a
        // cookie planted by a sibling host does not open.
        if self.secure_cookies {
            "__Secure-lienthong_upstream"
        } else {
            "lienthong_upstream"
        }
    }

    /// Where the upstream ID token's cookie is sent: the sign-out endpoint alone, the one place
    /// it is read, so no other request of the browser carries it.
    fn upstream_token_path(&self) -> String {
        format!("{}/logout", self.issuer_path)
    }

    /// What the upstream ID token is sealed with: bound to the session it came with, so a
    /// cookie from another session, or another browser's, does not open.
    fn upstream_token_binding(session_key: &str) -> String {
        format!("upstream id token of {session_key}")
    }

    /// Keeps the upstream ID token of a session [`Inner::open_session`] opened, for
    /// `id_token_hint` at sign-out: sealed in a cookie sent to the sign-out endpoint alone, so
    /// the Store holds neither its bytes (most of a session record's) nor its personal data.
    /// A token too long for a cookie goes into the session record instead.
    pub fn keep_upstream_id_token(
        &self,
        live: &mut LiveSession,
        token: String,
    ) -> Option<SetCookie> {
        let sealed = self.store.sealer().seal(
            &Self::upstream_token_binding(&live.key),
            UPSTREAM_TOKEN_VERSION,
            token.as_bytes(),
        );
        let value = URL_SAFE_NO_PAD.encode(sealed);
        let name = self.upstream_token_cookie_name();
        if name.len() + 1 + value.len() > MAX_COOKIE {
            tracing::debug!(
                bytes = token.len(),
                "the upstream ID token is too long for a cookie: kept in the session record"
            );
            live.session.upstream_id_token = Some(token);
            return None;
        }
        let absolute = Duration::from_secs(self.config.sessions.absolute_secs);
        Some(SetCookie::new(
            name,
            &value,
            &self.upstream_token_path(),
            absolute,
            self.secure_cookies,
        ))
    }

    /// The upstream ID token kept for `live`: the session record's, or the one sealed in the
    /// browser's cookie for this session. A cookie that does not open (another session's,
    /// another sealing key's, altered) is no token.
    pub fn upstream_id_token(&self, jar: &CookieJar, live: &LiveSession) -> Option<String> {
        if let Some(token) = &live.session.upstream_id_token {
            return Some(token.clone());
        }
        let sealed = URL_SAFE_NO_PAD
            .decode(jar.get(self.upstream_token_cookie_name())?.value())
            .ok()?;
        let plain = self.store.sealer().open(
            &Self::upstream_token_binding(&live.key),
            UPSTREAM_TOKEN_VERSION,
            &sealed,
        )?;
        String::from_utf8(plain).ok()
    }

    /// The removal of the upstream ID token's cookie, for a sign-out.
    pub fn forget_upstream_id_token(&self) -> SetCookie {
        self.removal(
            self.upstream_token_cookie_name(),
            &self.upstream_token_path(),
        )
    }

    /// Adds a session [`Inner::open_session`] opened to `batch`, unless an earlier batch took it.
    /// Returns whether it did.
    pub fn save_session(&self, batch: &mut Batch<'_>, live: &LiveSession) -> bool {
        if !live.unsaved.swap(false, Ordering::AcqRel) {
            return false;
        }
        let ttl = self
            .session_ttl(&live.session)
            .unwrap_or(Duration::from_secs(1));
        batch.put(live.key.clone(), &live.session, ttl);
        self.metrics.session_opened();
        true
    }

    /// Writes a session [`Inner::open_session`] opened, if no step of the login has.
    pub async fn save_session_alone(&self, live: &LiveSession) -> Result<(), StoreError> {
        let mut batch = self.store.batch();
        if self.save_session(&mut batch, live) {
            self.store.write(batch).await?;
        }
        Ok(())
    }

    /// Adds to `batch` what a system's sign-in does to the session: `client_id` joins its
    /// clients — a set-add, not a rewrite of the session, so two logins at once to two systems
    /// (on two nodes) both end in the list that logout will use — and its idle clock restarts
    /// without the session being rewritten. Past the absolute limit there is nothing to restart:
    /// the stored expiry never runs beyond it. A session opened by this request is written here
    /// ([`Inner::save_session`]), its clock starting with it.
    pub fn join_session(&self, batch: &mut Batch<'_>, live: &LiveSession, client_id: &str) {
        let absolute = Duration::from_secs(self.config.sessions.absolute_secs);
        batch.set_add(
            keys::session_clients(&live.session.sid),
            client_id.to_owned(),
            absolute,
        );
        if !self.save_session(batch, live)
            && let Some(ttl) = self.session_ttl(&live.session)
        {
            batch.touch(live.key.clone(), ttl);
        }
    }

    /// The session with public id `sid` (a refresh reading the citizen's current identity;
    /// logout with an `id_token_hint` from a browser that lost its cookie).
    pub async fn session_by_sid(&self, sid: &str) -> Result<Option<LiveSession>, StoreError> {
        let key = keys::session(sid);
        let session: Option<SsoSession> = self.store.get(&key).await?;
        Ok(session.map(|session| LiveSession::stored(key, session)))
    }

    /// A session of an earlier release with public id `sid`, found through the index that
    /// release wrote beside it: for logout, which must end it. (A refresh does without: the
    /// family's record holds the citizen's identity.)
    pub async fn earlier_session_by_sid(
        &self,
        sid: &str,
    ) -> Result<Option<LiveSession>, StoreError> {
        let Some(key) = self.store.raw().get(&keys::session_by_sid(sid)).await? else {
            return Ok(None);
        };
        let Ok(key) = String::from_utf8(key) else {
            return Ok(None);
        };
        let session: Option<SsoSession> = self.store.get(&key).await?;
        Ok(session.map(|session| LiveSession::stored(key, session)))
    }

    /// The clients that took part in the session with `sid`.
    pub async fn session_clients(&self, sid: &str) -> Result<Vec<String>, StoreError> {
        self.store
            .raw()
            .set_members(&keys::session_clients(sid))
            .await
    }

    /// Ends a session: the record, and an earlier release's index beside it. (Its client list
    /// stays until it expires, for logout to read.)
    pub async fn end_session(&self, live: &LiveSession) -> Result<(), StoreError> {
        let mut batch = self.store.batch();
        batch.delete(live.key.clone());
        if live.key != keys::session(&live.session.sid) {
            batch.delete(keys::session_by_sid(&live.session.sid));
        }
        self.store.write(batch).await
    }
}

impl SsoSession {
    /// Whether the session can answer a request without a new upstream login, at `now`.
    pub fn satisfies(&self, minimum: Option<Level>, max_age: Option<u64>, now: u64) -> bool {
        minimum.is_none_or(|m| self.level >= m)
            && max_age.is_none_or(|m| now.saturating_sub(self.auth_time) <= m)
    }
}
