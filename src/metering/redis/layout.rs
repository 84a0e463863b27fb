//! Where the counters live in Redis: their key names, and on a Redis Cluster the hash slot
//! each lands in.
//!
//! A reservation is one Lua script over every counter it charges, and a cluster runs a
//! script only when all its keys share one hash slot. So on a cluster every key carries a hash
//! tag naming a **bucket**: the SHA-256 of the counter's *group* (the namespace, for a tenant's
//! and a namespace's counters; the provider key, for a provider key's) modulo [`CLUSTER_BUCKETS`].
//! A namespace's counters, the markers of its reservations and its bucket's epoch then share one
//! slot, and one reservation stays one script call. A provider key's quota is a reservation of
//! its own, so it lives in its own bucket.
//!
//! Each bucket has its own epoch (see [`Epochs`]): a cluster loses data one master at a time
//! (a master restarted empty, a failover to a replica without the data), and a single epoch key
//! on one master would not notice the others. The fleet's epoch is the list of the buckets'
//! epochs.
//!
//! A single Redis has one bucket and no tags: its key names are the ones every earlier release
//! used (`dgidgi:t:<tenant>:…`, `dgidgi:epoch`), so replicas of two versions sharing one Redis
//! during a rollout count the same counters.

use std::sync::Arc;

use sha2::{Digest as _, Sha256};

/// Prefix of every key this gateway writes.
const PREFIX: &str = "dgidgi:";

/// Buckets on a cluster: enough to spread the fleet's load over the masters (256 buckets on 3
/// masters are within a few percent of even; a cluster of many more masters wants more),
/// few enough that a heartbeat reads every bucket's epoch cheaply. Changing it renames every
/// key: a deliberate migration, like moving to a cluster.
pub const CLUSTER_BUCKETS: u32 = 256;

/// How keys are named: one Redis, or a cluster of [`CLUSTER_BUCKETS`] buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    buckets: u32,
}

impl Layout {
    /// One Redis (or Valkey): one bucket, the key names of every earlier release.
    pub const SINGLE: Self = Self { buckets: 1 };
    /// A Redis (or Valkey) Cluster: every key tagged with its bucket.
    pub const CLUSTER: Self = Self {
        buckets: CLUSTER_BUCKETS,
    };

    /// How many buckets (and epochs) there are.
    pub fn buckets(self) -> u32 {
        self.buckets
    }

    /// Whether keys carry hash tags.
    pub fn is_cluster(self) -> bool {
        self.buckets > 1
    }

    /// The bucket counter `key` (as [`crate::metering::plan::keys`] names it) belongs to.
    pub fn bucket_of(self, key: &str) -> u32 {
        if self.is_cluster() {
            crate::config::shards::bucket(group(key), self.buckets) as u32
        } else {
            0
        }
    }

    /// The full name of `name` in `bucket`.
    pub fn key(self, bucket: u32, name: &str) -> String {
        self.key_of_parts(bucket, &[name])
    }

    /// The full name, in `bucket`, of the name `parts` make together: built in one allocation
    /// (a reservation's marker is named on every reserve and settle).
    pub fn key_of_parts(self, bucket: u32, parts: &[&str]) -> String {
        let length = parts.iter().map(|part| part.len()).sum::<usize>();
        let mut key = String::with_capacity(PREFIX.len() + 7 + length);
        key.push_str(PREFIX);
        if self.is_cluster() {
            use std::fmt::Write as _;
            let _ = write!(key, "{{b{bucket:03}}}:");
        }
        for part in parts {
            key.push_str(part);
        }
        key
    }

    /// The full name of counter `key`, in its own bucket.
    pub fn counter(self, key: &str) -> String {
        self.key(self.bucket_of(key), key)
    }

    /// The full name of one of the fleet's own keys (the replica set): one slot on a cluster,
    /// apart from every bucket.
    pub fn fleet(self, name: &str) -> String {
        if self.is_cluster() {
            format!("{PREFIX}{{fleet}}:{name}")
        } else {
            [PREFIX, name].concat()
        }
    }

    /// The key holding `bucket`'s epoch.
    pub fn epoch(self, bucket: u32) -> String {
        self.key(bucket, "epoch")
    }
}

/// What a counter key is grouped by: the namespace of a tenant's counters (`t:<namespace>…` or
/// `t:<namespace>/<name>…`) and of a namespace's (`n:<namespace>:…`), the provider key of a
/// provider key's (`p:<provider>:…`). A reservation's counters are all of one group (the
/// tenant's and its namespace's, or one provider key's), which is what lets it be one script
/// on a cluster. Namespaces and names are DNS labels, so neither `/` nor `:` is in one.
fn group(key: &str) -> &str {
    let (kind, rest) = key.split_at(key.find(':').map_or(0, |colon| colon + 1));
    let end = match kind {
        "t:" | "n:" => rest.find(['/', ':']),
        _ => rest.find(':'),
    };
    &rest[..end.unwrap_or(rest.len())]
}

