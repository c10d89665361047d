//! The test citizens and the claims each profile gives them.

use std::collections::HashMap;
use std::path::Path;

use lienthong_citizen::{CitizenId, Sex};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::config::ClaimProfile;

/// One fictitious citizen of the roster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Citizen {
    /// The IdP's stable subject for this citizen (what the real IdP calls `sub` / `TechID`).
    pub sub: String,
    pub citizen_id: CitizenId,
    /// Old 9-digit CMND, if the citizen had one.
    #[serde(default)]
    pub legacy_cmnd: Option<String>,
    pub full_name: String,
    /// `YYYY-MM-DD`.
    pub birthdate: String,
    pub sex: Sex,
    /// Account level under Decree 69/2024: 1 (self-registered) or 2 (issued in person).
    pub level: u8,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    #[error("cannot read the roster {0}: {1}")]
    Read(String, std::io::Error),
    #[error("invalid roster: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct RosterFile {
    citizens: Vec<Citizen>,
}

/// The citizens the IdP knows, by ID number.
#[derive(Debug, Clone)]
pub struct Roster {
    citizens: Vec<Citizen>,
    by_number: HashMap<String, usize>,
}

impl Roster {
    /// The shipped test citizens (`config/mock-idp/citizens.json`).
    pub fn builtin() -> Self {
        Self::from_json(include_str!("../../../config/mock-idp/citizens.json"))
            .expect("shipped roster is valid")
    }

    pub fn load(path: &Path) -> Result<Self, RosterError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RosterError::Read(path.display().to_string(), e))?;
        Self::from_json(&text)
    }

    /// Parses a roster and checks every entry: a valid number consistent with the birth date and
    /// sex, a level of 1 or 2, unique numbers and subjects.
    pub fn from_json(text: &str) -> Result<Self, RosterError> {
        let file: RosterFile =
            serde_json::from_str(text).map_err(|e| RosterError::Invalid(e.to_string()))?;
        let mut by_number = HashMap::new();
        let mut subjects = std::collections::HashSet::new();
        for (i, c) in file.citizens.iter().enumerate() {
            let date = time::Date::parse(
                &c.birthdate,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .map_err(|e| RosterError::Invalid(format!("{}: birthdate: {e}", c.sub)))?;
            CitizenId::parse_checked(c.citizen_id.as_str(), Some(date), Some(c.sex))
                .map_err(|e| RosterError::Invalid(format!("{}: {e}", c.sub)))?;
            if !(1..=2).contains(&c.level) {
                return Err(RosterError::Invalid(format!(
                    "{}: level must be 1 or 2",
                    c.sub
                )));
            }
            if by_number
                .insert(c.citizen_id.as_str().to_owned(), i)
                .is_some()
                || !subjects.insert(&c.sub)
            {
                return Err(RosterError::Invalid(format!(
                    "{}: duplicate number or subject",
                    c.sub
                )));
            }
        }
        Ok(Self {
            citizens: file.citizens,
            by_number,
        })
    }

    pub fn citizens(&self) -> &[Citizen] {
        &self.citizens
    }

    /// The roster citizen with this number, or, for any other valid number, a synthetic level-1
    /// citizen so that integrators can try numbers of their own.
    pub fn find_or_synthesise(&self, number: &CitizenId) -> Citizen {
        if let Some(&i) = self.by_number.get(number.as_str()) {
            return self.citizens[i].clone();
        }
        let digest = Sha256::digest(number.as_str().as_bytes());
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        Citizen {
            sub: format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..32]
            ),
            citizen_id: number.clone(),
            legacy_cmnd: None,
            full_name: "Công Dân Thử Nghiệm".into(),
            birthdate: format!("{}-01-01", number.birth_year()),
            sex: number.sex(),
            level: 1,
            phone: None,
            email: None,
            address: None,
        }
    }
}

impl Citizen {
    /// The `acr` value the profile uses for this citizen's account level.
    pub fn acr(&self, profile: ClaimProfile) -> String {
        match profile {
            ClaimProfile::Standard => self.level.to_string(),
            ClaimProfile::Vnconnect => format!("LoA{}", self.level),
        }
    }

