//! The highly available gateway across real processes: 5 `chordal node`s,
//! each with a demo counter service beside it (run in this test process,
//! killed with its node), 2 `chordal gateway`s, 500 clients. Every
//! client lands on the node owning its key; a node killed mid-run costs no
//! client a request or an increment; back, it gets its clients again. The
//! gateway answers 400 to a request without a client key and passes the
//! service's own errors through.

mod common;

use chordal_core::{Id, Oracle};
use chordal_examples::counter;
use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CLIENTS: usize = 500;

/// What a request got: status, serving node id, body.
type Reply = (u16, Option<String>, Value);

/// A node process and the counter service beside it.
struct Instance {
    node: NodeProc,
    service: SocketAddr,
    serving: tokio::task::JoinHandle<()>,
}

/// Starts a counter service and a node that declares it.
fn start_instance(
    rt: &tokio::runtime::Runtime,
    seed: Option<SocketAddr>,
    id: Id,
    dir: &std::path::Path,
) -> Instance {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let service = listener.local_addr().unwrap();
    let url = format!("http://{service}");
    let id = id.to_hex();
    let dir = dir.display().to_string();
    let extra = [
        "--stabilize-ms",
        "200",
        "--sync-ms",
        "300",
        "--service",
        &url,
        "--id",
        &id,
        "--data-dir",
        &dir,
    ];
    let node = NodeProc::start(seed, &extra);
    let app = counter::App::new(node.api, format!("node-{}", &id[..8]));
    let serving = rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let _ = counter::serve(listener, app).await;
    });
    Instance {
        node,
        service,
        serving,
    }
}

/// A `chordal gateway` process; killed when dropped.
struct GatewayProc {
    child: Child,
    addr: SocketAddr,
}

