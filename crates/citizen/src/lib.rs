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

pub mod citizen_id;
pub mod legacy;
pub mod lookup_signature;
pub mod province;

pub use citizen_id::{CitizenId, CitizenIdError, Sex};
pub use legacy::{LegacyCmnd, LegacyCmndError};
pub use province::Province;
