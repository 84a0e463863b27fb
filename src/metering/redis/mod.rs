//! Shared counters in Redis, so N gateway replicas enforce one tenant's limits as one (DESIGN §7).
//! Check-and-reserve is one Lua script over every counter of the request (atomic: all charges
//! or none), settling is a second; every key has a TTL. The calls of concurrent requests leave in
//! one pipeline ([`batch`]). Each call is bounded by a short timeout, after which the caller
//! applies `--redis-fail-mode`; a settlement or cancellation that timed out is sent again in the
//! background ([`redeliver`]). The connection manager reconnects by itself.

mod batch;
mod redeliver;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue as _, Script, Value};
use tokio::runtime::{Handle, RuntimeFlavor};

use super::charge::{Admitted, Charge, Refusal, Release};
use super::request_id;
use crate::metrics::ResultLabels;
use batch::{Batcher, Sources};
use redeliver::Redeliveries;

/// Prefix of every key this gateway writes.
const PREFIX: &str = "dgidgi:";

/// Check-and-reserve over every charge: all are applied or none (KEYS: the counters, the
/// reservation's marker, the epoch; ARGV: marker TTL, member, the epoch expected,
/// type/limit/x/ttl per counter, then fixed/per/scale/ask per flexible amount). Returns {0,
/// after..., granted output} on success (the grant only when the list has flexible amounts),
/// {index, limit, current, retry_ms} when refused, {-2} when Redis' epoch is not the one
/// expected.
///
/// A flexible amount (`f`, [`super::charge::Flex`]) follows the output tokens granted: taken at
/// the ask, and when a limited counter cannot hold it, at the most output that fits (at least
/// one token), with every flexible amount before it shrunk to the same grant. The common case
/// (room for the ask) costs nothing more than a fixed amount: the caller's text is added as
/// it is.
///
/// Each charge is applied as it is checked, and a refusal (or a counter that cannot be counted,
/// caught with `pcall`: a script does not roll back by itself) undoes the ones before it.
/// Admitting, the common case, then costs an amount counter one write instead of a read and a
/// write; a refusal costs a few writes more than before. The script is atomic, so nobody sees
/// the undone state. Redis' CPU per request is what bounds how many requests one Redis can meter
/// for the whole fleet, so every call here counts.
///
/// Numbers, in both scripts: text is turned into a number by arithmetic (`s + 0` parses once;
/// Lua 5.1's `tonumber` parses twice), and integers the caller sent go back to `redis.call` as
/// the caller's text: Redis 7.0 prints a Lua number with `%.17g`, a float print of ~2,500
/// instructions (callgrind). The scores and horizons computed here stay numbers: printing them
/// with `'%d'` would save as much again, but Lua 5.1's `'%d'` goes through a C `long`, which a
/// 32-bit Redis build would overflow with a millisecond timestamp, and making that portable
/// cost nearly all of the saving (measured).
const RESERVE: &str = r#"
local n = #KEYS - 2
local marker = KEYS[n + 1]
local member = ARGV[2]
-- A Redis that lost its data (restarted empty, failed over to a replica without it) has lost
-- its epoch too: nothing is reserved until this replica has added its ledger's usage to the
-- new one (an empty expected epoch skips the check).
if ARGV[3] ~= '' and redis.call('GET', KEYS[n + 2]) ~= ARGV[3] then return {-2} end
-- The marker records this reservation (so a lost answer is cancelled exactly once); a
-- cancellation that arrived first left it set, and this reservation is not made.
if not redis.call('SET', marker, '1', 'PX', ARGV[1], 'NX') then return {-1} end
-- What each flexible amount ('f') has taken, by position.
local taken = {}
-- Takes back charges 1..upto and the marker: a later charge was refused.
local function undo(upto)
  for j = 1, upto do
    local b = 3 + (j - 1) * 4
    local kind = ARGV[b + 1]
    if kind == 'a' then
      redis.call('DECRBY', KEYS[j], ARGV[b + 3])
    elseif kind == 'f' then
      redis.call('DECRBY', KEYS[j], taken[j])
    else
      redis.call('ZREM', KEYS[j], member)
    end
  end
  redis.call('DEL', marker)
