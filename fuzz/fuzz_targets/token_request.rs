//! `POST /token`: the first line is the `Authorization` header, the rest the form body.
#![no_main]

#[path = "target.rs"]
mod target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (authorization, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    target::target().token_request(authorization, body);
});
