//! The embedded counter store: the same all-or-nothing reservation over a [`Charge`] list as the
//! Redis script (which applies each charge and undoes them on a refusal; here every charge is
//! checked first), in memory, under one lock. Pure data structure (the caller passes the
//! time), so its arithmetic is tested without clocks or networks.
//!
//! Its maps hash with foldhash (hashbrown's default) and are entered by borrowed keys: with
//! std's SipHash and a key cloned for each entry, the book's lookups were ~3,000 instructions of
//! every request (callgrind). Its keys come from the config (tenant and provider ids), never
//! from a request, so a keyed hash against flooding buys nothing here.

use std::collections::VecDeque;

use hashbrown::{HashMap, HashSet};

use super::charge::{Admitted, Charge, Refusal, Release};

/// Counters of one gateway replica.
#[derive(Debug, Default)]
pub struct Book {
    windows: HashMap<String, VecDeque<(u64, u128)>>,
    leases: HashMap<String, HashMap<u128, u64>>,
    amounts: HashMap<String, Amount>,
    marks: HashSet<String>,
}

#[derive(Debug, Clone, Copy)]
struct Amount {
    value: u64,
    expires_at: u64,
    /// The fleet's value when Redis last reported it (see [`Book::observe`]): what a replica
    /// admitting on its own shares the rest of the limit from.
    seen: u64,
}

impl Book {
    /// Checks every charge, then applies all of them, or none if any would pass its limit.
    /// Flexible amounts ([`Flex`](super::charge::Flex)) are taken at the most output every
    /// limited one can hold.
    pub fn reserve(
        &mut self,
        charges: &[Charge],
        member: u128,
        now: u64,
    ) -> Result<Admitted, Refusal> {
        self.reserve_share(charges, member, now, 1)
    }

    /// [`Book::reserve`] for one of `replicas` replicas admitting on their own (Redis
    /// unreachable, failing open): each limit is this replica's share. A window or a lease set
    /// holds this replica's own entries (mirrored while Redis answered), and may hold
    /// `limit / replicas` of them (at least 1); an amount may grow from the fleet's value Redis
    /// last reported by `(limit - that) / replicas`. So replicas that all lose Redis together
    /// admit about one limit between them, not one each.
    pub fn reserve_share(
        &mut self,
        charges: &[Charge],
        member: u128,
        now: u64,
        replicas: u64,
    ) -> Result<Admitted, Refusal> {
        let replicas = replicas.max(1);
        let share = |limit: u64| (limit / replicas).max(1);
        let mut after = Vec::with_capacity(charges.len());
        let mut output: Option<u64> = None;
        for (index, charge) in charges.iter().enumerate() {
            let (current, limit, retry_after_ms) = match charge {
                Charge::Window {
                    key,
                    limit,
                    window_ms,
                    ..
                } => {
                    let entries = self.windows.get_mut(key.as_str());
                    let (count, oldest) = match entries {
                        Some(entries) => {
                            prune_window(entries, now, *window_ms);
                            (entries.len() as u64, entries.front().map(|(at, _)| *at))
                        }
                        None => (0, None),
                    };
                    let retry = oldest.map_or(0, |at| (at + window_ms).saturating_sub(now));
                    (count, Some(share(*limit)), retry)
                }
                Charge::Lease { key, limit, .. } => {
                    let live = self.leases.get_mut(key.as_str()).map_or(0, |leases| {
                        leases.retain(|_, expires| *expires > now);
                        leases.len() as u64
                    });
                    (live, Some(share(*limit)), 0)
                }
                Charge::Amount {
                    key,
                    limit,
                    amount,
                    flex,
                    ..
                } => {
                    let value = self.amount(key, now);
                    // This replica's share of what the fleet had left when last seen.
                    let limit = limit.map(|limit| {
                        let seen = self.seen(key, now).min(limit);
                        seen + (limit - seen) / replicas
                    });
                    let limit = &limit;
                    // The amount at the output granted so far (the ask until a counter
                    // shrinks it).
                    let mut taken = match flex {
                        Some(flex) => flex.amount(*output.get_or_insert(flex.ask)),
                        None => *amount,
                    };
                    if let Some(limit) = limit
                        && value.saturating_add(taken) > *limit
                    {
                        // A counter already past its limit (a settlement above its
                        // reservation) has no room at all, as in the Redis script.
                        let room = limit.checked_sub(value);
                        let shrunk = room.zip(*flex).and_then(|(room, flex)| {
                            let most = flex.most_within(room, output.unwrap_or(flex.ask))?;
                            Some((most, flex.amount(most)))
                        });
                        let Some((most, shrunk)) = shrunk else {
                            return Err(Refusal {
                                index,
                                limit: *limit,
                                current: value,
                                retry_after_ms: 0,
                            });
                        };
                        output = Some(most);
                        taken = shrunk;
                    }
                    after.push(value.saturating_add(taken));
                    continue;
                }
            };
            if let Some(limit) = limit
                && current >= limit
            {
                return Err(Refusal {
                    index,
                    limit,
                    current,
                    retry_after_ms,
                });
            }
            after.push(current + 1);
        }
        self.apply(charges, member, now, output, &mut after);
        Ok(Admitted { after, output })
    }

