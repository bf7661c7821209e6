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
-- KEYS[1] processing list, KEYS[1 + i] breaker hash of job i's endpoint, KEYS[1 + n + i] its
-- history list, KEYS[1 + 2n + i] its lane; ARGV[1] history length, ARGV[2] history ms,
-- ARGV[2 + i] job i, ARGV[2 + n + i] job i's history entry ('' for none). Returns one answer
-- per job, in order.
local n = (#ARGV - 2) / 2
local out = {}
local history = {}
local order = {}
for i = 1, n do
  if not claimed(KEYS[1], ARGV[2 + i]) then
    out[i] = 0
  else
    local b = redis.call('HMGET', KEYS[1 + i], 'state', 'failures')
    local state = b[1]
    if state == 'closed' then
      -- The count ends; the rest (generation, last interval, announcements) is the breaker's
      -- memory of its last closing, kept until the hash's own expiry.
      if b[2] then
        redis.call('HDEL', KEYS[1 + i], 'failures', 'last_error', 'trials', 'trials_until')
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
    local entry = ARGV[2 + n + i]
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
  local entries = history[key]
  local i = 1
  while i <= #entries do
    local j = math.min(i + 499, #entries)
    redis.call('LPUSH', key, unpack(entries, i, j))
    i = j + 1
  end
  redis.call('LTRIM', key, 0, tonumber(ARGV[1]) - 1)
  redis.call('PEXPIRE', key, ARGV[2])
end
return out
