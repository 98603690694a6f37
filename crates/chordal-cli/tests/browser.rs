//! The dashboard in real headless Chromium, driven through chromedriver
//! (WebDriver over HTTP): one mark per node in id order, arcs that cover
//! the circle once, a killed node gone from the picture within seconds,
//! and a located key showing the owner, hops and route `/v1/locate` gives.
//! Screenshots go to `target/tmp/` (CARGO_TARGET_TMPDIR).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs
//! them when missing).

mod common;

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver process and one browser session in it.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
            "this test needs Debian's chromium and chromium-driver: run .ci/run, or apt-get install chromium chromium-driver"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        chordal_tls::install_ring_provider();
        let http = reqwest::Client::new();
        let started = Instant::now();
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1100,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let v: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Browser {
            driver,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if !body.is_null() {
            req = req.json(&body);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        if v["value"]["error"].is_string() {
            panic!("webdriver {path}: {v}");
        }
        v["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    /// Runs `script` (a function body) in the page; its return value.
    async fn eval(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Polls `script` until `done` holds for its value (or `limit`).
    async fn until(&self, script: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let v = self.eval(script).await;
            if done(&v) {
                return v;
            }
            assert!(started.elapsed() < limit, "{script} stayed {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        let b64 = self
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        std::fs::write(dir.join(name), png).unwrap();
    }

    async fn type_and_submit(&self, selector: &str, text: &str, button: &str) {
        let find = |sel: &str| json!({"using": "css selector", "value": sel});
        let input = self
            .call(reqwest::Method::POST, "/element", find(selector))
            .await;
        let id = element_id(&input);
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            json!({"text": text}),
        )
        .await;
        let b = self
            .call(reqwest::Method::POST, "/element", find(button))
            .await;
        let id = element_id(&b);
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            json!({}),
        )
        .await;
    }
}

impl Drop for Browser {
    /// Ends the WebDriver session first (chromedriver then closes
    /// Chromium; killing chromedriver alone left Chromium running), with
    /// a plain blocking request since `drop` cannot await.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let addr = self.base.trim_start_matches("http://").to_string();
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                self.session
            );
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn element_id(v: &Value) -> String {
    v.as_object()
        .and_then(|o| o.values().next())
        .and_then(|x| x.as_str())
        .unwrap()
        .to_string()
}

/// The node ids drawn, in DOM order, and the arcs' total length over the
/// circle's circumference.
const MARKS: &str = r#"
  const ids = [...document.querySelectorAll('#nodes circle.node')].map(c => c.dataset.id);
  const arcs = [...document.querySelectorAll('#arcs path.arc')];
  const total = arcs.reduce((s, a) => s + a.getTotalLength(), 0);
  return { ids, arcs: arcs.length, coverage: total / (2 * Math.PI * 200) };
"#;

#[test]
fn the_dashboard_draws_the_ring_follows_a_crash_and_locates_keys() {
    let extra = ["--stabilize-ms", "200"];
    let mut nodes = vec![NodeProc::start(None, &extra)];
    for _ in 1..6 {
        let seed = nodes[0].addr;
        nodes.push(NodeProc::start(Some(seed), &extra));
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(30), || ring_correct(&all)).expect("ring did not form");
    let api: SocketAddr = nodes[0].api;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let browser = Browser::start().await;
        browser.open(&format!("http://{api}/")).await;
        let count = "return document.getElementById('ring').dataset.count || null;";
        browser
            .until(count, Duration::from_secs(15), |v| v == "6")
            .await;
        let drawn = browser.eval(MARKS).await;
        let mut ids: Vec<String> = nodes.iter().map(|n| n.id.to_hex()).collect();
        ids.sort();
        assert_eq!(drawn["ids"], json!(ids), "one mark per node, in id order");
        assert_eq!(drawn["arcs"], 6);
        let coverage = drawn["coverage"].as_f64().unwrap();
        assert!(
            (coverage - 1.0).abs() < 0.01,
            "arcs cover {coverage} of the circle"
        );
        browser.screenshot("dashboard-6-nodes.png").await;

        // Another node selected: its fingers come from its own API.
        let other = &ids[(ids.iter().position(|i| *i == nodes[0].id.to_hex()).unwrap() + 3) % 6];
        browser
            .eval(&format!(
                "document.querySelector('#nodes circle[data-id=\"{other}\"]').dispatchEvent(new MouseEvent('click')); return true;"
            ))
            .await;
        browser
            .until(
                "return document.querySelectorAll('#arrows path.finger').length;",
                Duration::from_secs(10),
                |v| v.as_u64().unwrap_or(0) > 0,
            )
            .await;
        browser.screenshot("dashboard-other-node.png").await;

        // On a phone-sized screen nothing overflows sideways.
        browser
            .call(reqwest::Method::POST, "/window/rect", json!({"width": 390, "height": 844}))
            .await;
        let fits = browser
            .until(
                "return [document.documentElement.scrollWidth, window.innerWidth, \
                 document.getElementById('ring').getBoundingClientRect().width];",
                Duration::from_secs(5),
                |v| v[1].as_f64().unwrap_or(1e9) < 600.0,
            )
            .await;
        let (scroll, inner, svg) = (fits[0].as_f64().unwrap(), fits[1].as_f64().unwrap(), fits[2].as_f64().unwrap());
        assert!(scroll <= inner + 1.0, "page {scroll} px wide on a {inner} px screen");
        assert!(svg <= inner && svg > inner * 0.7, "ring {svg} px on a {inner} px screen");
        browser.screenshot("dashboard-phone.png").await;
        browser
            .call(reqwest::Method::POST, "/window/rect", json!({"width": 1100, "height": 800}))
            .await;

        // A node dies: the picture follows within a few seconds.
        let victim = 3;
        nodes[victim].kill9();
        let gone = nodes[victim].id.to_hex();
        let started = Instant::now();
        browser
            .until(count, Duration::from_secs(10), |v| v == "5")
            .await;
        eprintln!("dashboard showed the crash after {:?}", started.elapsed());
        let drawn = browser.eval(MARKS).await;
        assert!(!drawn["ids"].as_array().unwrap().contains(&json!(gone)));
        let coverage = drawn["coverage"].as_f64().unwrap();
        assert!(
            (coverage - 1.0).abs() < 0.01,
            "arcs cover {coverage} after the crash"
        );
        browser.screenshot("dashboard-after-crash.png").await;
        // The dead node is listed as down, not just gone; the live ones
        // carry their short ids; the legend says what each colour means.
        let down = browser
            .until(
                "return document.getElementById('down').textContent;",
                Duration::from_secs(10),
                |v| v.as_str().is_some_and(|t| t.contains(&gone[..8])),
            )
            .await;
        assert!(!down.as_str().unwrap().contains("left gracefully"), "{down}");
        let labels = browser
            .eval("return [...document.querySelectorAll('#labels text')].map(t => t.textContent);")
            .await;
        assert_eq!(labels.as_array().unwrap().len(), 5, "{labels}");
        let legend = browser
            .eval("return document.querySelectorAll('#legend li').length;")
            .await;
        assert_eq!(legend, 6);

        // A key that takes at least one hop from this node: owner, hops and
        // route as /v1/locate says.
        let key = (0..100)
            .map(|i| format!("key-{i}"))
            .find(|k| {
                let (_, v) = get_json(api, &format!("/v1/locate/{k}?mode=iterative"));
                v["hops"].as_u64() >= Some(1)
            })
            .expect("some key is more than one hop away");
        browser
            .type_and_submit("#key", &key, "#locate-form button")
            .await;
        let shown = browser
            .until(
                "const o = document.getElementById('located-owner'); \
                 const h = document.getElementById('located-hops'); \
                 return o ? { owner: o.textContent, hops: h.textContent } : null;",
                Duration::from_secs(10),
                |v| !v.is_null(),
            )
            .await;
        let (_, truth) = get_json(api, &format!("/v1/locate/{key}?mode=iterative"));
        let owner = truth["owner"]["id"].as_str().unwrap();
        assert!(
            shown["owner"].as_str().unwrap().starts_with(owner),
            "{shown} vs {truth}"
        );
        assert_eq!(
            shown["hops"],
            truth["hops"].to_string(),
            "{shown} vs {truth}"
        );
        let marked = browser
            .eval("return document.querySelector('#nodes circle.owner')?.dataset.id || null;")
            .await;
        assert_eq!(marked, owner);
        // The route drawn: one point per node asked, the same nodes.
        let route = browser
            .eval("return document.querySelector('#keys polyline.route').dataset.hops;")
            .await;
        let path = truth["path"].as_array().unwrap();
        assert_eq!(route, path.len().to_string(), "{truth}");
        assert_eq!(path.len() as u64, truth["hops"].as_u64().unwrap(), "{truth}");
        // ... and it ends at the owner (the last node asked is the key's
        // predecessor): the angle of its last point is the owner's.
        let angles = browser
            .eval(&format!(
                "const p = document.querySelector('#keys polyline.route').points;                  const last = p.getItem(p.numberOfItems - 1);                  const o = document.querySelector('#nodes circle[data-id=\"{owner}\"]');                  return [Math.atan2(last.y, last.x), Math.atan2(+o.getAttribute('cy'), +o.getAttribute('cx'))];"
            ))
            .await;
        let (a, b) = (angles[0].as_f64().unwrap(), angles[1].as_f64().unwrap());
        assert!((a - b).abs() < 1e-3, "the route ends at {a} rad, the owner is at {b}");
        browser.screenshot("dashboard-located.png").await;
        let draw_ms = browser
            .eval("return document.getElementById('ring').dataset.drawMs;")
            .await;
        eprintln!("draw time with 5 nodes: {draw_ms} ms");
        // Closing the browser ends Chromium too: no process of this run's
        // profile may be left behind.
        let profile = browser._profile.path().to_string_lossy().to_string();
        drop(browser);
        let gone = eventually(Duration::from_secs(10), || processes_mentioning(&profile) == 0);
        assert!(gone.is_some(), "Chromium processes outlived the test");
    });
}

