//! `GET /callback`: the first line is the query string, the rest the upstream's claims (JSON).
#![no_main]

#[path = "target.rs"]
mod target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (query, claims) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    target::target().callback(query, claims);
});
