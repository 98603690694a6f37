//! `GET /metrics` parses as Prometheus text, follows the naming
//! conventions, and its counters move when traffic flows.

use chordal_core::{Id, Oracle};
use chordal_http::{ApiConfig, serve};
use chordal_node::KeyValue;
use chordal_node::local::{LocalRing, quick};
use prometheus_parse::{Scrape, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// GET `path` with a blocking client (run off the runtime).
async fn get(api: SocketAddr, path: &str) -> (String, String) {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(api).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        (head.to_string(), body.to_string())
    })
    .await
    .unwrap()
}

fn parse(body: &str) -> Scrape {
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text")
}

/// The sum of a counter's samples whose labels include `labels`.
fn counter(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            Value::Counter(v) | Value::Untyped(v) | Value::Gauge(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// A histogram's total count.
fn histogram_count(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Histogram(buckets) => buckets.last().map(|b| b.count).unwrap_or(0.0),
            _ => 0.0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_with_traffic() {
    let ring = LocalRing::start_settled(3, quick(), Duration::from_secs(20))
        .await
        .unwrap()
        .expect("ring settles");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    let node = ring.nodes[0].clone();
    tokio::spawn(serve(
        listener,
        node.clone(),
        ApiConfig::default(),
        std::future::pending(),
    ));

    let (head, body) = get(api, "/metrics").await;
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let before = parse(&body);
    // Conventions: every metric is ours, counters end in _total,
    // histograms of time in _seconds.
    for sample in &before.samples {
        assert!(sample.metric.starts_with("chordal_"), "{}", sample.metric);
        match sample.value {
            Value::Counter(_) => assert!(sample.metric.ends_with("_total"), "{}", sample.metric),
            Value::Histogram(_) if sample.metric.contains("duration") => {
                assert!(sample.metric.ends_with("_seconds"), "{}", sample.metric)
            }
            _ => {}
        }
    }
    assert!(counter(&before, "chordal_stabilize_rounds_total", &[]) > 0.0);
    assert_eq!(
        counter(&before, "chordal_vnodes", &[("state", "joined")]),
        1.0
    );
    assert!(counter(&before, "chordal_connections", &[]) >= 1.0);

    // Traffic: puts and gets through node 0, lookups through its API.
    // Half of the keys are owned by node 0, so it coordinates (and sends
    // replicas of) some writes whatever ids the ring drew.
    let oracle = Oracle::new(ring.nodes.iter().flat_map(|n| n.ids().to_vec()).collect());
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let (mut own, mut other) = (0, 0);
    for k in 0.. {
        let key = format!("m-{k}").into_bytes();
        let ours = node.ids().contains(&oracle.successor(&Id::of_key(&key)));
        if (ours && own < 25) || (!ours && other < 25) {
            keys.push(key);
            if ours { own += 1 } else { other += 1 }
        }
        if keys.len() == 50 {
            break;
        }
    }
    for key in keys {
        node.put(key.clone(), b"v".to_vec()).await.unwrap();
        node.get(key).await.unwrap();
    }
    for k in 0..10 {
        let (head, _) = get(api, &format!("/v1/locate/x{k}")).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    let (_, body) = get(api, "/metrics").await;
    let after = parse(&body);
    assert_eq!(
        histogram_count(&after, "chordal_request_duration_seconds", &[("op", "put")]),
        50.0
    );
    assert_eq!(
        histogram_count(&after, "chordal_request_duration_seconds", &[("op", "get")]),
        50.0
    );
    assert_eq!(
        histogram_count(&after, "chordal_lookup_duration_seconds", &[]),
        10.0
    );
    assert!(histogram_count(&after, "chordal_lookup_hops", &[]) >= 10.0);
    let moved = |name: &str, labels: &[(&str, &str)]| {
        counter(&after, name, labels) > counter(&before, name, labels)
    };
    assert!(
        moved("chordal_sent_messages_total", &[("type", "kv_request")])
            || moved("chordal_sent_messages_total", &[("type", "replicate")])
    );
    assert!(moved("chordal_sent_bytes_total", &[]));
    assert!(moved("chordal_received_messages_total", &[]));
    assert!(moved("chordal_handoff_sent_messages_total", &[]));
    assert!(moved("chordal_lookups_total", &[]));
    assert!(counter(&after, "chordal_keys_stored", &[]) > 0.0);
    // Three processes, R = 3: once the successor lists are full, every
    // range has its R copies (a gauge: poll it).
    assert!(counter(&after, "chordal_kv_in_flight_max", &[]) > 0.0);
    let full = async {
        loop {
            let (_, body) = get(api, "/metrics").await;
            if counter(&parse(&body), "chordal_ranges_under_replicated", &[]) == 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), full)
        .await
        .expect("no range under R once the lists are full");
    // 50 keys "m-<k>" (at least 3 bytes) with 1-byte values, on every node of 3.
    assert!(counter(&after, "chordal_stored_bytes", &[]) >= 50.0 * 4.0);
    // fix_fingers runs every 100 ms: fingers get set (and counted) soon.
    let fingers = async {
        loop {
            let (_, body) = get(api, "/metrics").await;
            let now = parse(&body);
            if counter(&now, "chordal_routing_changes_total", &[("part", "finger")]) > 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fingers)
        .await
        .expect("finger changes counted");
    ring.leave_all().await;
}

/// A node alone with R = 3: its range and its writes are under R, and
/// `/metrics` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_replication_is_counted() {
    let ring = LocalRing::start_settled(1, quick(), Duration::from_secs(20))
        .await
        .unwrap()
        .expect("ring settles");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        ring.nodes[0].clone(),
        ApiConfig::default(),
        std::future::pending(),
    ));
    for k in 0..5 {
        let key = format!("alone-{k}").into_bytes();
        ring.nodes[0].put(key, b"v".to_vec()).await.unwrap();
    }
    let (_, body) = get(api, "/metrics").await;
    let now = parse(&body);
    assert_eq!(counter(&now, "chordal_ranges_under_replicated", &[]), 1.0);
    assert_eq!(
        counter(&now, "chordal_writes_under_replicated_total", &[]),
        5.0
    );
    ring.leave_all().await;
}
