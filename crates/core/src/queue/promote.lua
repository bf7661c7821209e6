#!lua flags=allow-oom
-- Move due jobs from the delayed set to the ready list, at most ARGV[1] per call, so no backlog
-- can make one call too large. Returns {moved, ms until the next due job or -1 when none}.
-- An empty set costs one read: an idle promoter is cheap.
-- KEYS[1] delayed zset, KEYS[2] ready list; ARGV[1] limit.
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if not first[2] then
  return {0, -1}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(first[2]) > now then
  return {0, tonumber(first[2]) - now}
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #due > 0 then
  redis.call('RPUSH', KEYS[2], unpack(due))
  redis.call('ZREM', KEYS[1], unpack(due))
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = -1
if nxt[2] then
  wait = math.max(0, tonumber(nxt[2]) - now)
end
return {#due, wait}