/// A node that demands tokens: the page opened with `?token=` draws the
/// ring (its requests to this and the other nodes carry the token), and
/// without the token the API refuses it.
#[test]
fn the_dashboard_works_with_a_token() {
    const READ: &str = "dashboard-reader-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, format!("{READ} read\n")).unwrap();
    let extra = [
        "--stabilize-ms",
        "200",
        "--api-tokens",
        file.to_str().unwrap(),
    ];
    let mut nodes = vec![NodeProc::start(None, &extra)];
    for _ in 1..3 {
        let seed = nodes[0].addr;
        nodes.push(NodeProc::start(Some(seed), &extra));
    }
    let api: SocketAddr = nodes[0].api;
    assert_eq!(http(api, "GET", "/v1/ring").0, 401);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let browser = Browser::start().await;
        browser.open(&format!("http://{api}/?token={READ}")).await;
        let count = "return document.getElementById('ring').dataset.count || null;";
        browser
            .until(count, Duration::from_secs(30), |v| v == "3")
            .await;
        let drawn = browser.eval(MARKS).await;
        let mut ids: Vec<String> = nodes.iter().map(|n| n.id.to_hex()).collect();
        ids.sort();
        assert_eq!(drawn["ids"], json!(ids), "every node drawn");
        browser.screenshot("dashboard-token.png").await;
    });
}