/// Redis' epochs, one per bucket: which of each bucket's lives a reservation belongs to. A
/// bucket whose epoch key is gone lost its data; the first replica to notice starts a new
/// epoch there, and every replica adds its ledger's usage of that bucket's tenants before it
/// reserves in it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Epochs(Arc<[String]>);

impl Epochs {
    /// The epochs, bucket by bucket.
    pub fn new(epochs: Vec<String>) -> Self {
        Self(Arc::from(epochs))
    }

    /// `bucket`'s epoch (None past the end: a layout these epochs were not read for, which
    /// reserves nothing — an empty epoch would skip the scripts' check).
    pub fn of(&self, bucket: u32) -> Option<&str> {
        self.0.get(bucket as usize).map(String::as_str)
    }

    /// One name for the whole list, which the replicas compare: the epoch itself on a single
    /// Redis (what earlier releases recorded), else a digest of the list.
    pub fn name(&self) -> String {
        match &*self.0 {
            [one] => one.clone(),
            many => {
                let digest = Sha256::digest(many.join("\n").as_bytes());
                digest[..12].iter().map(|b| format!("{b:02x}")).collect()
            }
        }
    }

    /// The buckets whose epoch differs from `before`'s (all of them when the layouts differ).
    pub fn changed_since(&self, before: &Epochs) -> Vec<u32> {
        (0..self.0.len() as u32)
            .filter(|bucket| {
                before.0.len() != self.0.len() || before.of(*bucket) != self.of(*bucket)
            })
            .collect()
    }

    /// As recorded beside the ledger: one epoch per line.
    pub fn to_text(&self) -> String {
        self.0.join("\n")
    }

    /// Read back from [`Epochs::to_text`]; `None` for an empty text.
    pub fn from_text(text: &str) -> Option<Self> {
        let lines: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect();
        (!lines.is_empty()).then(|| Self::new(lines))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replicas of two releases share one Redis during a rollout: these names must not move.
    #[test]
    fn a_single_redis_keeps_the_key_names_of_earlier_releases() {
        let single = Layout::SINGLE;
        assert_eq!(
            single.counter("t:team-a:spend:2026-12"),
            "dgidgi:t:team-a:spend:2026-12"
        );
        assert_eq!(
            single.counter("p:openai-main:rpm"),
            "dgidgi:p:openai-main:rpm"
        );
        assert_eq!(single.epoch(0), "dgidgi:epoch");
        assert_eq!(single.fleet("replicas"), "dgidgi:replicas");
        assert_eq!(single.key(0, "rebuilt:e:l:0"), "dgidgi:rebuilt:e:l:0");
    }

    #[test]
    fn a_namespaces_counters_share_one_bucket_on_a_cluster() {
        let cluster = Layout::CLUSTER;
        let bucket = cluster.bucket_of("n:team-a:inflight");
        for key in [
            "t:team-a:rpm",
            "t:team-a:spend:2026-12",
            "t:team-a/assistant:tokens:2026-12-07",
            "t:team-a/assistant:inflight",
        ] {
            assert_eq!(cluster.bucket_of(key), bucket, "{key}");
        }
        assert_eq!(
            cluster.bucket_of("p:openai-main:rpm"),
            cluster.bucket_of("p:openai-main:tpm:29612345")
        );
        let tagged = cluster.counter("t:team-a:rpm");
        assert_eq!(tagged, format!("dgidgi:{{b{bucket:03}}}:t:team-a:rpm"));
        assert_eq!(
            cluster.epoch(bucket),
            format!("dgidgi:{{b{bucket:03}}}:epoch")
        );
        assert_eq!(cluster.fleet("replicas"), "dgidgi:{fleet}:replicas");
    }

    #[test]
    fn buckets_spread_namespaces_over_every_bucket() {
        let cluster = Layout::CLUSTER;
        let mut seen = vec![0u32; CLUSTER_BUCKETS as usize];
        for i in 0..20_000 {
            seen[cluster.bucket_of(&format!("t:team-{i}:rpm")) as usize] += 1;
        }
        // 78 expected per bucket: none empty, none more than twice that.
        assert!(
            seen.iter().all(|count| (20..160).contains(count)),
            "{seen:?}"
        );
    }

    #[test]
    fn epochs_name_themselves_and_say_what_changed() {
        let single = Epochs::new(vec!["e1".into()]);
        assert_eq!(single.name(), "e1", "what earlier releases recorded");
        assert_eq!(Epochs::from_text("e1\n"), Some(single.clone()));
        let many = Epochs::new(vec!["a".into(), "b".into(), "c".into()]);
        let moved = Epochs::new(vec!["a".into(), "B".into(), "c".into()]);
        assert_ne!(many.name(), moved.name());
        assert_eq!(moved.changed_since(&many), vec![1]);
        assert_eq!(many.changed_since(&single), vec![0, 1, 2]);
        assert_eq!(Epochs::from_text(&many.to_text()), Some(many));
        assert_eq!(Epochs::from_text(" \n"), None);
    }
}