    /// Mirrors a reservation Redis made, so this replica can go on alone, with what it
    /// admitted, if Redis becomes unreachable: its window entries and leases, and each amount
    /// counter at the fleet's value Redis reported after it (`fleet`, one per charge).
    pub fn mirror(&mut self, charges: &[Charge], fleet: &[u64], member: u128, now: u64) {
        for (charge, fleet) in charges.iter().zip(fleet) {
            match charge {
                Charge::Window { .. } | Charge::Lease { .. } => self.enter(charge, member, now),
                Charge::Amount { key, ttl_ms, .. } => self.observe(key, *fleet, now + ttl_ms),
            }
        }
    }

    /// Mirrors a settlement Redis applied: entries and leases released, amount counters at the
    /// fleet's values Redis reported (`fleet`, one per release; empty when Redis did not answer,
    /// and the adjustments are applied here instead).
    pub fn mirror_settled(&mut self, releases: &[Release], fleet: &[u64], member: u128, now: u64) {
        for (index, release) in releases.iter().enumerate() {
            match (release, fleet.get(index)) {
                (Release::Adjust { key, ttl_ms, .. }, Some(fleet)) => {
                    self.observe(key, *fleet, now + ttl_ms);
                }
                _ => {
                    self.settle_one(release, member, now);
                }
            }
        }
    }

    /// Records the fleet's value of an amount counter as Redis reported it.
    pub fn observe(&mut self, key: &str, fleet: u64, expires_at: u64) {
        let observed = Amount {
            value: fleet,
            expires_at,
            seen: fleet,
        };
        *self.amounts.entry_ref(key).or_insert(observed) = observed;
    }

    /// Enters `member` in a window or takes a lease for it (amounts are not entries).
    fn enter(&mut self, charge: &Charge, member: u128, now: u64) {
        match charge {
            Charge::Window { key, .. } => self
                .windows
                .entry_ref(key.as_str())
                .or_default()
                .push_back((now, member)),
            Charge::Lease { key, lease_ms, .. } => {
                self.leases
                    .entry_ref(key.as_str())
                    .or_default()
                    .insert(member, now + lease_ms);
            }
            Charge::Amount { .. } => {}
        }
    }

    /// Applies every charge: entries, leases, and the amounts at the granted output.
    fn apply(
        &mut self,
        charges: &[Charge],
        member: u128,
        now: u64,
        output: Option<u64>,
        after: &mut [u64],
    ) {
        for (charge, after) in charges.iter().zip(after.iter_mut()) {
            match charge {
                Charge::Window { .. } | Charge::Lease { .. } => self.enter(charge, member, now),
                Charge::Amount {
                    key,
                    amount,
                    ttl_ms,
                    flex,
                    ..
                } => {
                    // Flexible amounts are taken at the final grant, which only ever shrank.
                    let taken = match (flex, output) {
                        (Some(flex), Some(granted)) => flex.amount(granted),
                        _ => *amount,
                    };
                    *after = self.amount(key, now).saturating_add(taken);
                    self.add(
                        key,
                        i64::try_from(taken).unwrap_or(i64::MAX),
                        now + ttl_ms,
                        now,
                    );
                }
            }
        }
    }

    /// Applies a settlement; returns, per release, the counter's value afterwards (0 for
    /// windows and leases).
    pub fn settle(&mut self, releases: &[Release], member: u128, now: u64) -> Vec<u64> {
        releases
            .iter()
            .map(|release| self.settle_one(release, member, now))
            .collect()
    }

    /// Applies one release; the counter's value afterwards (0 for windows and leases).
    fn settle_one(&mut self, release: &Release, member: u128, now: u64) -> u64 {
        match release {
            Release::Window { key } => {
                if let Some(entries) = self.windows.get_mut(key.as_str()) {
                    entries.retain(|(_, m)| *m != member);
                }
                0
            }
            Release::Lease { key } => {
                if let Some(leases) = self.leases.get_mut(key.as_str()) {
                    leases.remove(&member);
                }
                0
            }
            Release::Adjust { key, delta, ttl_ms } => {
                self.add(key, *delta, now + ttl_ms, now);
                self.amount(key, now)
            }
        }
    }

    /// The current value of an amount counter (0 when absent or expired).
    pub fn amount(&self, key: &str, now: u64) -> u64 {
        self.amounts
            .get(key)
            .filter(|a| a.expires_at > now)
            .map_or(0, |a| a.value)
    }

    /// The fleet's value of an amount counter when Redis last reported it (0 when never).
    fn seen(&self, key: &str, now: u64) -> u64 {
        self.amounts
            .get(key)
            .filter(|a| a.expires_at > now)
            .map_or(0, |a| a.seen)
    }

    /// Sets a counter outright (restoring day and month totals from the ledger on start).
    pub fn set_amount(&mut self, key: &str, value: u64, expires_at: u64) {
        self.amounts.insert(
            key.to_owned(),
            Amount {
                value,
                expires_at,
                seen: 0,
            },
        );
    }

