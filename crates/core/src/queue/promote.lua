#!lua flags=allow-oom
-- Move due jobs from the delayed set to the retry list (the first to the ready list when that
-- is empty, so a worker blocked on it wakes), at most ARGV[1] per call, so no backlog can make one call
-- too large; and say which endpoint lanes are due for a look. Retries wait behind first
-- attempts: a backlog of them never holds up a fresh alert.
-- Returns {moved, ms until the next due job or -1, ms until the next lane is due or -1,
-- due lane endpoint ids...}. An empty delayed set and no lanes cost two reads.
-- KEYS[1] delayed zset, KEYS[2] ready list, KEYS[3] retry list, KEYS[4] lanes zset;
-- ARGV[1] limit.
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local lane = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
if not first[2] and not lane[2] then
  return {0, -1, -1}
end
local now = now_ms()
local moved = 0
local wait = -1
if first[2] then
  if tonumber(first[2]) <= now then
    local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
    local from = 1
    if redis.call('LLEN', KEYS[2]) == 0 then
      -- One to the ready list, to wake a worker blocked on it; that worker then takes the rest
      -- from the retry list, behind any first attempt that arrives meanwhile.
      redis.call('RPUSH', KEYS[2], due[1])
      from = 2
    end
    if from <= #due then
      redis.call('RPUSH', KEYS[3], unpack(due, from))
    end
    redis.call('ZREM', KEYS[1], unpack(due))
    moved = #due
    first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  end
  if first[2] then
    wait = math.max(0, tonumber(first[2]) - now)
  end
end
local out = {moved, wait, -1}
if lane[2] then
  local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 100)
  for i = 1, #due do
    out[#out + 1] = due[i]
  end
  local nxt = redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if nxt[2] then
    out[3] = tonumber(nxt[2]) - now
  end
end
return out
