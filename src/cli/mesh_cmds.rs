//! The mesh commands: running nodes (`bootstrap`, `service`) and looking at the mesh
//! (`id`, `peers`, `health`, `network`, `discover`, `bandwidth`, `distribution`).
//!
//! # Identities
//!
//! `bootstrap` and `service` run with the repository's node key (the keystore is
//! unlocked, so they need the passphrase), which keeps their peer id, and so the
//! address others configure, stable across restarts. The looking commands start a
//! short-lived client node with a *fresh* key: they only read, and a fresh identity can
//! never collide with a running `service` of the same repository.
//!
//! # Output
//!
//! `bootstrap` and `service` print one line to stdout once listening, for scripts and
//! tests to wait for:
//!
//! ```text
//! ready {"peer_id":"12D3KooW...","role":"storage","addrs":["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW..."]}
//! ```
//!
//! and notes for people on stderr.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};

use super::context::CliContext;
use super::mesh_args::*;
use super::output::{json, table};
use crate::config::{Config, human_bytes};
use crate::crypto::passphrase::Purpose;
use crate::engine::blocking;
use crate::mesh::availability::{self, Stores};
use crate::mesh::{
    BootstrapEntry, Limits, MeshClient, MeshConfig, MeshStore, NodeConfig, Role, ShardServer, diag,
};
use crate::repo::Repository;
use crate::store::local::LocalStore;

/// Environment variable that must be `1` for test-only faults to be accepted.
pub const TEST_FAULTS_ENV: &str = "DATAMESH_TEST_FAULTS";
/// How long the looking commands wait for a bootstrap peer.
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Timeout of one diagnostic request.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs one mesh command.
pub async fn run(cmd: MeshCommand, ctx: &CliContext) -> anyhow::Result<()> {
    match cmd {
        MeshCommand::Bootstrap(a) => bootstrap(ctx, a).await,
        MeshCommand::Service(a) => service(ctx, a).await,
        MeshCommand::Id(a) => id(ctx, a).await,
        MeshCommand::Peers(a) => peers(ctx, a).await,
        MeshCommand::Health(a) => health(ctx, a).await,
        MeshCommand::Network(a) => network(ctx, a).await,
        MeshCommand::Discover(a) => discover(ctx, a).await,
        MeshCommand::Bandwidth(a) => bandwidth(ctx, a).await,
        MeshCommand::Distribution(a) => distribution(ctx, a).await,
    }
}

/// The repository with its keystore unlocked.
async fn unlocked(ctx: &CliContext) -> anyhow::Result<Repository> {
    let paths = ctx.paths()?;
    let mut repo = blocking(move || Repository::open(paths)).await?;
    let what = format!("the keystore {}", repo.paths().keystore().display());
    let pass = ctx.passphrase(Purpose::Open, what).await?;
    Ok(blocking(move || {
        repo.unlock(&pass)?;
        Ok(repo)
    })
    .await?)
}

fn node_key(repo: &Repository) -> anyhow::Result<Keypair> {
    Ok(repo
        .keys()
        .context("the keystore is not unlocked")?
        .node_keypair())
}

/// The config of the repository, or the defaults when there is none (looking commands
/// work without a repository, given --bootstrap).
async fn config_or_default(ctx: &CliContext) -> Config {
    match ctx.open_metadata().await {
        Ok(repo) => repo.config().clone(),
        Err(_) => Config::default(),
    }
}

fn listen_addrs(flags: &[String], config: &MeshConfig) -> anyhow::Result<Vec<Multiaddr>> {
    let list = if flags.is_empty() {
        &config.listen
    } else {
        flags
    };
    list.iter()
        .map(|a| {
            a.parse().with_context(|| {
                format!("invalid listen address {a:?} (e.g. /ip4/0.0.0.0/tcp/4001)")
            })
        })
        .collect()
}

fn limits(config: &MeshConfig) -> Limits {
    Limits {
        max_connections: config.max_connections,
        request_timeout: config.request_timeout(),
        ..Limits::default()
    }
}

