//! Who may do what: the tokens a node accepts (`--api-tokens FILE`) and
//! the role each grants. Used by every front end that asks for a token —
//! the HTTP API (`chordal-http`), the Redis protocol (`chordal-resp`) —
//! so it lives here, below them, with no HTTP in it.
//!
//! The file has one `TOKEN ROLE` per line (`#` starts a comment). Roles
//! grow: `read`, `write`, `admin`; each front end says what each allows.

use std::path::Path;

/// Shortest token accepted: a guessable token is no protection.
pub const MIN_TOKEN_LEN: usize = 16;

/// What a token allows, weakest first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Role {
    /// Reading (HTTP: GET routes and event streams).
    Read,
    /// Also writing (HTTP: PUT, DELETE and POST).
    Write,
    /// Everything, administrative operations included.
    Admin,
}

impl std::fmt::Display for Role {
    /// The role's name as a tokens file writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            other => Err(format!("role must be read, write or admin, not {other:?}")),
        }
    }
}

/// The tokens a node accepts.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    entries: Vec<(Vec<u8>, Role)>,
}

/// Why a tokens file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokensError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// A line is not `TOKEN ROLE`, or its token is too short or repeated.
    #[error("{path}:{line}: {reason}")]
    Line {
        /// The file.
        path: String,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The file names no token at all (which would lock everyone out).
    #[error("{0}: no tokens")]
    Empty(String),
}

impl Tokens {
    /// Reads a tokens file (see the module docs).
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Io {
            path: name.clone(),
            source,
        })?;
        Tokens::parse(&text)
            .map_err(|(line, reason)| TokensError::Line {
                path: name.clone(),
                line,
                reason,
            })?
            .non_empty(name)
    }

    fn non_empty(self, name: String) -> Result<Tokens, TokensError> {
        if self.entries.is_empty() {
            Err(TokensError::Empty(name))
        } else {
            Ok(self)
        }
    }

    /// Parses the text of a tokens file; `Err((line, reason))` for the
    /// first bad line.
    pub fn parse(text: &str) -> Result<Tokens, (usize, String)> {
        let mut entries: Vec<(Vec<u8>, Role)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(token), Some(role), None) = (words.next(), words.next(), words.next()) else {
                return Err((i + 1, "expected `TOKEN ROLE`".into()));
            };
            let role: Role = role.parse().map_err(|e| (i + 1, e))?;
            if token.len() < MIN_TOKEN_LEN {
                return Err((
                    i + 1,
                    format!("a token must have at least {MIN_TOKEN_LEN} characters"),
                ));
            }
            if entries.iter().any(|(t, _)| t == token.as_bytes()) {
                return Err((i + 1, "the same token twice".into()));
            }
            entries.push((token.as_bytes().to_vec(), role));
        }
        Ok(Tokens { entries })
    }

    /// The role of `presented`, if it is one of ours. Every token is
    /// compared in full, whatever matches, so that timing tells nothing.
    pub fn role_of(&self, presented: &[u8]) -> Option<Role> {
        let mut found = None;
        for (token, role) in &self.entries {
            if constant_time_eq(token, presented) {
                found = Some(*role);
            }
        }
        found
    }
}

/// Equal bytes, in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "read-token-0123456789";
    const W: &str = "write-token-0123456789";

    #[test]
    fn a_tokens_file_names_each_token_once_with_a_role() {
        let text = format!("# who may do what\n{R} read\n\n{W}   write # the writer\n");
        let t = Tokens::parse(&text).unwrap();
        assert_eq!(t.role_of(R.as_bytes()), Some(Role::Read));
        assert_eq!(t.role_of(W.as_bytes()), Some(Role::Write));
        assert_eq!(
            t.role_of(b"read-token-012345678"),
            None,
            "a prefix is not the token"
        );
        assert_eq!(t.role_of(b""), None);
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        let cases = [
            (format!("{R} read\n{R}\n"), 2, "TOKEN ROLE"),
            (format!("{R} root\n"), 1, "read, write or admin"),
            ("short read\n".to_string(), 1, "at least 16"),
            (format!("{R} read\n{R} write\n"), 2, "twice"),
            (format!("{R} read extra\n"), 1, "TOKEN ROLE"),
        ];
        for (text, line, why) in cases {
            let (at, reason) = Tokens::parse(&text).unwrap_err();
            assert_eq!(at, line, "{text:?}");
            assert!(reason.contains(why), "{text:?}: {reason}");
        }
    }
}
