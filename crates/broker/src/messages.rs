//! What the broker tells citizens: every [`Problem`] a page can show, and its text in the
//! message catalogue (`messages.toml`, Vietnamese first, English second).

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

/// Every message a citizen can be shown; each is a key of `messages.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    UnknownClient,
    InvalidRequest,
    LoginExpired,
    UpstreamUnavailable,
    UpstreamRejected,
    IdentityUnusable,
    ConsentExpired,
    TemporarilyUnavailable,
    NotLinked,
    RelinkRequired,
    SystemUnavailable,
    ServiceMisconfigured,
    TooManyRequests,
}

impl Problem {
    pub const ALL: [Problem; 13] = [
        Self::UnknownClient,
        Self::InvalidRequest,
        Self::LoginExpired,
        Self::UpstreamUnavailable,
        Self::UpstreamRejected,
        Self::IdentityUnusable,
        Self::ConsentExpired,
        Self::TemporarilyUnavailable,
        Self::NotLinked,
        Self::RelinkRequired,
        Self::SystemUnavailable,
        Self::ServiceMisconfigured,
        Self::TooManyRequests,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Self::UnknownClient => "unknown_client",
            Self::InvalidRequest => "invalid_request",
            Self::LoginExpired => "login_expired",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamRejected => "upstream_rejected",
            Self::IdentityUnusable => "identity_unusable",
            Self::ConsentExpired => "consent_expired",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::NotLinked => "not_linked",
            Self::RelinkRequired => "relink_required",
            Self::SystemUnavailable => "system_unavailable",
            Self::ServiceMisconfigured => "service_misconfigured",
            Self::TooManyRequests => "too_many_requests",
        }
    }

    pub fn message(self) -> &'static Message {
        CATALOGUE
            .get(self.key())
            .expect("every Problem is in messages.toml (tested)")
    }
}

/// One catalogue entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub title_vi: String,
    pub vi: String,
    pub title_en: String,
    pub en: String,
}

static CATALOGUE: LazyLock<HashMap<String, Message>> = LazyLock::new(|| {
    toml::from_str(include_str!("../messages.toml")).expect("messages.toml parses (tested)")
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_and_problems_match_and_have_diacritics() {
        for p in Problem::ALL {
            let m = p.message();
            assert!(!m.vi.is_empty() && !m.en.is_empty(), "{}", p.key());
            assert!(
                !m.vi.is_ascii(),
                "{}: Vietnamese text must carry diacritics",
                p.key()
            );
        }
        assert_eq!(
            CATALOGUE.len(),
            Problem::ALL.len(),
            "no unused catalogue entries"
        );
    }
}
