//! A mesh node: one task owns the libp2p `Swarm`; everyone else holds a
//! [`MeshClient`] that sends it [`Command`]s over a bounded channel and awaits oneshot
//! replies (the shape of rust-libp2p's file-sharing example).
//!
//! # Lifecycle
//!
//! [`start`] builds the transport and behaviour, starts listening, waits (at most
//! [`LISTEN_WAIT`]) until every listener reported an address, spawns the event loop and
//! returns the client. The loop runs until [`MeshClient::shutdown`] or until every
//! client handle is dropped. Joining the mesh is a separate step
//! ([`MeshClient::join`]); a node that knows bootstrap peers dials them again whenever
//! it finds itself with no connection at all (checked every [`REJOIN_EVERY`]).
//!
//! # Inbound shard requests (storage nodes)
//!
//! The loop never touches the disk. A request is first checked against the peer's rate
//! limit and the global in-flight limit ([`MAX_INFLIGHT`] handlers); either refusal is an
//! immediate "busy". Otherwise it is handed to a spawned task running the
//! [`ShardServer`], whose answer comes back over a bounded channel for the loop to send.
//! After a put the node announces itself as a provider of the shard in the DHT, in
//! batched sweeps (`mesh::announce`), so a burst of puts costs a few messages per peer,
//! not a DHT walk per shard. A storage node re-announces every shard it holds after it
//! first joins and periodically after that.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::kad::QueryId;
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::announce::{Announcer, REANNOUNCE_EVERY};
use super::behaviour::{Behaviour, Limits, Role};
use super::client::MeshClient;
use super::config::BootstrapEntry;
use super::error::MeshError;
use super::peers::{PeerTable, PeerView};
use super::placement::record_key;
use super::ratelimit::RateLimiter;
use super::server::{Effect, ShardServer};
use super::transport::{self, Traffic, TransportKind};
use super::wire::{Request, Response};
use crate::ids::ShardId;

/// Longest [`start`] waits for listeners to report their addresses.
pub const LISTEN_WAIT: Duration = Duration::from_secs(5);
/// How often a node with no connections dials its bootstrap peers again.
pub const REJOIN_EVERY: Duration = Duration::from_secs(10);
/// Inbound shard requests being handled at once.
pub const MAX_INFLIGHT: usize = 64;
/// Commands queued to the loop at most.
const COMMAND_QUEUE: usize = 256;
/// Idle connections close after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How to build a node.
pub struct NodeConfig {
    /// Its identity (the repository's node key).
    pub keypair: Keypair,
    /// What it does.
    pub role: Role,
    /// Addresses to listen on (none for a client that only dials out).
    pub listen: Vec<Multiaddr>,
    /// Which transports.
    pub transport: TransportKind,
    /// Connection and message limits.
    pub limits: Limits,
    /// Shard requests per second per peer (storage nodes; 0 = unlimited).
    pub peer_requests_per_sec: u32,
    /// The shard handler: required for [`Role::Storage`], ignored otherwise.
    pub server: Option<ShardServer>,
}

impl NodeConfig {
    /// A node of `role` with default limits on the network transports.
    pub fn new(keypair: Keypair, role: Role) -> Self {
        NodeConfig {
            keypair,
            role,
            listen: Vec::new(),
            transport: TransportKind::Network,
            limits: Limits::default(),
            peer_requests_per_sec: 500,
            server: None,
        }
    }
}

/// What this node is, as reported by [`MeshClient::info`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeInfo {
    /// Peer id.
    #[serde(serialize_with = "ser_display")]
    pub peer_id: PeerId,
    /// Role.
    pub role: Role,
    /// Full addresses others can dial (`.../p2p/<peer id>`).
    #[serde(serialize_with = "ser_addrs")]
    pub addrs: Vec<Multiaddr>,
    /// Peers with an open connection.
    pub connected: usize,
    /// Bytes sent over TCP and memory connections.
    pub bytes_sent: u64,
    /// Bytes received over TCP and memory connections.
    pub bytes_received: u64,
}

