//! The broker's own pages (errors, consent). Plain HTML that works without JavaScript, light
//! enough for a weak connection; text comes from templates and the message catalogue.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::messages::Message;

#[derive(Template)]
#[template(path = "problem.html")]
struct ProblemPage<'a> {
    m: &'a Message,
    links: Links<'a>,
    reference: &'a str,
}

/// The ways out of an error page.
pub struct Links<'a> {
    /// The same login again.
    pub retry: Option<&'a str>,
    /// Back to the service that asked.
    pub back: Option<&'a str>,
    /// The province's home page.
    pub home: Option<&'a str>,
    /// Where to go for help.
    pub contact: Option<&'a str>,
}

/// One claim on the consent page, labelled in both languages.
pub struct ClaimLabel {
    pub vi: &'static str,
    pub en: &'static str,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    client_name: &'a str,
    claims: &'a [ClaimLabel],
    consent_id: &'a str,
    citizen_name: &'a str,
}

#[derive(Template)]
#[template(path = "signed_out.html")]
struct SignedOutPage<'a> {
    /// Front-channel logout addresses, loaded in hidden frames.
    frames: &'a [String],
    /// Where the citizen goes next (the service, or the national IdP's sign-out).
    next: Option<&'a str>,
    home: Option<&'a str>,
}

/// "You are signed out", loading each front-channel logout address in a hidden frame.
pub fn signed_out(frames: &[String], next: Option<&str>, home: Option<&str>) -> Response {
    let mut response = (no_store(), render(&SignedOutPage { frames, next, home })).into_response();
    // The one page that frames others: the systems' front-channel logout addresses.
    let origins: Vec<String> = frames
        .iter()
        .filter_map(|f| url::Url::parse(f).ok())
        .map(|u| u.origin().ascii_serialization())
        .collect();
    if !origins.is_empty()
        && let Ok(csp) =
            axum::http::HeaderValue::from_str(&format!("{}; frame-src {}", CSP, origins.join(" ")))
    {
        response
            .headers_mut()
            .insert(axum::http::header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// The Content-Security-Policy of every answer: no script, nothing loaded from elsewhere, no
/// framing. Inline style only (the pages' one `<style>` block). A page that frames others
/// (front-channel logout) adds its own `frame-src`.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

fn render(t: &impl Template) -> Html<String> {
    Html(
        t.render()
            .unwrap_or_else(|e| format!("<p>template error: {e}</p>")),
    )
}

pub fn problem(status: StatusCode, m: &Message, links: Links<'_>, reference: &str) -> Response {
    let page = ProblemPage {
        m,
        links,
        reference,
    };
    (status, no_store(), render(&page)).into_response()
}

pub fn consent(
    client_name: &str,
    claims: &[ClaimLabel],
    consent_id: &str,
    citizen_name: &str,
) -> Response {
    (
        no_store(),
        render(&ConsentPage {
            client_name,
            claims,
            consent_id,
            citizen_name,
        }),
    )
        .into_response()
}

fn no_store() -> [(axum::http::HeaderName, &'static str); 1] {
    [(axum::http::header::CACHE_CONTROL, "no-store")]
}

/// Labels of the claims a client can ask for.
pub fn claim_label(claim: &str) -> ClaimLabel {
    let (vi, en) = match claim {
        "name" => ("Họ và tên", "Full name"),
        "family_name" => ("Họ", "Family name"),
        "given_name" => ("Tên", "Given name"),
        "birthdate" => ("Ngày sinh", "Date of birth"),
        "gender" => ("Giới tính", "Sex"),
        "citizen_id" => ("Số định danh cá nhân", "Personal ID number"),
        "legacy_id_number" => ("Số CMND cũ", "Old ID card number"),
        "phone_number" => ("Số điện thoại", "Phone number"),
        "email" => ("Thư điện tử", "E-mail"),
        "address" => ("Địa chỉ", "Address"),
        _ => ("Thông tin khác", "Other details"),
    };
    ClaimLabel { vi, en }
}
