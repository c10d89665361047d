//! The one cryptographic stack: aws-lc-rs.
//!
//! Token signatures go through jsonwebtoken's `aws_lc_rs` backend, keys are generated here with
//! aws-lc-rs, hashes and random values come from it, and rustls (every TLS connection the
//! broker, the mock IdP and the sample portal make) uses its aws-lc-rs provider. What still
//! brings RustCrypto code is listed in `docs/ARCHITECTURE.md` ("One crypto stack").

use aws_lc_rs::digest;

/// Makes aws-lc-rs the process's rustls provider. reqwest is built without a provider of its
/// own (so that ring is not compiled in beside aws-lc-rs), so this must run before the first
/// HTTP client is built; every constructor that builds one calls it, and calling it again is
/// harmless.
pub fn install() {
    // An error only says a provider is installed already: ours, or one the embedding program
    // chose, which we respect.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, bytes);
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// `n` random bytes from the operating system's generator, through aws-lc-rs.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut buf).expect("the system random generator is available");
    buf
}
