//! The claim mapping: the upstream's claim names — standard OIDC, the national portal
//! gateway's (`TechID`, `SoDinhDanh`, `HoVaTen`, ...), or whatever an agreement says — turned
//! into one [`CitizenIdentity`] and a [`Level`]. Pure: no I/O, every name from configuration.

use std::collections::BTreeMap;

use lienthong_citizen::{CitizenId, LegacyCmnd, Sex};
use serde_json::{Map, Value};

use crate::config::{ClaimMapping, ClaimPreset, UpstreamConfig};
use crate::identity::CitizenIdentity;
use crate::level::Level;

/// Why the upstream's claims give no usable citizen identity.
#[derive(Debug, thiserror::Error)]
pub enum UnusableIdentity {
    /// The answer does not fit the configuration: a claim is missing or malformed where the
    /// claim mapping says it is, or an `acr` is not in `acr_map`. The operator's to fix, not the
    /// citizen's: the login is refused (fail closed) and the log says what to change.
    #[error("claim {claim}: {problem} (configuration: {config_key})")]
    Misconfigured {
        claim: String,
        /// What arrived, described without personal data (never the number itself).
        problem: String,
        config_key: &'static str,
    },
    /// Well-formed but contradictory national data (an ID number whose birth year is not the
    /// birth date's): the citizen's record needs correcting at the source.
    #[error("{0}")]
    Inconsistent(String),
}

fn misconfigured(
    claim: &str,
    problem: impl Into<String>,
    config_key: &'static str,
) -> UnusableIdentity {
    UnusableIdentity::Misconfigured {
        claim: claim.to_owned(),
        problem: problem.into(),
        config_key,
    }
}

/// Resolved claim names (preset + overrides).
#[derive(Debug, Clone)]
struct ClaimNames {
    subject: String,
    citizen_id: String,
    legacy_id: String,
    name: String,
    birthdate: String,
    gender: String,
    phone: String,
    email: String,
    address: String,
    acr: String,
}

/// The mapping of one upstream, resolved once at start.
#[derive(Debug, Clone)]
pub struct ClaimMapper {
    issuer: String,
    names: ClaimNames,
    acr_map: BTreeMap<String, Level>,
}

impl ClaimMapper {
    pub fn new(config: &UpstreamConfig) -> Self {
        Self {
            issuer: config.issuer.clone(),
            names: resolve_names(&config.claims),
            acr_map: config.acr_map.clone(),
        }
    }

    /// Each mapped claim name with its configuration key and whether a login needs it.
    pub fn mapped(&self) -> Vec<(&'static str, &str, bool)> {
        let n = &self.names;
        vec![
            ("upstream.claims.subject", n.subject.as_str(), true),
            ("upstream.claims.citizen_id", n.citizen_id.as_str(), true),
            ("upstream.claims.acr", n.acr.as_str(), true),
            ("upstream.claims.legacy_id", n.legacy_id.as_str(), false),
            ("upstream.claims.name", n.name.as_str(), false),
            ("upstream.claims.birthdate", n.birthdate.as_str(), false),
            ("upstream.claims.gender", n.gender.as_str(), false),
            ("upstream.claims.phone", n.phone.as_str(), false),
            ("upstream.claims.email", n.email.as_str(), false),
            ("upstream.claims.address", n.address.as_str(), false),
        ]
    }

