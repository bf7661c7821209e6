#!lua flags=allow-oom
-- Park a delivery in its endpoint's lane: the endpoint cannot take it now (at its in-flight
-- cap, its send slot is taken, or its circuit breaker is open: then the wake-up is the probe
-- time). It waits there without costing anything until a delivery to that endpoint finishes
-- and releases it, or until the lane's wake-up time in the lanes set (the send slot frees; the
-- probe time; a safety net for a worker that died before releasing). Returns 0 when
-- the job is no longer on the processing list (the lease was lost).
-- KEYS[1] processing list, KEYS[2] lane list, KEYS[3] lanes zset;
-- ARGV[1] raw job, ARGV[2] endpoint id, ARGV[3] wake up after ms, ARGV[4] '1' to park at the
-- front (a failed probe: the oldest delivery stays the oldest). The failed attempt that parked
-- it joins its endpoint's Recent Deliveries in the same step when KEYS[4] (history list) and
-- ARGV[5] (the entry; ARGV[6] entries kept, ARGV[7] ms kept) are given. ARGV[8], when given
-- and not empty, is the job that waits instead of ARGV[1]: the delivery as a lane keeps it, its
-- event a reference to body id ARGV[10] (`StoredDelivery` in job.rs), with the failed attempt
-- that parked it recorded (an attempt spent is counted whatever the breaker does); the body,
-- ARGV[11], is kept once in KEYS[6] (bodies) and counted in KEYS[7] (body refs).
-- ARGV[9] (NOTIFY_LANE_MAX; 0: none): a lane that already holds this many takes nothing more at
-- its back: 2, nothing changed but the endpoint's count in KEYS[5] (a hash endpoint id -> count),
-- and the worker dead-letters the delivery as "endpoint lane full".
-- When parked, up to ARGV[12] next jobs are taken onto the processing list in the same step for
-- the slot the delivery frees (`take` in the prelude, as `fetch.lua` takes them; ARGV[13] the
-- longest job to return): KEYS[8] ready list, KEYS[9] retry list, KEYS[10] flows ring,
-- KEYS[11] endpoints' revision (shard 0 only).
-- Returns {0, 1 or 2 as above, what `take` answered ({-1}: nothing asked or taken)}.
local max = tonumber(ARGV[9] or '0') or 0
if max > 0 and ARGV[4] ~= '1' and redis.call('LLEN', KEYS[2]) >= max then
  if not redis.call('LPOS', KEYS[1], ARGV[1]) then
    return {0, {-1}}
  end
  redis.call('HINCRBY', KEYS[5], ARGV[2], 1)
  return {2, {-1}}
end
if not claimed(KEYS[1], ARGV[1]) then
  return {0, {-1}}
end
local job = ARGV[1]
if ARGV[8] and ARGV[8] ~= '' then
  job = ARGV[8]
  if ARGV[10] and ARGV[10] ~= '' then
    hold_body(KEYS[6], KEYS[7], ARGV[10], ARGV[11])
  end
end
if ARGV[4] == '1' then
  redis.call('LPUSH', KEYS[2], job)
else
  redis.call('RPUSH', KEYS[2], job)
end
local wake = now_ms() + tonumber(ARGV[3])
-- An earlier wake-up already set stays (LT: only ever moved earlier).
redis.call('ZADD', KEYS[3], 'LT', wake, ARGV[2])
if ARGV[5] and ARGV[5] ~= '' then
  push_history(KEYS[4], ARGV[5], ARGV[6], ARGV[7])
end
local taken = {-1}
local want = tonumber(ARGV[12] or '0')
if want > 0 then
  taken = take(KEYS[8], KEYS[1], KEYS[9], KEYS[11], want, tonumber(ARGV[13]), KEYS[10])
end
return {1, taken}
