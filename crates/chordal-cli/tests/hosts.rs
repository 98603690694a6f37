//! Across hosts, for real: five network namespaces on a bridge stand for
//! five machines, each running `chordal node` on its own address. The test
//! forms a ring, writes, removes one host abruptly (link down, process
//! killed, namespace deleted) and checks that every key is still readable
//! from every remaining host.
//!
//! The kernel here may lack netem, so the links' delay comes from a small
//! userspace proxy in this process: each node listens on its namespace's
//! address and advertises (`--advertise`) a proxy port on the bridge, which
//! forwards to it 2 ms later each way. Every peer connection crosses it.
//!
//! Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create namespaces (`common/lab.rs`);
//! without it the test says so and stops.

mod common;

use common::lab::{Lab, ip};
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One way delay of the proxied links.
const DELAY: Duration = Duration::from_millis(2);
const HOSTS: usize = 5;

/// Copies `from` to `to`, each chunk `DELAY` after it arrived (a link's
/// latency without a cap on its throughput).
fn delayed_copy(mut from: TcpStream, mut to: TcpStream) {
    let (tx, rx) = mpsc::sync_channel::<(Instant, Vec<u8>)>(1024);
    let writer = std::thread::spawn(move || {
        for (due, chunk) in rx {
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now() + DELAY, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.join();
    let _ = from.shutdown(std::net::Shutdown::Both);
}

/// A delay proxy on `listen` forwarding every connection to `target`,
/// running until the process ends.
fn delay_proxy(listen: SocketAddr, target: SocketAddr) {
    let listener = TcpListener::bind(listen).expect("bind the proxy");
    std::thread::spawn(move || {
        for inbound in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(outbound) = TcpStream::connect_timeout(&target, Duration::from_secs(2))
                else {
                    return;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let (a, b) = (inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
                std::thread::spawn(move || delayed_copy(a, outbound));
                delayed_copy(b, inbound);
            });
        }
    });
}

#[test]
fn five_hosts_lose_one_and_every_key_stays_readable_everywhere() {
    let Some(lab) = Lab::new(HOSTS) else {
        eprintln!(
            "SKIPPED five_hosts_lose_one_and_every_key_stays_readable_everywhere: \
             creating network namespaces needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN); \
             run the suite as root to include it"
        );
        return;
    };
    // Host i's node listens on its own address; its peers reach it
    // through its proxy on the bridge, 2 ms away each way.
    let proxy = |i: usize| SocketAddr::V4(SocketAddrV4::new(lab.router(), 7100 + i as u16));
    for i in 0..HOSTS {
        let node = SocketAddr::V4(SocketAddrV4::new(lab.host(i), 7000));
        delay_proxy(proxy(i), node);
    }
    let mut nodes: Vec<NodeProc> = Vec::new();
    for i in 0..HOSTS {
        let (listen, api) = (
            format!("{}:7000", lab.host(i)),
            format!("{}:8000", lab.host(i)),
        );
        let advertise = proxy(i).to_string();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &lab.namespaces[i], BIN, "node"])
            .args([
                "--listen",
                &listen,
                "--advertise",
                &advertise,
                "--api",
                &api,
            ])
            .args(["--stabilize-ms", "200", "--replicas", "3"]);
        if i > 0 {
            cmd.args(["--join", &proxy(0).to_string()]);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        let node = NodeProc::spawn(cmd);
        assert_eq!(node.addr, proxy(i), "the node names its advertised address");
        assert_eq!(node.api.to_string(), api);
        nodes.push(node);
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(60), || {
        successor_lists_correct(&all, HOSTS - 1)
    })
    .expect("the five hosts did not form a ring");

    let keys = 500;
    for k in 0..keys {
        put(
            nodes[k % HOSTS].api,
            &format!("host-key-{k}"),
            format!("value {k}").as_bytes(),
        );
    }

    // Host 2 vanishes: its link goes down first, then its process and
    // namespace go.
    let gone = 2;
    lab.unplug(gone);
    nodes[gone].kill9();
    let ns = lab.namespaces[gone].clone();
    ip(&["netns", "del", &ns]);
    let alive: Vec<&NodeProc> = (0..HOSTS)
        .filter(|i| *i != gone)
        .map(|i| &nodes[i])
        .collect();
    eventually(Duration::from_secs(60), || {
        successor_lists_correct(&alive, HOSTS - 2)
    })
    .expect("the four hosts left did not heal");
    for n in &alive {
        let missing: Vec<usize> = (0..keys)
            .filter(|k| {
                get(n.api, &format!("host-key-{k}")).as_deref()
                    != Some(format!("value {k}").as_bytes())
            })
            .collect();
        assert!(
            missing.is_empty(),
            "host {} cannot read {} of {keys} keys, e.g. {:?}",
            n.api,
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }
}
