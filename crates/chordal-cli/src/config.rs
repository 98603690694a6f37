//! `chordal node --config FILE`: settings from a file, below the flags
//! and the `CHORDAL_*` environment (precedence: flag > env > file >
//! default).
//!
//! A TOML file names the long flags as keys (`listen`, `api`,
//! `data_dir` or `data-dir`, `join = ["a:7000", "b:7000"]`, `api_tls =
//! true`, …): every flag of `chordal node` but `--config` itself. A file
//! ending in `.ini` is read as the VoidPhone course's configuration: its
//! `[dht]` section gives `p2p_address` (`--listen`), `api_address`
//! (`--dht-api`), `bootstrapper` (`--join`), and optionally `http_address`
//! (`--api`) and `data_dir`; other sections belong to other modules and
//! are skipped.
//!
//! Both become [`Setting`]s, which the command line is parsed again with
//! (see [`merge`]): so a file's value goes through the same checks as the
//! flag's, and only a key's line is the file's own business.

use anyhow::{Context, Result, anyhow};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};
use std::ffi::OsString;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};

/// One setting a file gives: the flag it stands for and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The flag's id (`data_dir`).
    pub id: String,
    /// The flag's long name (`data-dir`).
    pub long: String,
    /// Its values as the command line would give them (several for a
    /// list; none for a switch turned off).
    pub values: Vec<String>,
    /// Whether the flag is a switch (`--api-tls`), which takes no value.
    pub switch: bool,
    /// The flag's list separator, if it has one (`--join a,b`): a list is
    /// then given once, joined, instead of as repeated flags.
    pub delimiter: Option<char>,
    /// The key's line in the file, from 1.
    pub line: usize,
}

impl Setting {
    /// The command-line arguments that say the same.
    fn args(&self) -> Vec<OsString> {
        if self.switch {
            return self
                .values
                .iter()
                .filter(|v| *v == "true")
                .map(|_| OsString::from(format!("--{}", self.long)))
                .collect();
        }
        if let (Some(d), true) = (self.delimiter, !self.values.is_empty()) {
            let list = self.values.join(&d.to_string());
            return vec![OsString::from(format!("--{}={list}", self.long))];
        }
        self.values
            .iter()
            .map(|v| OsString::from(format!("--{}={v}", self.long)))
            .collect()
    }
}

/// Reads the settings of `path` for the subcommand `node` (whose flags the
/// keys must name).
pub fn read(path: &Path, node: &Command) -> Result<Vec<Setting>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let parsed = if path.extension().and_then(|e| e.to_str()) == Some("ini") {
        parse_ini(&text, node)
    } else {
        parse_toml(&text, node)
    };
    parsed.map_err(|(line, e)| anyhow!("{}:{line}: {e}", path.display()))
}

/// Parses the command line again with the settings of `--config`'s file
/// added where neither a flag nor the environment set a value. `matches`
/// are the first parse's; answers the new matches and the settings used,
/// or the first parse's matches unchanged when there is no file.
pub fn merge(
    cli: Command,
    argv: Vec<OsString>,
    matches: ArgMatches,
) -> Result<(ArgMatches, Vec<Setting>)> {
    let Some(("node", sub)) = matches.subcommand() else {
        return Ok((matches, Vec::new()));
    };
    let Some(path) = sub.get_one::<PathBuf>("config").cloned() else {
        return Ok((matches, Vec::new()));
    };
    let node = cli
        .find_subcommand("node")
        .expect("the CLI has a node subcommand")
        .clone();
    let used: Vec<Setting> = read(&path, &node)?
        .into_iter()
        .filter(|s| unset(sub, &s.id))
        .collect();
    let mut full = argv;
    // After everything else: `node` takes no positional arguments, so the
    // added flags are still `node`'s.
    full.extend(used.iter().flat_map(Setting::args));
    let matches = cli.try_get_matches_from(full).map_err(|e| {
        let what = e
            .get(clap::error::ContextKind::InvalidArg)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let blame = used.iter().find(|s| {
            what.starts_with(&format!("--{} ", s.long)) || what == format!("--{}", s.long)
        });
        let message = e.to_string();
        let first = message
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ");
        match blame {
            Some(s) => anyhow!("{}:{}: {}: {first}", path.display(), s.line, s.id),
            None => anyhow!("{first}"),
        }
    })?;
    Ok((matches, used))
}

/// Was `id` left to its default (neither a flag nor the environment set
/// it)? Then a file may set it.
pub fn unset(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        None | Some(ValueSource::DefaultValue)
    )
}