fn ready_line(ctx: &CliContext, info: &crate::mesh::NodeInfo) -> anyhow::Result<()> {
    let line = serde_json::json!({
        "peer_id": info.peer_id.to_string(),
        "role": info.role,
        "addrs": info.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    });
    crate::outln!(ctx, "ready {line}");
    use std::io::Write as _;
    ctx.out().flush()?;
    Ok(())
}

/// Waits for SIGINT, SIGTERM or the timeout.
async fn until_stopped(timeout: Option<u64>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
    let sleep = async {
        match timeout {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = sleep => {}
    }
    Ok(())
}

/// Joins through the configured and given bootstrap peers, reporting failure as a note
/// (a running node keeps retrying by itself).
async fn join_in_background(ctx: &CliContext, client: &MeshClient, entries: Vec<BootstrapEntry>) {
    if entries.is_empty() {
        return;
    }
    match client.join(&entries, JOIN_TIMEOUT).await {
        Ok(n) => ctx.note(format!("joined the mesh ({n} peers connected)")),
        Err(e) => ctx.note(format!("{e}; retrying in the background")),
    }
}

async fn bootstrap(ctx: &CliContext, a: BootstrapArgs) -> anyhow::Result<()> {
    let repo = unlocked(ctx).await?;
    let mesh = repo.config().mesh.clone();
    let listen = match a.port {
        Some(p) => vec![
            format!("/ip4/0.0.0.0/tcp/{p}").parse()?,
            format!("/ip4/0.0.0.0/udp/{p}/quic-v1").parse()?,
        ],
        None => listen_addrs(&a.listen, &mesh)?,
    };
    let mut nc = NodeConfig::new(node_key(&repo)?, Role::Bootstrap);
    nc.listen = listen;
    nc.limits = limits(&mesh);
    let client = crate::mesh::start(nc).await?;
    let info = client.info().await?;
    ctx.note(format!(
        "bootstrap node {} listening; others join with:",
        info.peer_id
    ));
    for addr in &info.addrs {
        ctx.note(format!("  --bootstrap {addr}"));
    }
    ready_line(ctx, &info)?;
    // A bootstrap node may itself know other entry points (a mesh with several).
    join_in_background(ctx, &client, mesh.bootstrap_with(&ctx.global.bootstrap)).await;
    until_stopped(a.timeout).await?;
    client.shutdown().await;
    Ok(())
}

async fn service(ctx: &CliContext, a: ServiceArgs) -> anyhow::Result<()> {
    if a.corrupt_replies && std::env::var(TEST_FAULTS_ENV).as_deref() != Ok("1") {
        bail!("--corrupt-replies is a test-only fault; it is refused unless {TEST_FAULTS_ENV}=1");
    }
    let repo = unlocked(ctx).await?;
    let mesh = repo.config().mesh.clone();
    let capacity = a
        .capacity
        .map(|c| c.0)
        .filter(|c| *c > 0)
        .or(mesh.capacity_limit());
    let dir = a
        .shards_dir
        .clone()
        .unwrap_or_else(|| repo.paths().node_shards());
    let store = {
        let dir = dir.clone();
        blocking(move || Ok(LocalStore::open_with_capacity(dir, capacity)?)).await?
    };
    let mut nc = NodeConfig::new(node_key(&repo)?, Role::Storage);
    nc.listen = listen_addrs(&a.listen, &mesh)?;
    nc.limits = limits(&mesh);
    nc.peer_requests_per_sec = mesh.peer_requests_per_sec;
    nc.server = Some(ShardServer::new(store, capacity, a.corrupt_replies));
    let client = crate::mesh::start(nc).await?;
    let info = client.info().await?;
    ctx.note(format!(
        "storage node {} holding shards in {} (capacity {})",
        info.peer_id,
        dir.display(),
        capacity.map_or("unlimited".into(), human_bytes)
    ));
    if a.corrupt_replies {
        ctx.note("TEST FAULT: every shard this node returns is corrupted");
    }
    ready_line(ctx, &info)?;
    let entries = mesh.bootstrap_with(&ctx.global.bootstrap);
    if entries.is_empty() {
        ctx.note("no bootstrap peer configured: waiting for others to join this node");
    }
    join_in_background(ctx, &client, entries).await;
    until_stopped(a.timeout).await?;
    client.shutdown().await;
    Ok(())
}

async fn id(ctx: &CliContext, a: IdArgs) -> anyhow::Result<()> {
    let repo = unlocked(ctx).await?;
    let peer = node_key(&repo)?.public().to_peer_id();
    let mesh = &repo.config().mesh;
    if a.json {
        return json(
            ctx,
            &serde_json::json!({
                "peer_id": peer.to_string(),
                "listen": mesh.listen,
                "bootstrap": mesh.bootstrap.iter().map(|e| &e.addr).collect::<Vec<_>>(),
                "node_shards": repo.paths().node_shards(),
            }),
        );
    }
    crate::outln!(ctx, "peer id     {peer}");
    crate::outln!(ctx, "listen      {}", mesh.listen.join(" "));
    crate::outln!(ctx, "node shards {}", repo.paths().node_shards().display());
    Ok(())
}

/// A short-lived client node with a fresh key, joined and settled.
async fn looking_node(ctx: &CliContext) -> anyhow::Result<(Config, MeshStore)> {
    let config = config_or_default(ctx).await;
    let entries = config.mesh.bootstrap_with(&ctx.global.bootstrap);
    if entries.is_empty() {
        bail!(
            "no bootstrap peer: pass --bootstrap MULTIADDR (printed by `datamesh bootstrap` or `datamesh service`) or set mesh.bootstrap in config.toml"
        );
    }
    let mut mesh = config.mesh.clone();
    mesh.bootstrap = entries;
    let store = MeshStore::connect(Keypair::generate_ed25519(), &mesh, &[]).await?;
    // The admin views list peers: let discovery finish first.
    store.wait_settled().await;
    Ok((config, store))
}

async fn peers(ctx: &CliContext, a: PeersArgs) -> anyhow::Result<()> {
    let (_, store) = looking_node(ctx).await?;
    let client = store.client();
    let mut views = client.peers().await?;
    views.retain(|v| v.peer_id != client.peer_id());
    let status = if a.detailed {
        diag::storage_status(client, PROBE_TIMEOUT).await?
    } else {
        Vec::new()
    };
    if a.format == Format::Json {
        let rows: Vec<_> = views
            .iter()
            .map(|v| {
                let s = status.iter().find(|s| s.peer_id == v.peer_id.to_string());
                serde_json::json!({ "peer": v, "status": s })
            })
            .collect();
        return json(ctx, &rows);
    }
    let mut rows = Vec::new();
    for v in &views {
        let mut row = vec![
            v.peer_id.to_string(),
            v.role.map_or("?", |r| r.as_str()).to_owned(),
            if v.connected { "yes" } else { "no" }.to_owned(),
            v.rtt_ms.map_or("-".into(), |r| format!("{r:.1} ms")),
        ];
        if a.detailed {
            let s = status.iter().find(|s| s.peer_id == v.peer_id.to_string());
            row.push(
                s.and_then(|s| s.stats)
                    .map_or("-".into(), |s| s.shards.to_string()),
            );
            row.push(
                s.and_then(|s| s.stats)
                    .map_or("-".into(), |s| human_bytes(s.bytes)),
            );
            row.push(
                s.and_then(|s| s.stats)
                    .map_or("-".into(), |s| human_bytes(s.available)),
            );
        }
        row.push(
            v.addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(" "),
        );
        rows.push(row);
    }
    let header: &[&str] = if a.detailed {
        &[
            "PEER",
            "ROLE",
            "CONNECTED",
            "RTT",
            "SHARDS",
            "HELD",
            "FREE",
            "ADDRESSES",
        ]
    } else {
        &["PEER", "ROLE", "CONNECTED", "RTT", "ADDRESSES"]
    };
    table(ctx, header, &rows)
}

async fn health(ctx: &CliContext, a: HealthArgs) -> anyhow::Result<()> {
    let (_, store) = looking_node(ctx).await?;
    let catalog = ctx.open_metadata().await.ok().map(|r| r.catalog().clone());
    loop {
        let status = diag::storage_status(store.client(), PROBE_TIMEOUT).await?;
        let reachable: HashSet<String> = status
            .iter()
            .filter(|s| s.reachable)
            .map(|s| s.peer_id.clone())
            .collect();
        let avail = match &catalog {
            Some(c) => Some(availability::availability(c.clone(), reachable.clone()).await?),
            None => None,
        };
        if a.json {
            json(
                ctx,
                &serde_json::json!({ "peers": status, "catalog": avail }),
            )?;
        } else {
            let mut lat: Vec<f64> = status.iter().filter_map(|s| s.latency_ms).collect();
            lat.sort_by(f64::total_cmp);
            let median = lat
                .get(lat.len() / 2)
                .map_or("-".into(), |l| format!("{l:.1} ms"));
            crate::outln!(
                ctx,
                "storage peers: {} reachable of {} known; median latency {median}",
                reachable.len(),
                status.len()
            );
            for s in &status {
                match (&s.stats, &s.error) {
                    (Some(st), _) => crate::outln!(
                        ctx,
                        "  {}  {:.1} ms  {} shards, {} held, {} free",
                        s.peer_id,
                        s.latency_ms.unwrap_or(0.0),
                        st.shards,
                        human_bytes(st.bytes),
                        human_bytes(st.available)
                    ),
                    (None, Some(e)) => crate::outln!(ctx, "  {}  unreachable: {e}", s.peer_id),
                    (None, None) => crate::outln!(ctx, "  {}  no figures", s.peer_id),
                }
            }
            if let Some(av) = &avail {
                crate::outln!(
                    ctx,
                    "catalog: {} of {} holders reachable; {} chunks degraded, {} unreadable ({} shards on unreachable holders)",
                    av.holders_reachable,
                    av.holders,
                    av.chunks_degraded,
                    av.chunks_unreadable,
                    av.shards_unreachable
                );
            }
        }
        if !a.continuous {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(a.interval.max(1))) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn network(ctx: &CliContext, a: NetworkArgs) -> anyhow::Result<()> {
    let (_, store) = looking_node(ctx).await?;
    let client = store.client();
    let buckets = client.routing_table().await?;
    let hoods = diag::neighbourhoods(client, a.depth.max(1)).await?;
    if a.json {
        return json(
            ctx,
            &serde_json::json!({ "buckets": buckets, "neighbourhoods": hoods }),
        );
    }
    crate::outln!(ctx, "routing table of {} (client node):", client.peer_id());
    for b in &buckets {
        crate::outln!(
            ctx,
            "  bucket 2^{}: {} peers",
            b.distance_log2,
            b.peers.len()
        );
        for (p, connected) in &b.peers {
            crate::outln!(
                ctx,
                "    {p}{}",
                if *connected { "  (connected)" } else { "" }
            );
        }
    }
    for (p, near) in &hoods {
        crate::outln!(ctx, "neighbours of {p}: {}", near.join(" "));
    }
    Ok(())
}

async fn discover(ctx: &CliContext, a: DiscoverArgs) -> anyhow::Result<()> {
    let (_, store) = looking_node(ctx).await?;
    let client = store.client();
    let lookups = diag::walk(client, Duration::from_secs(a.timeout)).await;
    let mut views = client.peers().await?;
    views.retain(|v| v.peer_id != client.peer_id());
    if a.json {
        return json(ctx, &views);
    }
    ctx.note(format!("{lookups} lookups; {} peers found", views.len()));
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            vec![
                v.peer_id.to_string(),
                v.role.map_or("?", |r| r.as_str()).to_owned(),
                v.addrs
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    table(ctx, &["PEER", "ROLE", "ADDRESSES"], &rows)
}

async fn bandwidth(ctx: &CliContext, a: BandwidthArgs) -> anyhow::Result<()> {
    let (_, store) = looking_node(ctx).await?;
    let client = store.client();
    let targets: Vec<PeerId> = match &a.test_peer {
        Some(p) => vec![
            p.parse()
                .with_context(|| format!("{p:?} is not a peer id (see `datamesh peers`)"))?,
        ],
        None => client.storage_peers().await?,
    };
    if targets.is_empty() {
        bail!("no storage peer is known to test: check `datamesh peers`");
    }
    let mut results = Vec::new();
    for peer in targets {
        match diag::measure_bandwidth(
            client,
            peer,
            Duration::from_secs(a.duration.max(1)),
            PROBE_TIMEOUT * 6,
        )
        .await
        {
            Ok(b) => results.push(b),
            Err(e) => ctx.error(format!("{peer}: {e}")),
        }
    }
    if a.json {
        return json(ctx, &results);
    }
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|b| {
            vec![
                b.peer_id.clone(),
                format!("{:.1} MiB/s", b.mib_per_sec),
                human_bytes(b.bytes),
                format!("{:.2} s", b.seconds),
                format!("{:.2} ms", b.latency_ms),
                format!("{:.3}", b.wire_bytes_sent as f64 / b.bytes.max(1) as f64),
            ]
        })
        .collect();
    table(
        ctx,
        &["PEER", "THROUGHPUT", "SENT", "TIME", "RTT", "WIRE/PAYLOAD"],
        &rows,
    )?;
    if results.is_empty() {
        bail!("no peer could be measured");
    }
    Ok(())
}

async fn distribution(ctx: &CliContext, a: DistributionArgs) -> anyhow::Result<()> {
    let repo = ctx.open_metadata().await?;
    let catalog = repo.catalog().clone();
    let name = a.file_key.clone();
    let attr = {
        let c = catalog.clone();
        blocking(move || super::names::resolve_key(&c, &name)).await?
    };
    let local = repo.local_store()?;
    let entries = repo.config().mesh.bootstrap_with(&ctx.global.bootstrap);
    let mesh = if entries.is_empty() {
        None
    } else {
        let mut m = repo.config().mesh.clone();
        m.bootstrap = entries;
        Some(MeshStore::connect(Keypair::generate_ed25519(), &m, &[]).await?)
    };
    let stores = Stores {
        local: Some(&local),
        mesh: mesh.as_ref(),
    };
    let chunks = availability::distribution(Arc::clone(&catalog), attr.ino, &stores).await?;
    if a.json {
        return json(ctx, &chunks);
    }
    let full = chunks.iter().filter(|c| c.full_strength).count();
    for c in &chunks {
        let state = if c.inline {
            "inline (in the catalog)".to_owned()
        } else if c.full_strength {
            format!(
                "full strength ({} of {} shards, {} holders)",
                c.present,
                c.k + c.m,
                c.distinct_holders
            )
        } else if c.readable {
            format!(
                "DEGRADED ({} of {} shards, {} holders)",
                c.present,
                c.k + c.m,
                c.distinct_holders
            )
        } else {
            format!(
                "UNREADABLE ({} of {} shards, needs {})",
                c.present,
                c.k + c.m,
                c.k
            )
        };
        crate::outln!(
            ctx,
            "chunk {} at {} (+{}): {state}",
            &c.chunk[..16],
            c.offset,
            c.len
        );
        for s in &c.shards {
            let mark = match (s.present, &s.error) {
                (Some(true), _) => "ok".to_owned(),
                (Some(false), _) => "MISSING".to_owned(),
                (None, Some(e)) => format!("UNKNOWN ({e})"),
                (None, None) => "UNKNOWN".to_owned(),
            };
            crate::outln!(
                ctx,
                "  shard {} {}  {}  {mark}",
                s.index,
                &s.shard[..16],
                s.holder
            );
        }
    }
    crate::outln!(ctx, "{full} of {} chunks at full strength", chunks.len());
    Ok(())
}
