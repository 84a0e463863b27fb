//! Keeping a replica's meter in step with the shared Redis: connecting and syncing with its
//! epoch before the first request, heartbeats (how many replicas share it), and adding this
//! replica's ledger to a Redis that lost its data.

use super::*;

impl Meter {
    /// Connects to Redis and loads its scripts, trying again until it answers, then reports
    /// ready. A server whose eviction policy could drop counters is reported loudly (and in
    /// `dgidgi_redis_eviction_unsafe`), every time it is found so. Returns at once without
    /// Redis.
    pub async fn warm_up(&self) {
        let Some(redis) = &self.redis else {
            return;
        };
        let mut wait = Duration::from_millis(100);
        loop {
            match redis.warm_up(Duration::from_secs(5)).await {
                Ok(settings) => {
                    let unsafe_policy = settings.may_evict_counters();
                    self.metrics
                        .redis_eviction_unsafe
                        .set(i64::from(unsafe_policy));
                    if unsafe_policy {
                        tracing::error!(
                            policy = ?settings.eviction_policy,
                            "Redis may evict the shared counters (maxmemory-policy is not noeviction): a tenant's usage can vanish and its limits and budget be spent again; set maxmemory-policy noeviction"
                        );
                    }
                    if self.heartbeat().await {
                        self.redis_answered
                            .store(true, std::sync::atomic::Ordering::Release);
                        tracing::info!("Redis answered; the shared counters are ready");
                        return;
                    }
                }
                Err(error) => self.redis_failed("connect", &error),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// Tells Redis this replica is alive every few seconds, learning how many replicas share
    /// it (the share each takes of a limit while Redis is unreachable). Runs until dropped;
    /// returns at once without Redis.
    pub async fn heartbeats(&self) {
        if self.redis.is_none() {
            return;
        }
        let mut ticks = tokio::time::interval(HEARTBEAT_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = self.resync.notified() => {}
            }
            self.heartbeat().await;
        }
    }

    /// One heartbeat: how many replicas share Redis, and whether its epoch is the one this
    /// replica reserves in; if not (Redis lost its data, or this replica meets it for the
    /// first time), this replica's usage is added to it first (see [`crate::metering::rebuild`]).
    async fn heartbeat(&self) -> bool {
        let Some(redis) = &self.redis else {
            return true;
        };
        // Until every live replica has added its usage to a new epoch, its counters are short:
        // looked at again soon rather than at the next heartbeat.
        for _ in 0..40 {
            match self.beat(redis).await {
                Beat::Complete => return true,
                Beat::Failed => return false,
                Beat::WaitingForOthers => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        false
    }

    /// One heartbeat, and the sync it calls for.
    async fn beat(&self, redis: &RedisCounters) -> Beat {
        let candidate = request_id::text(request_id::new(now_ms()));
        let added_to = self.added_to();
        let heard = match redis
            .heartbeat(
                &self.replica_id,
                HEARTBEAT_LIFE,
                &candidate,
                added_to.as_ref(),
            )
            .await
        {
            Ok(heard) => heard,
            Err(error) => {
                // The count last heard stands.
                self.redis_failed("heartbeat", &error);
                return Beat::Failed;
            }
        };
        let count = heard.replicas.max(1);
        let now = Instant::now();
        let new_epoch = added_to.as_ref().map(Epochs::name) != Some(heard.epochs.name());
        let lately = self.most_heard_lately(count, now);
        // After Redis lost its data (and with it the replica set), the replicas heard before
        // are expected back until their entries' life has passed: they are waited for, and
        // counted in the share each takes of a limit while failing open.
        let pending = {
            let mut expected = self.expected.lock().unwrap_or_else(PoisonError::into_inner);
            if expected.is_some_and(|(_, until)| now >= until) {
                *expected = None;
            }
            if new_epoch {
                let before = self.replicas().max(lately);
                let waited = expected.map_or(0, |(replicas, _)| replicas);
                *expected = Some((before.max(waited), now + HEARTBEAT_LIFE));
            }
            expected.map(|(replicas, _)| replicas)
        };
        let share = count.max(pending.unwrap_or(0));
        self.replicas
            .store(share, std::sync::atomic::Ordering::Relaxed);
        self.metrics
            .redis_replicas
            .set(i64::try_from(count).unwrap_or(i64::MAX));
        if new_epoch {
            // Redis lost its data, or this replica meets it for the first time: its usage goes
            // in first, and the next beat says so to the others.
            redis.await_epoch();
            return match self
                .add_usage(redis, &heard.epochs, added_to.as_ref())
                .await
            {
                Ok(()) => Beat::WaitingForOthers,
                Err(error) => {
                    tracing::error!(
                        "adding this replica's usage to Redis' new epoch failed (tried again at the next heartbeat; requests are decided by --redis-fail-mode meanwhile): {error:#}"
                    );
                    Beat::Failed
                }
            };
        }
        // Only the replicas expected back are waited for: a newcomer (a scale-up, a restart
        // that cannot add its usage) never holds the others off Redis.
        if pending.is_some_and(|expected| heard.added < expected) {
            redis.await_epoch();
            return Beat::WaitingForOthers;
        }
        if *redis.epoch() != crate::metering::redis::Epoch::Synced(heard.epochs.clone()) {
            redis.sync_epoch(heard.epochs);
        }
        Beat::Complete
    }

    /// The most replicas the earlier heartbeats of the last [`HEARTBEAT_LIFE`] heard (0 if
    /// none); `count` (this one's) is remembered for the next. On a cluster the replica set and
    /// the buckets' epochs live on different masters: a beat can find the set lost with its
    /// master's data (only this replica in it) while the epochs it read were still the old
    /// ones, and the next beat, which finds the new epochs, must still wait for every replica
    /// heard before (it waited for one, synced on its own usage alone and let a tenant past its
    /// budget). This beat's own count is not taken: a replica meeting Redis for the first time
    /// waits for nobody.
    fn most_heard_lately(&self, count: u64, now: Instant) -> u64 {
        let mut peak = self.peak.lock().unwrap_or_else(PoisonError::into_inner);
        let earlier = if now < peak.1 { peak.0 } else { 0 };
        if count >= earlier {
            *peak = (count, now + HEARTBEAT_LIFE);
        }
        earlier
    }

    /// The epochs this replica's usage is in: remembered, or, at start, recorded beside the
    /// ledger by an earlier run.
    fn added_to(&self) -> Option<Epochs> {
        let mut added = self.added_to.lock().unwrap_or_else(PoisonError::into_inner);
        if added.is_none() {
            *added = self
                .state_dir
                .as_deref()
                .and_then(crate::metering::rebuild::synced_epoch)
                .and_then(|text| Epochs::from_text(&text));
        }
        added.clone()
    }

    /// Adds this replica's ledger usage to the buckets whose epoch changed since `before` (all
    /// of one Redis; on a cluster, the buckets of the masters that lost their data), once
    /// (guards in Redis), then records that it is there. A ledger that never took part in an
    /// epoch (no `before`: none recorded beside it) adopts the current ones instead: it is a
    /// new ledger (nothing to add) or one written before epochs existed, whose usage the
    /// counters of the Redis it used already hold.
    async fn add_usage(
        &self,
        redis: &RedisCounters,
        epochs: &Epochs,
        before: Option<&Epochs>,
    ) -> anyhow::Result<()> {
        use crate::metering::rebuild;
        if let (Some(dir), Some(before)) = (&self.state_dir, before) {
            // Everything admitted so far is in the totals read next.
            self.flush().await;
            let (read_from, now) = (dir.clone(), now_ms());
            let counters =
                tokio::task::spawn_blocking(move || rebuild::ledger_counters(&read_from, now))
                    .await??;
            let ledger_id = rebuild::ledger_id(dir, || request_id::text(request_id::new(now)))?;
            let layout = redis.layout();
            let mut by_bucket = std::collections::BTreeMap::<u32, Vec<rebuild::Counter>>::new();
            for counter in counters {
                by_bucket
                    .entry(layout.bucket_of(&counter.0))
                    .or_default()
                    .push(counter);
            }
            let (mut added, changed) = (0, epochs.changed_since(before));
            for bucket in &changed {
                let (Some(counters), Some(epoch)) = (by_bucket.get(bucket), epochs.of(*bucket))
                else {
                    continue;
                };
                for (guard, chunk) in rebuild::chunks(counters, epoch, &ledger_id) {
                    if redis.rebuild(*bucket, &guard, epoch, chunk).await? {
                        added += chunk.len();
                    }
                }
            }
            tracing::warn!(
                epoch = %epochs.name(),
                buckets = changed.len(),
                counters = added,
                "Redis lost its data: added this ledger's day and month totals to its new epoch"
            );
        }
        *self.added_to.lock().unwrap_or_else(PoisonError::into_inner) = Some(epochs.clone());
        if let Some(dir) = &self.state_dir
            && let Err(error) = rebuild::record_synced(dir, &epochs.to_text())
        {
            // Remembered in memory; the guards keep a restart from adding twice.
            tracing::warn!("recording Redis' epoch beside the ledger failed: {error}");
        }
        Ok(())
    }

    /// Replicas sharing Redis at the last heartbeat (with those still waited for after a
    /// loss): the share each takes of a limit while Redis is unreachable.
    pub fn replicas(&self) -> u64 {
        self.replicas.load(std::sync::atomic::Ordering::Relaxed)
    }
}