    /// Records `mark` once; true the first time (alert thresholds fire once per month). Asked
    /// at every settlement past a line, so a mark already held costs a lookup, not a copy.
    pub fn mark_once(&mut self, mark: &str) -> bool {
        !self.marks.contains(mark) && self.marks.insert(mark.to_owned())
    }

    /// Drops expired counters and empty windows so memory stays bounded by live tenants.
    pub fn sweep(&mut self, now: u64, window_ms: u64) {
        self.amounts.retain(|_, a| a.expires_at > now);
        self.windows.retain(|_, entries| {
            prune_window(entries, now, window_ms);
            !entries.is_empty()
        });
        self.leases.retain(|_, leases| {
            leases.retain(|_, expires| *expires > now);
            !leases.is_empty()
        });
    }

    fn add(&mut self, key: &str, delta: i64, expires_at: u64, now: u64) {
        let entry = self.amounts.entry_ref(key).or_insert(Amount {
            value: 0,
            expires_at,
            seen: 0,
        });
        if entry.expires_at <= now {
            entry.value = 0;
            entry.seen = 0;
        }
        entry.value = entry.value.saturating_add_signed(delta);
        entry.expires_at = entry.expires_at.max(expires_at);
    }
}

fn prune_window(entries: &mut VecDeque<(u64, u128)>, now: u64, window_ms: u64) {
    while entries.front().is_some_and(|(at, _)| at + window_ms <= now) {
        entries.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metering::charge::LimitKind;

    fn window(limit: u64) -> Charge {
        Charge::Window {
            key: "rpm".into(),
            limit,
            window_ms: 60_000,
            kind: LimitKind::Rpm,
        }
    }

    fn amount(limit: u64, amount: u64) -> Charge {
        Charge::Amount {
            key: "tpd".into(),
            limit: Some(limit),
            amount,
            ttl_ms: 1_000_000,
            kind: Some(LimitKind::Tpd),
            measure: crate::metering::charge::Measure::Tokens,
            flex: None,
        }
    }

    #[test]
    fn a_sliding_window_admits_exactly_its_limit_in_any_minute() {
        let mut book = Book::default();
        for i in 0..5 {
            assert!(book.reserve(&[window(5)], i, 1_000 + i as u64).is_ok());
        }
        let refused = book.reserve(&[window(5)], 9, 30_000).unwrap_err();
        assert_eq!((refused.limit, refused.current), (5, 5));
        assert_eq!(
            refused.retry_after_ms, 31_000,
            "the oldest entry leaves at 61 s"
        );
        // Just before the first entry leaves: still refused. At 61 s: one slot frees.
        assert!(book.reserve(&[window(5)], 9, 60_999).is_err());
        assert!(book.reserve(&[window(5)], 9, 61_000).is_ok());
        assert!(book.reserve(&[window(5)], 10, 61_000).is_err());
    }

    #[test]
    fn all_or_nothing_a_refused_charge_applies_none_of_the_others() {
        let mut book = Book::default();
        book.reserve(&[amount(100, 90)], 1, 0).unwrap();
        let both = [window(10), amount(100, 20)];
        let refused = book.reserve(&both, 2, 1).unwrap_err();
        assert_eq!(refused.index, 1);
        assert_eq!(refused.current, 90);
        // The window took nothing: ten more single requests fit.
        for i in 0..10 {
            assert!(book.reserve(&[window(10)], 10 + i, 2).is_ok());
        }
    }

    #[test]
    fn settling_adjusts_amounts_and_releases_leases() {
        let mut book = Book::default();
        let lease = Charge::Lease {
            key: "inflight".into(),
            limit: 1,
            lease_ms: 1_000,
            kind: LimitKind::Concurrency,
        };
        let charges = [lease.clone(), amount(1_000, 300)];
        let admitted = book.reserve(&charges, 1, 0).unwrap();
        assert_eq!(admitted.after, vec![1, 300]);
        assert!(book.reserve(std::slice::from_ref(&lease), 2, 10).is_err());
        let releases: Vec<Release> = vec![charges[0].release(0), charges[1].release(120)];
        let after = book.settle(&releases, 1, 20);
        assert_eq!(after, vec![0, 120]);
        assert!(book.reserve(std::slice::from_ref(&lease), 2, 30).is_ok());
        // An unreleased lease expires on its own.
        assert!(book.reserve(&[lease], 3, 1_031).is_ok());
    }

    #[test]
    fn expired_amounts_start_again_from_zero() {
        let mut book = Book::default();
        book.reserve(&[amount(100, 100)], 1, 0).unwrap();
        assert!(book.reserve(&[amount(100, 1)], 2, 10).is_err());
        assert!(book.reserve(&[amount(100, 100)], 3, 1_000_000).is_ok());
        book.sweep(5_000_000, 60_000);
        assert_eq!(book.amount("tpd", 5_000_000), 0);
        assert!(book.mark_once("t/50") && !book.mark_once("t/50"));
    }
}