/// The flags a file may set: every long flag of `node` but help, version
/// and `config` itself.
fn settable(node: &Command) -> impl Iterator<Item = &clap::Arg> {
    node.get_arguments().filter(|a| {
        a.get_long().is_some() && !matches!(a.get_id().as_str(), "config" | "help" | "version")
    })
}

/// The flag a key names (`data_dir` and `data-dir` alike).
fn flag<'c>(node: &'c Command, key: &str) -> Option<&'c clap::Arg> {
    let long = key.replace('_', "-");
    settable(node).find(|a| a.get_long() == Some(long.as_str()))
}

/// Every key a file may hold, for error messages.
fn known(node: &Command) -> String {
    let mut keys: Vec<String> = settable(node)
        .filter_map(|a| a.get_long())
        .map(|l| l.replace('-', "_"))
        .collect();
    keys.sort();
    keys.join(", ")
}

/// The 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// The settings of a TOML text; `Err((line, why))` for a syntax error,
/// an unknown key or a value of the wrong shape.
pub fn parse_toml(text: &str, node: &Command) -> Result<Vec<Setting>, (usize, String)> {
    let table = DeTable::parse(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
        (line, e.message().to_string())
    })?;
    let mut out = Vec::new();
    for (key, value) in table.get_ref().iter() {
        let line = line_of(text, key.span().start);
        let name = key.get_ref().as_ref();
        let Some(arg) = flag(node, name) else {
            return Err((
                line,
                format!("unknown key {name:?} (known: {})", known(node)),
            ));
        };
        let switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let many =
            matches!(arg.get_action(), ArgAction::Append) || arg.get_value_delimiter().is_some();
        let bad = |why: &str| (line, format!("{name}: {why}"));
        let values = match value.get_ref() {
            DeValue::Array(items) if many => items
                .iter()
                .map(|v| scalar(v.get_ref()).ok_or_else(|| bad("a list of plain values")))
                .collect::<Result<Vec<_>, _>>()?,
            DeValue::Array(_) => return Err(bad("takes one value, not a list")),
            DeValue::Boolean(b) if switch => vec![b.to_string()],
            _ if switch => return Err(bad("is a switch: true or false")),
            other => vec![scalar(other).ok_or_else(|| bad("a plain value, not a table"))?],
        };
        out.push(Setting {
            id: arg.get_id().to_string(),
            long: arg.get_long().expect("settable flags are long").to_string(),
            values,
            switch,
            delimiter: arg.get_value_delimiter(),
            line,
        });
    }
    Ok(out)
}

/// A plain TOML value as the command line would write it.
fn scalar(value: &DeValue) -> Option<String> {
    match value {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .ok()
            .map(|n| n.to_string()),
        DeValue::Float(f) => Some(f.as_str().to_string()),
        DeValue::Boolean(b) => Some(b.to_string()),
        DeValue::Datetime(d) => Some(d.to_string()),
        DeValue::Array(_) | DeValue::Table(_) => None,
    }
}

/// The VoidPhone `[dht]` keys and the flags they stand for.
const INI_KEYS: &[(&str, &str)] = &[
    ("p2p_address", "listen"),
    ("api_address", "dht-api"),
    ("bootstrapper", "join"),
    ("http_address", "api"),
    ("data_dir", "data-dir"),
];

/// Resolves `HOST:PORT` to its first address (VoidPhone files name hosts).
fn address(value: &str) -> Result<String, String> {
    value
        .to_socket_addrs()
        .map_err(|e| format!("{value:?} is not HOST:PORT ({e})"))?
        .next()
        .map(|a| a.to_string())
        .ok_or_else(|| format!("{value:?} resolves to no address"))
}

/// The `[dht]` settings of an INI text; `Err((line, why))` for a bad line,
/// an unknown key of `[dht]` or a bad address.
pub fn parse_ini(text: &str, node: &Command) -> Result<Vec<Setting>, (usize, String)> {
    let mut out = Vec::new();
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
        let Some((_, long)) = INI_KEYS.iter().find(|(k, _)| *k == key) else {
            let keys: Vec<&str> = INI_KEYS.iter().map(|(k, _)| *k).collect();
            return Err((
                line_no,
                format!("unknown key {key:?} in [dht] (known: {})", keys.join(", ")),
            ));
        };
        let value = match key.as_str() {
            "bootstrapper" | "data_dir" => value.to_string(),
            _ => address(value).map_err(|e| (line_no, format!("{key}: {e}")))?,
        };
        let arg = settable(node)
            .find(|a| a.get_long() == Some(long))
            .expect("the [dht] keys name flags of node");
        out.push(Setting {
            id: arg.get_id().to_string(),
            long: long.to_string(),
            values: vec![value],
            switch: false,
            delimiter: None,
            line: line_no,
        });
    }
    Ok(out)
}

