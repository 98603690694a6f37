//! Starting a node: bind, load the member certificate, open the store,
//! settle the identity, spawn the driver, then create or join the ring
//! and wait until every virtual node has joined.

// Starting touches every part of the crate.
use crate::driver::{self, Driver, DriverSettings};
use crate::*;
use chordal_store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::warn;

impl Node {
    /// Binds, creates or joins a ring, and returns once every virtual node
    /// has joined (what [`NodeBuilder::start`] does).
    pub(crate) async fn start(config: NodeConfig) -> Result<Node, StartError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let bound = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let addr = config.advertise.unwrap_or(bound);
        if addr.ip().is_unspecified() {
            return Err(StartError::Unspecified(addr));
        }
        let mut seeds = Vec::new();
        for seed in &config.seeds {
            let resolved =
                tokio::net::lookup_host(seed.as_str())
                    .await
                    .map_err(|e| StartError::Seed {
                        seed: seed.clone(),
                        reason: e.to_string(),
                    })?;
            seeds.extend(resolved.filter(|a| *a != addr));
        }
        if !config.seeds.is_empty() && seeds.is_empty() {
            return Err(StartError::Seed {
                seed: config.seeds.join(","),
                reason: "resolves only to this node".into(),
            });
        }
        let tls = match &config.tls_dir {
            Some(dir) => Some(tls::TlsSlot::new(load_member_tls(dir, &config)?)),
            None => {
                if let Some(warning) = tls::plain_warning(bound) {
                    warn!("{warning}");
                }
                None
            }
        };
        let store = chordal_store::open(config.data_dir.as_deref())?;
        let ids = identity(
            &config,
            addr,
            tls.as_ref().map(|t| t.current().identity().id),
            store.as_ref(),
        )?;
        let mut core_config = config.core.clone();
        // Under TLS every message's sender is certified, so what a member
        // says about others can be checked with them.
        core_config.verify_members |= tls.is_some();
        let mut core = chordal_core::Node::new(core_config, addr, &ids, random_seed());
        // Versions go above everything on disk, even if the wall clock is
        // now behind the one that wrote it (an NTP step, a VM resume).
        core.seed_clock(store.max_hlc()?);
        // What this process promised before it stopped (authority): kept,
        // and every lease counted live for one more lease.
        let promises = store.meta(chordal_store::PROMISES)?;
        if !core.restore_promises(driver::wall_clock(), promises.as_deref()) {
            return Err(StartError::Store(chordal_store::StoreError::Io(
                "the saved promise table is damaged".into(),
            )));
        }
        let (inbound_tx, inbound_rx) = mpsc::channel(4096);
        let (commands, commands_rx) = mpsc::channel(1024);
        let (events, _) = broadcast::channel(1024);
        let stats = Arc::new(WireStats::default());
        let hello = chordal_wire::encode_hello(&chordal_wire::Hello {
            cluster: config.cluster.clone(),
            addr: Some(addr),
            api: config.api,
            ids: ids.clone(),
            service: config.service.clone(),
            resp: config.resp,
        });
        let stopped = CancellationToken::new();
        if let (Some(slot), Some(dir)) = (&tls, &config.tls_dir) {
            tokio::spawn(
                slot.clone()
                    .watch(dir.clone(), config.tls_reload, stopped.clone()),
            );
        }
        let ctx = conn::ConnContext {
            hello: hello.into(),
            cluster: config.cluster.clone(),
            max_frame: config.max_frame,
            handshake_timeout: config.handshake_timeout,
            connect_timeout: config.connect_timeout,
            peer_buffer: config.peer_buffer,
            max_connections: config.max_connections,
            inbound: inbound_tx,
            shutdown: stopped.clone(),
            tasks: tokio_util::task::TaskTracker::new(),
            stats: stats.clone(),
            tls,
        };
        let settings = DriverSettings {
            cluster: config.cluster.clone(),
            api: config.api,
            service: config.service.clone(),
            resp: config.resp,
            idle_timeout: config.idle_timeout,
        };
        let (joined_tx, joined_rx) = oneshot::channel();
        let (inbox_tx, inbox_rx) = mpsc::channel(config.app_inbox.max(1));
        let app = Arc::new(app::AppShared {
            listening: std::sync::atomic::AtomicBool::new(false),
            inbox: std::sync::Mutex::new(Some(inbox_rx)),
        });
        let local_store = store.clone();
        let driver = Driver::new(
            core,
            store,
            settings,
            ctx,
            events.clone(),
            joined_tx,
            app::AppChannels {
                shared: app.clone(),
                inbox: inbox_tx,
            },
        );
        // One span per node: every log line of its driver says which node.
        let span = tracing::info_span!("node", id = %ids[0].short(), addr = %addr);
        tokio::spawn(tracing::Instrument::instrument(
            driver.run(listener, seeds, commands_rx, inbound_rx),
            span,
        ));
        let node = Node {
            commands,
            events,
            addr,
            ids,
            stats,
            app,
            max_message: config.max_message,
            subscription_buffer: config.subscription_buffer,
            successor_list: config.core.successors,
            replicas: config.core.replicas,
            stopped: stopped.clone(),
            store: local_store,
            keyspace_events: Default::default(),
        };
        match tokio::time::timeout(config.join_timeout, joined_rx).await {
            Ok(Ok(Ok(()))) => Ok(node),
            Ok(_) => {
                node.leave().await;
                Err(StartError::JoinFailed)
            }
            Err(_) => {
                node.leave().await;
                Err(StartError::JoinTimeout(config.join_timeout))
            }
        }
    }
}

