//! How the broker says no.
//!
//! Two audiences, two forms. A citizen whose request cannot be trusted to go back to a client
//! (unknown client, unregistered redirect URI, a callback we cannot tie to a login) gets a short
//! page from the message catalogue, with a reference to quote to a help desk and, where one
//! exists, a way to try again and a way back. Everything else goes back to the client as an
//! RFC 6749 §4.1.2.1 error redirect carrying `state` and `iss` (RFC 9207).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use url::Url;

use crate::messages::Problem;
use crate::pages;
use crate::store::StoreError;

/// An error page for a citizen.
#[derive(Debug)]
pub struct CitizenPage {
    pub status: StatusCode,
    pub problem: Problem,
    /// Restarts the same login.
    pub retry: Option<String>,
    /// Returns to the service that asked (with an error it understands).
    pub back: Option<String>,
    /// The province's home page, when there is no service to return to.
    pub home: Option<String>,
    /// Where to go for help (a realm's office), shown as it is.
    pub contact: Option<String>,
}

impl CitizenPage {
    pub fn new(status: StatusCode, problem: Problem) -> Self {
        Self {
            status,
            problem,
            retry: None,
            back: None,
            home: None,
            contact: None,
        }
    }

    pub fn with_links(mut self, retry: Option<String>, back: Option<String>) -> Self {
        self.retry = retry;
        self.back = back;
        self
    }
}

impl IntoResponse for CitizenPage {
    fn into_response(self) -> Response {
        // A short reference lets a help desk find the log line without the citizen reading out
        // anything personal.
        let reference = lienthong_protocol::secret::random_token(6).to_uppercase();
        tracing::info!(reference = %reference, problem = self.problem.key(), status = self.status.as_u16(), "citizen shown an error page");
        let links = pages::Links {
            retry: self.retry.as_deref(),
            back: self.back.as_deref(),
            home: self.home.as_deref(),
            contact: self.contact.as_deref(),
        };
        pages::problem(self.status, self.problem.message(), links, &reference)
    }
}

/// An RFC 6749 error sent back to the client's registered redirect URI.
#[derive(Debug, Clone)]
pub struct ClientRedirect {
    pub redirect_uri: String,
    pub error: &'static str,
    pub description: String,
    pub state: Option<String>,
    pub iss: String,
}

impl ClientRedirect {
    pub fn url(&self) -> String {
        let mut url =
            Url::parse(&self.redirect_uri).expect("registered redirect URIs are valid URLs");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("error", self.error)
                .append_pair("error_description", &self.description);
            if let Some(state) = &self.state {
                q.append_pair("state", state);
            }
            q.append_pair("iss", &self.iss);
        }
        url.into()
    }
}

/// The error of any step of the browser flow.
#[derive(Debug)]
pub enum FlowError {
    Page(CitizenPage),
    Redirect(ClientRedirect),
}

impl From<CitizenPage> for FlowError {
    fn from(p: CitizenPage) -> Self {
        Self::Page(p)
    }
}

impl From<ClientRedirect> for FlowError {
    fn from(r: ClientRedirect) -> Self {
        Self::Redirect(r)
    }
}

impl From<StoreError> for FlowError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        Self::Page(CitizenPage::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Problem::TemporarilyUnavailable,
        ))
    }
}

impl FlowError {
    /// What this error is called in metrics: the page's problem or the error code sent back.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Page(p) => p.problem.key(),
            Self::Redirect(r) => r.error,
        }
    }

    /// Gives a page without a way back to the service a link to the province's home page, so no
    /// error is a dead end.
    pub fn with_home(self, home_url: Option<&str>) -> Self {
        match self {
            Self::Page(mut p) if p.back.is_none() => {
                p.home = home_url.map(str::to_owned);
                Self::Page(p)
            }
            other => other,
        }
    }
}

impl IntoResponse for FlowError {
    fn into_response(self) -> Response {
        match self {
            Self::Page(p) => p.into_response(),
            Self::Redirect(r) => Redirect::to(&r.url()).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn error_redirect_carries_state_and_iss() {
        let r = ClientRedirect {
            redirect_uri: "https://portal.example/cb?x=1".into(),
            error: "access_denied",
            description: "no".into(),
            state: Some("s 1".into()),
            iss: "https://sso.example".into(),
        };
        let url = Url::parse(&r.url()).unwrap();
        let q: HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["x"], "1");
        assert_eq!(q["error"], "access_denied");
        assert_eq!(q["state"], "s 1");
        assert_eq!(q["iss"], "https://sso.example");
    }
}
