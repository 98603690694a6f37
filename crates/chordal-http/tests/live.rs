//! `GET /` serves the dashboard page; `GET /v1/events` streams this
//! node's ring changes as server-sent events.

use chordal_http::{ApiConfig, serve};
use chordal_node::local::quick_config;
use chordal_node::{Node, NodeConfig};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_page_and_ring_events() {
    let first = Node::start(quick_config()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        first.clone(),
        ApiConfig::default(),
        std::future::pending(),
    ));

    // The page: HTML with the ring's SVG and the script that fills it.
    let page = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(api).unwrap();
        write!(s, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        raw
    })
    .await
    .unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("text/html"));
    for needle in ["<svg id=\"ring\"", "/v1/ring", "/v1/events", "/v1/locate/"] {
        assert!(page.contains(needle), "page lacks {needle}");
    }

    // Events: subscribe, then a second node joins; the first hears of it.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(api).unwrap();
        write!(s, "GET /v1/events HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await; // the stream is open
    let second = Node::start(NodeConfig {
        seeds: vec![first.addr().to_string()],
        ..quick_config()
    })
    .await
    .unwrap();
    let heard = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
            let done = line.starts_with("event: successor_changed")
                || line.starts_with("event: predecessor_changed");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    })
    .await
    .unwrap();
    assert!(
        heard.iter().any(|l| l.contains("text/event-stream")),
        "{heard:?}"
    );
    assert!(
        heard
            .iter()
            .any(|l| l == "event: successor_changed" || l == "event: predecessor_changed"),
        "{heard:?}"
    );
    second.leave().await;
    first.leave().await;
}
