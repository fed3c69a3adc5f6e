//! `[mesh]` section of config.toml: how this repository joins a mesh.
//!
//! With an empty `bootstrap` list (the default) datamesh runs on this machine alone: the
//! embedded default, shards in the repository's local store. Naming one or more
//! bootstrap peers (here or with `--bootstrap`) makes every command join the mesh for
//! the time it runs and place shards on peers.
//!
//! Bootstrap entries are plain multiaddr strings or tables with a priority:
//!
//! ```toml
//! bootstrap = [
//!   "/ip4/192.0.2.7/tcp/4001/p2p/12D3KooW...",
//!   { addr = "/dns4/nas.example/tcp/4001/p2p/12D3KooW...", priority = 2 },
//! ]
//! ```
//!
//! Lower priorities are tried first; a plain string has priority
//! [`DEFAULT_PRIORITY`]. Peers of one priority are dialled together, and the next
//! priority is tried only when none of them answered (see `mesh::node`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ByteSize;

/// Priority of a bootstrap entry written as a plain string.
pub const DEFAULT_PRIORITY: u32 = 1;

/// One bootstrap peer: a multiaddr ending in `/p2p/<peer id>`, with a priority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapEntry {
    /// The multiaddr.
    pub addr: String,
    /// Lower is tried first.
    pub priority: u32,
}

impl BootstrapEntry {
    /// An entry at [`DEFAULT_PRIORITY`].
    pub fn new(addr: impl Into<String>) -> Self {
        BootstrapEntry {
            addr: addr.into(),
            priority: DEFAULT_PRIORITY,
        }
    }
}

impl Serialize for BootstrapEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        if self.priority == DEFAULT_PRIORITY {
            return s.serialize_str(&self.addr);
        }
        let mut t = s.serialize_struct("BootstrapEntry", 2)?;
        t.serialize_field("addr", &self.addr)?;
        t.serialize_field("priority", &self.priority)?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for BootstrapEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            addr: String,
            #[serde(default = "default_priority")]
            priority: u32,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Plain(String),
            Table(Table),
        }
        match Raw::deserialize(d)? {
            Raw::Plain(addr) => Ok(BootstrapEntry::new(addr)),
            Raw::Table(t) => Ok(BootstrapEntry {
                addr: t.addr,
                priority: t.priority,
            }),
        }
    }
}

fn default_priority() -> u32 {
    DEFAULT_PRIORITY
}

/// `[mesh]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MeshConfig {
    /// Peers to join through, as multiaddrs with a `/p2p/<peer id>` suffix.
    pub bootstrap: Vec<BootstrapEntry>,
    /// Addresses `datamesh service` listens on.
    pub listen: Vec<String>,
    /// Bytes of other people's shards `datamesh service` will hold (0 = no limit beyond
    /// the disk).
    pub capacity: ByteSize,
    /// Most connections a node keeps at once (all peers together).
    pub max_connections: u32,
    /// Shard requests per second one peer may make of a storage node (bursts of twice
    /// that are allowed); more are answered "busy".
    pub peer_requests_per_sec: u32,
    /// Seconds one shard request may take, end to end, before it counts as failed.
    pub request_timeout_secs: u64,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            bootstrap: Vec::new(),
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".into(),
                "/ip4/0.0.0.0/udp/0/quic-v1".into(),
            ],
            capacity: ByteSize(0),
            max_connections: 256,
            peer_requests_per_sec: 500,
            request_timeout_secs: 30,
        }
    }
}

impl MeshConfig {
    /// The bootstrap entries of this config followed by `extra` (command-line
    /// `--bootstrap`, at [`DEFAULT_PRIORITY`]), in the order they are tried, without
    /// duplicates.
    pub fn bootstrap_with(&self, extra: &[String]) -> Vec<BootstrapEntry> {
        let mut all: Vec<BootstrapEntry> = self.bootstrap.clone();
        all.extend(extra.iter().map(BootstrapEntry::new));
        all.sort_by_key(|e| e.priority); // stable: file order within a priority
        let mut seen = std::collections::HashSet::new();
        all.retain(|e| seen.insert(e.addr.clone()));
        all
    }

