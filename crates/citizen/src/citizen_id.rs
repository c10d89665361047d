//! The 12-digit personal ID number (số định danh cá nhân), `PPP G YY RRRRRR`.
//!
//! - `PPP`: birth-registration province (see [`crate::province`]);
//! - `G`: century and sex, 0/1 male/female born 1900–1999, 2/3 in 2000–2099, and so on up to 8/9
//!   for the 2300s;
//! - `YY`: the last two digits of the birth year;
//! - `RRRRRR`: random. **There is no checksum**; nothing here invents one.
//!
//! A [`CitizenId`] can only be obtained by parsing, so holding one means the number is well
//! formed. Its `Display` and `Debug` forms are masked, so logging one never leaks the number;
//! [`CitizenId::as_str`] gives the full number where it is really needed.

use std::fmt;

use time::Date;

use crate::province::{self, Province};

/// Sex as the number encodes it (and as OIDC's `gender` claim spells it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    Male,
    Female,
}

/// Why a string is not a valid personal ID number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CitizenIdError {
    #[error("must be exactly 12 digits, got {0} characters")]
    WrongLength(usize),
    #[error("character {position} is not a digit")]
    NotADigit { position: usize },
    #[error("{0} is not a province code of Circular 07/2016/TT-BCA")]
    UnknownProvince(String),
    #[error("the number says born in {in_number}, the date of birth says {in_date}")]
    BirthYearMismatch { in_number: i32, in_date: i32 },
    #[error("the number says {in_number:?}, the record says {in_record:?}")]
    SexMismatch { in_number: Sex, in_record: Sex },
    #[error("the birth year {0} is in the future")]
    BornInTheFuture(i32),
}

/// A well-formed 12-digit personal ID number.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CitizenId([u8; 12]);

impl CitizenId {
    /// Parses exactly 12 ASCII digits with a known province code. No trimming: callers that read
    /// human input trim first.
    pub fn parse(input: &str) -> Result<Self, CitizenIdError> {
        let chars = input.chars().count();
        if chars != 12 {
            return Err(CitizenIdError::WrongLength(chars));
        }
        if let Some(i) = input.chars().position(|c| !c.is_ascii_digit()) {
            return Err(CitizenIdError::NotADigit { position: i + 1 });
        }
        let id = Self(
            input
                .as_bytes()
                .try_into()
                .expect("12 ASCII digits are 12 bytes"),
        );
        if province::by_code(id.province_code()).is_none() {
            return Err(CitizenIdError::UnknownProvince(
                id.province_code().to_owned(),
            ));
        }
        Ok(id)
    }

    /// Parses and cross-checks against what is known of the person.
    pub fn parse_checked(
        input: &str,
        birthdate: Option<Date>,
        sex: Option<Sex>,
    ) -> Result<Self, CitizenIdError> {
        let id = Self::parse(input)?;
        if let Some(date) = birthdate {
            id.check_birthdate(date)?;
        }
        if let Some(sex) = sex
            && sex != id.sex()
        {
            return Err(CitizenIdError::SexMismatch {
                in_number: id.sex(),
                in_record: sex,
            });
        }
        Ok(id)
    }

    /// The full number. Use it for storage and matching, never for logs.
    pub fn as_str(&self) -> &str {
        // Checked ASCII digits at construction.
        std::str::from_utf8(&self.0).expect("digits are ASCII")
    }

    pub fn province_code(&self) -> &str {
        &self.as_str()[..3]
    }

