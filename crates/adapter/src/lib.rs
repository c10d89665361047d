//! Who a Vietnamese citizen is, as the provincial systems need to know it.
//!
//! This crate is usable on its own by a provincial system: it parses and validates the 12-digit
//! personal ID number ([`CitizenId`]), knows the 63 birth-registration province codes and what
//! each became after the 2025 merger ([`province`]), and derives the stable account id that each
//! downstream system sees for a citizen ([`account`]).
//!
//! With the `directory` feature (on by default) it also keeps the account directory in SQL
//! ([`directory`]): citizen records keyed by their upstream identity, links realm + citizen ->
//! local account id under each realm's [`policy`], bulk import and export, and the signed
//! just-in-time [`lookup`]. Without it: no I/O, no async.

pub mod account;
pub mod citizen_id;
#[cfg(feature = "directory")]
pub mod directory;
pub mod legacy;
#[cfg(feature = "directory")]
pub mod lookup;
pub mod policy;
pub mod province;

pub use account::derived_account_id;
pub use citizen_id::{CitizenId, CitizenIdError, Sex};
pub use legacy::{LegacyCmnd, LegacyCmndError};
pub use province::Province;