/// Loads a member's TLS material and checks it fits the rest of `config`.
fn load_member_tls(dir: &std::path::Path, config: &NodeConfig) -> Result<tls::PeerTls, StartError> {
    if config.id.is_some() {
        return Err(StartError::IdWithTls);
    }
    if config.vnodes > tls::MAX_TLS_VNODES {
        return Err(StartError::TooManyVnodes(config.vnodes));
    }
    let tls = tls::PeerTls::load(dir).map_err(|e| StartError::Tls(e.to_string()))?;
    if tls.identity().role != chordal_tls::Role::Member {
        return Err(StartError::Tls(format!(
            "{} holds a client certificate: a node needs a member certificate",
            dir.display()
        )));
    }
    Ok(tls)
}

/// A seed for the core's jitter that differs between processes: hashing
/// with std's randomly keyed hasher avoids a dependency on an RNG crate.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish()
}

/// The virtual node ids this node runs with. Without a data directory:
/// `--id` or derived from the address. With one: the ids stored there (a
/// restarted node comes back at the same place), or, on first start, the
/// ids chosen as above, which are then stored.
///
/// Under TLS (`certified`: the certificate's id) the ids are
/// `vnode_ids_from` that id, always; a data directory must hold the same.
fn identity(
    config: &NodeConfig,
    addr: SocketAddr,
    certified: Option<Id>,
    store: &dyn Store,
) -> Result<Vec<Id>, StartError> {
    let mut fresh = match certified {
        Some(id) => chordal_core::Node::vnode_ids_from(id, config.vnodes),
        None => chordal_core::Node::vnode_ids(&addr.to_string(), config.vnodes),
    };
    if let Some(id) = config.id {
        fresh[0] = id;
    }
    if config.data_dir.is_none() {
        return Ok(fresh);
    }
    match store.meta("vnode_ids")? {
        Some(bytes) => {
            let ids: Vec<Id> = bytes
                .chunks(chordal_core::ID_BYTES)
                .filter_map(Id::from_slice)
                .collect();
            if ids.is_empty() || ids.len() * chordal_core::ID_BYTES != bytes.len() {
                return Err(StartError::Identity("stored ids are corrupt".into()));
            }
            if ids.len() != config.vnodes.max(1) {
                return Err(StartError::Identity(format!(
                    "it was created with {} virtual nodes, not {}",
                    ids.len(),
                    config.vnodes
                )));
            }
            if let Some(id) = config.id.filter(|id| *id != ids[0]) {
                return Err(StartError::Identity(format!(
                    "it holds node {}, not {id}",
                    ids[0]
                )));
            }
            if certified.is_some() && ids != fresh {
                return Err(StartError::Identity(format!(
                    "it holds node {}, the certificate gives {}",
                    ids[0], fresh[0]
                )));
            }
            Ok(ids)
        }
        None => {
            let bytes: Vec<u8> = fresh.iter().flat_map(|id| id.0).collect();
            store.set_meta("vnode_ids", &bytes)?;
            Ok(fresh)
        }
    }
}