    pub fn province(&self) -> &'static Province {
        province::by_code(self.province_code()).expect("checked at parse")
    }

    fn century_digit(&self) -> u8 {
        self.0[3] - b'0'
    }

    pub fn sex(&self) -> Sex {
        if self.century_digit().is_multiple_of(2) {
            Sex::Male
        } else {
            Sex::Female
        }
    }

    /// The first year of the birth century: 1900, 2000, ... 2300.
    pub fn birth_century(&self) -> i32 {
        1900 + 100 * i32::from(self.century_digit() / 2)
    }

    pub fn birth_year(&self) -> i32 {
        self.birth_century() + i32::from(self.0[4] - b'0') * 10 + i32::from(self.0[5] - b'0')
    }

    /// Refuses a number whose birth year is after `this_year` (the caller's clock: this crate
    /// reads no time of its own).
    pub fn check_not_born_after(&self, this_year: i32) -> Result<(), CitizenIdError> {
        if self.birth_year() > this_year {
            Err(CitizenIdError::BornInTheFuture(self.birth_year()))
        } else {
            Ok(())
        }
    }

    pub fn check_birthdate(&self, date: Date) -> Result<(), CitizenIdError> {
        if date.year() == self.birth_year() {
            Ok(())
        } else {
            Err(CitizenIdError::BirthYearMismatch {
                in_number: self.birth_year(),
                in_date: date.year(),
            })
        }
    }

    /// `001*******45`: the province code and the last two digits only.
    pub fn masked(&self) -> String {
        format!("{}*******{}", &self.as_str()[..3], &self.as_str()[10..])
    }
}

impl fmt::Display for CitizenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for CitizenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CitizenId({})", self.masked())
    }
}

impl std::str::FromStr for CitizenId {
    type Err = CitizenIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

serde_by_parsing!(CitizenId);

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn a_birth_year_in_the_future_is_refused_by_the_callers_clock() {
        let id = CitizenId::parse("001095012345").unwrap();
        assert!(id.check_not_born_after(2026).is_ok());
        // Century digit 2 or 3 is the 2000s: 2095.
        let future = CitizenId::parse("001295012345").unwrap();
        assert_eq!(future.birth_year(), 2095);
        assert_eq!(
            future.check_not_born_after(2026),
            Err(CitizenIdError::BornInTheFuture(2095))
        );
    }

    #[test]
    fn reads_every_part_of_the_number() {
        let id = CitizenId::parse("002195012345").unwrap();
        assert_eq!(id.province().name, "Hà Giang");
        assert_eq!(id.sex(), Sex::Female);
        assert_eq!(id.birth_century(), 1900);
        assert_eq!(id.birth_year(), 1995);
        let young = CitizenId::parse("079212000001").unwrap();
        assert_eq!((young.sex(), young.birth_year()), (Sex::Male, 2012));
        assert_eq!(CitizenId::parse("001900000001").unwrap().birth_year(), 2300);
    }

    #[test]
    fn specific_errors_for_malformed_input() {
        assert_eq!(
            CitizenId::parse("00119501234"),
            Err(CitizenIdError::WrongLength(11))
        );
        assert_eq!(
            CitizenId::parse(" 00119501234"),
            Err(CitizenIdError::NotADigit { position: 1 })
        );
        assert_eq!(
            CitizenId::parse("0011950123a5"),
            Err(CitizenIdError::NotADigit { position: 11 })
        );
        assert_eq!(
            CitizenId::parse("00119501234٣"),
            Err(CitizenIdError::NotADigit { position: 12 })
        );
        assert_eq!(
            CitizenId::parse("003195012345"),
            Err(CitizenIdError::UnknownProvince("003".into()))
        );
    }

    #[test]
    fn cross_checks_birth_year_and_sex() {
        assert!(
            CitizenId::parse_checked("001095012345", Some(date!(1995 - 03 - 01)), Some(Sex::Male))
                .is_ok()
        );
        assert_eq!(
            CitizenId::parse_checked("001095012345", Some(date!(2095 - 03 - 01)), None),
            Err(CitizenIdError::BirthYearMismatch {
                in_number: 1995,
                in_date: 2095
            })
        );
        assert!(matches!(
            CitizenId::parse_checked("001095012345", None, Some(Sex::Female)),
            Err(CitizenIdError::SexMismatch { .. })
        ));
    }

    #[test]
    fn display_and_debug_are_masked() {
        let id = CitizenId::parse("001095012345").unwrap();
        assert_eq!(id.to_string(), "001*******45");
        assert!(!format!("{id:?}").contains("095012"));
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"001095012345\"");
    }
}
