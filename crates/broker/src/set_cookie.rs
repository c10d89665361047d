//! The broker's `Set-Cookie` lines (RFC 6265 §4.1), each written once into its header value.
//!
//! Every cookie the broker sets has the same attributes: `HttpOnly`, `SameSite=Lax`, `Secure`
//! when the issuer is HTTPS, a path, a `Max-Age`. Their names and values are base64url's
//! characters and `.` (random secrets, sealed tokens, `<sid>.<secret>`), written as they are;
//! the cookie crate's writer would percent-encode them byte by byte, which leaves them as they
//! are, and format each attribute on its own, for every login (docs/performance-log.md, the
//! nineteenth session of 12-07). Anything else is percent-encoded as that crate does, so the
//! request's [`axum_extra::extract::CookieJar`], which decodes, reads back what was set.

use std::convert::Infallible;
use std::fmt::Write;
use std::time::Duration;

use axum::http::HeaderValue;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponseParts, ResponseParts};
use axum_extra::extract::cookie::Cookie;
use lienthong_protocol::secret::is_base64url;

/// One `Set-Cookie` header, ready to go out with a response.
#[derive(Debug, Clone)]
pub struct SetCookie(HeaderValue);

impl SetCookie {
    /// The cookie `name` = `value` for `path`, kept by the browser for `max_age`.
    pub fn new(name: &str, value: &str, path: &str, max_age: Duration, secure: bool) -> Self {
        let mut line = Self::line(name, value, path, secure);
        let _ = write!(line, "; Max-Age={}", max_age.as_secs());
        Self::from_line(line)
    }

    /// The removal of the cookie `name` set at `path`, with the attributes it was set with: a
    /// browser ignores a `Set-Cookie` for a `__Host-` name without `Secure`, removals included.
    pub fn removal(name: &str, path: &str, secure: bool) -> Self {
        let mut line = Self::line(name, "", path, secure);
        line.push_str("; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
        Self::from_line(line)
    }

    /// The line up to its lifetime.
    fn line(name: &str, value: &str, path: &str, secure: bool) -> String {
        let mut line = String::with_capacity(name.len() + value.len() + path.len() + 96);
        let as_is = |b: u8| AS_IS[usize::from(b)];
        if !name.is_empty() && name.bytes().all(as_is) && value.bytes().all(as_is) {
            line.push_str(name);
            line.push('=');
            line.push_str(value);
        } else {
            let _ = write!(line, "{}", Cookie::new(name, value).encoded());
        }
        line.push_str("; HttpOnly; SameSite=Lax");
        if secure {
            line.push_str("; Secure");
        }
        line.push_str("; Path=");
        line.push_str(path);
        line
    }

    fn from_line(line: String) -> Self {
        // Every byte is visible ASCII — the name and value above, the issuer's path (a URL's,
        // percent-encoded), the attributes — so this holds; were it not to, the cookie is left
        // out, not the answer.
        Self(HeaderValue::try_from(line).unwrap_or_else(|_| {
            tracing::error!("a Set-Cookie line that is not a header value: left out");
            HeaderValue::from_static("")
        }))
    }

    /// The header's value.
    pub fn value(&self) -> &HeaderValue {
        &self.0
    }
}

impl IntoResponseParts for SetCookie {
    type Error = Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        if !self.0.is_empty() {
            res.headers_mut().append(SET_COOKIE, self.0);
        }
        Ok(res)
    }
}

/// The bytes a name or value is written with as they are: base64url's and `.`, which every
/// cookie of the broker's is made of. They are `cookie-octet`s (RFC 6265) and `token`
/// characters (RFC 7230), and not `%`, which the reader would percent-decode. One load a byte:
/// the sealed upstream ID token's cookie is some 1.6 KB.
const AS_IS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = is_base64url(b as u8) || b as u8 == b'.';
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum_extra::extract::cookie::{Cookie, SameSite};

    use super::SetCookie;

    fn parsed(set: &SetCookie) -> Cookie<'static> {
        Cookie::parse_encoded(set.value().to_str().unwrap().to_owned()).unwrap()
    }

    #[test]
    fn a_cookie_reads_back_as_the_cookie_crate_reads_it() {
        let value = "sid-123.Zm9vYmFy_-";
        let set = SetCookie::new(
            "__Host-lienthong",
            value,
            "/",
            Duration::from_secs(1800),
            true,
        );
        let cookie = parsed(&set);
        assert_eq!((cookie.name(), cookie.value()), ("__Host-lienthong", value));
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.secure(), Some(true));
        assert_eq!(cookie.same_site(), Some(SameSite::Lax));
        assert_eq!(cookie.path(), Some("/"));
        assert_eq!(cookie.max_age(), Some(time::Duration::seconds(1800)));

        let plain = SetCookie::new(
            "lienthong_upstream",
            "x",
            "/b/logout",
            Duration::ZERO,
            false,
        );
        let cookie = parsed(&plain);
        assert_eq!(cookie.secure(), None);
        assert_eq!(cookie.path(), Some("/b/logout"));
    }

    #[test]
    fn a_value_that_is_not_cookie_octets_is_percent_encoded_and_reads_back() {
        let value = "a b;c\"d,é";
        let set = SetCookie::new("lienthong_sso", value, "/", Duration::from_secs(60), false);
        let line = set.value().to_str().unwrap();
        let pair = line.split("; HttpOnly").next().unwrap();
        assert!(!pair.contains([' ', ';', '"', ',']), "{line}");
        assert_eq!(parsed(&set).value(), value);
        let percent = SetCookie::new("lienthong_sso", "100%25", "/", Duration::ZERO, false);
        assert_eq!(parsed(&percent).value(), "100%25");
    }

    #[test]
    fn a_cookie_is_removed_with_the_attributes_it_was_set_with() {
        let secure = SetCookie::removal("__Host-lienthong_login_abc", "/", true);
        let cookie = parsed(&secure);
        assert_eq!(
            (cookie.name(), cookie.value()),
            ("__Host-lienthong_login_abc", "")
        );
        assert_eq!(cookie.secure(), Some(true));
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.path(), Some("/"));
        assert_eq!(cookie.max_age(), Some(time::Duration::ZERO));
        assert_eq!(cookie.expires_datetime().unwrap().unix_timestamp(), 0);

        let plain = SetCookie::removal("lienthong_login_abc", "/", false);
        assert_eq!(parsed(&plain).secure(), None);
    }
}
