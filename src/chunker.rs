//! Content-defined chunking (FastCDC 2020, the `fastcdc` crate).
//!
//! Files are cut where a rolling gear hash of the content says so, not at fixed offsets,
//! so an insertion near the start of a file changes one or two chunks, not all of them:
//! versions of a file and similar files share most chunks (deduplication).
//!
//! Defaults: 256 KiB minimum, 1 MiB average, 4 MiB maximum (config `storage.chunk_*`).
//! The gear table is seeded from the owner's convergence secret (see
//! [`crate::crypto`]): chunk boundaries then depend on a secret, so a storage node cannot
//! recognise a known file from the sizes of its chunks, and dedup works only within one
//! owner, which is all convergent encryption allows anyway.
//!
//! The chunker reads through a [`std::io::Read`] with a buffer of `max` bytes: memory is
//! bounded by the chunk size, whatever the file size. It is blocking: callers run it on
//! the blocking pool.

use std::io::Read;

use fastcdc::v2020::{self, Normalization, StreamCDC};

use crate::error::{Error, ErrorKind};

/// Chunk size bounds, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkSizes {
    /// Smallest chunk, except the last one of a file.
    pub min: u32,
    /// Target average.
    pub avg: u32,
    /// Largest chunk.
    pub max: u32,
}

impl Default for ChunkSizes {
    fn default() -> Self {
        ChunkSizes {
            min: 256 * 1024,
            avg: 1024 * 1024,
            max: 4 * 1024 * 1024,
        }
    }
}

impl ChunkSizes {
    /// Checks the bounds against what FastCDC supports.
    pub fn validate(&self) -> Result<(), Error> {
        let (min, avg, max) = (self.min as usize, self.avg as usize, self.max as usize);
        let ok = (v2020::MINIMUM_MIN..=v2020::MINIMUM_MAX).contains(&min)
            && (v2020::AVERAGE_MIN..=v2020::AVERAGE_MAX).contains(&avg)
            && (v2020::MAXIMUM_MIN..=v2020::MAXIMUM_MAX).contains(&max)
            && min <= avg
            && avg <= max
            && min.is_multiple_of(2)
            && avg.is_multiple_of(2)
            && max.is_multiple_of(2);
        if ok {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "invalid chunk sizes min={min} avg={avg} max={max}: need even numbers with \
                     64 B <= min <= 1 MiB, 256 B <= avg <= 4 MiB, 1 KiB <= max <= 16 MiB and \
                     min <= avg <= max (fix storage.chunk_* in config.toml)"
                ),
            ))
        }
    }
}

/// One chunk cut from a stream.
pub struct RawChunk {
    /// Offset in the file.
    pub offset: u64,
    /// The plaintext.
    pub data: Vec<u8>,
}

/// Iterator over the chunks of a reader.
pub struct Chunker<R: Read> {
    inner: StreamCDC<R>,
}

impl<R: Read> Chunker<R> {
    /// Chunks `source` with `sizes` (validated by the caller) and the owner's `seed`.
    pub fn new(source: R, sizes: ChunkSizes, seed: u64) -> Self {
        Chunker {
            inner: StreamCDC::with_level_and_seed(
                source,
                sizes.min as usize,
                sizes.avg as usize,
                sizes.max as usize,
                Normalization::Level1,
                seed,
            ),
        }
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = std::io::Result<RawChunk>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.inner.next()? {
            Ok(c) => Some(Ok(RawChunk {
                offset: c.offset,
                data: c.data,
            })),
            Err(v2020::Error::Empty) => None,
            Err(e) => Some(Err(std::io::Error::from(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn sizes() -> ChunkSizes {
        ChunkSizes {
            min: 2048,
            avg: 8192,
            max: 32768,
        }
    }

    fn chunks(data: &[u8], seed: u64) -> Vec<(u64, Vec<u8>)> {
        Chunker::new(data, sizes(), seed)
            .map(|c| c.map(|c| (c.offset, c.data)).unwrap())
            .collect()
    }

    #[test]
    fn chunks_cover_the_input_in_order() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let data: Vec<u8> = (0..300_000).map(|_| rng.r#gen()).collect();
        let cs = chunks(&data, 0);
        let mut off = 0u64;
        for (o, d) in &cs {
            assert_eq!(*o, off);
            assert!(d.len() <= 32768);
            off += d.len() as u64;
        }
        assert_eq!(off, data.len() as u64);
        let joined: Vec<u8> = cs.into_iter().flat_map(|(_, d)| d).collect();
        assert_eq!(joined, data);
    }

    #[test]
    fn an_insertion_changes_few_chunks() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let data: Vec<u8> = (0..400_000).map(|_| rng.r#gen()).collect();
        let mut edited = data.clone();
        edited.splice(1000..1000, b"inserted bytes".iter().copied());
        let a: std::collections::HashSet<Vec<u8>> =
            chunks(&data, 0).into_iter().map(|c| c.1).collect();
        let b = chunks(&edited, 0);
        let shared = b.iter().filter(|c| a.contains(&c.1)).count();
        assert!(
            shared + 2 >= b.len(),
            "only {shared} of {} chunks shared",
            b.len()
        );
    }

    #[test]
    fn the_seed_moves_boundaries() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let data: Vec<u8> = (0..400_000).map(|_| rng.r#gen()).collect();
        let a: Vec<u64> = chunks(&data, 1).iter().map(|c| c.0).collect();
        let b: Vec<u64> = chunks(&data, 2).iter().map(|c| c.0).collect();
        assert_ne!(a, b);
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(chunks(&[], 0).is_empty());
    }

    #[test]
    fn bad_sizes_are_rejected() {
        assert!(ChunkSizes::default().validate().is_ok());
        assert!(
            ChunkSizes {
                min: 10,
                avg: 8192,
                max: 32768
            }
            .validate()
            .is_err()
        );
        assert!(
            ChunkSizes {
                min: 4096,
                avg: 2048,
                max: 32768
            }
            .validate()
            .is_err()
        );
        assert!(
            ChunkSizes {
                min: 2048,
                avg: 8192,
                max: 64 << 20
            }
            .validate()
            .is_err()
        );
    }
}
