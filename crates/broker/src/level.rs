//! Levels of assurance: the account level the national IdP vouched for (Decree 69/2024/ND-CP:
//! level 1 self-registered, level 2 issued in person), and how downstream systems ask for one.
//!
//! Downstream, the broker speaks `acr` values `LoA1` and `LoA2`, the names provincial integrators
//! already use with the national portal gateway. A request's `acr_values` lists acceptable
//! levels; the lowest listed is the minimum the broker will accept.

use serde::{Deserialize, Serialize};

/// An account level: 1 or 2, and nothing else, however it arrives (a config file, a stored
/// session): deserializing goes through [`Level::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Level(u8);

impl TryFrom<u8> for Level {
    type Error = String;
    fn try_from(n: u8) -> Result<Self, String> {
        Level::new(n).ok_or_else(|| format!("{n} is not a level (1 or 2)"))
    }
}

impl From<Level> for u8 {
    fn from(l: Level) -> u8 {
        l.0
    }
}

impl Level {
    pub const ONE: Level = Level(1);
    pub const TWO: Level = Level(2);

    pub fn new(n: u8) -> Option<Self> {
        (1..=2).contains(&n).then_some(Level(n))
    }

    pub fn number(self) -> u8 {
        self.0
    }

    /// The downstream `acr` value.
    pub fn acr(self) -> &'static str {
        match self.0 {
            1 => "LoA1",
            _ => "LoA2",
        }
    }

    pub fn from_acr(acr: &str) -> Option<Self> {
        match acr {
            "LoA1" => Some(Self::ONE),
            "LoA2" => Some(Self::TWO),
            _ => None,
        }
    }

    /// The minimum level a space-separated `acr_values` asks for; unknown values are ignored.
    pub fn minimum_requested(acr_values: Option<&str>) -> Option<Self> {
        acr_values?.split(' ').filter_map(Self::from_acr).min()
    }

    pub const SUPPORTED: [&'static str; 2] = ["LoA1", "LoA2"];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_of_acceptable_values() {
        assert_eq!(Level::minimum_requested(Some("LoA2")), Some(Level::TWO));
        assert_eq!(
            Level::minimum_requested(Some("LoA2 LoA1")),
            Some(Level::ONE)
        );
        assert_eq!(
            Level::minimum_requested(Some("urn:other LoA2")),
            Some(Level::TWO)
        );
        assert_eq!(Level::minimum_requested(Some("urn:other")), None);
        assert_eq!(Level::minimum_requested(None), None);
        assert!(Level::new(3).is_none());
        assert!(serde_json::from_str::<Level>("3").is_err());
        assert!(serde_json::from_str::<Level>("0").is_err());
        assert_eq!(serde_json::from_str::<Level>("2").unwrap(), Level::TWO);
        assert_eq!(serde_json::to_string(&Level::ONE).unwrap(), "1");
    }
}
