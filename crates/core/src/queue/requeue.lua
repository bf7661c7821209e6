#!lua flags=allow-oom
-- Hand a worker's processing list back to the front of the ready list: its own at shutdown
-- (ARGV[2] = '0'), or another's whose lease has run out (ARGV[2] = '1': does nothing, and
-- returns -1, while the lease is alive).
--
-- A worker stays listed in the leases set after its lease ran out and its list was emptied,
-- until it has been dead for ARGV[4] ms: a fetch it sent before it died can still be served by
-- Redis afterwards (a blocking fetch, a command queued while Redis was paused), and as long as
-- the worker is listed a reaper will find that job. Its own release at shutdown marks its
-- lease as run out now, for the same reason.
-- allow-oom: handing work back must not wait for memory.
-- KEYS[1] processing list, KEYS[2] ready list, KEYS[3] leases zset;
-- ARGV[1] worker id, ARGV[2] check lease ('1' or '0'), ARGV[3] limit, ARGV[4] forget after ms.
local now = now_ms()
local score = redis.call('ZSCORE', KEYS[3], ARGV[1])
if ARGV[2] == '1' and score and tonumber(score) > now then
  return -1
end
local moved = 0
local limit = tonumber(ARGV[3])
while moved < limit do
  local job = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not job then
    break
  end
  moved = moved + 1
end
if ARGV[2] == '0' then
  redis.call('ZADD', KEYS[3], now, ARGV[1])
elseif moved < limit and (not score or now - tonumber(score) > tonumber(ARGV[4])) then
  redis.call('ZREM', KEYS[3], ARGV[1])
end
return moved