fn ser_display<S: serde::Serializer>(p: &PeerId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(p)
}

fn ser_addrs<S: serde::Serializer>(a: &[Multiaddr], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(a.iter().map(|a| a.to_string()))
}

/// One k-bucket of the routing table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BucketView {
    /// log2 of the bucket's XOR distance range (255 is the farthest half of the space).
    pub distance_log2: u32,
    /// Peers in it and whether each is connected.
    pub peers: Vec<(String, bool)>,
}

type Reply<T> = oneshot::Sender<Result<T, MeshError>>;

/// A request to the node's task.
pub(crate) enum Command {
    Join {
        entries: Vec<(Multiaddr, u32)>,
        reply: Option<Reply<usize>>,
    },
    Request {
        peer: PeerId,
        request: Request,
        reply: Reply<Response>,
    },
    ClosestPeers {
        key: Vec<u8>,
        storage_only: bool,
        reply: Reply<Vec<PeerId>>,
    },
    Providers {
        id: ShardId,
        reply: Reply<Vec<PeerId>>,
    },
    Provide(Vec<ShardId>),
    Peers(oneshot::Sender<Vec<PeerView>>),
    StoragePeers(oneshot::Sender<Vec<PeerId>>),
    Routing(oneshot::Sender<Vec<BucketView>>),
    Info(oneshot::Sender<NodeInfo>),
    Shutdown,
}

/// A bootstrap dial in progress.
pub(super) struct Join {
    /// Groups not tried yet, in priority order.
    pub groups: VecDeque<Vec<Multiaddr>>,
    /// Dials of the current group still pending.
    pub pending: HashSet<ConnectionId>,
    pub reply: Option<Reply<usize>>,
    pub tried: Vec<String>,
    pub last_error: String,
}

/// The task that owns the swarm.
pub(super) struct EventLoop {
    pub swarm: Swarm<Behaviour>,
    pub role: Role,
    pub traffic: Traffic,
    pub commands: mpsc::Receiver<Command>,
    pub server: Option<ShardServer>,
    pub limiter: RateLimiter,
    pub inflight: Arc<Semaphore>,
    pub done_tx: mpsc::Sender<(ResponseChannel<Response>, Response, Effect)>,
    pub done_rx: mpsc::Receiver<(ResponseChannel<Response>, Response, Effect)>,
    pub requests: HashMap<OutboundRequestId, (PeerId, Reply<Response>)>,
    pub closest: HashMap<QueryId, (bool, Reply<Vec<PeerId>>)>,
    pub providers: HashMap<QueryId, Reply<Vec<PeerId>>>,
    pub joins: Vec<Join>,
    /// Joins that reached a peer and now wait for their routing-table refresh.
    pub refreshing: HashMap<QueryId, Reply<usize>>,
    pub bootstrap: Vec<(Multiaddr, u32)>,
    pub announcer: Announcer,
    pub announced_store: bool,
    /// The shards a restarted storage node holds, listed off the loop.
    pub listed_tx: mpsc::Sender<Vec<ShardId>>,
    pub listed_rx: mpsc::Receiver<Vec<ShardId>>,
    pub peers: PeerTable,
}

