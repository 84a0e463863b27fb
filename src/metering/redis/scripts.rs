//! The Lua scripts the counters run in Redis, each one atomic step: reserve, apply releases,
//! settle, cancel, heartbeat, rebuild.

/// Check-and-reserve over every charge: all are applied or none (KEYS: the counters, the
/// reservation's marker, the epoch; ARGV: member, the epoch expected, then per counter its
/// kind, limit and x, an amount's TTL, and a flexible amount's "fixed per scale" and ask: each
/// argument costs Redis ~1,000 instructions to read and hand to Lua, so none is sent that the
/// common path does not read, and what only a smaller grant reads is one text). Returns {0,
/// after..., granted output} on success (the grant only when the list has flexible amounts),
/// {index, limit, current, retry_ms} when refused, {-2} when Redis' epoch is not the one
/// expected.
///
/// A flexible amount (`f`, [`crate::metering::charge::Flex`]) follows the output tokens granted: taken at
/// the ask, and when a limited counter cannot hold it, at the most output that fits (at least
/// one token), with every flexible amount before it shrunk to the same grant. The common case
/// (room for the ask) costs nothing more than a fixed amount: the caller's text is added as
/// it is.
///
/// Each charge is applied as it is checked, and a refusal (or a counter that cannot be counted,
/// caught with `pcall`: a script does not roll back by itself) takes back the ones applied.
/// Admitting, the common case, then costs an amount counter one write instead of a read and a
/// write; a refusal costs a few writes more than before. The script is atomic, so nobody sees
/// the undone state. Redis' CPU per request is what bounds how many requests one Redis can meter
/// for the whole fleet, so every call here counts.
///
/// Numbers, in both scripts: text is turned into a number by arithmetic (`s + 0` parses once;
/// Lua 5.1's `tonumber` parses twice), and integers the caller sent go back to `redis.call` as
/// the caller's text: Redis 7.0 prints a Lua number with `%.17g`, a float print of ~2,500
/// instructions (callgrind). Redis' clock is kept as the text `TIME` gave, and the scores
/// computed from it are printed with `'%d'` where Lua's `'%d'` (a C `long`) holds a millisecond
/// timestamp, which a check on each call finds; a 32-bit build gets the number and its float
/// print. Globals (`KEYS`, `ARGV`, `redis.call`) are read once into locals: each use of a global
/// is a lookup in Redis' globals table (together −3.7 % of Redis' instructions a request).
///
/// The marker's TTL is `@MARKER_TTL_MS@`, written into the text by [`sources`] (an argument
/// read on every call for a constant).
pub(super) const RESERVE: &str = r#"
-- Globals read once: each use of a global is a lookup in Redis' globals table.
local KEYS, ARGV, call, protected_call = KEYS, ARGV, redis.call, redis.pcall
local floor, format, byte, type = math.floor, string.format, string.byte, type
local n = #KEYS - 2
local marker = KEYS[n + 1]
local member = ARGV[1]
-- A Redis that lost its data (restarted empty, failed over to a replica without it) has lost
-- its epoch too: nothing is reserved until this replica has added its ledger's usage to the
-- new one (an empty expected epoch skips the check).
if ARGV[2] ~= '' and call('GET', KEYS[n + 2]) ~= ARGV[2] then return {-2} end
-- The marker records this reservation (so a lost answer is cancelled exactly once); a
-- cancellation that arrived first left it set, and this reservation is not made.
if not call('SET', marker, '1', 'PX', '@MARKER_TTL_MS@', 'NX') then return {-1} end
-- Each flexible amount ('f') by position: {fixed, per, scale (read when first needed: see
-- `params`), ask, where "fixed per scale" is in ARGV, what it has taken}.
local flex = {}
-- Whether a flexible amount was granted less than its ask (see the marker below).
local shrunk = false
-- How many arguments a charge takes after the member and the epoch: a window or a lease its
-- kind, limit and length; an amount also its TTL; a flexible amount also its fixed, per and
-- scale (one text, read only when a smaller grant or a refusal needs them) and its ask.
local function width(kind)
  if kind == 'a' then return 4 elseif kind == 'f' then return 6 end
  return 3