    /// Upstream claims (ID token and userinfo merged) -> [`CitizenIdentity`] and [`Level`].
    pub fn map(
        &self,
        claims: &Map<String, Value>,
        this_year: i32,
    ) -> Result<(CitizenIdentity, Level), UnusableIdentity> {
        let n = &self.names;
        let text = |name: &str| claims.get(name).and_then(text_value);
        let subject = text(&n.subject)
            .ok_or_else(|| misconfigured(&n.subject, "missing", "upstream.claims.subject"))?;
        let birthdate = text(&n.birthdate).and_then(|b| normalise_date(&b));
        let gender = text(&n.gender).and_then(|g| parse_sex(&g));
        // Every login needs a valid 12-digit number: without one no system can find the
        // citizen, and an empty number stored in the directory would be worse than no login.
        let raw = text(&n.citizen_id)
            .ok_or_else(|| misconfigured(&n.citizen_id, "missing", "upstream.claims.citizen_id"))?;
        let number = CitizenId::parse(raw.trim())
            .and_then(|n| n.check_not_born_after(this_year).map(|()| n))
            .map_err(|e| {
                misconfigured(&n.citizen_id, e.to_string(), "upstream.claims.citizen_id")
            })?;
        if let Some(date) = birthdate.as_deref().and_then(|d| {
            time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")).ok()
        }) {
            number
                .check_birthdate(date)
                .map_err(|e| UnusableIdentity::Inconsistent(format!("{}: {e}", n.citizen_id)))?;
        }
        let citizen_id = Some(number);
        // A malformed old CMND is refused like a malformed ID number: it would otherwise be
        // dropped without a word, and imported links keyed by it would never match.
        let legacy_id = text(&n.legacy_id)
            .map(|raw| {
                LegacyCmnd::parse(raw.trim()).map_err(|e| {
                    misconfigured(&n.legacy_id, e.to_string(), "upstream.claims.legacy_id")
                })
            })
            .transpose()?;
        let received: Vec<String> = claims
            .get(&n.acr)
            .into_iter()
            .flat_map(|v| match v {
                Value::Array(items) => items.iter().filter_map(text_value).collect::<Vec<_>>(),
                other => text_value(other).into_iter().collect(),
            })
            .collect();
        let level = received
            .iter()
            .filter_map(|acr| self.acr_map.get(acr).copied())
            .max()
            .ok_or_else(|| {
                let problem = if received.is_empty() {
                    "missing".to_owned()
                } else {
                    format!("{received:?} not in acr_map")
                };
                misconfigured(&n.acr, problem, "upstream.acr_map")
            })?;
        let identity = CitizenIdentity {
            issuer: self.issuer.clone(),
            subject,
            citizen_id,
            legacy_id,
            name: text(&n.name),
            birthdate,
            gender,
            phone: text(&n.phone),
            email: text(&n.email),
            address: text(&n.address),
        };
        Ok((identity, level))
    }
}

fn resolve_names(m: &ClaimMapping) -> ClaimNames {
    let preset: [&str; 10] = match m.preset {
        ClaimPreset::Standard => [
            "sub",
            "preferred_username",
            "legacy_id_number",
            "name",
            "birthdate",
            "gender",
            "phone_number",
            "email",
            "address",
            "acr",
        ],
        ClaimPreset::Vnconnect => [
            "TechID",
            "SoDinhDanh",
            "SoCMND",
            "HoVaTen",
            "NgayThangNamSinh",
            "GioiTinh",
            "SoDienThoai",
            "ThuDienTu",
            "DiaChi",
            "loAs",
        ],
    };
    let pick = |o: &Option<String>, i: usize| o.clone().unwrap_or_else(|| preset[i].to_owned());
    ClaimNames {
        subject: pick(&m.subject, 0),
        citizen_id: pick(&m.citizen_id, 1),
        legacy_id: pick(&m.legacy_id, 2),
        name: pick(&m.name, 3),
        birthdate: pick(&m.birthdate, 4),
        gender: pick(&m.gender, 5),
        phone: pick(&m.phone, 6),
        email: pick(&m.email, 7),
        address: pick(&m.address, 8),
        acr: pick(&m.acr, 9),
    }
}

/// A claim as text: strings as they are, numbers printed, an OIDC address by its `formatted`.
fn text_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(o) => o.get("formatted").and_then(text_value),
        _ => None,
    }
}

/// `YYYY-MM-DD`, `YYYYMMDD` (the national gateway) or `DD/MM/YYYY` -> `YYYY-MM-DD`.
fn normalise_date(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let (y, m, d) = if raw.len() == 8 && raw.bytes().all(|b| b.is_ascii_digit()) {
        (&raw[..4], &raw[4..6], &raw[6..])
    } else if let [d, m, y] = raw.split('/').collect::<Vec<_>>()[..] {
        (y, m, d)
    } else if let [y, m, d] = raw.split('-').collect::<Vec<_>>()[..] {
        (y, m, d)
    } else {
        return None;
    };
    let date = format!("{y:0>4}-{m:0>2}-{d:0>2}");
    time::Date::parse(
        &date,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()?;
    Some(date)
}

fn parse_sex(raw: &str) -> Option<Sex> {
    match raw.trim().to_lowercase().as_str() {
        "male" | "nam" | "m" => Some(Sex::Male),
        "female" | "nữ" | "nu" | "f" => Some(Sex::Female),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_every_upstream_shape() {
        assert_eq!(normalise_date("19850412").as_deref(), Some("1985-04-12"));
        assert_eq!(normalise_date("12/04/1985").as_deref(), Some("1985-04-12"));
        assert_eq!(normalise_date("1985-04-12").as_deref(), Some("1985-04-12"));
        assert_eq!(normalise_date("1985-02-30"), None);
        assert_eq!(normalise_date("soon"), None);
    }

    #[test]
    fn vietnamese_and_oidc_gender_values() {
        assert_eq!(parse_sex("Nữ"), Some(Sex::Female));
        assert_eq!(parse_sex("Nam"), Some(Sex::Male));
        assert_eq!(parse_sex("female"), Some(Sex::Female));
        assert_eq!(parse_sex("other"), None);
    }
}
