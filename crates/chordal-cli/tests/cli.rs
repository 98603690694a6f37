//! The `chordal` command line against a `chordal cluster` process: output,
//! `--json`, the REPL, and exit codes.

mod common;

use chordal_core::Id;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Cluster {
    child: std::process::Child,
    nodes: Vec<Value>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cluster(n: usize) -> Cluster {
    let mut child = Command::new(BIN)
        .args([
            "cluster",
            "--nodes",
            &n.to_string(),
            "--base-port",
            "0",
            "--api-base-port",
            "0",
        ])
        .args(["--stabilize-ms", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let nodes = (0..n)
        .map(|_| serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap())
        .collect();
    Cluster { child, nodes }
}

fn chordal(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn cli_reads_a_cluster() {
    let c = cluster(4);
    let api = c.nodes[0]["api"].as_str().unwrap().to_string();
    let ids: Vec<Id> = c
        .nodes
        .iter()
        .map(|n| n["id"].as_str().unwrap().parse().unwrap())
        .collect();
    let oracle = chordal_core::Oracle::new(ids.clone());
    // Wait until the ring walk sees all four.
    let apis: Vec<std::net::SocketAddr> = c
        .nodes
        .iter()
        .map(|n| n["api"].as_str().unwrap().parse().unwrap())
        .collect();
    eventually(Duration::from_secs(20), || {
        let (s, v) = get_json(apis[0], "/v1/ring");
        s == 200 && v["count"] == 4 && v["problems"].as_array().is_some_and(|p| p.is_empty())
    })
    .expect("cluster ring did not form (or the walk keeps seeing problems)");

    // ring --json: every node once, in ring order from node 0.
    let (code, out, _) = chordal(&["ring", "--json", "--node", &api]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    let walked: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    let mut expected = vec![ids[0]];
    expected.extend(oracle.successors(&ids[0], 3));
    assert_eq!(
        walked,
        expected.iter().map(|i| i.to_hex()).collect::<Vec<_>>()
    );

    // ring (human): a table with every id.
    let (code, out, _) = chordal(&["ring", "--node", &api]);
    assert_eq!(code, 0);
    for id in &ids {
        assert!(out.contains(&id.to_hex()), "{out}");
    }
    assert!(out.contains("4 nodes"));
    assert!(out.contains("no problems seen"), "{out}");

    // locate: the oracle's owner, in both output forms.
    let truth = oracle.successor(&Id::of_key(b"hello"));
    let (code, out, _) = chordal(&["locate", "hello", "--json", "--node", &api]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["owner"]["id"], truth.to_hex());
    let (code, out, _) = chordal(&["locate", "hello", "--iterative", "--node", &api]);
    assert_eq!(code, 0);
    assert!(out.contains(&truth.to_hex()[..8]), "{out}");
    // Redis Cluster's slot of "hello" (866) in the top 14 bits, then
    // SHA-1("hello") = aaf4c61d…'s bits.
    assert!(
        out.contains("0d88c61ddcc5e8a2dabede0f3b482cd9aea9434d"),
        "key id of 'hello': {out}"
    );

    // info: our id, our successor, a finger table.
    let (code, out, _) = chordal(&["info", "--node", &api]);
    assert_eq!(code, 0);
    assert!(out.contains(&ids[0].to_hex()));
    assert!(out.contains(&oracle.next(&ids[0]).to_hex()[..8]));
    assert!(out.contains("fingers ("));

    // The REPL: getloc, fingers, a bad command (error, goes on), quit.
    let mut repl = Command::new(BIN)
        .args(["repl", "--node", &api])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    repl.stdin
        .take()
        .unwrap()
        .write_all(
            b"getloc hello\nfrobnicate\nfingers\nput \"two words\" 'a  b'\nget \"two words\"\nget \"open\nquit\n",
        )
        .unwrap();
    let out = repl.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.starts_with(&format!(
            "node {} at {api} answers (id {})",
            c.nodes[0]["addr"].as_str().unwrap(),
            &ids[0].to_hex()[..8]
        )),
        "{text}"
    );
    assert!(text.contains(&truth.to_hex()[..8]), "{text}");
    assert!(text.contains("unknown command"), "{text}");
    assert!(text.contains("finger i"), "{text}");
    // Quoted words: a key with a space, a value with two.
    assert!(text.contains("stored two words"), "{text}");
    assert!(text.contains("\na  b\n"), "{text}");
    assert!(text.contains("unclosed \""), "{text}");
    // A REPL on a node that does not answer says so, and goes on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let mut repl = Command::new(BIN)
        .args(["repl", "--node", &dead_addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    repl.stdin
        .take()
        .unwrap()
        .write_all(b"help\nquit\n")
        .unwrap();
    let out = repl.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.starts_with(&format!("{dead_addr} does not answer now")),
        "{text}"
    );
    assert!(text.contains("commands (a word in"), "{text}");

    // put / get / del, and their exit codes.
    let (code, out, _) = chordal(&["put", "greeting", "hello there", "--node", &api]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("stored greeting"), "{out}");
    assert!(
        out.contains("write quorum reached:") && out.contains(" of 3 copies so far)"),
        "the wording says the quorum held, and names R: {out}"
    );
    let (code, out, _) = chordal(&[
        "get",
        "greeting",
        "--node",
        c.nodes[2]["api"].as_str().unwrap(),
    ]);
    assert_eq!((code, out.as_str()), (0, "hello there"));
    // On a terminal (util-linux `script` gives the command a pty) the value
    // ends the line.
    let on_tty = Command::new("script")
        .args([
            "-qec",
            &format!("{BIN} get greeting --node {api}"),
            "/dev/null",
        ])
        .output()
        .expect("script (util-linux) runs");
    assert_eq!(
        String::from_utf8_lossy(&on_tty.stdout),
        "hello there\r\n",
        "a newline on a terminal"
    );
    // A backup shows how far it got on a terminal, and says nothing of it
    // in a pipe.
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("ring.backup").display().to_string();
    let on_tty = Command::new("script")
        .args([
            "-qec",
            &format!("{BIN} backup --out {backup} --node {api}"),
            "/dev/null",
        ])
        .output()
        .expect("script (util-linux) runs");
    let shown = String::from_utf8_lossy(&on_tty.stdout);
    assert!(shown.contains("backing up: range"), "{shown}");
    assert!(
        shown.contains("backed up ") && shown.contains(" records ("),
        "{shown}"
    );
    let (code, out, err) = chordal(&["backup", "--out", &backup, "--node", &api]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("backing up") && !out.contains("backing up"),
        "{err}"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), b"\x00binary\xff").unwrap();
    let path = file.path().display().to_string();
    let (code, _, _) = chordal(&["put", "blob", "--file", &path, "--node", &api]);
    assert_eq!(code, 0);
    let out = Command::new(BIN)
        .args(["get", "blob", "--node", &api])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"\x00binary\xff");
    // `--file -`: the value from standard input.
    let mut put = Command::new(BIN)
        .args(["put", "piped", "--file", "-", "--node", &api])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut put.stdin.take().unwrap(), b"from\nstdin\x00").unwrap();
    assert!(put.wait().unwrap().success());
    let out = Command::new(BIN)
        .args(["get", "piped", "--node", &api])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"from\nstdin\x00");
    let (code, _, _) = chordal(&["del", "greeting", "--node", &api]);
    assert_eq!(code, 0);
    let (code, _, err) = chordal(&["get", "greeting", "--node", &api]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not found"), "{err}");
    let (code, _, _) = chordal(&["del", "greeting", "--node", &api]);
    assert_eq!(code, 1);
    let (code, _, _) = chordal(&["put", "only-a-key", "--node", &api]);
    assert_eq!(code, 2, "put without a value is a usage error");

    // Exit codes: usage 2, unreachable 3.
    let (code, _, _) = chordal(&["locate"]);
    assert_eq!(code, 2);
    // A leave names its node: never the default 127.0.0.1:8000.
    let out = Command::new(BIN)
        .arg("leave")
        .env_remove("CHORDAL_NODE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--node"), "{err}");
    let (code, _, err) = chordal(&["info", "--node", "127.0.0.1:1"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("unreachable"));
}

/// `chordal bench kv ARGS --json` on a local cluster: its result rows and
/// the operations they name, in order.
fn bench_kv(args: &[&str]) -> (Vec<Value>, Vec<String>) {
    let mut all = vec!["bench", "kv"];
    all.extend_from_slice(args);
    all.push("--json");
    let (code, out, err) = chordal(&all);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let rows = v["results"].as_array().unwrap().clone();
    let ops = rows
        .iter()
        .map(|r| r["op"].as_str().unwrap().to_string())
        .collect();
    (rows, ops)
}

/// `chordal bench kv` runs a small local cluster and reports every phase.
#[test]
fn bench_kv_reports_each_phase() {
    let (rows, ops) = bench_kv(&[
        "--nodes",
        "3",
        "--keys",
        "200",
        "--concurrency",
        "4",
        "--phases",
        "put,get,del",
        "--via",
        "client",
    ]);
    assert_eq!(ops, ["put", "get", "del"]);
    for r in &rows {
        assert_eq!(r["ops"], 200, "{r}");
        assert_eq!(r["via"], "client");
        assert!(r["ops_per_sec"].as_f64().unwrap() > 0.0);
        assert!(r["p50_us"].as_u64().unwrap() <= r["p99_us"].as_u64().unwrap());
    }
    // Application messages: every node echoes; each request's echo is
    // checked by the bench itself (a wrong echo fails the run).
    let (rows, ops) = bench_kv(&[
        "--nodes",
        "4",
        "--keys",
        "300",
        "--concurrency",
        "8",
        "--phases",
        "send,request,locate",
    ]);
    assert_eq!(ops, ["send", "request", "locate"]);
    assert!(rows.iter().all(|r| r["ops"] == 300), "{rows:?}");
    // Lookups report their mean hops (one hop on a settled ring of 4:
    // straight to the owner, 0 when the origin or its successor owns the
    // key).
    assert!(rows[0]["mean_hops"].is_null(), "{rows:?}");
    let hops = rows[2]["mean_hops"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&hops), "{rows:?}");
    // HTTP straight to each key's owner's API, learnt from a ring walk.
    let (rows, ops) = bench_kv(&[
        "--nodes",
        "3",
        "--keys",
        "100",
        "--concurrency",
        "4",
        "--via",
        "http",
        "--route",
        "owner",
    ]);
    assert_eq!(ops, ["put", "get"]);
    assert!(
        rows.iter()
            .all(|r| r["route"] == "owner" && r["ops"] == 100),
        "{rows:?}"
    );
    // Only the node handle carries application messages.
    let (code, _, err) = chordal(&[
        "bench", "kv", "--nodes", "2", "--keys", "10", "--phases", "send", "--via", "client",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--via node"), "{err}");
}

/// `chordal bench pubsub`, `gateway` and `metrics` run small and report
/// complete, consistent figures.
#[test]
fn bench_pubsub_gateway_and_metrics_report() {
    let (code, out, err) = chordal(&[
        "bench",
        "pubsub",
        "--nodes",
        "3",
        "--subscribers",
        "20",
        "--messages",
        "30",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let r = &v["results"][0];
    assert_eq!(r["deliveries"], 600, "{r}");
    assert_eq!(r["subscriber_nodes"], 3, "{r}");
    assert!(r["delivery_p50_us"].as_u64().unwrap() <= r["delivery_p99_us"].as_u64().unwrap());

    let (code, out, err) = chordal(&[
        "bench",
        "gateway",
        "--nodes",
        "4",
        "--requests",
        "200",
        "--failovers",
        "1",
        "--clients",
        "400",
        "--vnodes",
        "2",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    let r = &lines[0]["results"][0];
    assert!(r["gateway_rps"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(r["failover_ms"].as_array().unwrap().len(), 1, "{r}");
    // Balance: plain and bounded; the bound holds and placement is sticky.
    let rows = lines[1]["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{out}");
    let bounded = &rows[1];
    assert_eq!(bounded["bounded_load"], 1.25);
    assert!(
        bounded["max_over_mean"].as_f64().unwrap() <= 1.25 + 1e-9,
        "{bounded}"
    );
    assert!(rows.iter().all(|r| r["sticky"] == 1.0), "{out}");

    let (code, out, err) = chordal(&[
        "bench",
        "metrics",
        "--nodes",
        "3",
        "--scrapes",
        "5",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["series"].as_u64().unwrap() > 20, "{v}");
    assert!(v["render_p50_us"].as_f64().unwrap() <= v["render_p99_us"].as_f64().unwrap());
}

/// `chordal sim`: seed first, JSON results, an SVG chart; same seed, same
/// output.
#[test]
fn sim_experiments_run_and_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("pathlen.svg");
    let svg_arg = svg.display().to_string();
    let run = |seed: &str| {
        Command::new(BIN)
            .args([
                "sim",
                "pathlen",
                "--nodes",
                "64",
                "--lookups",
                "200",
                "--json",
                "--seed",
                seed,
                "--plot",
                &svg_arg,
            ])
            .output()
            .unwrap()
    };
    let a = run("9");
    assert!(a.status.success());
    assert!(String::from_utf8_lossy(&a.stderr).starts_with("seed 9"));
    let v: Value = serde_json::from_slice(&a.stdout).unwrap();
    let rows = v["results"].as_array().unwrap();
    assert_eq!(rows.len(), 8); // N = 8 … 64, two modes
    assert!(rows.iter().all(|r| r["wrong"] == 0));
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<polyline"));
    assert_eq!(run("9").stdout, a.stdout);
    assert_ne!(run("10").stdout, a.stdout);

    let (code, out, _) = chordal(&[
        "sim", "balance", "--nodes", "100", "--keys", "5000", "--vnodes", "1,5",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("theory p99/mean"), "{out}");

    let (code, out, _) = chordal(&[
        "sim",
        "churn",
        "--nodes",
        "60",
        "--rates",
        "0.2",
        "--lookups",
        "60",
        "--warmup",
        "30",
        "--sessions",
        "weibull:0.7",
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    let r = &v["results"][0];
    assert!(r["lookups"].as_u64().unwrap() >= 50, "{out}");
    assert!(r["bytes_per_node_s"].as_f64().unwrap() > 0.0, "{out}");

    let (code, out, _) = chordal(&[
        "sim",
        "kv-churn",
        "--nodes",
        "30",
        "--replicas",
        "3",
        "--rate",
        "0.1",
        "--duration",
        "60",
        "--writes",
        "5",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("acked lost"), "{out}");

    let (code, _, err) = chordal(&["sim", "churn", "--sessions", "weibull:-1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("weibull:SHAPE"), "{err}");
}

/// `chordal bench kv --target` labels what it measured truly: the ring's
/// size found by walking it (not the local default of 5), no store kind
/// it cannot know; and `--via client` works with a ring's peer addresses.
#[test]
fn bench_kv_against_a_running_ring_reports_that_ring() {
    let mut nodes = vec![NodeProc::start(None, &["--stabilize-ms", "100"])];
    for _ in 0..2 {
        let seed = nodes[0].addr;
        nodes.push(NodeProc::start(Some(seed), &["--stabilize-ms", "100"]));
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(30), || successor_lists_correct(&all, 2))
        .expect("ring did not form");
    let apis = format!("{},{}", nodes[0].api, nodes[1].api);
    let peers = nodes[2].addr.to_string();
    for (target, via) in [(apis.as_str(), "http"), (peers.as_str(), "client")] {
        let (code, out, err) = chordal(&[
            "bench",
            "kv",
            "--target",
            target,
            "--via",
            via,
            "--keys",
            "50",
            "--concurrency",
            "2",
            "--json",
        ]);
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["nodes"], 3, "{out}");
        assert!(v["target"].is_array(), "{out}");
        for r in v["results"].as_array().unwrap() {
            assert_eq!(
                (r["via"].as_str(), r["ops"].as_u64()),
                (Some(via), Some(50))
            );
            assert!(
                r["store"].is_null(),
                "an external ring's store is not known: {r}"
            );
        }
    }
}

/// A node's log written to a pipe or a file is plain text: no colour
/// escape codes (they are for terminals).
#[test]
fn a_log_that_is_not_a_terminal_carries_no_colour_codes() {
    let mut node = Command::new(BIN)
        .args(["node", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first stdout line says it is up; by then it has logged.
    let mut first = String::new();
    BufReader::new(node.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("\"addr\""), "{first}");
    std::thread::sleep(Duration::from_millis(300));
    node.kill().unwrap();
    let out = node.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("INFO"), "the node logged nothing: {log}");
    assert!(
        !log.contains('\x1b'),
        "escape codes in a piped log: {log:?}"
    );
}

#[test]
fn cluster_says_it_runs_once_the_ring_formed_and_serves_redis_on_request() {
    let mut child = Command::new(BIN)
        .args(["cluster", "--nodes", "6", "--base-port", "0"])
        .args(["--api-base-port", "0", "--resp-base-port", "0"])
        .args(["--stabilize-ms", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let nodes: Vec<Value> = (0..6)
        .map(|_| serde_json::from_str(&out.next().unwrap().unwrap()).unwrap())
        .collect();
    let c = Cluster { child, nodes };
    // The line saying it runs comes once the ring formed (the log lines
    // before it are the nodes').
    let running = err
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("nodes running"))
        .expect("the running line");
    assert!(running.contains("the ring formed"), "{running}");
    let redis = err.next().unwrap().unwrap();
    let resp: std::net::SocketAddr = c.nodes[0]["resp"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        redis,
        format!("Redis protocol: redis-cli -p {}", resp.port())
    );
    // At once, no waiting: the walk sees all six and no problem.
    let api: std::net::SocketAddr = c.nodes[3]["api"].as_str().unwrap().parse().unwrap();
    let (status, ring) = get_json(api, "/v1/ring");
    assert_eq!(status, 200);
    assert_eq!(ring["count"], 6, "{ring}");
    assert_eq!(ring["problems"], serde_json::json!([]), "{ring}");
    // Every node speaks RESP: a SET through one, a GET through another.
    let speak = |node: &Value, command: &[u8]| {
        let addr: std::net::SocketAddr = node["resp"].as_str().unwrap().parse().unwrap();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(command).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line
    };
    assert_eq!(speak(&c.nodes[1], b"SET quick start\r\n"), "+OK\r\n");
    assert_eq!(speak(&c.nodes[4], b"GET quick\r\n"), "$5\r\n");
}

#[test]
fn completions_and_manual_pages_cover_every_command() {
    let subcommands = [
        "node",
        "cluster",
        "gateway",
        "put",
        "get",
        "del",
        "locate",
        "info",
        "ring",
        "status",
        "backup",
        "restore",
        "leave",
        "repl",
        "bench",
        "sim",
        "ca",
        "completions",
        "man",
    ];
    for shell in ["bash", "zsh", "fish"] {
        let (code, script, err) = chordal(&["completions", shell]);
        assert_eq!(code, 0, "{err}");
        for sub in subcommands {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    // The bash script parses.
    let (_, script, _) = chordal(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chordal.bash");
    std::fs::write(&path, script).unwrap();
    let parsed = Command::new("bash").arg("-n").arg(&path).status().unwrap();
    assert!(parsed.success());
    let (code, _, err) = chordal(&["completions", "tcsh"]);
    assert_eq!(code, 2, "an unknown shell is a usage error: {err}");

    // One page per command and subcommand, named as man names them.
    let (code, _, err) = chordal(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for sub in subcommands {
        let page = dir.path().join(format!("chordal-{sub}.1"));
        let text = std::fs::read_to_string(&page).unwrap_or_else(|_| panic!("{page:?}"));
        assert!(text.contains(&format!(".TH chordal-{sub} 1")), "{text}");
    }
    let put = std::fs::read_to_string(dir.path().join("chordal-put.1")).unwrap();
    assert!(put.contains("if\\-absent"), "{put}");
    assert!(dir.path().join("chordal-bench-kv.1").exists());
    let (code, all, _) = chordal(&["man"]);
    assert_eq!(code, 0);
    assert!(
        all.starts_with(".ie") && all.contains(".TH chordal 1"),
        "{}",
        &all[..200]
    );
}
