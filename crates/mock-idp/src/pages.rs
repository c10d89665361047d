//! The mock IdP's pages: plain HTML, no JavaScript, Vietnamese first and English second.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::roster::Citizen;

#[derive(Template)]
#[template(path = "login.html")]
struct Login<'a> {
    flow: &'a str,
    citizens: &'a [Citizen],
    password: &'a str,
    otp: &'a str,
    number: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "message.html")]
struct Message<'a> {
    title: &'a str,
    text: &'a str,
}

#[derive(Template)]
#[template(path = "index.html")]
struct Index<'a> {
    issuer: &'a str,
    citizens: &'a [Citizen],
    password: &'a str,
    otp: &'a str,
}

fn render(t: &impl Template) -> Html<String> {
    // Templates are checked at compile time; rendering can fail only on a formatter error.
    Html(
        t.render()
            .unwrap_or_else(|e| format!("<p>template error: {e}</p>")),
    )
}

pub(crate) fn login(
    flow: &str,
    citizens: &[Citizen],
    password: &str,
    otp: &str,
    number: Option<&str>,
    error: Option<&str>,
) -> Response {
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = Login {
        flow,
        citizens,
        password,
        otp,
        number: number.unwrap_or_default(),
        error,
    };
    (status, render(&page)).into_response()
}

pub(crate) fn error(status: StatusCode, text: &str) -> Response {
    (
        status,
        render(&Message {
            title: "Không thể đăng nhập / Cannot sign in",
            text,
        }),
    )
        .into_response()
}

pub(crate) fn logged_out() -> Response {
    render(&Message {
        title: "Đã đăng xuất / Signed out",
        text: "Bạn đã đăng xuất khỏi VNeID (thử nghiệm). / You have signed out of the mock VNeID.",
    })
    .into_response()
}

pub(crate) fn index(issuer: &str, citizens: &[Citizen], password: &str, otp: &str) -> Html<String> {
    render(&Index {
        issuer,
        citizens,
        password,
        otp,
    })
}
