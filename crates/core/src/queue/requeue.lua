-- Hand a worker's processing list back to the front of the ready list: on shutdown (its own),
-- or by the reaper when the worker's lease has expired (ARGV[2] = '1': check the lease first,
-- and do nothing if it is alive). Returns the number of jobs moved, or -1 if the lease is alive.
-- KEYS[1] processing list, KEYS[2] ready list, KEYS[3] workers set, KEYS[4] lease;
-- ARGV[1] worker id, ARGV[2] check lease ('1' or '0'), ARGV[3] limit.
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[4]) == 1 then
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
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
end
return moved
