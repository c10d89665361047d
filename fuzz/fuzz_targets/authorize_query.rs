//! The query string of `GET /authorize`, parsed and validated.
#![no_main]

#[path = "target.rs"]
mod target;

libfuzzer_sys::fuzz_target!(|query: &[u8]| target::target().authorize_query(query));
