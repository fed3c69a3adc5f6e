//! `[mesh]` section of config.toml: how this repository joins a mesh.
//!
//! With an empty `bootstrap` list (the default) datamesh runs on this machine alone: the
//! embedded default, shards in the repository's local store. Naming one or more
//! bootstrap peers (here or with `--bootstrap`) makes every command join the mesh for
//! the time it runs and place shards on peers.

use serde::{Deserialize, Serialize};

use crate::config::ByteSize;

/// `[mesh]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MeshConfig {
    /// Peers to join through, as multiaddrs with a `/p2p/<peer id>` suffix.
    pub bootstrap: Vec<String>,
    /// Addresses `datamesh service` listens on.
    pub listen: Vec<String>,
    /// Bytes of other people's shards `datamesh service` will hold (0 = no limit beyond
    /// the disk).
    pub capacity: ByteSize,
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
        }
    }
}

impl MeshConfig {
    /// The `[mesh]` part of the commented config file.
    pub fn to_commented_toml(&self) -> String {
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
            format!("[{}]", items.join(", "))
        };
        format!(
            r#"
[mesh]
# Peers to join the mesh through (multiaddrs ending in /p2p/<peer id>). Empty: this
# machine alone (the embedded default). `--bootstrap ADDR` adds to this list.
bootstrap = {boot}
# Addresses `datamesh service` and `datamesh bootstrap` listen on.
listen = {listen}
# Bytes of other people's shards `datamesh service` will hold ("0B" = no limit beyond
# the disk).
capacity = "{cap}"
"#,
            boot = list(&self.bootstrap),
            listen = list(&self.listen),
            cap = self.capacity,
        )
    }
}
