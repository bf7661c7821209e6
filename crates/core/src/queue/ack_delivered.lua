#!lua flags=allow-oom
-- Finish a batch of delivered jobs of one worker in one step (one round trip and one write for
-- all the deliveries that finished while the previous batch was on its way). For each job: take
-- it off the processing list (0 when it is no longer there: the
-- lease ran out), then clear its endpoint's breaker's count when closed (a success ends a run
-- of failures, whichever worker counted them), or answer 2 when the breaker is open or half-open
-- (the worker then reports the success, which closes it and drains the lane); 3 when it is
-- closed and the endpoint's lane holds deliveries (the worker releases the lane's oldest into
-- the slot this one frees, whichever worker parked them); 1 otherwise.
-- Each finished job's attempt joins its endpoint's Recent Deliveries (newest first, the last
-- ARGV[1] entries, kept ARGV[2] ms), with one LPUSH, LTRIM and PEXPIRE per endpoint and batch.
-- Then, in the same step, the next jobs: up to ARGV[3] taken onto the processing list as
-- `fetch.lua` takes them (`take` in the prelude), so a worker whose deliveries finished runs the
-- next ones without another round trip (0: none, and no keys for it).
-- KEYS[1] processing list, KEYS[1 + i] breaker hash of job i's endpoint, KEYS[1 + n + i] its
-- history list, KEYS[1 + 2n + i] its lane; with ARGV[3] > 0, KEYS[2 + 3n] ready list,
-- KEYS[3 + 3n] retry list, KEYS[4 + 3n] flows ring, KEYS[5 + 3n] endpoints revision (absent on
-- shards other than 0).
-- ARGV[1] history length, ARGV[2] history ms, ARGV[3] jobs to take, ARGV[4] max job bytes,
-- ARGV[4 + i] job i, ARGV[4 + n + i] job i's history entry ('' for none). Returns one answer
-- per job, in order, and what `take` answered ({-1} when nothing was asked).
local n = (#ARGV - 4) / 2
local out = {}
local history = {}
local order = {}
-- What each endpoint's breaker and lane said, looked at once per batch: nothing this script
-- does changes the answer for a later job of the same endpoint.
local looked = {}
for i = 1, n do
  if not claimed(KEYS[1], ARGV[4 + i]) then
    out[i] = 0
  else
    local breaker = KEYS[1 + i]
    out[i] = looked[breaker]
    if not out[i] then
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
      if out[i] == 1 and KEYS[1 + 2 * n + i] and redis.call('LLEN', KEYS[1 + 2 * n + i]) > 0 then
        out[i] = 3
      end
      looked[breaker] = out[i]
    end
    local entry = ARGV[4 + n + i]
    if entry ~= '' then
      local key = KEYS[1 + n + i]
      if not history[key] then
        history[key] = {}
        order[#order + 1] = key
      end
      table.insert(history[key], entry)
    end
  end
end
for _, key in ipairs(order) do
  chunked('LPUSH', key, history[key], 500)
  redis.call('LTRIM', key, 0, tonumber(ARGV[1]) - 1)
  redis.call('PEXPIRE', key, ARGV[2])
end
local taken = {-1}
local want = tonumber(ARGV[3])
if want > 0 then
  taken = take(KEYS[2 + 3 * n], KEYS[1], KEYS[3 + 3 * n], KEYS[5 + 3 * n], want, tonumber(ARGV[4]), KEYS[4 + 3 * n])
end
return {out, taken}