impl GatewayProc {
    fn start(seed: SocketAddr) -> GatewayProc {
        let mut child = Command::new(BIN)
            .args([
                "gateway",
                "--listen",
                "127.0.0.1:0",
                "--join",
                &seed.to_string(),
            ])
            .args(["--client-key", "header:X-Client-Id"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        GatewayProc {
            child,
            addr: v["gateway"].as_str().unwrap().parse().unwrap(),
        }
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request: (status, serving node id, body).
async fn post_count(
    http: &reqwest::Client,
    gateway: SocketAddr,
    client: &str,
    request: &str,
) -> Reply {
    let resp = http
        .post(format!("http://{gateway}/count"))
        .header("x-client-id", client)
        .header("x-request-id", request)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{client}: {e}"));
    let status = resp.status().as_u16();
    let node = resp
        .headers()
        .get("x-chordal-node")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, node, body)
}

/// One request per client, through alternating gateways; every count
/// must be exactly one more than before. With `owners`, every client must
/// land on its owner. Returns how many landed on each node.
async fn round(
    http: &reqwest::Client,
    gateways: &[SocketAddr],
    counts: &mut [u64],
    round: usize,
    owners: Option<&Oracle>,
) -> HashMap<String, usize> {
    let results: Vec<(usize, Reply)> = futures_util::stream::iter(0..CLIENTS)
        .map(|c| async move {
            let client = format!("client-{c}");
            let gateway = gateways[(c + round) % gateways.len()];
            let request = format!("{client}-{round}");
            (c, post_count(http, gateway, &client, &request).await)
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for (c, (status, node, body)) in results {
        assert_eq!(status, 200, "client-{c} in round {round}: {body}");
        counts[c] += 1;
        assert_eq!(
            body["count"], counts[c],
            "client-{c} in round {round}: {body}"
        );
        let node = node.expect("X-Chordal-Node");
        if let Some(oracle) = owners {
            let owner = oracle.successor(&Id::hash(format!("client-{c}").as_bytes()));
            assert_eq!(node, owner.to_hex(), "client-{c} in round {round}");
        }
        *per_node.entry(node).or_default() += 1;
    }
    per_node
}

#[test]
fn clients_stick_to_their_node_and_survive_its_death() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let ids: Vec<Id> = (0..5)
        .map(|i| Id::hash(format!("gw-node-{i}").as_bytes()))
        .collect();
    let mut instances = vec![start_instance(&rt, None, ids[0], &dirs.path().join("n0"))];
    for (i, id) in ids.iter().enumerate().skip(1) {
        let seed = instances[0].node.addr;
        let dir = dirs.path().join(format!("n{i}"));
        instances.push(start_instance(&rt, Some(seed), *id, &dir));
    }
    let all: Vec<&NodeProc> = instances.iter().map(|i| &i.node).collect();
    eventually(Duration::from_secs(30), || successor_lists_correct(&all, 4)).expect("ring");

    // Services are declared in /v1/node and visible in /v1/ring.
    let (_, me) = get_json(instances[1].node.api, "/v1/node");
    assert_eq!(me["service"], format!("http://{}", instances[1].service));
    let (_, ring) = get_json(instances[0].node.api, "/v1/ring");
    let services: Vec<&str> = ring["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["service"].as_str().unwrap())
        .collect();
    assert_eq!(services.len(), 5);
    assert!(services.contains(&format!("http://{}", instances[3].service).as_str()));

    let gateways = [
        GatewayProc::start(instances[0].node.addr),
        GatewayProc::start(instances[3].node.addr),
    ];
    let gw: Vec<SocketAddr> = gateways.iter().map(|g| g.addr).collect();
    chordal_tls::install_ring_provider();
    let http = reqwest::Client::new();
    let mut counts = vec![0u64; CLIENTS];
    let oracle = Oracle::new(ids.clone());

    rt.block_on(async {
        // Bad input: no client key → the gateway's 400; a service error →
        // passed through as the service gave it.
        let resp = http
            .post(format!("http://{}/count", gw[0]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["code"], "missing_client_key", "{v}");
        let resp = http
            .get(format!("http://{}/fail", gw[1]))
            .header("x-client-id", "someone")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 500);
        assert!(resp.headers().contains_key("x-chordal-node"));
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"], "the service failed on purpose");

        // Stable ring: every client on its owner, through either gateway.
        for r in 0..2 {
            let per_node = round(&http, &gw, &mut counts, r, Some(&oracle)).await;
            assert_eq!(per_node.len(), 5, "{per_node:?}");
        }
    });

    // A node dies with its service, mid-run: nobody notices but the
    // clients it served, who are served by the next replica holder.
    // The machine goes down during a round: its service stops (requests
    // in it finish), then its node is killed.
    let victim = 2;
    rt.block_on(async {
        let dying = &mut instances[victim];
        let crash = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            dying.serving.abort();
            tokio::time::sleep(Duration::from_millis(200)).await;
            dying.node.kill9();
        };
        // A round takes about a second here: the crash falls inside it.
        let (during, ()) = tokio::join!(round(&http, &gw, &mut counts, 2, None), crash);
        assert_eq!(during.values().sum::<usize>(), CLIENTS);
        for r in 3..5 {
            let per_node = round(&http, &gw, &mut counts, r, None).await;
            assert!(
                !per_node.contains_key(&ids[victim].to_hex()),
                "{per_node:?}"
            );
        }
    });

    // It comes back (same id, its data directory, a new service port):
    // its clients return to it, and their counters go on.
    let seed = instances[0].node.addr;
    instances[victim] = start_instance(
        &rt,
        Some(seed),
        ids[victim],
        &dirs.path().join(format!("n{victim}")),
    );
    let all: Vec<&NodeProc> = instances.iter().map(|i| &i.node).collect();
    eventually(Duration::from_secs(30), || successor_lists_correct(&all, 4))
        .expect("ring after return");
    rt.block_on(async {
        // Both gateways see it again within their refresh period.
        let back = async {
            loop {
                let mut seen = 0;
                for g in &gw {
                    let owned = (0..CLIENTS)
                        .find(|c| {
                            oracle.successor(&Id::hash(format!("client-{c}").as_bytes()))
                                == ids[victim]
                        })
                        .unwrap();
                    let resp = http
                        .get(format!("http://{g}/count"))
                        .header("x-client-id", format!("client-{owned}"))
                        .send()
                        .await
                        .unwrap();
                    if resp
                        .headers()
                        .get("x-chordal-node")
                        .and_then(|v| v.to_str().ok())
                        == Some(&ids[victim].to_hex())
                    {
                        seen += 1;
                    }
                }
                if seen == gw.len() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), back)
            .await
            .expect("gateways route to the returned node");
        tokio::time::sleep(Duration::from_millis(1000)).await; // its handoff completes
        let per_node = round(&http, &gw, &mut counts, 5, Some(&oracle)).await;
        assert_eq!(per_node.len(), 5, "{per_node:?}");
    });
}
