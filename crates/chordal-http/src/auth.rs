//! Bearer tokens on the HTTP API (`--api-tokens FILE`; the file and its
//! roles are `chordal_node::tokens`').
//!
//! Roles grow: `read` may use every GET route and the event streams, `write`
//! also PUT, DELETE and POST, `admin` everything. `GET /v1/health` is
//! always open, so that load balancers and orchestrators need no secret.
//! A request names its token with `Authorization: Bearer TOKEN`, or, for a
//! GET only, with `?token=TOKEN` (a browser's `EventSource` and the
//! dashboard's links cannot set headers). No token or an unknown one is
//! answered 401 `unauthorized`, a token whose role is too weak 403
//! `forbidden`, both as JSON.

use crate::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub use chordal_node::tokens::{MIN_TOKEN_LEN, Role, Tokens, TokensError};

/// The role a request needs.
fn needed(method: &Method, path: &str) -> Option<Role> {
    if path == "/v1/health" {
        return None;
    }
    if path.starts_with("/v1/admin/") {
        return Some(Role::Admin);
    }
    Some(match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => Role::Read,
        _ => Role::Write,
    })
}

/// The token a request presents: the bearer header, or `?token=` on a GET.
fn presented(req: &Request) -> Option<String> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        return v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .map(|t| t.trim().to_string());
    }
    if req.method() != Method::GET {
        return None;
    }
    let query = req.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
}

/// The middleware: lets a request through if its token's role suffices.
pub(crate) async fn check(
    State(tokens): State<Option<Arc<Tokens>>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(tokens) = tokens else {
        return next.run(req).await;
    };
    let Some(need) = needed(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let role = presented(&req).and_then(|t| tokens.role_of(t.as_bytes()));
    match role {
        None => {
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid token is needed: Authorization: Bearer TOKEN",
            )
            .into_response();
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            resp
        }
        Some(role) if role < need => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token's role is {role}; this needs {need}"),
        )
        .into_response(),
        Some(_) => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_needed_by_method_with_health_open() {
        assert_eq!(needed(&Method::GET, "/v1/health"), None);
        assert_eq!(needed(&Method::GET, "/v1/kv/a"), Some(Role::Read));
        assert_eq!(needed(&Method::PUT, "/v1/kv/a"), Some(Role::Write));
        assert_eq!(needed(&Method::POST, "/v1/topics/t"), Some(Role::Write));
        assert_eq!(needed(&Method::DELETE, "/v1/kv/a"), Some(Role::Write));
        assert!(Role::Admin > Role::Write && Role::Write > Role::Read);
    }
}