    /// The identity claims (beyond `iss`, `aud`, ...) under the profile's names.
    pub fn claims(&self, profile: ClaimProfile) -> Map<String, Value> {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_owned(), v);
            }
        };
        let s = |v: &Option<String>| v.as_ref().map(|s| json!(s));
        match profile {
            ClaimProfile::Standard => {
                let (family, given) = split_name(&self.full_name);
                put("sub", Some(json!(self.sub)));
                put("preferred_username", Some(json!(self.citizen_id.as_str())));
                put("name", Some(json!(self.full_name)));
                put("family_name", Some(json!(family)));
                put("given_name", Some(json!(given)));
                put("birthdate", Some(json!(self.birthdate)));
                put("gender", Some(json!(self.sex)));
                put("phone_number", s(&self.phone));
                put("email", s(&self.email));
                put(
                    "address",
                    self.address.as_ref().map(|a| json!({ "formatted": a })),
                );
                put("legacy_id_number", s(&self.legacy_cmnd));
            }
            ClaimProfile::Vnconnect => {
                put("sub", Some(json!(self.sub)));
                put("TechID", Some(json!(self.sub)));
                put("LoaiTaiKhoan", Some(json!(1)));
                put("HoVaTen", Some(json!(self.full_name)));
                put("SoDinhDanh", Some(json!(self.citizen_id.as_str())));
                put("SoCMND", s(&self.legacy_cmnd));
                put(
                    "GioiTinh",
                    Some(json!(if self.sex == Sex::Male { "Nam" } else { "Nữ" })),
                );
                put(
                    "NgayThangNamSinh",
                    Some(json!(self.birthdate.replace('-', ""))),
                );
                put("DiaChi", s(&self.address));
                put("SoDienThoai", s(&self.phone));
                put("ThuDienTu", s(&self.email));
                put("loAs", Some(json!(self.acr(ClaimProfile::Vnconnect))));
            }
        }
        m
    }
}

/// Vietnamese names are family name first: "Nguyễn Thị Lan" -> ("Nguyễn", "Thị Lan").
fn split_name(full: &str) -> (&str, &str) {
    full.split_once(' ').unwrap_or(("", full))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_roster_is_varied() {
        let r = Roster::builtin();
        let c = r.citizens();
        assert!(c.len() >= 20);
        assert!(c.iter().any(|c| c.level == 1) && c.iter().any(|c| c.level == 2));
        assert!(c.iter().any(|c| c.citizen_id.birth_century() == 1900));
        assert!(c.iter().any(|c| c.citizen_id.birth_century() == 2000));
        assert!(
            c.iter().any(|c| c.citizen_id.birth_year() >= 2012),
            "a minor"
        );
        assert!(c.iter().any(|c| c.citizen_id.province_code() == "002"));
        assert!(
            c.iter()
                .any(|c| c.legacy_cmnd.as_deref().is_some_and(|n| n.len() == 9))
        );
        let provinces: std::collections::HashSet<_> =
            c.iter().map(|c| c.citizen_id.province_code()).collect();
        assert!(provinces.len() >= 8);
    }

    #[test]
    fn profiles_use_their_own_names() {
        let roster = Roster::builtin();
        let c = &roster.citizens()[0];
        let std = c.claims(ClaimProfile::Standard);
        assert_eq!(std["preferred_username"], c.citizen_id.as_str());
        assert_eq!(std["name"], c.full_name.as_str());
        let vn = c.claims(ClaimProfile::Vnconnect);
        assert_eq!(vn["SoDinhDanh"], c.citizen_id.as_str());
        assert_eq!(vn["NgayThangNamSinh"], c.birthdate.replace('-', ""));
        assert_eq!(c.acr(ClaimProfile::Vnconnect), format!("LoA{}", c.level));
    }

    #[test]
    fn unknown_valid_numbers_get_a_synthetic_citizen() {
        let n = CitizenId::parse("036199000123").unwrap();
        let c = Roster::builtin().find_or_synthesise(&n);
        assert_eq!((c.level, c.birthdate.as_str()), (1, "1999-01-01"));
        assert_eq!(c.sub, Roster::builtin().find_or_synthesise(&n).sub);
    }
}
