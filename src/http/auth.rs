//! Bearer tokens on the HTTP endpoints, when authentication is on (`Authorization: Bearer
//! <token>`, a token of the config's `[[auth.tokens]]`):
//! - `/health`, `/ready` and the console's static page: open;
//! - `/metrics`: any valid token, or open with `--metrics-open`;
//! - `/stats`: a token with `admin` on every store (as `STATS`);
//! - `/ws`: optional; with a valid token the connection starts authenticated as it, without
//!   one it must `CONNECT` with credentials (browsers cannot set headers on a WebSocket).

use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::auth::{Permission, Principal};
use crate::http::HttpState;

/// What an endpoint wants.
pub enum Need {
    AnyToken,
    AdminEverywhere,
}

/// `Ok` when the request may go on (with its principal, if it carried a token).
pub fn check(
    state: &HttpState,
    headers: &HeaderMap,
    need: Option<Need>,
) -> Result<Option<Arc<Principal>>, Box<Response>> {
    let auth = &state.context.auth;
    if !auth.enabled() {
        return Ok(None);
    }
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = match header {
        None if need.is_none() => return Ok(None),
        None => return Err(Box::new(unauthorized("a bearer token is required"))),
        Some(_) => match auth.bearer(header, "http") {
            Some(principal) => principal,
            None => return Err(Box::new(unauthorized("wrong token"))),
        },
    };
    if let Some(Need::AdminEverywhere) = need {
        if !principal.allows_everywhere(Permission::Admin) {
            crate::metrics::metrics()
                .permission_denied
                .with_label_values(&[Permission::Admin.as_str()])
                .inc();
            let message = format!("{} needs admin on every store\n", principal.name);
            return Err(Box::new((StatusCode::FORBIDDEN, message).into_response()));
        }
    }
    Ok(Some(principal))
}

fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        format!("{message}\n"),
    )
        .into_response()
}
