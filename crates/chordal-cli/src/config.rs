//! `chordal node --config FILE`: settings from a file, below the flags
//! and the `CHORDAL_*` environment (precedence: flag > env > file >
//! default).
//!
//! A file ending in `.ini` is read as the VoidPhone course's configuration:
//! its `[dht]` section gives `p2p_address` (the peer address, `--listen`),
//! `api_address` (the DHT API, `--dht-api`), `bootstrapper` (a peer to join
//! through, `--join`), and optionally `http_address` (`--api`) and
//! `data_dir`. Other sections belong to other modules and are skipped.
//! TOML files with every flag come with the operations work (SPEC "Node
//! flags"); until then other files are refused with a clear error.

use anyhow::{Context, Result, bail};
use clap::ArgMatches;
use clap::parser::ValueSource;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// What the `[dht]` section of a VoidPhone file says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DhtSection {
    pub p2p_address: Option<SocketAddr>,
    pub api_address: Option<SocketAddr>,
    pub bootstrapper: Option<String>,
    pub http_address: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

/// The keys `[dht]` may hold.
const KEYS: &[&str] = &[
    "p2p_address",
    "api_address",
    "bootstrapper",
    "http_address",
    "data_dir",
];

/// Reads the settings of `path`.
pub fn read(path: &Path) -> Result<DhtSection> {
    if path.extension().and_then(|e| e.to_str()) != Some("ini") {
        bail!(
            "{}: only VoidPhone .ini files are read by --config so far (TOML files come with the operations issue)",
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_ini(&text).map_err(|(line, e)| anyhow::anyhow!("{}:{line}: {e}", path.display()))
}

/// Resolves `HOST:PORT` to its first address.
fn address(value: &str) -> Result<SocketAddr, String> {
    value
        .to_socket_addrs()
        .map_err(|e| format!("{value:?} is not HOST:PORT ({e})"))?
        .next()
        .ok_or_else(|| format!("{value:?} resolves to no address"))
}

/// The `[dht]` settings of an INI text; `Err((line, why))` for a bad line,
/// an unknown key of `[dht]` or a bad value.
pub fn parse_ini(text: &str) -> Result<DhtSection, (usize, String)> {
    let mut out = DhtSection::default();
    let mut section = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let Some(name) = name.strip_suffix(']') else {
                return Err((line_no, format!("{line:?} is not a [section] header")));
            };
            section = name.trim().to_ascii_lowercase();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err((line_no, format!("{line:?} is not key = value")));
        };
        if section != "dht" {
            continue;
        }
        let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
        let bad = |e: String| (line_no, format!("{key}: {e}"));
        match key.as_str() {
            "p2p_address" => out.p2p_address = Some(address(value).map_err(bad)?),
            "api_address" => out.api_address = Some(address(value).map_err(bad)?),
            "http_address" => out.http_address = Some(address(value).map_err(bad)?),
            "bootstrapper" => out.bootstrapper = Some(value.to_string()),
            "data_dir" => out.data_dir = Some(PathBuf::from(value)),
            other => {
                return Err((
                    line_no,
                    format!(
                        "unknown key {other:?} in [dht] (known: {})",
                        KEYS.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// Was `id` left to its default (neither a flag nor the environment set
/// it)? Then a file may set it.
pub fn unset(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        None | Some(ValueSource::DefaultValue)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dht_section_is_read_and_other_modules_are_skipped() {
        let text = "hostkey = /hostkey.pem\n\n[gossip]\ncache_size = 50\nbootstrapper = 10.0.0.1:6001\n\n[dht]\n; our module\np2p_address = 127.0.0.1:6001\napi_address = 127.0.0.1:7001\nbootstrapper = 127.0.0.1:6002\n";
        let got = parse_ini(text).unwrap();
        assert_eq!(got.p2p_address, Some("127.0.0.1:6001".parse().unwrap()));
        assert_eq!(got.api_address, Some("127.0.0.1:7001".parse().unwrap()));
        assert_eq!(got.bootstrapper.as_deref(), Some("127.0.0.1:6002"));
        assert_eq!(got.http_address, None);
    }

    #[test]
    fn unknown_keys_and_bad_lines_name_their_line() {
        let err = parse_ini("[dht]\np2p_address = 127.0.0.1:1\nreplicaton = 3\n").unwrap_err();
        assert_eq!(err.0, 3);
        assert!(err.1.contains("unknown key \"replicaton\""), "{}", err.1);
        let err = parse_ini("[dht]\np2p_address = nowhere\n").unwrap_err();
        assert_eq!(err.0, 2);
        assert!(parse_ini("[dht\n").is_err());
        assert!(parse_ini("[dht]\njust words\n").is_err());
    }
}