end
-- A flexible amount at `o` output tokens: ceil((fixed + per * o) / scale), in integers (every
-- figure stays below 2^53, where Lua's doubles are exact).
-- A flexible amount's fixed, per and scale, read when first needed (see the loop below).
local function params(f)
  if not f[1] then
    local fixed, per, scale = string.match(ARGV[f[5]], '^(%d+) (%d+) (%d+)$')
    f[1], f[2], f[3] = fixed + 0, per + 0, scale + 0
  end
  return f
end
local function amount(f, o)
  params(f)
  local total = f[1] + f[2] * o
  local q = floor(total / f[3])
  local r = total - q * f[3]
  if r < 0 then q = q - 1; r = r + f[3] elseif r >= f[3] then q = q + 1; r = r - f[3] end
  if r > 0 then q = q + 1 end
  return q
end
local output
local now, now_text, wide
-- A score computed here, as text for Redis: `%d` where Lua's `%d` holds every millisecond
-- (its C `long` is 64 bits wide), so Redis gets the digits without a float print (a Lua
-- number handed to `redis.call` is printed with `%.17g`, ~2,500 instructions); a 32-bit
-- build, whose `long` would overflow, gets the number and pays for the print.
local function whole(v)
  if wide then return format('%d', v) end
  return v
end
-- Sized once for the status, up to six counters and the grant (grown one slot at a time it
-- was rehashed up to four times).
local result = {0, nil, nil, nil, nil, nil, nil, nil}
-- A refusal (or an error) leaves the loop with how many charges were applied and the answer.
local applied, refusal
local b = 2
for i = 1, n do
  local kind, limit, x = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3] + 0
  -- No limit is '-1', read without a text-to-number parse (~500 instructions each).
  if limit == '-1' then limit = -1 else limit = limit + 0 end
  local key = KEYS[i]
  if kind == 'a' or kind == 'f' then
    local add = ARGV[b + 3]
    local f
    if kind == 'f' then
      -- Only the ask is read now: at the ask (the common case) the amount is the caller's
      -- text, and "fixed per scale" (one text, three parses) is read by `params` when a
      -- smaller grant or a refusal needs it.
      f = {nil, nil, nil, ARGV[b + 6] + 0, b + 5, nil}
      flex[i] = f
      if not output then output = f[4] end
      -- The caller's text (and `x`, its number) is the amount at the ask; a smaller grant is
      -- computed.
      if output < f[4] then
        add = amount(f, output)
        x = add
        shrunk = true
      end
      f[6] = x
    end
    local value = protected_call('INCRBY', key, add)
    if type(value) == 'table' then
      -- Another type under the key, or out of range: nothing of this reservation stays, and
      -- the caller gets the error (a script does not roll back by itself).
      applied, refusal = i - 1, value
      break
    end
    -- A new counter (or one at 0) gets its TTL: the TTLs given end with the counter's day,
    -- month or minute, so the first write's expiry is every later write's too.
    if value == x then call('PEXPIRE', key, ARGV[b + 4]) end
    if limit >= 0 and value > limit then
      local before = value - x
      local room = limit - before
      local most = -1
      if f and params(f)[2] > 0 then
        -- The most output whose amount fits what is left, never more than granted so far.
        most = floor((room * f[3] - f[1]) / f[2])
        if most > output then most = output end
        while most >= 0 and amount(f, most) > room do most = most - 1 end
        if most < math.min(1, f[4]) then most = -1 end
      end
      if most < 0 then
        applied, refusal = i, {i, limit, before, 0}
        break
      end
      -- Granted less: this and every flexible amount before it shrink to the new grant.
      output = most
      for j, g in pairs(flex) do
        if most < g[4] then shrunk = true end
        local less = g[6] - amount(g, most)
        if less > 0 then
          result[j + 1] = call('DECRBY', KEYS[j], less)
          g[6] = g[6] - less
        end
      end
      value = before + f[6]
    end
    result[i + 1] = value
  else
    if not now then
      -- Windows and leases use Redis' own clock, so replicas with skewed clocks agree. Its
      -- millisecond is also kept as text (the seconds, then the microseconds' first three
      -- digits), handed to Redis as it is; see `whole` for the scores computed from it.
      local clock = call('TIME')
      local micros = clock[2]
      if #micros < 6 then micros = string.rep('0', 6 - #micros) .. micros end
      now_text = clock[1] .. string.sub(micros, 1, 3)
      now = now_text + 0
      wide = format('%d', 2^53) == '9007199254740992'
    end
    -- A window holds the entries of the last x ms (scored by arrival), a lease set the
    -- unexpired leases (scored by expiry).
    local score, horizon
    if kind == 'l' then
      score, horizon = whole(now + x), now_text
    else
      score, horizon = now_text, whole(now - x)
    end
    -- Only the live entries are counted. The expired ones are removed by one request in
    -- sixteen (the last hex digit of its random id is 0): a removal on every request was one
    -- more call each time. Besides its live entries a set holds those added since the last
    -- removal: about sixteen under steady traffic, up to a window's worth after a burst and
    -- then slow traffic; a set untouched for its TTL expires whole.
    local count = call('ZCOUNT', key, '(' .. horizon, '+inf')
    if byte(member, -1) == 48 then call('ZREMRANGEBYSCORE', key, '-inf', horizon) end
    if limit >= 0 and count >= limit then
      local retry = 0
      if kind == 'w' then
        local oldest = call('ZRANGEBYSCORE', key, '(' .. horizon, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
        if oldest[2] then retry = tonumber(oldest[2]) + x - now end
      end
      applied, refusal = i - 1, {i, limit, count, retry}
      break
    end
    call('ZADD', key, score, member)
    call('PEXPIRE', key, ARGV[b + 3])
    result[i + 1] = count + 1
  end
  b = b + width(kind)
end
if refusal then
  -- The charges applied before one was refused (or failed) are taken back, and the marker
  -- (the script is atomic: nobody saw them).
  b = 2
  for j = 1, applied do
    local kind = ARGV[b + 1]
    if kind == 'a' then
      call('DECRBY', KEYS[j], ARGV[b + 3])
    elseif kind == 'f' then
      call('DECRBY', KEYS[j], flex[j][6])
    else
      call('ZREM', KEYS[j], member)
    end
    b = b + width(kind)
  end
  call('DEL', marker)
  return refusal
end
if output then
  -- A grant below the ask is written into the marker (what each flexible amount took, by
  -- position), so a cancellation whose caller never learned it gives back what was taken.
  -- At the ask (the common case) nothing is written, and nothing printed: each '%.0f' is a
  -- float print of ~2,500 instructions.
  if shrunk then
    local marks = {}
    for j = 1, n do
      marks[j] = ''
      -- Printed whole: Lua's own number-to-text keeps 14 digits.
      if flex[j] then marks[j] = format('%.0f', flex[j][6]) end
    end
    call('SET', marker, 'g' .. table.concat(marks, ','), 'KEEPTTL')
  end
  -- The grant closes the answer when the list had flexible amounts.
  result[n + 2] = output
end
return result
"#;

/// Applies releases (KEYS: the counters, then the marker; ARGV: the member, then per counter
/// its kind, and an amount's delta and TTL) into `result`; shared by settling and cancelling.
/// An adjustment of 0 (an answer that used exactly its reservation; the request counter of a
/// served request, which only replicas from before 2026-12-01 still send) only reads.
pub(super) const APPLY_RELEASES: &str = r#"
local function apply_releases(result, taken)
  local KEYS, ARGV, call = KEYS, ARGV, redis.call
  local member = ARGV[1]
  local b = 1
  for i = 1, #KEYS - 1 do
    local kind, key = ARGV[b + 1], KEYS[i]
    if kind == 'a' then
      local arg = ARGV[b + 2]
      local delta = arg + 0
      if taken and taken[i] then delta = -taken[i]; arg = delta end
      local value
      if delta == 0 then
        value = tonumber(call('GET', key) or '0')
      else
        value = call('INCRBY', key, arg)
        if value < 0 then
          call('SET', key, '0', 'PX', ARGV[b + 3])
          value = 0
        elseif value == delta then
          -- The counter had expired (a day or month ended in between): a TTL again.
          call('PEXPIRE', key, ARGV[b + 3])
        end
      end
      result[i] = value
      b = b + 3
    else
      call('ZREM', key, member)
      result[i] = 0
      b = b + 1
    end
  end
  return result
end
"#;

/// Settles, once: the settlement takes the reservation's marker, and a retry whose first attempt
/// reached Redis (its answer was lost) finds none and changes nothing. So does a settlement
/// after its marker expired ([`super::MARKER_TTL_MS`]): the counters keep the reservation, the
/// safe side for limits and budgets (the ledger still records what was used).
pub(super) const SETTLE: &str = r#"
if redis.call('DEL', KEYS[#KEYS]) == 0 then return {} end
-- Sized once for up to seven counters (grown one slot at a time it was rehashed up to four
-- times).
return apply_releases({nil, nil, nil, nil, nil, nil, nil})
"#;

/// Cancels a reservation whose answer was lost (a timeout, or its caller went away): released if
/// it was made and not yet settled or cancelled (the marker says `1`), otherwise the marker is
/// set so a reservation still on its way is not made (and a settled one stays settled). Either
/// way exactly once.
pub(super) const CANCEL: &str = r#"
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
redis.call('SET', KEYS[#KEYS], 'cancelled', 'PX', '@MARKER_TTL_MS@', 'NX')
return {}
"#;

/// The scripts a [`super::RedisCounters`] runs, in its order (reserve, settle, cancel), with
/// the marker's TTL written in.
pub(super) fn sources(marker_ttl_ms: u64) -> [String; 3] {
    let ttl = marker_ttl_ms.to_string();
    [
        RESERVE.replace("@MARKER_TTL_MS@", &ttl),
        format!("{APPLY_RELEASES}{SETTLE}"),
        format!("{APPLY_RELEASES}{CANCEL}").replace("@MARKER_TTL_MS@", &ttl),
    ]
}

/// A replica says it is alive and learns how many are, Redis' epoch, and how many of the live
/// replicas have added their usage to it (KEYS: the replica set, the epoch, the epochs each
/// replica's usage is in; ARGV: this replica's id, the entry's life in ms, a new epoch should
/// Redis have none, the epoch this replica's usage is in or '', and on a cluster the name of
/// its buckets' epochs, read before, which then stands for the epoch). The replica set holds
/// each live replica scored by when its entry expires, on Redis' clock; entries of replicas
/// gone are dropped from the epochs too.
pub(super) const HEARTBEAT: &str = r#"
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
redis.call('ZADD', KEYS[1], now + ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
-- The epoch names this Redis' data; one that lost it finds none, and the first replica to
-- look starts a new one.
local epoch = ARGV[5]
if not epoch or epoch == '' then
  epoch = redis.call('GET', KEYS[2])
  if not epoch then
    redis.call('SET', KEYS[2], ARGV[3])
    epoch = ARGV[3]
  end
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
pub(super) const REBUILD: &str = r#"
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return -1 end
if not redis.call('SET', KEYS[1], '1', 'PX', ARGV[1], 'NX') then return 0 end
for i = 3, #KEYS do
  local b = 3 + (i - 3) * 2
  local value = redis.call('INCRBY', KEYS[i], ARGV[b])
  if value == ARGV[b] + 0 then redis.call('PEXPIRE', KEYS[i], ARGV[b + 1]) end
end
return 1
"#;