/// Builds, starts and spawns a node; see the module docs.
pub async fn start(config: NodeConfig) -> Result<MeshClient, MeshError> {
    if config.role == Role::Storage && config.server.is_none() {
        return Err(MeshError::Setup(
            "a storage node needs a shard store".into(),
        ));
    }
    let traffic = Traffic::default();
    let transport = transport::build(config.transport, &config.keypair, &traffic)?;
    let behaviour = Behaviour::new(&config.keypair, config.role, &config.limits);
    let peer_id = config.keypair.public().to_peer_id();
    let mut swarm = Swarm::new(
        transport,
        behaviour,
        peer_id,
        libp2p::swarm::Config::with_tokio_executor().with_idle_connection_timeout(IDLE_TIMEOUT),
    );
    let mut listeners = HashSet::new();
    for addr in &config.listen {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| MeshError::Listen {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        listeners.insert(id);
    }
    // Wait for each listener's first address, so callers can print them.
    let deadline = tokio::time::Instant::now() + LISTEN_WAIT;
    while !listeners.is_empty() {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .map_err(|_| MeshError::Listen {
                addr: format!("{:?}", config.listen),
                reason: "no address was reported in time".into(),
            })?;
        match event {
            SwarmEvent::NewListenAddr { listener_id, .. } => {
                listeners.remove(&listener_id);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                return Err(MeshError::Listen {
                    addr: format!("listener {listener_id:?}"),
                    reason: match reason {
                        Ok(()) => "closed".into(),
                        Err(e) => e.to_string(),
                    },
                });
            }
            SwarmEvent::ListenerError { error, .. } => {
                return Err(MeshError::Listen {
                    addr: format!("{:?}", config.listen),
                    reason: error.to_string(),
                });
            }
            _ => {}
        }
    }

    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let (done_tx, done_rx) = mpsc::channel(MAX_INFLIGHT);
    let (listed_tx, listed_rx) = mpsc::channel(1);
    let event_loop = EventLoop {
        swarm,
        role: config.role,
        traffic: traffic.clone(),
        commands: rx,
        server: config.server,
        limiter: RateLimiter::new(config.peer_requests_per_sec),
        inflight: Arc::new(Semaphore::new(MAX_INFLIGHT)),
        done_tx,
        done_rx,
        requests: HashMap::new(),
        closest: HashMap::new(),
        providers: HashMap::new(),
        joins: Vec::new(),
        refreshing: HashMap::new(),
        bootstrap: Vec::new(),
        announcer: Announcer::new(),
        announced_store: false,
        listed_tx,
        listed_rx,
        peers: PeerTable::default(),
    };
    tokio::spawn(event_loop.run());
    Ok(MeshClient::new(tx, peer_id, traffic))
}

/// Sleeps until `due` (forever without one; the select arm is disabled then anyway).
async fn sleep_until_due(due: Option<tokio::time::Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Parses a bootstrap entry into a multiaddr (which should end in `/p2p/<peer id>`).
pub fn parse_entry(entry: &BootstrapEntry) -> Result<(Multiaddr, u32), MeshError> {
    let addr: Multiaddr = entry
        .addr
        .trim()
        .parse()
        .map_err(|e| MeshError::BadAddress {
            addr: entry.addr.clone(),
            reason: format!("{e}"),
        })?;
    Ok((addr, entry.priority))
}

/// The peer id at the end of a multiaddr, if any.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

impl EventLoop {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(REJOIN_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.on_command(command),
                },
                Some((channel, response, effect)) = self.done_rx.recv() => {
                    // The requester may have given up; nothing to do then.
                    let _ = self.swarm.behaviour_mut().shard.send_response(channel, response);
                    self.on_effect(effect);
                }
                Some(ids) = self.listed_rx.recv() => self.announce(ids),
                Some(done) = self.announcer.done_rx.recv() => self.on_sweep_done(done),
                () = sleep_until_due(self.announcer.due), if self.announcer.due.is_some() => {
                    self.on_sweep_due();
                }
                _ = tick.tick() => self.on_tick(),
            }
        }
        tracing::debug!("mesh node stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Join { entries, reply } => {
                for e in &entries {
                    if !self.bootstrap.contains(e) {
                        self.bootstrap.push(e.clone());
                    }
                }
                self.start_join(entries, reply);
            }
            Command::Request {
                peer,
                request,
                reply,
            } => {
                if peer == *self.swarm.local_peer_id() {
                    let _ = reply.send(Err(MeshError::Unreachable {
                        peer,
                        reason: "a node does not send shard requests to itself".into(),
                    }));
                    return;
                }
                let id = self
                    .swarm
                    .behaviour_mut()
                    .shard
                    .send_request(&peer, request);
                self.requests.insert(id, (peer, reply));
            }
            Command::ClosestPeers {
                key,
                storage_only,
                reply,
            } => {
                let id = self.swarm.behaviour_mut().kad.get_closest_peers(key);
                self.closest.insert(id, (storage_only, reply));
            }
            Command::Providers { id, reply } => {
                let q = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(record_key(&id));
                self.providers.insert(q, reply);
            }
            Command::Provide(ids) => self.announce(ids),
            Command::Peers(reply) => {
                let _ = reply.send(self.peers.views(Instant::now()));
            }
            Command::StoragePeers(reply) => {
                let _ = reply.send(self.peers.storage_peers(Instant::now()));
            }
            Command::Routing(reply) => {
                let _ = reply.send(self.routing_view());
            }
            Command::Info(reply) => {
                let _ = reply.send(self.info());
            }
            Command::Shutdown => {}
        }
    }

    fn info(&self) -> NodeInfo {
        let me = *self.swarm.local_peer_id();
        let mut addrs: Vec<Multiaddr> = self
            .swarm
            .listeners()
            .chain(self.swarm.external_addresses())
            .map(|a| a.clone().with_p2p(me).unwrap_or_else(|a| a))
            .collect();
        addrs.dedup();
        NodeInfo {
            peer_id: me,
            role: self.role,
            addrs,
            connected: self.swarm.connected_peers().count(),
            bytes_sent: self.traffic.sent(),
            bytes_received: self.traffic.received(),
        }
    }

    fn routing_view(&mut self) -> Vec<BucketView> {
        let connected: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
        let mut out = Vec::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            let distance_log2 = bucket.range().0.ilog2().unwrap_or(0);
            let peers = bucket
                .iter()
                .map(|e| {
                    let p = *e.node.key.preimage();
                    (p.to_string(), connected.contains(&p))
                })
                .collect();
            out.push(BucketView {
                distance_log2,
                peers,
            });
        }
        out
    }

    /// Starts dialling `entries`, lowest priority number first (see `mesh::config`).
    fn start_join(&mut self, mut entries: Vec<(Multiaddr, u32)>, reply: Option<Reply<usize>>) {
        entries.sort_by_key(|(_, p)| *p);
        let mut groups: VecDeque<Vec<Multiaddr>> = VecDeque::new();
        let mut last = None;
        for (addr, prio) in entries {
            if last != Some(prio) {
                groups.push_back(Vec::new());
                last = Some(prio);
            }
            if let Some(g) = groups.back_mut() {
                g.push(addr);
            }
        }
        let join = Join {
            groups,
            pending: HashSet::new(),
            reply,
            tried: Vec::new(),
            last_error: "no bootstrap address was given".into(),
        };
        self.joins.push(join);
        let idx = self.joins.len() - 1;
        self.advance_join(idx);
    }

    /// Dials the next group of join `idx`, or finishes it when none is left.
    pub(super) fn advance_join(&mut self, idx: usize) {
        loop {
            let Some(group) = self.joins[idx].groups.pop_front() else {
                let join = self.joins.swap_remove(idx);
                if let Some(reply) = join.reply {
                    let _ = reply.send(Err(MeshError::JoinFailed {
                        tried: if join.tried.is_empty() {
                            "(none)".into()
                        } else {
                            join.tried.join(", ")
                        },
                        reason: join.last_error,
                    }));
                }
                return;
            };
            let mut already = 0;
            for addr in group {
                self.joins[idx].tried.push(addr.to_string());
                let opts = match peer_of(&addr) {
                    Some(peer) => {
                        if self.swarm.is_connected(&peer) {
                            already += 1;
                            continue;
                        }
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&peer, addr.clone());
                        libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                            .addresses(vec![addr.clone()])
                            .build()
                    }
                    None => libp2p::swarm::dial_opts::DialOpts::unknown_peer_id()
                        .address(addr.clone())
                        .build(),
                };
                let conn = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.joins[idx].pending.insert(conn);
                    }
                    Err(e) => self.joins[idx].last_error = format!("{addr}: {e}"),
                }
            }
            if already > 0 {
                self.finish_join(idx);
                return;
            }
            if !self.joins[idx].pending.is_empty() {
                return; // wait for the dials
            }
        }
    }

    /// Join `idx` reached a peer: refresh the routing table (the join's caller is
    /// answered when that finishes, so it sees the neighbourhood), announce shards.
    pub(super) fn finish_join(&mut self, idx: usize) {
        let join = self.joins.swap_remove(idx);
        match self.swarm.behaviour_mut().kad.bootstrap() {
            Ok(q) => {
                if let Some(reply) = join.reply {
                    self.refreshing.insert(q, reply);
                }
            }
            Err(_) => {
                // No DHT peer known yet (an address without /p2p/): answer now.
                if let Some(reply) = join.reply {
                    let _ = reply.send(Ok(self.swarm.connected_peers().count()));
                }
            }
        }
        if self.role == Role::Storage && !self.announced_store {
            self.announced_store = true;
            self.announce_held();
        }
    }

    fn on_tick(&mut self) {
        if self.swarm.connected_peers().next().is_none()
            && !self.bootstrap.is_empty()
            && self.joins.is_empty()
        {
            tracing::debug!("no connections: dialling the bootstrap peers again");
            self.start_join(self.bootstrap.clone(), None);
        }
        if self
            .announcer
            .last_full
            .is_some_and(|t| t.elapsed() >= REANNOUNCE_EVERY)
        {
            self.announce_held();
        }
    }

    pub(super) fn on_effect(&mut self, effect: Effect) {
        match effect {
            Effect::None => {}
            Effect::Provide(id) => self.announce([id]),
            Effect::Unprovide(id) => {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .stop_providing(&record_key(&id));
            }
        }
    }

    /// Answers an inbound shard request: limits first, then a handler task.
    pub(super) fn on_inbound(
        &mut self,
        peer: PeerId,
        request: Request,
        channel: ResponseChannel<Response>,
    ) {
        let busy = |why: &str| Response::Error(super::wire::Status::Busy, why.to_owned());
        let Some(server) = self.server.clone() else {
            // Only storage nodes accept the protocol at all (behaviour.rs), so nothing
            // but a misbehaving peer gets here.
            let _ = self.swarm.behaviour_mut().shard.send_response(
                channel,
                Response::Error(
                    super::wire::Status::NotStorage,
                    "this node does not store shards".into(),
                ),
            );
            return;
        };
        if !self.limiter.allow(&peer, Instant::now()) {
            let _ = self
                .swarm
                .behaviour_mut()
                .shard
                .send_response(channel, busy("too many requests from your peer; slow down"));
            return;
        }
        if let Request::Announce(ids) = request {
            // Bounded by the codec (MAX_ANNOUNCE_IDS) and the rate limit; map inserts only.
            let response = self.on_inbound_announce(peer, ids);
            let _ = self
                .swarm
                .behaviour_mut()
                .shard
                .send_response(channel, response);
            return;
        }
        let Ok(permit) = self.inflight.clone().try_acquire_owned() else {
            let _ = self
                .swarm
                .behaviour_mut()
                .shard
                .send_response(channel, busy("this node is busy; try another holder"));
            return;
        };
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let (response, effect) = server.handle(peer, request).await;
            // Capacity equals the permits, so this waits only for the loop to drain.
            let _ = done.send((channel, response, effect)).await;
            drop(permit);
        });
    }
}
