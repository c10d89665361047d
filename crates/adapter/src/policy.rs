//! How a provincial system links national identities to its own accounts: one policy per
//! account realm, from the broker's configuration.

use serde::Deserialize;

/// One account realm: a provincial system (or several clients of one system).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealmConfig {
    pub id: String,
    pub policy: LinkPolicy,
    /// Where a citizen without a linked account should go (shown on the refusal page).
    pub office: Option<String>,
    /// Also match imported links keyed by the old 9-digit CMND number.
    #[serde(default)]
    pub match_legacy_cmnd: bool,
    /// What to do when a known ID number arrives under a new upstream subject.
    #[serde(default)]
    pub on_new_subject: NewSubjectRule,
    /// The system's lookup endpoint, for `policy = "lookup"`.
    pub lookup: Option<LookupConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkPolicy {
    /// Only citizens linked beforehand (import, admin API) get in.
    Linked,
    /// Ask the system's endpoint on first sign-in and keep its answer.
    Lookup,
    /// Create a stable new local id on first sign-in.
    Provision,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NewSubjectRule {
    /// Refuse and record the event; an operator re-links after checking (the default).
    #[default]
    Refuse,
    /// Move the realm's link to the new subject and record the event.
    Relink,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// HTTPS (plain HTTP only on loopback).
    pub url: String,
    /// Shared secret for the request signature.
    pub secret: lienthong_protocol::secret::Secret,
    #[serde(default = "default_lookup_timeout")]
    pub timeout_ms: u64,
}

fn default_lookup_timeout() -> u64 {
    2000
}

impl RealmConfig {
    /// A realm with no configuration of its own: provision.
    pub fn provision(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            policy: LinkPolicy::Provision,
            office: None,
            match_legacy_cmnd: false,
            on_new_subject: NewSubjectRule::Refuse,
            lookup: None,
        }
    }
}