    /// The shard request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.max(1))
    }

    /// The capacity limit, `None` for no limit.
    pub fn capacity_limit(&self) -> Option<u64> {
        (self.capacity.0 > 0).then_some(self.capacity.0)
    }

    /// The `[mesh]` part of the commented config file.
    pub fn to_commented_toml(&self) -> String {
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
            format!("[{}]", items.join(", "))
        };
        let boot: Vec<String> = self
            .bootstrap
            .iter()
            .map(|e| {
                if e.priority == DEFAULT_PRIORITY {
                    format!("{:?}", e.addr)
                } else {
                    format!("{{ addr = {:?}, priority = {} }}", e.addr, e.priority)
                }
            })
            .collect();
        format!(
            r#"
[mesh]
# Peers to join the mesh through (multiaddrs ending in /p2p/<peer id>). Empty: this
# machine alone (the embedded default). `--bootstrap ADDR` adds to this list.
# An entry may be a table with a priority (lower is tried first, plain strings are 1):
#   bootstrap = ["/ip4/192.0.2.7/tcp/4001/p2p/12D3KooW...", {{ addr = "...", priority = 2 }}]
bootstrap = [{boot}]
# Addresses `datamesh service` and `datamesh bootstrap` listen on.
listen = {listen}
# Bytes of other people's shards `datamesh service` will hold ("0B" = no limit beyond
# the disk).
capacity = "{cap}"
# Most connections a node keeps open at once.
max_connections = {maxc}
# Shard requests per second one peer may make of this node (bursts of twice that);
# more are answered "busy" and the peer retries elsewhere.
peer_requests_per_sec = {rate}
# Seconds one shard request may take before it counts as failed.
request_timeout_secs = {timeout}
"#,
            boot = boot.join(", "),
            listen = list(&self.listen),
            cap = self.capacity,
            maxc = self.max_connections,
            rate = self.peer_requests_per_sec,
            timeout = self.request_timeout_secs,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_prioritised_entries_parse_and_sort() {
        let c: MeshConfig = toml::from_str(
            r#"bootstrap = ["/ip4/10.0.0.1/tcp/1/p2p/a", { addr = "/ip4/10.0.0.2/tcp/1/p2p/b", priority = 0 }, { addr = "/ip4/10.0.0.3/tcp/1/p2p/c" }]"#,
        )
        .unwrap();
        let order: Vec<_> = c
            .bootstrap_with(&["/ip4/10.0.0.1/tcp/1/p2p/a".into(), "/x".into()])
            .into_iter()
            .map(|e| (e.addr, e.priority))
            .collect();
        assert_eq!(
            order,
            vec![
                ("/ip4/10.0.0.2/tcp/1/p2p/b".to_string(), 0),
                ("/ip4/10.0.0.1/tcp/1/p2p/a".to_string(), 1),
                ("/ip4/10.0.0.3/tcp/1/p2p/c".to_string(), 1),
                ("/x".to_string(), 1),
            ]
        );
    }

    #[test]
    fn commented_file_round_trips_with_priorities() {
        let c = MeshConfig {
            bootstrap: vec![
                BootstrapEntry::new("/ip4/10.0.0.1/tcp/1/p2p/a"),
                BootstrapEntry {
                    addr: "/ip4/10.0.0.2/tcp/1/p2p/b".into(),
                    priority: 5,
                },
            ],
            capacity: ByteSize(10 << 30),
            ..MeshConfig::default()
        };
        #[derive(Deserialize)]
        struct File {
            mesh: MeshConfig,
        }
        let back: File = toml::from_str(&c.to_commented_toml()).unwrap();
        assert_eq!(back.mesh, c);
    }

    #[test]
    fn unknown_keys_in_a_table_entry_are_errors() {
        assert!(
            toml::from_str::<MeshConfig>(r#"bootstrap = [{ adr = "/x", priority = 1 }]"#).is_err()
        );
    }
}
