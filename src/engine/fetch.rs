//! Fetching one stripe: any `k` verified shards, in parallel, with hedging and repair.
//!
//! # Model
//!
//! A stripe has `k + m` shards, each with a recorded holder. The fetcher starts `k`
//! requests (data shards first: when all of them verify, decoding is a copy, no
//! arithmetic). Each answer is checked against its ShardId on the blocking pool; a shard
//! that is missing, fails verification or errors counts as *bad* and the next unused
//! shard is requested instead. A request that has not answered after the hedge delay
//! (`hedge_after` at most; once some shards have answered, three times the slowest of
//! those answers, so a stripe whose other holders answered in milliseconds does not wait
//! long for a silent one)
//! gets a backup request for another unused shard, so one slow holder costs at most the
//! hedge delay, not its full latency. Every request has a hard timeout, so a dead holder
//! costs bounded time, never a hang.
//!
//! # Invariants
//!
//! * Only bytes whose BLAKE3 equals the recorded ShardId reach the decoder (checked
//!   here, or by a store that says it checked them: `ShardStore::verifies_reads`).
//! * With at most `m` bad shards the stripe decodes; with more, the error says how many
//!   were intact and never yields bytes.
//! * Bad shards are rebuilt from the decoded stripe (identical bytes, same ShardId) and
//!   written back — *repair on read* — avoiding the holders of the stripe's other shards.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::error::{Error, ErrorKind, Result};
use crate::ids::ShardId;
use crate::store::{DynStore, Holder, Shard, StoreError};
use crate::stripe::{self, Expect, Layout};

/// What the catalog knows about a stripe.
#[derive(Clone, Debug)]
pub struct StripeRef {
    /// Erasure layout.
    pub layout: Layout,
    /// Length of the sealed chunk.
    pub sealed_len: u32,
    /// Shard `i`: its id and recorded holder.
    pub shards: Vec<(ShardId, Holder)>,
}

impl StripeRef {
    /// The stripe of a catalog record: `shards` by index, each index at most once. Indices
    /// the catalog lacks are recorded as unfetchable (an empty holder), so the stripe
    /// still decodes from the others.
    pub fn from_record(
        k: u8,
        m: u8,
        sealed_len: u64,
        shards: &[crate::catalog::ShardRecord],
    ) -> Result<Self> {
        let layout = Layout::new(k, m)?;
        let sealed_len = u32::try_from(sealed_len).map_err(|_| {
            Error::new(
                ErrorKind::Corrupt,
                format!("sealed length {sealed_len} is out of range"),
            )
        })?;
        let mut slots: Vec<Option<(ShardId, Holder)>> = vec![None; layout.total()];
        for s in shards {
            match slots.get_mut(s.index as usize) {
                Some(slot @ None) => *slot = Some((s.id, s.holder.clone())),
                _ => {
                    return Err(Error::new(
                        ErrorKind::Corrupt,
                        format!(
                            "the catalog records shard index {} twice or out of range",
                            s.index
                        ),
                    ));
                }
            }
        }
        let shards = slots
            .into_iter()
            .map(|s| s.unwrap_or((ShardId([0; 32]), Holder(String::new()))))
            .collect();
        Ok(StripeRef {
            layout,
            sealed_len,
            shards,
        })
    }
}

/// Timing knobs of the fetcher.
#[derive(Clone, Copy, Debug)]
pub struct FetchPolicy {
    /// Hard limit for one shard request.
    pub timeout: Duration,
    /// Start a backup request when a request has not answered after this long.
    pub hedge_after: Duration,
    /// Request and verify every shard, not just `k` (a scrub), so that every bad shard
    /// is found and rebuilt.
    pub fetch_all: bool,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        FetchPolicy {
            timeout: Duration::from_secs(30),
            hedge_after: Duration::from_millis(750),
            fetch_all: false,
        }
    }
}

/// A decoded stripe, plus the repairs it made possible.
pub struct Fetched {
    /// The sealed chunk.
    pub sealed: Vec<u8>,
    /// Shards found bad and rebuilt: index and rebuilt shard. Not yet written back.
    pub rebuilt: Vec<(usize, Shard)>,
}

enum Outcome {
    Good(usize, Bytes),
    Bad(usize, String),
}

