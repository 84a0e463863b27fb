//! Shared counters in Redis, so N gateway replicas enforce one tenant's limits as one (DESIGN §7).
//! Check-and-reserve is one Lua script over every counter of the request (atomic: all charges
//! or none), settling is a second; every key has a TTL. Each call is bounded by a short timeout,
//! after which the caller applies `--redis-fail-mode`. The connection manager reconnects by itself.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};

use super::charge::{Admitted, Charge, Refusal, Release};

/// Prefix of every key this gateway writes.
const PREFIX: &str = "dgidgi:";

/// Check every charge, then apply all of them (ARGV: caller's time (unused: Redis' own clock
/// decides), member, then type/limit/x/ttl per key).
/// Returns {0, after...} on success or {index, limit, current, retry_ms} when refused.
const RESERVE: &str = r#"
-- Windows and leases use Redis' own clock, so replicas with skewed clocks agree.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local member = ARGV[2]
local after = {}
for i = 1, #KEYS do
  local b = 2 + (i - 1) * 4
  local kind, limit, x = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local key = KEYS[i]
  if kind == 'w' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - x)
    local count = redis.call('ZCARD', key)
    if limit >= 0 and count >= limit then
      local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
      local retry = 0
      if oldest[2] then retry = tonumber(oldest[2]) + x - now end
      return {i, limit, count, retry}
    end
    after[i] = count + 1
  elseif kind == 'l' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local count = redis.call('ZCARD', key)
    if limit >= 0 and count >= limit then return {i, limit, count, 0} end
    after[i] = count + 1
  else
    local value = tonumber(redis.call('GET', key) or '0')
    if limit >= 0 and value + x > limit then return {i, limit, value, 0} end
    after[i] = value + x
  end
end
for i = 1, #KEYS do
  local b = 2 + (i - 1) * 4
  local kind, x, ttl = ARGV[b + 1], tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local key = KEYS[i]
  if kind == 'w' then
    redis.call('ZADD', key, now, member)
    redis.call('PEXPIRE', key, x)
  elseif kind == 'l' then
    redis.call('ZADD', key, now + x, member)
    redis.call('PEXPIRE', key, x)
  else
    redis.call('INCRBY', key, x)
    redis.call('PEXPIRE', key, ttl)
  end
end
local result = {0}
for i = 1, #KEYS do result[i + 1] = after[i] end
return result
"#;

/// Apply releases (ARGV: member, then type/delta/ttl per key); returns each counter afterwards.
const SETTLE: &str = r#"
local member = ARGV[1]
local result = {}
for i = 1, #KEYS do
  local b = 1 + (i - 1) * 3
  local kind, delta, ttl = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local key = KEYS[i]
  if kind == 'a' then
    local value = redis.call('INCRBY', key, delta)
    if value < 0 then redis.call('SET', key, 0); value = 0 end
    redis.call('PEXPIRE', key, ttl)
    result[i] = value
  else
    redis.call('ZREM', key, member)
    result[i] = 0
  end
end
return result
"#;

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
}

impl RedisError {
    /// Low-cardinality label for the error metric.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Call(_) => "error",
            Self::Reply => "reply",
        }
    }
}

/// The shared counter store.
#[derive(Clone)]
pub struct RedisCounters {
    connection: ConnectionManager,
    reserve: Script,
    settle: Script,
    timeout: Duration,
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
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            connection,
            reserve: Script::new(RESERVE),
            settle: Script::new(SETTLE),
            timeout,
        })
    }

    /// Check-and-reserve, one round trip.
    pub async fn reserve(
        &self,
        charges: &[Charge],
        member: u128,
        now: u64,
    ) -> Result<Result<Admitted, Refusal>, RedisError> {
        let mut invocation = self.reserve.prepare_invoke();
        invocation.arg(now).arg(format!("{member:032x}"));
        for charge in charges {
            invocation.key(format!("{PREFIX}{}", charge.key()));
            let (kind, limit, x, ttl) = match charge {
                Charge::Window {
                    limit, window_ms, ..
                } => ("w", *limit as i64, *window_ms, 0),
                Charge::Lease {
                    limit, lease_ms, ..
                } => ("l", *limit as i64, *lease_ms, 0),
                Charge::Amount {
                    limit,
                    amount,
                    ttl_ms,
                    ..
                } => ("a", limit.map_or(-1, |l| l as i64), *amount, *ttl_ms),
            };
            invocation.arg(kind).arg(limit).arg(x).arg(ttl);
        }
        let mut connection = self.connection.clone();
        let reply: Vec<i64> = self
            .bounded(invocation.invoke_async(&mut connection))
            .await?;
        match reply.as_slice() {
            [0, after @ ..] => Ok(Ok(Admitted {
                after: after.iter().map(|v| (*v).max(0) as u64).collect(),
            })),
            [index, limit, current, retry] if *index > 0 => Ok(Err(Refusal {
                index: (*index - 1) as usize,
                limit: (*limit).max(0) as u64,
                current: (*current).max(0) as u64,
                retry_after_ms: (*retry).max(0) as u64,
            })),
            _ => Err(RedisError::Reply),
        }
    }

    /// Settles, one round trip; returns each counter's value afterwards.
    pub async fn settle(&self, releases: &[Release], member: u128) -> Result<Vec<u64>, RedisError> {
        if releases.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.settle.prepare_invoke();
        invocation.arg(format!("{member:032x}"));
        for release in releases {
            let (key, kind, delta, ttl) = match release {
                Release::Window { key } => (key, "w", 0, 0),
                Release::Lease { key } => (key, "l", 0, 0),
                Release::Adjust { key, delta, ttl_ms } => (key, "a", *delta, *ttl_ms),
            };
            invocation
                .key(format!("{PREFIX}{key}"))
                .arg(kind)
                .arg(delta)
                .arg(ttl);
        }
        // Off the request path: a settlement may wait longer, and is tried twice, since a lost
        // one leaves a lease held until it expires.
        let timeout = self.timeout.max(Duration::from_secs(1));
        let mut last = RedisError::Reply;
        for _ in 0..2 {
            let mut connection = self.connection.clone();
            let call = invocation.invoke_async::<Vec<i64>>(&mut connection);
            match tokio::time::timeout(timeout, call).await {
                Ok(Ok(reply)) => return Ok(reply.into_iter().map(|v| v.max(0) as u64).collect()),
                Ok(Err(error)) => last = RedisError::Call(error),
                Err(_) => last = RedisError::Timeout(timeout),
            }
        }
        Err(last)
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

    async fn bounded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisError> {
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(RedisError::Timeout(self.timeout)),
            Ok(result) => Ok(result?),
        }
    }
}
