//! A fault-injecting decorator over any [`ShardStore`], for tests.
//!
//! Faults are described by a [`FaultPlan`] that tests may change while the store is in
//! use: shards that read back corrupted or missing, puts that fail after a number of
//! successes or with a full disk, and added latency. Everything not named in the plan
//! passes through to the wrapped store unchanged.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{DynStore, Holder, Shard, ShardStore, StoreError, StoreStats};
use crate::ids::ShardId;

/// What to break.
#[derive(Default, Clone, Debug)]
pub struct FaultPlan {
    /// Reads of these shards return the given bytes instead of the stored ones.
    pub corrupt: HashMap<ShardId, Bytes>,
    /// Reads of these shards fail as if the shard were missing.
    pub missing: HashSet<ShardId>,
    /// Reads of these shards never answer (until the caller's timeout fires).
    pub hang: HashSet<ShardId>,
    /// After this many more successful `put_shards` calls, puts fail.
    pub puts_before_failure: Option<usize>,
    /// Failing puts report a full disk instead of a generic fault.
    pub fail_with_no_space: bool,
    /// Latency added to every read.
    pub read_delay: Duration,
}

/// A store that applies a [`FaultPlan`] to another store.
pub struct FaultyStore {
    inner: DynStore,
    plan: Arc<Mutex<FaultPlan>>,
}

impl FaultyStore {
    /// Wraps `inner`; the returned handle changes the plan at any time.
    pub fn new(inner: DynStore) -> (Self, Arc<Mutex<FaultPlan>>) {
        let plan = Arc::new(Mutex::new(FaultPlan::default()));
        (
            FaultyStore {
                inner,
                plan: plan.clone(),
            },
            plan,
        )
    }

    fn plan(&self) -> FaultPlan {
        self.plan.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl ShardStore for FaultyStore {
    async fn put_shards(
        &self,
        shards: &[Shard],
        exclude: &[Holder],
    ) -> Result<Vec<Holder>, StoreError> {
        {
            let mut plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
            let no_space = plan.fail_with_no_space;
            match plan.puts_before_failure {
                Some(0) if no_space => {
                    return Err(StoreError::NoSpace {
                        where_: "faulty store".into(),
                    });
                }
                Some(0) => return Err(StoreError::Injected("put refused".into())),
                Some(ref mut n) => *n -= 1,
                None => {}
            }
        }
        self.inner.put_shards(shards, exclude).await
    }

    async fn get(&self, id: &ShardId, holder: &Holder) -> Result<Bytes, StoreError> {
        let plan = self.plan();
        if !plan.read_delay.is_zero() {
            tokio::time::sleep(plan.read_delay).await;
        }
        if plan.hang.contains(id) {
            std::future::pending::<()>().await;
        }
        if plan.missing.contains(id) {
            return Err(StoreError::NotFound(*id));
        }
        if let Some(bytes) = plan.corrupt.get(id) {
            return Ok(bytes.clone());
        }
        self.inner.get(id, holder).await
    }

    async fn delete(&self, id: &ShardId, holder: &Holder) -> Result<(), StoreError> {
        self.inner.delete(id, holder).await
    }

    async fn has(&self, id: &ShardId, holder: &Holder) -> Result<bool, StoreError> {
        if self.plan().missing.contains(id) {
            return Ok(false);
        }
        self.inner.has(id, holder).await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.inner.stats().await
    }

    async fn distinct_holders(&self) -> usize {
        self.inner.distinct_holders().await
    }
}
