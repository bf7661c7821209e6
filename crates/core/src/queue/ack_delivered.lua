#!lua flags=allow-oom
-- The script part of finishing a batch of delivered jobs of one worker (`ack_delivered_many` in
-- finish.rs). The same round trip takes each job off the processing list first (an `LREM` per
-- job, sent before this script in one pipeline: 0 when it is no longer there, the lease ran
-- out) and pushes the attempts onto their endpoints' Recent Deliveries after it (`LPUSH`,
-- `LTRIM`, `PEXPIRE` per endpoint). Neither the jobs nor the entries pass through this script:
-- Redis's Lua hashes every byte of every string it is handed, and they are most of a batch's
-- bytes.
-- For each endpoint of the batch, once: clear its breaker's count when closed (a success ends a
-- run of failures, whichever worker counted them) and answer 1, or 2 when the breaker is open or
-- half-open (the worker then reports the success, which closes it and drains the lane); 3 when
-- it is closed and the endpoint's lane holds deliveries (the worker releases the lane's oldest
-- into the slot a delivery frees, whichever worker parked them).
-- Then, in the same step, the next jobs: up to ARGV[1] taken onto the processing list as
-- `fetch.lua` takes them (`take` in the prelude), so a worker whose deliveries finished runs the
-- next ones without another round trip (0: none, and no keys for it).
-- KEYS[1] processing list, KEYS[1 + i] breaker hash of endpoint i (of m), KEYS[1 + m + i] its
-- lane; with ARGV[1] > 0, KEYS[2 + 2m] ready list, KEYS[3 + 2m] retry list, KEYS[4 + 2m] flows
-- ring, KEYS[5 + 2m] endpoints revision (absent on shards other than 0).
-- ARGV[1] jobs to take, ARGV[2] max job bytes, ARGV[3] m. Returns one answer per endpoint, in
-- order, and what `take` answered ({-1} when nothing was asked).
local m = tonumber(ARGV[3])
local out = {}
for i = 1, m do
  local breaker = KEYS[1 + i]
  local b = redis.call('HMGET', breaker, 'state', 'failures')
  local state = b[1]
  if state == 'closed' then
    -- The count ends; the rest (generation, last interval, announcements) is the breaker's
    -- memory of its last closing, kept until the hash's own expiry.
    if b[2] then
      redis.call('HDEL', breaker, 'failures', 'last_error', 'trials', 'trials_until')
    end
    out[i] = 1
  elseif state == 'open' or state == 'half_open' then
    out[i] = 2
  else
    out[i] = 1
  end
  if out[i] == 1 and redis.call('LLEN', KEYS[1 + m + i]) > 0 then
    out[i] = 3
  end
end
local taken = {-1}
local want = tonumber(ARGV[1])
if want > 0 then
  taken = take(KEYS[2 + 2 * m], KEYS[1], KEYS[3 + 2 * m], KEYS[5 + 2 * m], want, tonumber(ARGV[2]), KEYS[4 + 2 * m])
end
return {out, taken}
