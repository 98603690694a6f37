//! Where a request's client identity comes from (`--client-key`).

use axum::http::{HeaderName, Request};
use std::str::FromStr;

/// Which part of a request names its client: all requests of one client
/// go to the service beside the ring node owning the hash of that name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientKey {
    /// `header:NAME` — the value of this header.
    Header(HeaderName),
    /// `cookie:NAME` — the value of this cookie.
    Cookie(String),
    /// `path:N` — the N-th segment of the path (from 1: `/a/b` has `a`
    /// at 1).
    Path(usize),
}

/// A `--client-key` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad client key {0:?}: expected header:NAME, cookie:NAME or path:N (N from 1)")]
pub struct BadClientKey(pub String);

impl FromStr for ClientKey {
    type Err = BadClientKey;
    fn from_str(s: &str) -> Result<ClientKey, BadClientKey> {
        let bad = || BadClientKey(s.to_string());
        let (kind, arg) = s.split_once(':').ok_or_else(bad)?;
        match kind {
            "header" => HeaderName::from_str(arg)
                .map(ClientKey::Header)
                .map_err(|_| bad()),
            "cookie" if !arg.is_empty() && !arg.contains([';', '=', ' ']) => {
                Ok(ClientKey::Cookie(arg.to_string()))
            }
            "path" => match arg.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(ClientKey::Path(n)),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientKey::Header(h) => write!(f, "header:{h}"),
            ClientKey::Cookie(c) => write!(f, "cookie:{c}"),
            ClientKey::Path(n) => write!(f, "path:{n}"),
        }
    }
}

impl ClientKey {
    /// The client's name in `req`, if the request carries one (non-empty).
    pub fn extract<B>(&self, req: &Request<B>) -> Option<String> {
        let value = match self {
            ClientKey::Header(name) => req.headers().get(name)?.to_str().ok()?.to_string(),
            ClientKey::Cookie(name) => req
                .headers()
                .get_all(axum::http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.to_string())?,
            ClientKey::Path(n) => req
                .uri()
                .path()
                .split('/')
                .filter(|s| !s.is_empty())
                .nth(n - 1)?
                .to_string(),
        };
        (!value.is_empty()).then_some(value)
    }

    /// What a client must send, for error messages.
    pub fn describe(&self) -> String {
        match self {
            ClientKey::Header(h) => format!("a non-empty {h} header"),
            ClientKey::Cookie(c) => format!("a non-empty {c} cookie"),
            ClientKey::Path(n) => format!("a path with at least {n} segment(s)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn parses_and_extracts_each_kind() {
        let h: ClientKey = "header:X-Client-Id".parse().unwrap();
        assert_eq!(h.to_string(), "header:x-client-id");
        assert_eq!(
            h.extract(&req("/", &[("x-client-id", "alice")])),
            Some("alice".into())
        );
        assert_eq!(h.extract(&req("/", &[("x-client-id", "")])), None);
        assert_eq!(h.extract(&req("/", &[])), None);

        let c: ClientKey = "cookie:session".parse().unwrap();
        let r = req("/", &[("cookie", "a=1; session=bob; z=2")]);
        assert_eq!(c.extract(&r), Some("bob".into()));
        assert_eq!(c.extract(&req("/", &[("cookie", "sessionx=1")])), None);

        let p: ClientKey = "path:2".parse().unwrap();
        assert_eq!(
            p.extract(&req("/users/carol/cart?x=1", &[])),
            Some("carol".into())
        );
        assert_eq!(p.extract(&req("/users", &[])), None);

        for bad in [
            "",
            "header",
            "header:bad name",
            "cookie:",
            "path:0",
            "path:x",
            "query:a",
        ] {
            assert!(bad.parse::<ClientKey>().is_err(), "{bad}");
        }
    }
}