/// `chordal config check FILE`: the settings a node started with
/// `--config FILE` (and this environment) would run with, as TOML, each
/// with where it came from, and `node`'s matches to check further. Fails
/// as the node would on a bad file.
pub fn check(cli: Command, path: &Path) -> Result<(String, ArgMatches)> {
    let argv: Vec<OsString> = vec![
        "chordal".into(),
        "node".into(),
        "--config".into(),
        path.as_os_str().to_owned(),
    ];
    let first = cli
        .clone()
        .try_get_matches_from(argv.clone())
        .map_err(|e| anyhow!("{}", e.to_string().trim()))?;
    let (matches, used) = merge(cli.clone(), argv, first)?;
    let (_, sub) = matches.subcommand().expect("node was asked for");
    let node = cli.find_subcommand("node").expect("node exists");
    let mut out = format!("# chordal node --config {}\n", path.display());
    let mut args: Vec<&clap::Arg> = settable(node).collect();
    args.sort_by_key(|a| a.get_long());
    for arg in args {
        let id = arg.get_id().as_str();
        let key = arg.get_long().expect("long").replace('-', "_");
        let values: Vec<String> = sub
            .get_raw(id)
            .map(|vs| vs.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let from_file = used.iter().find(|s| s.id == id);
        let source = match (from_file, sub.value_source(id)) {
            (Some(s), _) => format!("file, line {}", s.line),
            (None, Some(ValueSource::EnvVariable)) => format!(
                "env {}",
                arg.get_env()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            (None, Some(ValueSource::DefaultValue)) => "default".into(),
            (None, Some(_)) => "flag".into(),
            (None, None) => {
                out.push_str(&format!("# {key} (not set)\n"));
                continue;
            }
        };
        let shown = if matches!(arg.get_action(), ArgAction::SetTrue) {
            sub.get_flag(id).to_string()
        } else if matches!(arg.get_action(), ArgAction::Append)
            || arg.get_value_delimiter().is_some()
        {
            let items: Vec<String> = values.iter().map(|v| toml_string(v)).collect();
            format!("[{}]", items.join(", "))
        } else {
            toml_value(values.first().map(String::as_str).unwrap_or(""))
        };
        out.push_str(&format!("{key} = {shown}   # {source}\n"));
    }
    Ok((out, sub.clone()))
}

/// A value as TOML: numbers and booleans bare, everything else quoted.
fn toml_value(v: &str) -> String {
    if v.parse::<i64>().is_ok() || v == "true" || v == "false" {
        v.to_string()
    } else {
        toml_string(v)
    }
}

/// A TOML basic string.
fn toml_string(v: &str) -> String {
    let escaped: String = v
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c => vec![c],
        })
        .collect();
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Arg;

    /// A stand-in for `chordal node`'s flags.
    fn node() -> Command {
        Command::new("node")
            .arg(Arg::new("listen").long("listen"))
            .arg(Arg::new("api").long("api"))
            .arg(Arg::new("dht_api").long("dht-api"))
            .arg(Arg::new("data_dir").long("data-dir"))
            .arg(Arg::new("join").long("join").value_delimiter(','))
            .arg(Arg::new("replicas").long("replicas"))
            .arg(
                Arg::new("api_tls")
                    .long("api-tls")
                    .action(ArgAction::SetTrue),
            )
            .arg(Arg::new("config").long("config"))
    }

    #[test]
    fn toml_keys_are_long_flags_and_lists_and_switches_are_understood() {
        let text = "# a node\nlisten = \"0.0.0.0:7000\"\ndata-dir = \"/var/lib/chordal\"\n\njoin = [\"a:7000\", \"b:7000\"]\nreplicas = 5\napi_tls = true\n";
        let got = parse_toml(text, &node()).unwrap();
        let by = |id: &str| got.iter().find(|s| s.id == id).unwrap().clone();
        assert_eq!(by("listen").values, ["0.0.0.0:7000"]);
        assert_eq!(by("listen").line, 2);
        assert_eq!(by("data_dir").line, 3);
        assert_eq!(by("join").values, ["a:7000", "b:7000"]);
        assert_eq!(by("join").line, 5);
        assert_eq!(by("replicas").values, ["5"]);
        assert_eq!(
            by("api_tls").args(),
            [OsString::from("--api-tls")],
            "a switch set true is the bare flag"
        );
        assert_eq!(by("join").args(), [OsString::from("--join=a:7000,b:7000")]);
    }

    #[test]
    fn toml_errors_name_the_line() {
        let err = parse_toml("listen = \"x\"\n\nreplicaton = 3\n", &node()).unwrap_err();
        assert_eq!(err.0, 3);
        assert!(err.1.contains("unknown key \"replicaton\""), "{}", err.1);
        assert!(
            err.1.contains("replicas"),
            "names the known keys: {}",
            err.1
        );
        let err = parse_toml("listen = [\"a\", \"b\"]\n", &node()).unwrap_err();
        assert!(err.1.contains("one value"), "{}", err.1);
        let err = parse_toml("api_tls = \"yes\"\n", &node()).unwrap_err();
        assert!(err.1.contains("switch"), "{}", err.1);
        let err = parse_toml("\n\nlisten = \n", &node()).unwrap_err();
        assert_eq!(err.0, 3, "a syntax error names its line: {}", err.1);
        let err = parse_toml("config = \"other.toml\"\n", &node()).unwrap_err();
        assert!(err.1.contains("unknown key"), "a file names no other file");
        let err = parse_toml("[ring]\nreplicas = 3\n", &node()).unwrap_err();
        assert!(err.1.contains("unknown key \"ring\""), "{}", err.1);
    }

    #[test]
    fn the_dht_section_is_read_and_other_modules_are_skipped() {
        let text = "hostkey = /hostkey.pem\n\n[gossip]\ncache_size = 50\nbootstrapper = 10.0.0.1:6001\n\n[dht]\n; our module\np2p_address = 127.0.0.1:6001\napi_address = 127.0.0.1:7001\nbootstrapper = 127.0.0.1:6002\n";
        let got = parse_ini(text, &node()).unwrap();
        let by = |id: &str| got.iter().find(|s| s.id == id).map(|s| s.values.clone());
        assert_eq!(by("listen"), Some(vec!["127.0.0.1:6001".to_string()]));
        assert_eq!(by("dht_api"), Some(vec!["127.0.0.1:7001".to_string()]));
        assert_eq!(by("join"), Some(vec!["127.0.0.1:6002".to_string()]));
        assert_eq!(by("api"), None);
    }

    #[test]
    fn ini_unknown_keys_and_bad_lines_name_their_line() {
        let err = parse_ini(
            "[dht]\np2p_address = 127.0.0.1:1\nreplicaton = 3\n",
            &node(),
        )
        .unwrap_err();
        assert_eq!(err.0, 3);
        assert!(err.1.contains("unknown key \"replicaton\""), "{}", err.1);
        let err = parse_ini("[dht]\np2p_address = nowhere\n", &node()).unwrap_err();
        assert_eq!(err.0, 2);
        assert!(parse_ini("[dht\n", &node()).is_err());
        assert!(parse_ini("[dht]\njust words\n", &node()).is_err());
    }

    #[test]
    fn flags_and_environment_outrank_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:7100\"\napi = \"127.0.0.1:8100\"\nreplicas = 5\njoin = [\"a:1\", \"b:2\"]\n").unwrap();
        let cli = Command::new("chordal").subcommand(
            node()
                .mut_arg("config", |a| a.value_parser(clap::value_parser!(PathBuf)))
                .mut_arg("replicas", |a| a.default_value("3")),
        );
        let argv: Vec<OsString> = [
            "chordal",
            "node",
            "--config",
            path.to_str().unwrap(),
            "--api",
            "127.0.0.1:9",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let first = cli.clone().try_get_matches_from(argv.clone()).unwrap();
        let (matches, used) = merge(cli, argv, first).unwrap();
        let (_, sub) = matches.subcommand().unwrap();
        let one = |id: &str| sub.get_one::<String>(id).unwrap().clone();
        assert_eq!(
            one("listen"),
            "127.0.0.1:7100",
            "the file fills an unset flag"
        );
        assert_eq!(one("api"), "127.0.0.1:9", "a flag outranks the file");
        assert_eq!(one("replicas"), "5", "the file outranks a default");
        let join: Vec<&String> = sub.get_many::<String>("join").unwrap().collect();
        assert_eq!(join, ["a:1", "b:2"]);
        assert!(used.iter().all(|s| s.id != "api"));
    }
}
