//! A stand-in for the national e-ID provider (VNeID / the national portal's gateway), faithful
//! enough that Lienthong's tests and provincial integrators can run a full login without it.
//!
//! It is a real OpenID provider on a Keycloak-like realm path (`/realms/citizen`, as the national
//! SSO realm is): discovery, JWKS (RS256 by default like the real realm, ES256 selectable), the
//! authorization code flow with PKCE S256, the token endpoint (`client_secret_basic` and
//! `client_secret_post`), userinfo (GET or POST) and end-session. Citizens come from a roster
//! file; claims come in one of two [`ClaimProfile`]s, standard OIDC names or the national
//! portal gateway's Vietnamese names. The login page is a plain HTML form that needs no
//! JavaScript and shows the fixed test password and OTP.
//!
//! Everything is in memory: a restart forgets sessions, codes and tokens, as a test wants.

mod config;
mod pages;
mod roster;
mod server;

pub use config::{ClaimProfile, ClientRegistration, Config, ConfigError, Faults};
pub use roster::{Citizen, Roster, RosterError};
pub use server::{MockIdp, Running};