/// Processes whose command line contains `needle`.
fn processes_mentioning(needle: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|cmd| String::from_utf8_lossy(cmd).contains(needle))
        .count()
}

/// The dashboard with 500 nodes (one `chordal cluster` process): every
/// node drawn, and how long drawing takes. A stress run, not in the
/// suite: `cargo test -p chordal-cli --test browser -- --ignored --nocapture`.
#[test]
#[ignore]
fn the_dashboard_draws_500_nodes() {
    let mut cluster = Command::new(BIN)
        .args([
            "cluster",
            "--nodes",
            "500",
            "--base-port",
            "0",
            "--api-base-port",
            "0",
        ])
        .args(["--stabilize-ms", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read the first address line, then keep draining (the cluster
    // prints one line per node and must not find its stdout closed).
    let mut out = std::io::BufReader::new(cluster.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let v: Value = serde_json::from_str(&first).unwrap();
    let api: SocketAddr = v["api"].as_str().unwrap().parse().unwrap();
    eventually(Duration::from_secs(300), || {
        let (s, v) = get_json(api, "/v1/ring");
        s == 200 && v["count"] == 500
    })
    .expect("the 500-node ring did not form");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let browser = Browser::start().await;
        let opened = Instant::now();
        browser.open(&format!("http://{api}/")).await;
        let count = "return document.getElementById('ring').dataset.count || null;";
        browser
            .until(count, Duration::from_secs(60), |v| v == "500")
            .await;
        eprintln!("500 nodes on screen {:?} after opening", opened.elapsed());
        let mut draws = Vec::new();
        for _ in 0..5 {
            // Force redraws (click-select a node) and read the draw time.
            let ms = browser
                .eval(
                    "document.querySelector('#nodes circle.node:nth-child(7)') \
                     .dispatchEvent(new MouseEvent('click')); \
                     return document.getElementById('ring').dataset.drawMs;",
                )
                .await;
            draws.push(ms.as_str().unwrap().parse::<f64>().unwrap());
        }
        let refresh = browser
            .eval("return document.getElementById('ring').dataset.renderMs;")
            .await;
        eprintln!("draw ms with 500 nodes: {draws:?}; last refresh (fetch + draw): {refresh} ms");
        browser.screenshot("dashboard-500-nodes.png").await;
    });
    let _ = cluster.kill();
    let _ = cluster.wait();
}
