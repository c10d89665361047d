//! The citizen as the broker knows them after an upstream login, whatever the upstream's claim
//! names, and the one rule that decides which of their claims a downstream system receives.

use lienthong_citizen::{CitizenId, LegacyCmnd, Sex};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// One citizen's identity, mapped from the upstream's claims by the connector's claim mapping.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CitizenIdentity {
    /// The upstream issuer and its stable subject: the citizen's key, because the ID number
    /// itself can change.
    pub issuer: String,
    pub subject: String,
    pub citizen_id: Option<CitizenId>,
    pub legacy_id: Option<LegacyCmnd>,
    pub name: Option<String>,
    /// `YYYY-MM-DD`.
    pub birthdate: Option<String>,
    pub gender: Option<Sex>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
}

/// The scopes a client may ask for and the claims each one covers.
pub const SCOPE_CLAIMS: &[(&str, &[&str])] = &[
    (
        "profile",
        &["name", "family_name", "given_name", "birthdate", "gender"],
    ),
    ("citizen_id", &["citizen_id", "legacy_id_number"]),
    ("phone", &["phone_number"]),
    ("email", &["email"]),
    ("address", &["address"]),
];

/// The scope that asks for refresh tokens (OIDC Core §11).
pub const OFFLINE_ACCESS: &str = "offline_access";

pub fn supported_scopes() -> impl Iterator<Item = &'static str> {
    ["openid", OFFLINE_ACCESS]
        .into_iter()
        .chain(SCOPE_CLAIMS.iter().map(|(s, _)| *s))
}

pub fn supported_claims() -> impl Iterator<Item = &'static str> {
    SCOPE_CLAIMS.iter().flat_map(|(_, c)| c.iter().copied())
}

/// The claim-release rule, in one place: a claim goes to a client only when one of the granted
/// scopes covers it **and** the client's allow-list names it.
pub fn releasable<'a>(
    scopes: &'a [String],
    allow_list: &'a [String],
) -> impl Iterator<Item = &'static str> + 'a {
    SCOPE_CLAIMS
        .iter()
        .filter(|(scope, _)| scopes.iter().any(|s| s == scope))
        .flat_map(|(_, claims)| claims.iter().copied())
        .filter(|claim| allow_list.iter().any(|a| a == claim))
}

impl CitizenIdentity {
    fn claim(&self, name: &str) -> Option<Value> {
        let (family, given) = match self
            .name
            .as_deref()
            .map(|n| n.split_once(' ').unwrap_or(("", n)))
        {
            Some((f, g)) => (Some(f), Some(g)),
            None => (None, None),
        };
        match name {
            "name" => self.name.as_ref().map(|v| json!(v)),
            "family_name" => family.filter(|f| !f.is_empty()).map(|v| json!(v)),
            "given_name" => given.map(|v| json!(v)),
            "birthdate" => self.birthdate.as_ref().map(|v| json!(v)),
            "gender" => self.gender.map(|v| json!(v)),
            "citizen_id" => self.citizen_id.as_ref().map(|v| json!(v.as_str())),
            "legacy_id_number" => self.legacy_id.as_ref().map(|v| json!(v.as_str())),
            "phone_number" => self.phone.as_ref().map(|v| json!(v)),
            "email" => self.email.as_ref().map(|v| json!(v)),
            "address" => self.address.as_ref().map(|v| json!({ "formatted": v })),
            _ => None,
        }
    }

    /// The claims released to a client under [`releasable`].
    pub fn released_claims(&self, scopes: &[String], allow_list: &[String]) -> Map<String, Value> {
        releasable(scopes, allow_list)
            .filter_map(|c| Some((c.to_owned(), self.claim(c)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn citizen() -> CitizenIdentity {
        CitizenIdentity {
            issuer: "https://idp".into(),
            subject: "s".into(),
            citizen_id: Some(CitizenId::parse("001085004512").unwrap()),
            legacy_id: None,
            name: Some("Nguyễn Văn An".into()),
            birthdate: Some("1985-04-12".into()),
            gender: Some(Sex::Male),
            phone: None,
            email: None,
            address: Some("Hà Nội".into()),
        }
    }

    #[test]
    fn a_claim_needs_both_scope_and_allow_list() {
        let scopes = vec!["openid".to_owned(), "profile".to_owned()];
        let allow = vec![
            "name".to_owned(),
            "citizen_id".to_owned(),
            "address".to_owned(),
        ];
        let got = citizen().released_claims(&scopes, &allow);
        assert_eq!(got.keys().collect::<Vec<_>>(), ["name"]);
        let scopes = vec![
            "openid".to_owned(),
            "profile".to_owned(),
            "citizen_id".to_owned(),
            "address".to_owned(),
        ];
        let got = citizen().released_claims(&scopes, &allow);
        assert_eq!(got["citizen_id"], "001085004512");
        assert_eq!(got["address"]["formatted"], "Hà Nội");
        assert!(!got.contains_key("birthdate"), "not on the allow-list");
    }
}
