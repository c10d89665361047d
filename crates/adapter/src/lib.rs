//! The account directory: which local account of each provincial system belongs to a citizen.
//!
//! Citizen records are keyed by their upstream identity (issuer + subject), with the current
//! 12-digit number and old CMND and a history of changes; links join a realm (one system's user
//! table) and a citizen to that system's local account id, made in advance (import, admin API)
//! or at first sign-in under the realm's [`policy`]: `linked`, `lookup` (the signed
//! just-in-time [`lookup`] call) or `provision`. Everything is in SQL ([`directory`]: SQLite by
//! default, PostgreSQL in production). [`account`] derives the stable ids that `provision` and
//! pairwise subjects use.
//!
//! The number types themselves are `lienthong-citizen`'s: pure rules with no I/O.

pub mod account;
pub mod directory;
pub mod lookup;
pub mod policy;

pub use account::derived_account_id;
