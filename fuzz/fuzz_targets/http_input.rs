//! Text that reaches the HTTP side from outside: a tokens file, a
//! gateway's client-key setting and the headers it reads.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(tokens) = chordal_http::Tokens::parse(text) {
        // Every token the parser kept is found again with its line's role.
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if let Some(token) = line.split_whitespace().next() {
                assert!(tokens.role_of(token.as_bytes()).is_some(), "{token:?} lost");
            }
        }
    }
    if let Ok(key) = text.parse::<chordal_gateway::ClientKey>() {
        let _ = key.describe();
        let req = chordal_gateway_request(text);
        let _ = key.extract(&req);
    }
});

/// A request carrying `text` in its path, query, a header and a cookie.
fn chordal_gateway_request(text: &str) -> http::Request<()> {
    let mut b = http::Request::builder().uri("/x");
    if let Ok(v) = http::HeaderValue::from_str(text) {
        b = b.header("x-client-id", v.clone()).header("cookie", v);
    }
    b.body(()).unwrap()
}
