//! A compact JWT, as the ID-token, access-token and client-assertion verifiers meet it.
#![no_main]

#[path = "target.rs"]
mod target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        target::target().jwt(token);
    }
});
