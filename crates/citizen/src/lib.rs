//! Who a Vietnamese citizen is, as the provincial systems need to know it: pure rules, no I/O,
//! no async, so that any system — the broker, the mock IdP, a provincial system of its own —
//! can take them alone.
//!
//! - [`CitizenId`]: the 12-digit personal ID number, parsed and validated (province code,
//!   century/sex digit, birth year against a date of birth; there is no checksum);
//! - [`LegacyCmnd`]: the old 9-digit identity card number;
//! - [`province`]: the 63 birth-registration province codes and what each became in the 2025
//!   merger, shipped as data;
//! - [`lookup_signature`]: how a just-in-time lookup request from Lienthong is signed, so a
//!   provincial system can check one with `http` types only.
//!
//! Every number type prints masked: a full number is available only through `as_str`.

/// Serde for a number type: written as its digits, read only through its `parse` (a stored or
/// received value is parsed, never trusted).
macro_rules! serde_by_parsing {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

pub mod citizen_id;
pub mod legacy;
pub mod lookup_signature;
pub mod province;

pub use citizen_id::{CitizenId, CitizenIdError, Sex};
pub use legacy::{LegacyCmnd, LegacyCmndError};
pub use province::Province;
