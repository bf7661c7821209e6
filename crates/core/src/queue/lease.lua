#!lua flags=allow-oom
-- Renew this worker's lease, in one atomic step (the lease and the registry are one key: a
-- worker is listed exactly as long as its lease has a score), and say when the next other
-- worker's lease runs out, so the caller can reap it on time.
-- allow-oom: a full Redis must not cost a live worker its lease.
-- KEYS[1] leases zset (worker id -> lease expiry, Unix ms, Redis clock);
-- ARGV[1] worker id, ARGV[2] lease ms.
-- Returns {now ms, earliest expiry of another live worker in ms or -1, expired others}.
local now = now_ms()
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
-- Every listed worker (a few dozen at most): which have run out, and which runs out next.
local first = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local expired = 0
local next_other = -1
for i = 1, #first, 2 do
  if first[i] ~= ARGV[1] then
    local score = tonumber(first[i + 1])
    if score <= now then
      expired = expired + 1
    elseif next_other < 0 or score < next_other then
      next_other = score
    end
  end
end
return {now, next_other, expired}
