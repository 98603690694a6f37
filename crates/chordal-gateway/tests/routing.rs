//! The gateway in one process against an in-process ring whose services
//! are tiny axum apps: a client named by a path segment lands on its
//! owner's service; a hung service is skipped after the request timeout
//! (the next instance sees attempt 2); beyond `max_in_flight` requests
//! are refused at once.

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::any;
use chordal_core::{Id, Oracle};
use chordal_gateway::{Gateway, GatewayConfig, NODE_HEADER};
use chordal_node::Node;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// A service answering `<name> attempt <n>` (after `delay`).
async fn service(name: String, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(any(move |headers: HeaderMap| {
        let name = name.clone();
        async move {
            tokio::time::sleep(delay).await;
            let attempt = headers
                .get("x-chordal-attempt")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_string();
            format!("{name} attempt {attempt}")
        }
    }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// One node per entry of `delays`, each with a service that answers
/// after that delay.
async fn ring(delays: &[Duration]) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for (i, d) in delays.iter().enumerate() {
        let svc = service(format!("svc{i}"), *d).await;
        let mut b = Node::builder()
            .service(format!("http://{svc}"))
            .maintenance_interval(Duration::from_millis(100));
        if let Some(first) = nodes.first() {
            b = b.join(first.addr().to_string());
        }
        nodes.push(b.start().await.unwrap());
    }
    // Candidates are the owner and its replica holders: wait until every
    // successor list has filled.
    let ring = chordal_node::local::LocalRing { nodes };
    ring.settle(chordal_node::local::Check::SuccessorLists)
        .await
        .expect("successor lists fill");
    ring.nodes
}

/// A gateway serving on a free port once it sees `members` nodes.
async fn start(config: GatewayConfig, members: usize) -> SocketAddr {
    let gateway = Gateway::start(config).await.unwrap();
    for _ in 0..100 {
        if gateway.view().members().len() == members {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gateway.view().members().len(), members);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(chordal_gateway::serve(
        listener,
        gateway,
        std::future::pending(),
    ));
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_keys_route_to_owners() {
    let zero = Duration::ZERO;
    let nodes = ring(&[zero, zero, zero, zero]).await;
    let oracle = Oracle::new(nodes.iter().map(|n| n.id()).collect());
    let key = "path:2".parse().unwrap();
    let config = GatewayConfig::new(vec![nodes[0].addr().to_string()], key);
    let gw = start(config, 4).await;
    chordal_tls::install_ring_provider();
    let http = reqwest::Client::new();
    for user in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        let resp = http
            .get(format!("http://{gw}/users/{user}/cart"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let node = resp.headers()[NODE_HEADER].to_str().unwrap().to_string();
        assert_eq!(node, oracle.successor(&Id::hash(user.as_bytes())).to_hex());
        let i = nodes.iter().position(|n| n.id().to_hex() == node).unwrap();
        assert_eq!(resp.text().await.unwrap(), format!("svc{i} attempt 1"));
    }
    // No client name in the path.
    let resp = http.get(format!("http://{gw}/users")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    for n in nodes {
        n.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_service_costs_one_timeout_and_overload_is_refused() {
    // Node 0's service never answers in time.
    let zero = Duration::ZERO;
    let hung = Duration::from_secs(3600);
    let nodes = ring(&[hung, zero, zero]).await;
    let oracle = Oracle::new(nodes.iter().map(|n| n.id()).collect());
    let client = (0..1000)
        .map(|i| format!("c{i}"))
        .find(|c| oracle.successor(&Id::hash(c.as_bytes())) == nodes[0].id())
        .unwrap();
    let key = "header:x-client-id".parse().unwrap();
    let mut config = GatewayConfig::new(vec![nodes[1].addr().to_string()], key);
    config.request_timeout = Duration::from_millis(300);
    config.max_in_flight = 1;
    let gw = start(config, 3).await;
    chordal_tls::install_ring_provider();
    let http = reqwest::Client::new();
    let send = || {
        http.get(format!("http://{gw}/x"))
            .header("x-client-id", &client)
            .send()
    };
    let (first, second) = tokio::join!(send(), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        send().await
    });
    // The first waited for the hung owner, then went to its successor.
    let first = first.unwrap();
    assert_eq!(first.status(), 200);
    let node = first.headers()[NODE_HEADER].to_str().unwrap().to_string();
    assert_ne!(node, nodes[0].id().to_hex());
    assert!(first.text().await.unwrap().ends_with("attempt 2"));
    // The second came while the first held the only slot.
    let second = second.unwrap();
    assert_eq!(second.status(), 503);
    assert!(second.text().await.unwrap().contains("overloaded"));
    // Suspect now, the hung owner is tried last: the first instance tried
    // answers (no timeout first).
    let third = send().await.unwrap();
    assert_eq!(third.status(), 200);
    assert!(third.text().await.unwrap().ends_with("attempt 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connections_from_one_host_get_its_share_and_a_real_client_is_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let zero = Duration::ZERO;
    let nodes = ring(&[zero, zero]).await;
    let key = "path:2".parse().unwrap();
    let config = GatewayConfig::new(vec![nodes[0].addr().to_string()], key);
    let gw = start(config, 2).await;
    // 2,000 connections from 127.0.0.7 that send half a request header.
    let mut slow = Vec::new();
    for _ in 0..2000 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.7:0".parse().unwrap()).unwrap();
        let mut s = socket.connect(gw).await.unwrap();
        let _ = s.write_all(b"GET /users/x HTTP/1.1\r\nHo").await;
        slow.push(s);
    }
    // A real client from 127.0.0.1 is served meanwhile.
    chordal_tls::install_ring_provider();
    let resp = reqwest::Client::new()
        .get(format!("http://{gw}/users/alice/cart"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    // Those over the per-address bound were closed at once (answered 503,
    // or reset when their unread half header was dropped); the rest wait
    // for the header deadline.
    let checks: Vec<_> = slow
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let read = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf));
                match read.await {
                    Err(_) => false,
                    Ok(_) => {
                        assert!(
                            buf.is_empty() || buf.starts_with(b"HTTP/1.1 503"),
                            "{:?}",
                            String::from_utf8_lossy(&buf)
                        );
                        true
                    }
                }
            })
        })
        .collect();
    let mut closed = 0;
    for c in checks {
        closed += usize::from(c.await.unwrap());
    }
    let limits = chordal_gateway::CONN_LIMITS;
    assert_eq!(closed, 2000 - limits.max_per_source);
}
