#!lua flags=allow-oom
-- Fan-out with an endpoint's rules, in one step with the event job's acknowledgement: take the
-- event job off the worker's processing list and, for each step Rust planned,
--   send:    push a delivery job (urgent ones to the front), or hold it in the delayed set until
--            its quiet hours end (an absolute due time, Unix ms, computed from Redis's clock);
--   collect: append a finding to its digest list; a new digest gets its deadline in the digests
--            zset and a timer job (digest_due.v1) in the delayed set, due at that deadline;
--   flush:   (its scan ended) bring the digest's deadline forward to a short grace from now and
--            schedule a timer job for it (digest_due.v1 with the scan's end as its reason), so
--            findings of the scan still being fanned out by other workers join the digest; the
--            timer then flushes it (digest_due.lua).
-- A send or collect step with a dedupe key is skipped when its member was seen within the
-- window (counted in the suppressed hash); otherwise the member is recorded now, entries older
-- than the window are trimmed and the key expires a window after its last entry.
-- Returns {sent, held, collected, flushed, suppressed}, or {-1} when the job is no longer on
-- the list (the lease was lost; nothing is done).
-- KEYS[1] processing, KEYS[2] ready, KEYS[3] delayed, KEYS[4] digests zset, KEYS[5] suppressed
-- hash, KEYS[6] digest timers hash (digest id → its timer job), KEYS[7..] the steps' keys; ARGV[1] raw job, ARGV[2] number of steps, then 11 values a
-- step: op, endpoint id, dedupe key index (0: none), dedupe member, window ms, key index A
-- (collect, flush: the digest list), key index B (unused), digest id (send: '1' for urgent),
-- payload (send: the delivery job; collect: the finding; flush: the timer job), extra
-- (collect: the timer job), number (send: due time or 0; collect: longest wait ms; flush:
-- grace ms).
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return {-1}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local sent, held, collected, flushed, suppressed = 0, 0, 0, 0, 0
local urgent = {}
local function duplicate(k, member, window)
  if k == 0 then
    return false
  end
  local key = KEYS[k]
  local seen = redis.call('ZSCORE', key, member)
  if seen and tonumber(seen) > now - window then
    return true
  end
  redis.call('ZADD', key, now, member)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  redis.call('PEXPIRE', key, window)
  return false
end
local steps = tonumber(ARGV[2])
for s = 0, steps - 1 do
  local b = 3 + s * 11
  local op, endpoint = ARGV[b], ARGV[b + 1]
  local dk, member, window = tonumber(ARGV[b + 2]), ARGV[b + 3], tonumber(ARGV[b + 4])
  local ka, kb, id = tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6]), ARGV[b + 7]
  local payload, extra, n = ARGV[b + 8], ARGV[b + 9], tonumber(ARGV[b + 10])
  if (op == 'send' or op == 'collect') and duplicate(dk, member, window) then
    redis.call('HINCRBY', KEYS[5], endpoint, 1)
    suppressed = suppressed + 1
  elseif op == 'send' then
    if n > now then
      redis.call('ZADD', KEYS[3], n, payload)
      held = held + 1
    elseif id == '1' then
      urgent[#urgent + 1] = payload
      sent = sent + 1
    else
      redis.call('RPUSH', KEYS[2], payload)
      sent = sent + 1
    end
  elseif op == 'collect' then
    if redis.call('RPUSH', KEYS[ka], payload) == 1 then
      local deadline = now + n
      redis.call('ZADD', KEYS[4], deadline, id)
      redis.call('ZADD', KEYS[3], deadline, extra)
      redis.call('HSET', KEYS[6], id, extra)
    end
    collected = collected + 1
  elseif op == 'flush' then
    if redis.call('EXISTS', KEYS[ka]) == 1 then
      local due = now + n
      local deadline = tonumber(redis.call('ZSCORE', KEYS[4], id) or (due + 1))
      if due < deadline then
        -- The new timer replaces the longest-wait one, which would only find nothing later.
        local old = redis.call('HGET', KEYS[6], id)
        if old then
          redis.call('ZREM', KEYS[3], old)
        end
        redis.call('ZADD', KEYS[4], due, id)
        redis.call('ZADD', KEYS[3], due, payload)
        redis.call('HSET', KEYS[6], id, payload)
      end
      flushed = flushed + 1
    end
  end
end
-- LPUSH puts each at the front in turn: push the urgent ones last to first.
for i = #urgent, 1, -1 do
  redis.call('LPUSH', KEYS[2], urgent[i])
end
return {sent, held, collected, flushed, suppressed}
