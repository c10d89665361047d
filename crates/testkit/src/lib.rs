//! What the tests of every crate share, written once. A dev-dependency only.

pub mod postgres;
