//! Repository configuration: `config.toml`.
//!
//! `datamesh init` writes the file with every setting present, at its default, with a
//! comment saying what it does, so that a user reads and edits one file and never has to
//! guess a name. Unknown keys are an error (a typo silently ignored is worse), and every
//! value is validated when the repository is opened.
//!
//! Sizes accept an integer number of bytes or a string with a unit: `"64MiB"`,
//! `"10GB"`, `"512 KiB"` (see [`ByteSize`]).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkSizes;
use crate::error::{Error, ErrorKind, Result};
use crate::stripe::Layout;

/// A byte count that parses from `1234`, `"64MiB"`, `"10GB"`, `"1.5 GiB"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let unit = unit.trim();
        let mult: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1 << 10,
            "m" | "mb" => 1000 * 1000,
            "mib" => 1 << 20,
            "g" | "gb" => 1000 * 1000 * 1000,
            "gib" => 1 << 30,
            "t" | "tb" => 1000u64.pow(4),
            "tib" => 1 << 40,
            _ => {
                return Err(format!(
                    "unknown size unit {unit:?} in {s:?} (use B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)"
                ));
            }
        };
        let value: f64 = num
            .parse()
            .map_err(|_| format!("not a size: {s:?} (examples: 4096, 64MiB, 10GB)"))?;
        let bytes = value * mult as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(format!("size out of range: {s:?}"));
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, size) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if b >= size && b.is_multiple_of(size) {
                return write!(f, "{}{unit}", b / size);
            }
        }
        write!(f, "{b}B")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Formats a byte count for people: `1.5 GiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// `[storage]`: how data is cut, coded and stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Reed-Solomon data shards per chunk (k).
    pub data_shards: u8,
    /// Reed-Solomon parity shards per chunk (m): any m shards may be lost.
    pub parity_shards: u8,
    /// Smallest chunk.
    pub chunk_min: ByteSize,
    /// Average chunk.
    pub chunk_avg: ByteSize,
    /// Largest chunk.
    pub chunk_max: ByteSize,
    /// Chunks whose sealed form is at most this big live inside the catalog instead of
    /// as shards (small files cost no shard files). 0 disables inlining.
    pub inline_max: ByteSize,
    /// Chunks processed at once by one put or get (0 = number of CPUs + 1).
    pub parallel_chunks: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        let sizes = ChunkSizes::default();
        StorageConfig {
            data_shards: 4,
            parity_shards: 2,
            chunk_min: ByteSize(sizes.min as u64),
            chunk_avg: ByteSize(sizes.avg as u64),
            chunk_max: ByteSize(sizes.max as u64),
            inline_max: ByteSize(16 * 1024),
            parallel_chunks: 0,
        }
    }
}

/// `[cache]`: verified-chunk caching.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Byte budget of the in-memory LRU of verified (decrypted) chunks.
    pub memory: ByteSize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            memory: ByteSize(256 << 20),
        }
    }
}

/// `[mount]`: how `datamesh mount` commits what is written through it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MountConfig {
    /// Keep every commit of a file written through the mount as a version (prune with
    /// `datamesh prune`); false replaces the current version, like any filesystem.
    pub keep_versions: bool,
}

/// The whole `config.toml`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[storage]`.
    pub storage: StorageConfig,
    /// `[cache]`.
    pub cache: CacheConfig,
    /// `[mesh]`.
    pub mesh: crate::mesh::config::MeshConfig,
    /// `[mount]`.
    pub mount: MountConfig,
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::from(e).context(format!("cannot read {}", path.display())))?;
        let config: Config = toml::from_str(&text).map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("{} is not valid: {e}", path.display()),
            )
        })?;
        config.validate().map_err(|e| e.context(path.display()))?;
        Ok(config)
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<()> {
        Layout::new(self.storage.data_shards, self.storage.parity_shards)?;
        self.chunk_sizes()?;
        Ok(())
    }

    /// The erasure layout.
    pub fn layout(&self) -> Result<Layout> {
        Ok(Layout::new(
            self.storage.data_shards,
            self.storage.parity_shards,
        )?)
    }

    /// The chunk size bounds.
    pub fn chunk_sizes(&self) -> Result<ChunkSizes> {
        let s = &self.storage;
        let to_u32 = |b: ByteSize| u32::try_from(b.0).unwrap_or(u32::MAX);
        let sizes = ChunkSizes {
            min: to_u32(s.chunk_min),
            avg: to_u32(s.chunk_avg),
            max: to_u32(s.chunk_max),
        };
        sizes.validate()?;
        Ok(sizes)
    }

    /// Chunks processed at once.
    pub fn parallel_chunks(&self) -> usize {
        match self.storage.parallel_chunks {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()) + 1,
            n => n,
        }
    }

    /// The file `datamesh init` writes: every setting, at this config's values, commented.
    pub fn to_commented_toml(&self) -> String {
        let s = &self.storage;
        format!(
            r#"# datamesh repository configuration.
# Every setting is listed with its current value; edit and restart datamesh to change it.
# Sizes take a number of bytes or a string with a unit: "64MiB", "10GB".

[storage]
# Reed-Solomon data shards per chunk (k). A chunk is cut into k pieces.
data_shards = {k}
# Reed-Solomon parity shards per chunk (m): any m of the k+m shards may be lost or
# corrupted and the chunk still reads back exactly. Stored bytes are (k+m)/k of the data.
# Changing k or m applies to data written afterwards; existing chunks keep their layout.
parity_shards = {m}
# Content-defined chunking bounds (FastCDC). Smaller chunks dedup finer but cost more
# catalog rows and shard files.
chunk_min = "{cmin}"
chunk_avg = "{cavg}"
chunk_max = "{cmax}"
# Chunks whose encrypted form is at most this big are kept inside the catalog instead of
# as k+m shard files, so small files cost one catalog row, not six files. "0B" disables.
inline_max = "{inline}"
# Chunks processed at once by one put or get (0 = number of CPUs + 1).
parallel_chunks = {par}

[cache]
# Memory budget of the cache of verified, decrypted chunks.
memory = "{mem}"

[mount]
# Keep every save of a file written through `datamesh mount` as a version (see
# `datamesh versions`; drop old ones with `datamesh prune`). false: a save replaces the
# file's current version, as on any filesystem. Versions made by `put` are always kept.
keep_versions = {keep}
"#,
            k = s.data_shards,
            m = s.parity_shards,
            cmin = s.chunk_min,
            cavg = s.chunk_avg,
            cmax = s.chunk_max,
            inline = s.inline_max,
            par = s.parallel_chunks,
            mem = self.cache.memory,
            keep = self.mount.keep_versions,
        ) + &self.mesh.to_commented_toml()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!("4096".parse::<ByteSize>().unwrap(), ByteSize(4096));
        assert_eq!("64MiB".parse::<ByteSize>().unwrap(), ByteSize(64 << 20));
        assert_eq!(
            "10GB".parse::<ByteSize>().unwrap(),
            ByteSize(10_000_000_000)
        );
        assert_eq!("1.5 GiB".parse::<ByteSize>().unwrap(), ByteSize(3 << 29));
        assert!("ten".parse::<ByteSize>().is_err());
        assert!("5 parsecs".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(256 << 10).to_string(), "256KiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }

    #[test]
    fn the_written_file_reads_back_as_the_defaults() {
        let c = Config::default();
        let back: Config = toml::from_str(&c.to_commented_toml()).unwrap();
        assert_eq!(back, c);
        back.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(toml::from_str::<Config>("[storage]\ndata_shard = 4\n").is_err());
        let c: Config = toml::from_str("[storage]\ndata_shards = 0\n").unwrap();
        assert_eq!(c.validate().unwrap_err().kind(), ErrorKind::InvalidInput);
        let c: Config = toml::from_str("[storage]\nchunk_min = \"8MiB\"\n").unwrap();
        assert!(c.validate().is_err());
    }
}
