//! Hosts for tests: network namespaces on a bridge, each standing for a
//! machine with its own address, whose links can be cut and restored.
//! Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); [`Lab::new`] says `None`
//! without it.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Runs `ip ARGS`; panics with its message on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces, links and bridge of one run; removed when dropped, also
/// when the test fails.
pub struct Lab {
    tag: String,
    subnet: u8,
    /// The namespaces, host 0 first.
    pub namespaces: Vec<String>,
}

impl Lab {
    /// A bridge with `n` namespaces on it, `10.211.S.1` … `10.211.S.n`,
    /// and `10.211.S.254` for this (root) namespace. `None` when this
    /// process may not create namespaces.
    pub fn new(n: usize) -> Option<Lab> {
        let pid = std::process::id();
        let tag = format!("{:04}", pid % 10_000);
        let probe = format!("chp{tag}");
        let allowed = Command::new("ip")
            .args(["netns", "add", &probe])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !allowed {
            return None;
        }
        ip(&["netns", "del", &probe]);
        let mut lab = Lab {
            subnet: (pid % 250) as u8 + 1,
            tag,
            namespaces: Vec::new(),
        };
        let bridge = lab.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", lab.router()),
            "dev",
            &bridge,
        ]);
        ip(&["link", "set", &bridge, "up"]);
        for i in 0..n {
            let ns = format!("chn{}{i}", lab.tag);
            ip(&["netns", "add", &ns]);
            lab.namespaces.push(ns.clone());
            let (outer, inner) = (lab.link(i), format!("chi{}{i}", lab.tag));
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["link", "set", &outer, "master", &bridge, "up"]);
            let addr = format!("{}/24", lab.host(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", &inner]);
            ip(&["-n", &ns, "link", "set", &inner, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        Some(lab)
    }

    pub fn bridge(&self) -> String {
        format!("chb{}", self.tag)
    }

    /// The root end of host `i`'s link.
    pub fn link(&self, i: usize) -> String {
        format!("cho{}{i}", self.tag)
    }

    /// Host `i`'s address.
    pub fn host(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 211, self.subnet, i as u8 + 1)
    }

    /// This namespace's address on the bridge.
    pub fn router(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 211, self.subnet, 254)
    }

    /// Takes host `i` off the network at once: its link goes down.
    pub fn unplug(&self, i: usize) {
        ip(&["link", "set", &self.link(i), "down"]);
    }

    /// Puts host `i` back on the network (after [`Lab::unplug`]).
    pub fn plug(&self, i: usize) {
        ip(&["link", "set", &self.link(i), "up"]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        for i in 0..self.namespaces.len() {
            let _ = Command::new("ip")
                .args(["link", "del", &self.link(i)])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge()])
            .status();
    }
}