end
-- A flexible amount at `o` output tokens: ceil((fixed + per * o) / scale), in integers (every
-- figure stays below 2^53, where Lua's doubles are exact).
local function amount(f, o)
  local total = f[1] + f[2] * o
  local q = math.floor(total / f[3])
  local r = total - q * f[3]
  if r < 0 then q = q - 1; r = r + f[3] elseif r >= f[3] then q = q + 1; r = r - f[3] end
  if r > 0 then q = q + 1 end
  return q
end
-- The flexible amounts' parameters follow the charges: fixed, per, scale, ask each.
local flex_at = 3 + n * 4
local flex = {}
local output
local now
local result = {0}
for i = 1, n do
  local b = 3 + (i - 1) * 4
  local kind, limit, x = ARGV[b + 1], ARGV[b + 2] + 0, ARGV[b + 3] + 0
  local key = KEYS[i]
  if kind == 'a' or kind == 'f' then
    local add = ARGV[b + 3]
    local f
    if kind == 'f' then
      f = {ARGV[flex_at + 1] + 0, ARGV[flex_at + 2] + 0, ARGV[flex_at + 3] + 0, ARGV[flex_at + 4] + 0}
      flex_at = flex_at + 4
      flex[i] = f
      if not output then output = f[4] end
      -- The caller's text is the amount at the ask; a smaller grant is computed.
      if output < f[4] then add = amount(f, output) end
      x = add + 0
      taken[i] = x
    end
    local value = redis.pcall('INCRBY', key, add)
    if type(value) == 'table' then
      -- Another type under the key, or out of range: nothing of this reservation stays, and
      -- the caller gets the error (a script does not roll back by itself).
      taken[i] = nil
      undo(i - 1)
      return value
    end
    -- A new counter (or one at 0) gets its TTL: the TTLs given end with the counter's day,
    -- month or minute, so the first write's expiry is every later write's too.
    if value == x then redis.call('PEXPIRE', key, ARGV[b + 4]) end
    if limit >= 0 and value > limit then
      local before = value - x
      local room = limit - before
      local most = -1
      if f and f[2] > 0 then
        -- The most output whose amount fits what is left, never more than granted so far.
        most = math.floor((room * f[3] - f[1]) / f[2])
        if most > output then most = output end
        while most >= 0 and amount(f, most) > room do most = most - 1 end
        if most < math.min(1, f[4]) then most = -1 end
      end
      if most < 0 then
        undo(i)
        return {i, limit, before, 0}
      end
      -- Granted less: this and every flexible amount before it shrink to the new grant.
      output = most
      for j, g in pairs(flex) do
        local less = taken[j] - amount(g, most)
        if less > 0 then
          result[j + 1] = redis.call('DECRBY', KEYS[j], less)
          taken[j] = taken[j] - less
        end
      end
      value = before + taken[i]
    end
    result[i + 1] = value
  else
    if not now then
      -- Windows and leases use Redis' own clock, so replicas with skewed clocks agree.
      local clock = redis.call('TIME')
      now = clock[1] * 1000 + math.floor(clock[2] / 1000)
    end
    -- A window holds the entries of the last x ms (scored by arrival), a lease set the
    -- unexpired leases (scored by expiry).
    local score, horizon = now, now - x
    if kind == 'l' then score, horizon = now + x, now end
    redis.call('ZREMRANGEBYSCORE', key, '-inf', horizon)
    local count = redis.call('ZCARD', key)
    if limit >= 0 and count >= limit then
      local retry = 0
      if kind == 'w' then
        local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
        if oldest[2] then retry = tonumber(oldest[2]) + x - now end
      end
      undo(i - 1)
      return {i, limit, count, retry}
    end
    redis.call('ZADD', key, score, member)
    redis.call('PEXPIRE', key, ARGV[b + 3])
    result[i + 1] = count + 1
  end
end
if output then
  -- A grant below the ask is written into the marker (what each flexible amount took, by
  -- position), so a cancellation whose caller never learned it gives back what was taken.
  local shrunk, marks = false, {}
  for j = 1, n do
    marks[j] = ''
    if flex[j] then
      -- Printed whole: Lua's own number-to-text keeps 14 digits.
      marks[j] = string.format('%.0f', taken[j])
      if output < flex[j][4] then shrunk = true end
    end
  end
  if shrunk then redis.call('SET', marker, 'g' .. table.concat(marks, ','), 'KEEPTTL') end
  -- The grant closes the answer when the list had flexible amounts.
  result[n + 2] = output
end
return result
"#;

/// Applies releases (KEYS: the counters, then the marker; ARGV: member, marker TTL, then
/// type/delta/ttl per counter) into `result`; shared by settling and cancelling. An adjustment
/// of 0 (an answer that used exactly its reservation; the request counter of a served request,
/// which only replicas from before 2026-12-01 still send) only reads.
const APPLY_RELEASES: &str = r#"
local function apply_releases(result, taken)
  local member = ARGV[1]
  for i = 1, #KEYS - 1 do
    local b = 2 + (i - 1) * 3
    local kind, arg = ARGV[b + 1], ARGV[b + 2]
    local delta = arg + 0
    local key = KEYS[i]
    if taken and taken[i] then delta = -taken[i]; arg = delta end
    if kind == 'a' then
      local value
      if delta == 0 then
        value = tonumber(redis.call('GET', key) or '0')
      else
        value = redis.call('INCRBY', key, arg)
        if value < 0 then
          redis.call('SET', key, '0', 'PX', ARGV[b + 3])
          value = 0
        elseif value == delta then
          -- The counter had expired (a day or month ended in between): a TTL again.
          redis.call('PEXPIRE', key, ARGV[b + 3])
        end
      end
      result[i] = value
    else
      redis.call('ZREM', key, member)
      result[i] = 0
    end
  end
  return result
end
"#;

/// Settles, once: the settlement takes the reservation's marker, and a retry whose first attempt
/// reached Redis (its answer was lost) finds none and changes nothing. So does a settlement
/// after its marker expired ([`MARKER_TTL_MS`]): the counters keep the reservation, the
/// safe side for limits and budgets (the ledger still records what was used).
const SETTLE: &str = r#"
if redis.call('DEL', KEYS[#KEYS]) == 0 then return {} end
return apply_releases({})
"#;

/// Cancels a reservation whose answer was lost (a timeout, or its caller went away): released if
/// it was made and not yet settled or cancelled (the marker says `1`), otherwise the marker is
/// set so a reservation still on its way is not made (and a settled one stays settled). Either
/// way exactly once.
const CANCEL: &str = r#"
local mark = redis.call('GET', KEYS[#KEYS])
if mark == '1' then
  redis.call('DEL', KEYS[#KEYS])
  return apply_releases({})
end
if mark and string.sub(mark, 1, 1) == 'g' then
  -- Granted less output than asked: give back what each flexible amount took.
  local taken, j = {}, 0
  for value in string.gmatch(string.sub(mark, 2) .. ',', '([^,]*),') do
    j = j + 1
    if value ~= '' then taken[j] = value + 0 end
  end
  redis.call('DEL', KEYS[#KEYS])
  return apply_releases({}, taken)
end
redis.call('SET', KEYS[#KEYS], 'cancelled', 'PX', ARGV[2], 'NX')
return {}
"#;

/// A replica says it is alive and learns how many are, Redis' epoch, and how many of the live
/// replicas have added their usage to it (KEYS: the replica set, the epoch, the epochs each
/// replica's usage is in; ARGV: this replica's id, the entry's life in ms, a new epoch should
/// Redis have none, the epoch this replica's usage is in or ''). The replica set holds each live
/// replica scored by when its entry expires, on Redis' clock; entries of replicas gone are
/// dropped from the epochs too.
const HEARTBEAT: &str = r#"
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
redis.call('ZADD', KEYS[1], now + ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
-- The epoch names this Redis' data; one that lost it finds none, and the first replica to
-- look starts a new one.
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  redis.call('SET', KEYS[2], ARGV[3])
  epoch = ARGV[3]
end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[3], ARGV[1], ARGV[4]) end
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
local added = 0
for _, replica in ipairs(live) do
  if redis.call('HGET', KEYS[3], replica) == epoch then added = added + 1 end
end
for _, replica in ipairs(redis.call('HKEYS', KEYS[3])) do
  if not redis.call('ZSCORE', KEYS[1], replica) then redis.call('HDEL', KEYS[3], replica) end
end
return {#live, epoch, added}
"#;

/// Adds one replica's usage to a new epoch's counters, once (KEYS: the guard, the epoch, then
/// the counters; ARGV: the guard's life, the epoch, then amount/TTL per counter): the guard
/// names the epoch, the ledger and the chunk, so a retry adds nothing twice, and nothing is
/// added to another epoch than the one named (Redis lost its data again meanwhile: -1).
const REBUILD: &str = r#"
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return -1 end
if not redis.call('SET', KEYS[1], '1', 'PX', ARGV[1], 'NX') then return 0 end
for i = 3, #KEYS do
  local b = 3 + (i - 3) * 2
  local value = redis.call('INCRBY', KEYS[i], ARGV[b])
  if value == ARGV[b] + 0 then redis.call('PEXPIRE', KEYS[i], ARGV[b + 1]) end
end
return 1
"#;

/// How long a rebuild's guard stays: longer than any counter it rebuilt (a month and a grace).
const REBUILD_GUARD_MS: u64 = 40 * 86_400_000;

/// The key naming Redis' epoch.
const EPOCH_KEY: &str = "dgidgi:epoch";

/// The life of a reservation's marker: longer than any request lasts (and than its lease, 15
/// minutes, or its window, one), since a settlement applies only while its marker is there
/// (that is what makes it apply once). A settled request's marker is gone at once, so only
/// reservations never settled (a crashed replica) leave one behind until then.
const MARKER_TTL_MS: u64 = 24 * 3_600_000;

/// The largest amount, limit or adjustment sent to the scripts: Lua's numbers are doubles,
/// exact up to 2^53, and a counter this far below Redis' 64-bit range cannot overflow it in
/// practice (9 × 10^15 tokens, or 9 billion USD in micro-USD, per request).
const MAX_EXACT: u64 = (1 << 53) - 1;

fn exact(value: u64) -> i64 {
    value.min(MAX_EXACT) as i64
}

/// What the gateway checks of the Redis server it shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    /// `maxmemory-policy`, when the server lets it be read.
    pub eviction_policy: Option<String>,
}

impl ServerSettings {
    /// Whether the server may evict the counters: every counter key has a TTL, so any policy
    /// but `noeviction` (the `volatile-*` ones included) can drop a tenant's usage silently
    /// when memory runs short, and its budget could be spent again.
    pub fn may_evict_counters(&self) -> bool {
        self.eviction_policy
            .as_deref()
            .is_some_and(|policy| policy != "noeviction")
    }
}

/// What a heartbeat learns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// Live replicas.
    pub replicas: u64,
    /// Redis' epoch.
    pub epoch: String,
    /// Live replicas whose usage is in that epoch.
    pub added: u64,
}

/// Why a Redis call did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// No answer within the fail-mode timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The call failed (connection refused, script error, ...).
    #[error("redis: {0}")]
    Call(#[from] redis::RedisError),
    /// The script answered something unexpected.
    #[error("redis answered an unexpected reply")]
    Reply,
    /// Redis lost its data (its epoch is not the one this replica added its usage to): no
    /// reservation is made until the replica has added it to the new one.
    #[error("redis lost its data; the counters are being rebuilt")]
    EpochLost,
}

impl RedisError {
    /// True when the call cannot have reached Redis (no connection could be made), so there
    /// is nothing of it to cancel.
    pub fn never_sent(&self) -> bool {
        matches!(self, Self::EpochLost)
            || matches!(self, Self::Call(error) if error.is_connection_refusal())
    }

    /// Low-cardinality label for the error metric.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Call(_) => "error",
            Self::Reply => "reply",
            Self::EpochLost => "data_lost",
        }
    }
}

/// The shared counter store.
#[derive(Clone)]
pub struct RedisCounters {
    connection: ConnectionManager,
    /// A second connection for calls sent again, which nobody waits on: its answers may take
    /// up to `redeliver::PATIENCE` (the first one's are bounded by the fail-mode timeout).
    patient: ConnectionManager,
    reserve: Script,
    settle: Script,
    cancel: Script,
    timeout: Duration,
    /// The scripts' sources, for loading them again after Redis forgot them.
    sources: Sources,
    /// The batching task, started by the first call on a multi-threaded runtime (`new` need not
    /// run on one) and again if that runtime goes away.
    batcher: Arc<Mutex<Option<Batcher>>>,
    /// Settlements and cancellations waiting to be sent again.
    redeliveries: Redeliveries,
    /// The epoch reservations are made in (see [`Epoch`]).
    epoch: Arc<arc_swap::ArcSwap<Epoch>>,
}

/// Which of Redis' lives this replica's reservations belong to. Redis keeps an epoch key with
/// no TTL; a Redis that restarted empty or failed over without its data has none, and the
/// first replica to notice starts a new one. A replica reserves only in the epoch it has added
/// its ledger's usage to, so a budget spent before Redis lost its data is not spent again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Epoch {
    /// Not checked (a counter store used on its own: tests, tools).
    Unchecked,
    /// Reservations are made in this epoch.
    Synced(String),
    /// Redis' epoch changed under this replica: nothing is reserved until it syncs again.
    Lost,
}

impl std::fmt::Debug for RedisCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: never printed.
        f.debug_struct("RedisCounters")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisCounters {
    /// A lazily connecting, self-reconnecting client; `timeout` bounds every call.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, RedisError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
        let patient = ConnectionManager::new_lazy_with_config(
            client,
            config.set_response_timeout(Some(redeliver::PATIENCE)),
        )?;
        let sources = [
            RESERVE.to_owned(),
            format!("{APPLY_RELEASES}{SETTLE}"),
            format!("{APPLY_RELEASES}{CANCEL}"),
        ];
        Ok(Self {
            connection,
            patient,
            reserve: Script::new(&sources[0]),
            settle: Script::new(&sources[1]),
            cancel: Script::new(&sources[2]),
            timeout,
            sources: Arc::from(sources),
            batcher: Arc::default(),
            redeliveries: Redeliveries::default(),
            epoch: Arc::new(arc_swap::ArcSwap::from_pointee(Epoch::Unchecked)),
        })
    }

    /// Counts what became of the settlements and cancellations sent again (`applied`: Redis
    /// took it, which changes nothing if an earlier copy arrived; `abandoned` after an hour or
    /// an error that would only repeat; `dropped` when too many were waiting).
    pub fn report_redeliveries_to(mut self, outcomes: Family<ResultLabels, Counter>) -> Self {
        self.redeliveries.report_to(outcomes);
        self
    }

    /// Runs one script call with the next pipeline (see [`batch`]); the reply as integers. On a
    /// current-thread runtime the call goes alone: a task there runs only while something
    /// awaits on that runtime, and the caller may be waiting on another.
    async fn evaluate(&self, call: Cmd) -> redis::RedisResult<Vec<i64>> {
        let reply = match self.batcher() {
            Some(batcher) => batcher.call(call).await?,
            None => batch::call_alone(self.connection.clone(), call, &self.sources).await?,
        };
        Ok(Vec::<i64>::from_redis_value(reply)?)
    }

    /// The running batching task, started on this multi-threaded runtime if there is none.
    fn batcher(&self) -> Option<Batcher> {
        let runtime = Handle::try_current()
            .ok()
            .filter(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread)?;
        let mut slot = self.batcher.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(batcher) = slot.as_ref().filter(|batcher| !batcher.is_closed()) {
            return Some(batcher.clone());
        }
        let batcher = Batcher::start(&runtime, self.connection.clone(), self.sources.clone());
        *slot = Some(batcher.clone());
        Some(batcher)
    }

    /// The start of an `EVALSHA` of `script` with `keys` keys (the keys, then the args follow).
    /// Built here because the redis crate keeps its own script invocation's command private and
    /// sends it at once, and these calls go into a pipeline.
    fn script_call(script: &Script, keys: usize) -> Cmd {
        let mut call = redis::cmd("EVALSHA");
        call.arg(script.get_hash()).arg(keys);
        call
    }

    /// The key marking one reservation of `member`: a request's tenant reservation has its
    /// request id, each of its provider attempts a member of its own, so no two reservations
    /// share a marker (a settlement sent again must never take another's).
    fn marker(charges: &[Charge], member: u128) -> String {
        let first = charges.first().map_or("", Charge::key);
        format!("{PREFIX}r:{}:{first}", request_id::text(member))
    }

    /// Check-and-reserve, one round trip.
    pub async fn reserve(
        &self,
        charges: &[Charge],
        member: u128,
    ) -> Result<Result<Admitted, Refusal>, RedisError> {
        let expected = match &**self.epoch.load() {
            Epoch::Unchecked => String::new(),
            Epoch::Synced(epoch) => epoch.clone(),
            Epoch::Lost => return Err(RedisError::EpochLost),
        };
        let mut call = Self::script_call(&self.reserve, charges.len() + 2);
        for charge in charges {
            call.arg(format!("{PREFIX}{}", charge.key()));
        }
        call.arg(Self::marker(charges, member))
            .arg(EPOCH_KEY)
            .arg(MARKER_TTL_MS)
            .arg(request_id::text(member))
            .arg(expected);
        let mut flexible = Vec::new();
        for charge in charges {
            let (kind, limit, x, ttl) = match charge {
                Charge::Window {
                    limit, window_ms, ..
                } => ("w", exact(*limit), exact(*window_ms), 0),
                Charge::Lease {
                    limit, lease_ms, ..
                } => ("l", exact(*limit), exact(*lease_ms), 0),
                Charge::Amount {
                    limit,
                    amount,
                    ttl_ms,
                    flex,
                    ..
                } => {
                    let kind = match flex {
                        Some(flex) => {
                            flexible.push(flex);
                            "f"
                        }
                        None => "a",
                    };
                    (kind, limit.map_or(-1, exact), exact(*amount), *ttl_ms)
                }
            };
            call.arg(kind).arg(limit).arg(x).arg(ttl);
        }
        for flex in &flexible {
            call.arg(exact(flex.fixed))
                .arg(exact(flex.per_output))
                .arg(exact(flex.scale))
                .arg(exact(flex.ask));
        }
        let reply = self.bounded(self.evaluate(call)).await?;
        match reply.as_slice() {
            [0, after @ ..] => {
                let (after, output) = match after.split_last() {
                    Some((output, after)) if !flexible.is_empty() => {
                        (after, Some((*output).max(0) as u64))
                    }
                    _ => (after, None),
                };
                Ok(Ok(Admitted {
                    after: after.iter().map(|v| (*v).max(0) as u64).collect(),
                    output,
                }))
            }
            [-2] => {
                // Noticed at once, not at the next heartbeat: no reservation goes to this
                // Redis until this replica has added its usage to the new epoch.
                self.epoch.store(Arc::new(Epoch::Lost));
                Err(RedisError::EpochLost)
            }
            [index, limit, current, retry] if *index > 0 => Ok(Err(Refusal {
                index: (*index - 1) as usize,
                limit: (*limit).max(0) as u64,
                current: (*current).max(0) as u64,
                retry_after_ms: (*retry).max(0) as u64,
            })),
            // -1: cancelled before it arrived; anything else is not ours.
            _ => Err(RedisError::Reply),
        }
    }

    /// Settles the reservation made by `charges`, one round trip off the request path; returns
    /// each counter's value afterwards. When Redis does not answer in time the error is returned
    /// and the settlement is sent again in the background until it is taken.
    pub async fn settle(
        &self,
        charges: &[Charge],
        releases: &[Release],
        member: u128,
    ) -> Result<Vec<u64>, RedisError> {
        self.release(&self.settle, charges, releases, member).await
    }

    /// Cancels a reservation whose answer was lost (a timeout, or its caller went away):
    /// everything it took is given back if it was made, and it is never made if it is still on
    /// its way. Exactly once; sent again in the background when Redis does not answer in time.
    pub async fn cancel(&self, charges: &[Charge], member: u128) -> Result<(), RedisError> {
        let releases = super::plan::releases(charges, None);
        self.release(&self.cancel, charges, &releases, member)
            .await
            .map(|_| ())
    }

    async fn release(
        &self,
        script: &Script,
        charges: &[Charge],
        releases: &[Release],
        member: u128,
    ) -> Result<Vec<u64>, RedisError> {
        let call = Self::release_call(script, charges, releases, member);
        match self.bounded(self.evaluate(call)).await {
            Ok(reply) => Ok(reply.into_iter().map(|v| v.max(0) as u64).collect()),
            Err(error) => {
                // Built again only now, off the common path: both scripts apply once, so a
                // copy sent after an attempt that did reach Redis changes nothing.
                if redeliver::worth_resending(&error) {
                    self.send_again(Self::release_call(script, charges, releases, member));
                }
                Err(error)
            }
        }
    }

    /// The `EVALSHA` of a settling or cancelling `script` for the reservation of `charges`.
    fn release_call(
        script: &Script,
        charges: &[Charge],
        releases: &[Release],
        member: u128,
    ) -> Cmd {
        let mut call = Self::script_call(script, releases.len() + 1);
        for release in releases {
            let (Release::Window { key } | Release::Lease { key } | Release::Adjust { key, .. }) =
                release;
            call.arg(format!("{PREFIX}{key}"));
        }
        call.arg(Self::marker(charges, member))
            .arg(request_id::text(member))
            .arg(MARKER_TTL_MS);
        for release in releases {
            let (kind, delta, ttl) = match release {
                Release::Window { .. } => ("w", 0, 0),
                Release::Lease { .. } => ("l", 0, 0),
                Release::Adjust { delta, ttl_ms, .. } => {
                    let delta = (*delta).clamp(-(MAX_EXACT as i64), MAX_EXACT as i64);
                    ("a", delta, *ttl_ms)
                }
            };
            call.arg(kind).arg(delta).arg(ttl);
        }
        call
    }

    /// Sends `call` again in the background, waiting longer between tries, until Redis takes
    /// it, answers with an error that would only repeat, or an hour has passed. The tries go
    /// alone on the patient connection: nobody waits on them, and a Redis that answers slower
    /// than the fail-mode timeout still takes them.
    fn send_again(&self, call: Cmd) {
        let Some(place) = self.redeliveries.place() else {
            tracing::debug!("too many Redis calls waiting to be sent again; one dropped");
            return;
        };
        let counters = self.clone();
        self.redeliveries.spawn(place, async move {
            let given_up_at = Instant::now() + redeliver::WINDOW;
            let mut resend = 0;
            loop {
                resend += 1;
                tokio::time::sleep(redeliver::jittered(redeliver::wait_before(resend))).await;
                let attempt =
                    batch::call_alone(counters.patient.clone(), call.clone(), &counters.sources);
                let Err(error) = within(redeliver::PATIENCE, attempt).await else {
                    tracing::debug!(
                        resend,
                        "a Redis settlement or cancellation sent again was taken"
                    );
                    counters.redeliveries.count("applied");
                    return;
                };
                if !redeliver::worth_resending(&error) || Instant::now() >= given_up_at {
                    counters.redeliveries.abandon(resend, &error);
                    return;
                }
            }
        });
    }

    /// Gives the settlements and cancellations waiting to be sent again until `deadline` to
    /// land (a stopping gateway's last chance to free its tenants' slots); how many are still
    /// waiting then.
    pub async fn wait_for_redeliveries(&self, deadline: tokio::time::Instant) -> usize {
        self.redeliveries.wait_until(deadline).await
    }

    /// Connects, loads the scripts and reads the server's eviction policy, waiting up to
    /// `patience` (not the fail-mode timeout: this runs before the replica reports ready). A
    /// replica that did this at start decides its first requests through Redis like every later
    /// one; made lazily instead, the first reservations waited for the connection, timed out
    /// and were decided by the fail mode, each replica admitting on its own (a cold fleet let
    /// 12-14 requests through an RPM of 10).
    pub async fn warm_up(&self, patience: Duration) -> Result<ServerSettings, RedisError> {
        let mut connection = self.connection.clone();
        let load = async {
            for source in self.sources.iter() {
                let _: String = redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(source)
                    .query_async(&mut connection)
                    .await?;
            }
            // Managed Redis services may refuse CONFIG: then the policy is unknown.
            let policy: Option<Vec<String>> = redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory-policy")
                .query_async(&mut connection)
                .await
                .ok();
            Ok(ServerSettings {
                eviction_policy: policy.and_then(|pair| pair.into_iter().nth(1)),
            })
        };
        let settings = within(patience, load).await?;
        // The pipeline task runs from now on, not from the first request.
        drop(self.batcher());
        Ok(settings)
    }

    /// Records that replica `id` is alive for `life` and that its usage is in `added_to` (if
    /// any); returns how many replicas are alive, Redis' epoch (`candidate` becomes it if Redis
    /// has none), and how many live replicas have added their usage to that epoch.
    pub async fn heartbeat(
        &self,
        id: &str,
        life: Duration,
        candidate: &str,
        added_to: Option<&str>,
    ) -> Result<Heartbeat, RedisError> {
        let mut connection = self.patient.clone();
        let (replicas, epoch, added): (u64, String, u64) = within(
            redeliver::PATIENCE,
            Script::new(HEARTBEAT)
                .key(format!("{PREFIX}replicas"))
                .key(EPOCH_KEY)
                .key(format!("{PREFIX}replica-epochs"))
                .arg(id)
                .arg(life.as_millis() as u64)
                .arg(candidate)
                .arg(added_to.unwrap_or(""))
                .invoke_async(&mut connection),
        )
        .await?;
        Ok(Heartbeat {
            replicas,
            epoch,
            added,
        })
    }

    /// The epoch reservations are made in.
    pub fn epoch(&self) -> Arc<Epoch> {
        self.epoch.load_full()
    }

    /// Reserves nothing until [`RedisCounters::sync_epoch`] names the epoch (a gateway's
    /// counters start so; used alone, a store does not check epochs).
    pub fn await_epoch(&self) {
        self.epoch.store(Arc::new(Epoch::Lost));
    }

    /// Makes reservations in `epoch` from now on.
    pub fn sync_epoch(&self, epoch: String) {
        self.epoch.store(Arc::new(Epoch::Synced(epoch)));
    }

    /// Adds a replica's usage to the counters of `epoch`, once per `guard` (named by the epoch,
    /// the ledger and the chunk), and only while Redis' epoch is `epoch`; `counters` are (key,
    /// amount, TTL ms). True if this call added them, false if an earlier one had.
    pub async fn rebuild(
        &self,
        guard: &str,
        epoch: &str,
        counters: &[(String, u64, u64)],
    ) -> Result<bool, RedisError> {
        let mut connection = self.patient.clone();
        let rebuild = Script::new(REBUILD);
        let mut script = rebuild.prepare_invoke();
        script
            .key(format!("{PREFIX}{guard}"))
            .key(EPOCH_KEY)
            .arg(REBUILD_GUARD_MS)
            .arg(epoch);
        for (key, amount, ttl) in counters {
            script
                .key(format!("{PREFIX}{key}"))
                .arg(exact(*amount))
                .arg(*ttl);
        }
        let added: i64 = within(redeliver::PATIENCE, script.invoke_async(&mut connection)).await?;
        match added {
            // Redis lost its data again meanwhile: nothing was added.
            -1 => Err(RedisError::EpochLost),
            added => Ok(added == 1),
        }
    }

    /// Sets a mark once across all replicas (`SET NX`); true for the first setter.
    pub async fn mark_once(&self, mark: &str, ttl_ms: u64) -> Result<bool, RedisError> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("SET");
        command
            .arg(format!("{PREFIX}{mark}"))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms.max(1));
        let reply: Value = self.bounded(command.query_async(&mut connection)).await?;
        Ok(matches!(reply, Value::Okay | Value::SimpleString(_)))
    }

    /// Reads amount counters (the usage summary); missing keys read as 0.
    pub async fn amounts(&self, keys: &[String]) -> Result<Vec<u64>, RedisError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("MGET");
        for key in keys {
            command.arg(format!("{PREFIX}{key}"));
        }
        let reply: Vec<Option<i64>> = self.bounded(command.query_async(&mut connection)).await?;
        Ok(reply
            .into_iter()
            .map(|v| v.unwrap_or(0).max(0) as u64)
            .collect())
    }

    /// `call`, given up after the fail-mode timeout.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisError> {
        within(self.timeout, call).await
    }
}

/// `call`, given up after `timeout`.
async fn within<T>(
    timeout: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, RedisError> {
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err(RedisError::Timeout(timeout)),
        Ok(result) => Ok(result?),
    }
}