/// Fetches and decodes a stripe. See the module docs.
pub async fn fetch_stripe(
    store: &DynStore,
    stripe: &StripeRef,
    policy: FetchPolicy,
) -> Result<Fetched> {
    let total = stripe.layout.total();
    let k = stripe.layout.k as usize;
    if stripe.shards.len() != total {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "catalog records {} shards for a {k}+{} stripe",
                stripe.shards.len(),
                stripe.layout.m
            ),
        ));
    }
    let mut next = 0usize; // next shard index not yet requested
    let mut good: Vec<Option<Bytes>> = vec![None; total];
    let mut bad: Vec<usize> = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    let mut inflight = FuturesUnordered::new();
    let request = |i: usize| {
        let store = store.clone();
        let (id, holder) = stripe.shards[i].clone();
        async move {
            if holder.as_str().is_empty() {
                return Outcome::Bad(i, format!("shard {i}: not recorded in the catalog"));
            }
            let got = tokio::time::timeout(policy.timeout, store.get(&id, &holder)).await;
            match got {
                Err(_) => Outcome::Bad(
                    i,
                    format!(
                        "shard {i} at {holder}: no answer within {:?}",
                        policy.timeout
                    ),
                ),
                Ok(Err(e)) => Outcome::Bad(i, format!("shard {i} at {holder}: {e}")),
                Ok(Ok(bytes)) => {
                    // A store that checked these bytes already (the mesh) is not asked
                    // to pay for the same hash twice.
                    let ok = store.verifies_reads(&holder) || {
                        let check = bytes.clone();
                        tokio::task::spawn_blocking(move || ShardId::of(&check) == id)
                            .await
                            .unwrap_or(false)
                    };
                    if ok {
                        Outcome::Good(i, bytes)
                    } else {
                        Outcome::Bad(
                            i,
                            format!("shard {i} at {holder}: bytes do not match its id"),
                        )
                    }
                }
            }
        }
    };
    let first = if policy.fetch_all { total } else { k };
    while next < first {
        inflight.push(request(next));
        next += 1;
    }
    let mut have = 0usize;
    let started = std::time::Instant::now();
    let mut slowest = Duration::ZERO;
    while have < k || (policy.fetch_all && !inflight.is_empty()) {
        let delay = if have > 0 {
            (slowest * 3 + Duration::from_millis(10)).min(policy.hedge_after)
        } else {
            policy.hedge_after
        };
        let hedge = tokio::time::sleep(delay);
        tokio::select! {
            outcome = inflight.next() => match outcome {
                Some(Outcome::Good(i, bytes)) => {
                    good[i] = Some(bytes);
                    have += 1;
                    slowest = slowest.max(started.elapsed());
                }
                Some(Outcome::Bad(i, why)) => {
                    tracing::warn!(%why, "shard unusable; trying another");
                    // A slot the catalog has no shard for cannot be repaired in place.
                    if !stripe.shards[i].1.as_str().is_empty() {
                        bad.push(i);
                    }
                    reasons.push(why);
                    if next < total {
                        inflight.push(request(next));
                        next += 1;
                    }
                }
                None => break, // nothing in flight and nothing left to ask
            },
            _ = hedge, if !policy.fetch_all && next < total && !inflight.is_empty() => {
                tracing::debug!(index = next, "hedging a slow shard request");
                inflight.push(request(next));
                next += 1;
            }
        }
    }
    if have < k {
        return Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "only {have} of the {k} shards needed are intact ({total} stored, {} bad: {})",
                bad.len(),
                reasons.join("; ")
            ),
        ));
    }
    drop(inflight); // cancel hedges still running
    let expect = Expect {
        layout: stripe.layout,
        sealed_len: stripe.sealed_len,
    };
    bad.sort_unstable();
    let decoded = tokio::task::spawn_blocking(move || stripe::decode(&good, expect, &bad))
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("decode task failed: {e}")))??;
    Ok(Fetched {
        sealed: decoded.sealed,
        rebuilt: decoded.rebuilt,
    })
}

/// Writes rebuilt shards back, avoiding the holders of the stripe's other shards.
/// Returns the new holder of each rebuilt shard.
pub async fn write_back(
    store: &DynStore,
    stripe: &StripeRef,
    rebuilt: &[(usize, Shard)],
) -> Result<Vec<(usize, Holder)>, StoreError> {
    let indices: Vec<usize> = rebuilt.iter().map(|(i, _)| *i).collect();
    let exclude: Vec<Holder> = stripe
        .shards
        .iter()
        .enumerate()
        .filter(|(i, _)| !indices.contains(i))
        .map(|(_, (_, h))| h.clone())
        .collect();
    let shards: Vec<Shard> = rebuilt.iter().map(|(_, s)| s.clone()).collect();
    let holders = store.put_shards(&shards, &exclude).await?;
    Ok(indices.into_iter().zip(holders).collect())
}
