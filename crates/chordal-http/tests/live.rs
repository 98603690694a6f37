//! `GET /` serves the dashboard page; `GET /v1/events` streams this
//! node's ring changes as server-sent events.

use chordal_http::{ApiConfig, serve};
use chordal_node::local::quick;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_page_and_ring_events() {
    let first = quick().start().await.unwrap();
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
    // The stream is open once its headers came (the server subscribed to
    // the node's events before answering).
    let (rx, mut heard) = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
            let end_of_headers = line.is_empty();
            seen.push(line);
            if end_of_headers {
                break;
            }
        }
        (rx, seen)
    })
    .await
    .unwrap();
    assert!(
        heard.iter().any(|l| l.contains("text/event-stream")),
        "{heard:?}"
    );
    let second = quick()
        .join(first.addr().to_string())
        .start()
        .await
        .unwrap();
    let events = tokio::task::spawn_blocking(move || {
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
    heard.extend(events);
    assert!(
        heard
            .iter()
            .any(|l| l == "event: successor_changed" || l == "event: predecessor_changed"),
        "{heard:?}"
    );
    second.leave().await;
    first.leave().await;
}
