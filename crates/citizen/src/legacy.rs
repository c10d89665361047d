//! The old 9-digit identity card number (chứng minh nhân dân, CMND).
//!
//! Issued by province, with the issuing province's prefix, and duplicated within one range; there
//! is no algorithmic mapping to the 12-digit number. It matters only for matching old local
//! accounts that were keyed by it, through the national data's `SoCMND`. (Old 12-digit CMND
//! numbers were kept on the new card: those are [`crate::CitizenId`]s.)

use std::fmt;

/// Why a string is not a 9-digit CMND number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegacyCmndError {
    #[error("an old CMND number has exactly 9 digits, got {0} characters")]
    WrongLength(usize),
    #[error("character {position} is not a digit")]
    NotADigit { position: usize },
}

/// A well-formed 9-digit CMND number. Printed masked, like [`crate::CitizenId`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegacyCmnd([u8; 9]);

impl LegacyCmnd {
    pub fn parse(input: &str) -> Result<Self, LegacyCmndError> {
        if let Some(i) = input.chars().position(|c| !c.is_ascii_digit()) {
            return Err(LegacyCmndError::NotADigit { position: i + 1 });
        }
        let bytes: [u8; 9] = input
            .as_bytes()
            .try_into()
            .map_err(|_| LegacyCmndError::WrongLength(input.len()))?;
        Ok(Self(bytes))
    }

    /// The full number, for storage and matching, never for logs.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("digits are ASCII")
    }

    /// `01******8`.
    pub fn masked(&self) -> String {
        format!("{}******{}", &self.as_str()[..2], &self.as_str()[8..])
    }
}

impl fmt::Display for LegacyCmnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for LegacyCmnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LegacyCmnd({})", self.masked())
    }
}

serde_by_parsing!(LegacyCmnd);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nine_digits_only() {
        assert_eq!(
            LegacyCmnd::parse("012345678").unwrap().to_string(),
            "01******8"
        );
        assert_eq!(
            LegacyCmnd::parse("01234567"),
            Err(LegacyCmndError::WrongLength(8))
        );
        assert_eq!(
            LegacyCmnd::parse("01234567x"),
            Err(LegacyCmndError::NotADigit { position: 9 })
        );
        let n: LegacyCmnd = serde_json::from_str("\"012345678\"").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"012345678\"");
        assert!(serde_json::from_str::<LegacyCmnd>("\"01234567\"").is_err());
    }
}
